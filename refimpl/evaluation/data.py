"""What a dataset is, for `refimpl evaluate`: a sorted list of `Item(name, path, label)`.

Classification (`label` is the class index the model's logits use):
- an ImageNet-style folder: one subfolder per class, named by WordNet id (`n01440764`, as
  ImageNet val is usually laid out; the 1000 ids in the standard class order are in
  imagenet_synsets.txt, a copy of timm's), by class index (`0` … `999`) or by the class's
  `id2label` name; `name` is `subfolder/file`;
- any folder with a labels CSV (`file,label` per row, an optional header row; `label` a class
  index or an `id2label` name, in the checkpoint's spelling or the seeds' upper-case style).

A Hugging Face `datasets` dataset (classification; `hf_items`): a `save_to_disk` folder, an
`imagefolder` (a folder with metadata.csv/metadata.jsonl, or any class-subfolder folder when asked
for) or a hub name; the image and label columns are found by feature type (`Image`, `ClassLabel`)
unless named; labels are mapped to the model's classes by name as above.

Detection (`label` is the COCO image id): a folder of images and a COCO `instances_*.json`;
the images are the annotation file's `images`, found by `file_name` in the folder.
"""

import csv
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
    path: Path | None  # the image file; None for a row of a Hugging Face dataset
    label: int  # classification: the class index; detection: the COCO image id
    row: int | None = None  # the row of a Hugging Face dataset (`HFSource`) holding the image


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


# --- Hugging Face datasets ----------------------------------------------------------------------

HF_FORMATS = ("disk", "imagefolder", "hub")


@dataclass(frozen=True)
class HFSource:
    """Where a Hugging Face dataset's images are read from, by the workers too (each opens the
    dataset once: a saved or cached dataset is memory-mapped, not copied)."""
    format: str  # "disk" (save_to_disk), "imagefolder" or "hub"
    location: str  # the folder (absolute) or the hub name
    split: str | None
    image_column: str


def hf_format(data, forced=None):
    """Which kind of dataset `data` is: one of HF_FORMATS, or None for refimpl's own folder
    reading. Automatic: a folder written by `save_to_disk` (dataset_info.json / state.json /
    dataset_dict.json) is "disk"; a folder with metadata.csv or metadata.jsonl is "imagefolder";
    a name that is not a path on this machine is a hub name. `forced` overrides."""
    if forced is not None:
        if forced not in HF_FORMATS:
            raise DatasetError(f"unknown dataset format {forced!r} (one of {', '.join(HF_FORMATS)})")
        return forced
    path = Path(data)
    if path.is_dir():
        if any((path / f).is_file() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
            return "disk"
        if any((path / f).is_file() for f in ("metadata.csv", "metadata.jsonl")):
            return "imagefolder"
        return None
    if path.exists() or str(data).startswith((".", "/", "~")):
        return None  # a file, or a path that is not there: the folder reader names the problem
    return "hub"


def open_hf(source):
    """The `datasets.Dataset` of an HFSource (or of its pieces before the columns are known),
    with its image column left encoded (bytes or a path), as refimpl decodes images itself."""
    try:
        import datasets
    except ImportError:
        raise DatasetError("Hugging Face datasets as DATA need the datasets library: pip install 'refimpl[evaluate]' "
                           "(or pip install datasets)") from None
    try:
        if source.format == "disk":
            ds = datasets.load_from_disk(source.location)
        elif source.format == "imagefolder":
            ds = datasets.load_dataset("imagefolder", data_dir=source.location)
        else:
            ds = datasets.load_dataset(source.location, split=source.split)
    except (OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as e:
        # ConnectionError (offline, unreachable hub) is an OSError
        raise DatasetError(f"cannot load the Hugging Face dataset {source.location!r} ({source.format}): "
                           f"{type(e).__name__}: {e}") from None
    if isinstance(ds, datasets.DatasetDict):
        split = source.split or _default_split(list(ds))
        if split not in ds:
            raise DatasetError(f"the dataset {source.location!r} has no split {split!r} (it has {', '.join(ds)})")
        ds = ds[split]
    if source.image_column:
        ds = ds.cast_column(source.image_column, datasets.Image(decode=False))
    return ds


def _default_split(splits):
    for name in ("validation", "val", "test"):
        if name in splits:
            return name
    if len(splits) == 1:
        return splits[0]
    raise DatasetError(f"the dataset has the splits {', '.join(splits)}: choose one with --split")


def hf_items(data, id2label, fmt, split=None, image_column=None, label_column=None):
    """Items of a Hugging Face classification dataset -> (items sorted by name, HFSource).

    The image column is the one `Image` feature (or `image_column`), the label column the one
    `ClassLabel` feature (or `label_column`, a ClassLabel or integer column); a ClassLabel's names
    are mapped to the model's classes as a class folder's name is (`label_index`). An item's name
    is its image's path relative to an imagefolder, else `RRRRRR/FILE` (its row, zero-padded, and
    the stored file name, or `RRRRRR` without one), so the items keep the dataset's row order."""
    import datasets

    location = str(Path(data).resolve()) if fmt != "hub" else str(data)
    source = HFSource(fmt, location, split, "")
    ds = open_hf(source)
    features = ds.features
    image_column = image_column or _column(features, datasets.Image, "image", "--image-column")
    label_column = label_column or _column(features, datasets.ClassLabel, "label", "--label-column")
    for column in (image_column, label_column):
        if column not in features:
            raise DatasetError(f"the dataset has no column {column!r} (it has {', '.join(features)})")
    feature = features[label_column]
    names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    source = HFSource(fmt, location, split, image_column)
    ds = ds.cast_column(image_column, datasets.Image(decode=False))
    items = []
    root = Path(location) if fmt == "imagefolder" else None
    for row, (stored, label) in enumerate(zip(_stored_paths(ds, image_column), ds[label_column])):
        where = f"row {row} of {data}"
        if label is None or (names is None and not isinstance(label, int)):
            raise DatasetError(f"{where}: the label {label!r} is not a class")
        index = label_index(names[label] if names is not None else str(label), id2label, where)
        if root is not None and stored and Path(stored).is_relative_to(root):
            name = Path(stored).relative_to(root).as_posix()
        else:
            name = f"{row:06d}/{Path(stored).name}" if stored else f"{row:06d}"
        items.append(Item(name, None, index, row))
    if not items:
        raise DatasetError(f"the dataset {data} has no rows")
    return sorted(items, key=lambda item: item.name), source


def _stored_paths(ds, column):
    """The stored file path (or None) of each row's image, without reading the images' bytes
    into Python (a dataset of 50,000 images stays memory-mapped)."""
    import pyarrow.compute as pc

    if getattr(ds, "_indices", None) is not None:
        ds = ds.flatten_indices()
    return pc.struct_field(ds.data.column(column), "path").to_pylist()


def _column(features, kind, usual, option):
    found = [name for name, f in features.items() if isinstance(f, kind)]
    if len(found) == 1:
        return found[0]
    if usual in features:
        return usual
    raise DatasetError(f"the dataset has {len(found) or 'no'} {kind.__name__} column(s) "
                       f"({', '.join(found) or ', '.join(features)}): name the one to use with {option}")


_OPENED = {}


def encoded_image(item, source=None):
    """The encoded bytes (or the path) of an item's image: its file, or its dataset row."""
    if item.row is None:
        return item.path
    if source not in _OPENED:  # once per process: workers reuse the memory-mapped dataset
        _OPENED[source] = open_hf(source)
    cell = _OPENED[source][item.row][source.image_column]
    if cell.get("bytes") is not None:
        return cell["bytes"]
    return cell["path"]
