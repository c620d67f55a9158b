"""What a dataset is, for `refimpl evaluate`: a sorted list of `Item(name, path, label)`.

Classification (`label` is the class index the model's logits use):
- an ImageNet-style folder: one subfolder per class, named by WordNet id (`n01440764`, as
  ImageNet val is usually laid out; the 1000 ids in the standard class order are in
  imagenet_synsets.txt, a copy of timm's), by class index (`0` … `999`) or by the class's
  `id2label` name; `name` is `subfolder/file`;
- any folder with a labels CSV (`file,label` per row, an optional header row; `label` a class
  index or an `id2label` name, in the checkpoint's spelling or the seeds' upper-case style).

Detection (`label` is the COCO image id): a folder of images and a COCO `instances_*.json`;
the images are the annotation file's `images`, found by `file_name` in the folder.
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from refimpl.conformance.coco_ap import read_coco  # noqa: F401  (audit-dir reads annotations too)
from refimpl.errors import DatasetError
from refimpl.pipeline.postprocess import seed_label

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
SYNSETS_FILE = Path(__file__).with_name("imagenet_synsets.txt")


@dataclass(frozen=True)
class Item:
    name: str  # how the image is named in records: relative to the dataset folder, "/" separated
    path: Path
    label: int  # classification: the class index; detection: the COCO image id


def imagenet_synsets():
    """The 1000 ImageNet-1k WordNet ids in class-index order (n01440764 is class 0, tench)."""
    return SYNSETS_FILE.read_text().split()


def label_index(text, id2label, where):
    """A class given as an index, a WordNet id (1000-class models) or an id2label name (the
    checkpoint's spelling, or the seeds' upper-case first name) -> the class index."""
    text = text.strip()
    if text.isdigit():
        index = int(text)
        if index not in id2label:
            raise DatasetError(f"{where}: class index {index} is not one of the model's {len(id2label)} classes")
        return index
    if len(id2label) == 1000 and text.startswith("n") and text[1:].isdigit():
        synsets = imagenet_synsets()
        if text in synsets:
            return synsets.index(text)
        raise DatasetError(f"{where}: {text!r} is not an ImageNet-1k WordNet id")
    by_name = _names(id2label)
    if text in by_name:
        if len(by_name[text]) > 1:
            raise DatasetError(f"{where}: {text!r} names {len(by_name[text])} classes of the model "
                               f"({', '.join(map(str, by_name[text]))}): give the class index instead")
        return by_name[text][0]
    raise DatasetError(f"{where}: {text!r} is neither a class index, a WordNet id nor a label of the model "
                       f"(e.g. {id2label[min(id2label)]!r} or {seed_label(id2label[min(id2label)])!r})")


def _names(id2label):
    """name (as in the checkpoint, and in the seeds' style) -> [class indices]: ImageNet names a few
    classes twice (two "crane"s, two "maillot"s), which a label must then give by index."""
    names = {}
    for index in sorted(id2label):
        for name in {id2label[index], seed_label(id2label[index])}:
            names.setdefault(name, []).append(index)
    return names


def images_in(folder):
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def classification_items(folder, id2label, labels=None):
    """Items of a classification dataset (see the module docstring), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"no such folder: {folder}")
    if labels is not None:
        items = _items_from_csv(folder, Path(labels), id2label)
    else:
        classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DatasetError(f"{folder} has no class subfolders (an ImageNet-style folder has one per class); "
                               "for a flat folder pass --labels FILE (CSV: file,label)")
        items = [Item(f"{d.name}/{p.name}", p, label_index(d.name, id2label, f"class folder {d.name!r}"))
                 for d in classes for p in images_in(d)]
    if not items:
        raise DatasetError(f"no images found in {folder}")
    return sorted(items, key=lambda item: item.name)


def _items_from_csv(folder, labels, id2label):
    if not labels.is_file():
        raise DatasetError(f"no such labels file: {labels}")
    items, seen = [], set()
    with open(labels, newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2:
                raise DatasetError(f"{labels} line {number}: expected 2 columns (file,label), got {len(row)}")
            name, label = (cell.strip() for cell in row)
            if number == 1 and label.lower() == "label":
                continue  # the header row
            path = folder / name
            if not path.is_file():
                raise DatasetError(f"{labels} line {number}: no image {name!r} in {folder}")
            if name in seen:
                raise DatasetError(f"{labels} line {number}: {name!r} is listed twice")
            seen.add(name)
            items.append(Item(Path(name).as_posix(), path, label_index(label, id2label, f"{labels} line {number}")))
    return items


def detection_items(folder, coco):
    """Items of a detection dataset: the annotation file's images (by `file_name` in `folder`),
    sorted by name; `label` is the image id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"no such folder: {folder}")
    items = []
    for image in coco["images"]:
        path = folder / image["file_name"]
        if not path.is_file():
            raise DatasetError(f"image {image['file_name']!r} (id {image['id']}) of the annotations is not in {folder}")
        items.append(Item(Path(image["file_name"]).as_posix(), path, int(image["id"])))
    if not items:
        raise DatasetError(f"none of the annotated images is in {folder}")
    return sorted(items, key=lambda item: item.name)


def category_map(coco, id2label):
    """The model's class names -> COCO category ids, matched by name (DETR's checkpoint names its
    classes as COCO does, at index = category id). Classes without a category ("N/A") map nowhere:
    COCOeval scores only the annotated categories, so their detections could not count anyway."""
    by_name = {c["name"]: int(c["id"]) for c in coco["categories"]}
    mapping = {name: by_name[name] for name in id2label.values() if name in by_name}
    if not mapping:
        raise DatasetError("no category of the annotations is a class of the model (matched by name, "
                           f"e.g. {coco['categories'][0]['name'] if coco['categories'] else 'none'!r})")
    return mapping
