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
the images are the annotation file's `images`, found by `file_name` in the folder. Or a Hugging
Face object-detection dataset (`hf_detection_items`): an `Image` column and an `objects` column
of `bbox` (COCO [x, y, width, height] unless told "xyxy") and category (ClassLabel, or names)
per object, from which the COCO ground truth is built in memory, the same dict as a parsed
annotation file, so both go through the same category mapping and COCOeval.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

from refimpl.audit.coco_ap import _real
from refimpl.audit.coco_ap import read_coco  # noqa: F401  (audit-dir reads annotations too)
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

    ds, source = _open_hf_columns(data, fmt, split, image_column)
    features = ds.features
    label_column = label_column or _column(features, datasets.ClassLabel, "label", "--label-column")
    if label_column not in features:
        raise DatasetError(f"the dataset has no column {label_column!r} (it has {', '.join(features)})")
    feature = features[label_column]
    names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    items = []
    for row, (stored, label) in enumerate(zip(_stored_paths(ds, source.image_column), ds[label_column])):
        where = f"row {row} of {data}"
        if label is None or (names is None and not isinstance(label, int)):
            raise DatasetError(f"{where}: the label {label!r} is not a class")
        index = label_index(names[label] if names is not None else str(label), id2label, where)
        items.append(Item(_row_name(source, row, stored), None, index, row))
    if not items:
        raise DatasetError(f"the dataset {data} has no rows")
    return sorted(items, key=lambda item: item.name), source


def _open_hf_columns(data, fmt, split, image_column):
    """Open a Hugging Face dataset and find its image column -> (the dataset, with the image
    column left encoded, and its HFSource)."""
    import datasets

    location = str(Path(data).resolve()) if fmt != "hub" else str(data)
    ds = open_hf(HFSource(fmt, location, split, ""))
    image_column = image_column or _column(ds.features, datasets.Image, "image", "--image-column")
    if image_column not in ds.features:
        raise DatasetError(f"the dataset has no column {image_column!r} (it has {', '.join(ds.features)})")
    source = HFSource(fmt, location, split, image_column)
    return ds.cast_column(image_column, datasets.Image(decode=False)), source


def _row_name(source, row, stored):
    """A row's item name: its image's path relative to an imagefolder, else `RRRRRR/FILE`."""
    root = Path(source.location) if source.format == "imagefolder" else None
    if root is not None and stored and Path(stored).is_relative_to(root):
        return Path(stored).relative_to(root).as_posix()
    return f"{row:06d}/{Path(stored).name}" if stored else f"{row:06d}"


# --- Hugging Face object-detection datasets --------------------------------------------------------

BBOX_FORMATS = ("xywh", "xyxy")
CATEGORY_FIELDS = ("category", "categories", "category_id", "label", "labels")
# A box that reaches more than this many pixels past its image is counted as outside it; when more
# than OUTSIDE_LIMIT of the boxes are, the boxes are almost surely read in the wrong format.
OUTSIDE_SLACK = 1.0
OUTSIDE_LIMIT = 0.1


def hf_detection_items(data, id2label, fmt, split=None, image_column=None, objects_column=None, bbox_format="xywh"):
    """Items of a Hugging Face object-detection dataset -> (items sorted by name, HFSource, the
    COCO ground truth as a dict, the shape of a parsed instances_*.json).

    The layout of the Hub's detection datasets (detection-datasets/coco, cppe-5, the
    object-detection tutorial): an `Image` column and an objects column, a dict of lists
    (`Sequence({...})`) or a list of dicts, with per object `bbox` (4 numbers, pixels of the image;
    `bbox_format` "xywh" is COCO's [x, y, width, height], "xyxy" the corners [x0, y0, x1, y1]) and
    a category (`category`, `categories`, `category_id`, `label` or `labels`): a ClassLabel index,
    or the category's name as a string (an imagefolder's metadata.jsonl cannot declare a
    ClassLabel). Optional: `area` (else width × height) and `iscrowd` (else 0) per object, an
    `image_id` or `id` column per row (else the row number + 1).

    The ground truth: `images` with the width and height of the image as decoded (EXIF orientation
    applied, as refimpl reads it), `annotations`, and `categories`: the ClassLabel's names (all of
    them, annotated or not), or the names that occur. A category's id is the model's class index
    of that name (for DETR the COCO category id, so records compare with a COCO-annotated folder
    run's), or, for a name the model does not have, the next free id after the model's classes.
    Item names and `label` (the image id) as `hf_items` and `detection_items`."""
    import datasets

    if bbox_format not in BBOX_FORMATS:
        raise DatasetError(f"unknown bbox format {bbox_format!r} (one of {', '.join(BBOX_FORMATS)})")
    ds, source = _open_hf_columns(data, fmt, split, image_column)
    features = ds.features
    objects_column = objects_column or _objects_column(features, source.image_column)
    if objects_column not in features:
        raise DatasetError(f"the dataset has no column {objects_column!r} (it has {', '.join(features)})")
    fields = _object_fields(features[objects_column], objects_column)
    category_field = next((f for f in CATEGORY_FIELDS if f in fields), None)
    if "bbox" not in fields or category_field is None:
        raise DatasetError(f"the objects column {objects_column!r} has the fields {', '.join(fields)}: it needs 'bbox' "
                           f"and a category ({', '.join(CATEGORY_FIELDS)})")
    category_names = _category_names(fields[category_field], f"{objects_column}.{category_field}")
    ids = _image_ids(ds, features)
    stored = _stored_paths(ds, source.image_column)
    objects = ds[objects_column]
    items, images, annotations, outside = [], [], [], 0
    for row, (path, size, image_id, value) in enumerate(zip(stored, _image_sizes(ds, source.image_column), ids, objects)):
        where = f"row {row} of {data}"
        items.append(Item(_row_name(source, row, path), None, image_id, row))
        images.append({"id": image_id, "file_name": items[-1].name, **(size or {})})
        for k, obj in enumerate(_objects_of(value, where)):
            what = f"{where}, object {k}"
            x, y, w, h = _coco_box(obj.get("bbox"), bbox_format, what)
            if size and (x + w > size["width"] + OUTSIDE_SLACK or y + h > size["height"] + OUTSIDE_SLACK):
                outside += 1
            name = _category_name(obj.get(category_field), category_names, what)
            area, crowd = obj.get("area"), obj.get("iscrowd")
            if area is not None and (not _real(area) or area < 0):
                raise DatasetError(f"{what}: the area {area!r} is not a number >= 0")
            if crowd not in (None, 0, 1, False, True):
                raise DatasetError(f"{what}: iscrowd {crowd!r} is not 0 or 1")
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category": name,
                                "bbox": [x, y, w, h], "area": float(w * h if area is None else area),
                                "iscrowd": int(crowd or 0)})
    if not items:
        raise DatasetError(f"the dataset {data} has no rows")
    if annotations and all(max(a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]) <= 1.0 for a in annotations) \
            and any(min(i.get("width", 2), i.get("height", 2)) > 1 for i in images):
        # every box inside the unit square of images larger than a pixel: normalised coordinates,
        # which read as pixels would score every detection against a speck in the corner
        raise DatasetError(f"every box of {data} lies within [0, 1]: the boxes look normalised to the image size; "
                           "refimpl reads them in pixels of the image: scale them by the width and height first")
    if annotations and outside > OUTSIDE_LIMIT * len(annotations):
        raise DatasetError(f"{outside} of the {len(annotations)} boxes of {data} reach past their image: are they "
                           f"{'[x0, y0, x1, y1]' if bbox_format == 'xywh' else '[x, y, width, height]'}? "
                           f"(read as {bbox_format}; --bbox-format {'xyxy' if bbox_format == 'xywh' else 'xywh'})")
    names = category_names or sorted({a["category"] for a in annotations})
    category_ids = _category_ids(names, id2label)
    for a in annotations:
        a["category_id"] = category_ids[a.pop("category")]
    coco = {"info": {"description": f"built by refimpl from the Hugging Face dataset {data} ({objects_column}, "
                                    f"boxes read as {bbox_format})"},
            "images": images, "annotations": annotations,
            "categories": [{"id": category_ids[n], "name": n} for n in names]}
    return sorted(items, key=lambda item: item.name), source, coco


def _objects_column(features, image_column):
    """The one column (besides the image) whose objects have a `bbox`."""
    found = []
    for name, feature in features.items():
        if name == image_column:
            continue
        try:
            if "bbox" in _object_fields(feature, name):
                found.append(name)
        except DatasetError:
            continue
    if len(found) == 1:
        return found[0]
    if "objects" in features:
        return "objects"
    raise DatasetError(f"the dataset has {len(found) or 'no'} column(s) of objects with a 'bbox' "
                       f"({', '.join(found or features)}): a detection dataset needs one (an 'objects' column of "
                       "bbox and category, as the Hub's detection datasets have); name it with --objects-column")


def _inner(feature):
    """The element feature of a list feature (List, LargeList, Sequence, [feature]), else None."""
    if isinstance(feature, list) and len(feature) == 1:
        return feature[0]
    if type(feature).__name__ in ("List", "LargeList", "Sequence") and hasattr(feature, "feature"):
        return feature.feature
    return None


def _object_fields(feature, column):
    """An objects column's feature -> {field: the feature of one object's field}: a dict of list
    features (what `Sequence({...})` makes), or a list of dicts."""
    if isinstance(feature, dict):
        fields = {}
        for key, sub in feature.items():
            inner = _inner(sub)
            if inner is None:
                raise DatasetError(f"the field {key!r} of the objects column {column!r} is not a list (one per object)")
            fields[key] = inner
        return fields
    inner = _inner(feature)
    if isinstance(inner, dict):
        return dict(inner)
    raise DatasetError(f"the column {column!r} is not a column of objects (a dict of lists or a list of dicts), "
                       f"it is {feature!r}")


def _category_names(feature, where):
    """A category field's feature -> the ClassLabel's names, or None for names given as strings."""
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        return None
    raise DatasetError(f"the category field {where} is {feature!r}, not a ClassLabel (whose names give the categories) "
                       "or the categories' names: integer categories without names cannot be matched to the model's classes")


def _category_name(value, names, where):
    if names is None:
        if not isinstance(value, str) or not value:
            raise DatasetError(f"{where}: the category {value!r} is not a name")
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(names):
        raise DatasetError(f"{where}: the category {value!r} is not one of the ClassLabel's {len(names)} classes")
    return names[value]


def _category_ids(names, id2label):
    """Category name -> id: the model's (first) class index of that name, else the next free id."""
    by_name = {}
    for index in sorted(id2label, reverse=True):
        by_name[id2label[index]] = index
    ids, free = {}, max(id2label) + 1
    for name in names:
        if name in by_name:
            ids[name] = by_name[name]
        else:
            ids[name], free = free, free + 1
    return ids


def _coco_box(bbox, bbox_format, where):
    """One object's bbox -> COCO [x, y, width, height] (floats)."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_real(v) for v in bbox):
        raise DatasetError(f"{where}: the bbox {bbox!r} is not 4 numbers")
    x, y, a, b = (float(v) for v in bbox)
    w, h = (a - x, b - y) if bbox_format == "xyxy" else (a, b)
    if w < 0 or h < 0:
        other = "xyxy" if bbox_format == "xywh" else "xywh"
        raise DatasetError(f"{where}: the bbox {list(bbox)!r} read as {bbox_format} has a negative width or height "
                           f"(is it {other}? --bbox-format {other})")
    return x, y, w, h


def _objects_of(value, where):
    """One row's objects cell -> a list of {field: value} (one per object)."""
    if value is None:
        return []
    if isinstance(value, dict):
        lengths = {k: len(v) for k, v in value.items() if isinstance(v, (list, tuple))}
        if len(lengths) != len(value) or len(set(lengths.values())) > 1:
            raise DatasetError(f"{where}: the objects' fields are not lists of one length ({lengths})")
        n = next(iter(lengths.values()), 0)
        return [{k: v[i] for k, v in value.items()} for i in range(n)]
    if isinstance(value, (list, tuple)) and all(isinstance(v, dict) for v in value):
        return list(value)
    raise DatasetError(f"{where}: the objects {value!r} are not a dict of lists or a list of dicts")


def _image_ids(ds, features):
    """Each row's image id: its `image_id` (or `id`) column of integers, else the row number + 1
    (a column of that name holding strings is not an image id COCO can take, and is not used)."""
    column = next((c for c in ("image_id", "id") if c in features
                   and str(getattr(features[c], "dtype", "")).startswith(("int", "uint"))), None)
    if column is None:
        return list(range(1, len(ds) + 1))
    ids = list(ds[column])
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise DatasetError(f"the column {column!r} is taken as the image id, but is not all integers")
    if len(set(ids)) != len(ids):
        raise DatasetError(f"the column {column!r} is taken as the image id, but some ids are repeated")
    return ids


def _image_sizes(ds, column):
    """Each row's image {"width", "height"} as refimpl decodes it (EXIF orientation applied), read
    from the image's header only; None for an image Pillow cannot open (its record says why)."""
    from io import BytesIO

    from PIL import Image

    for batch in ds.select_columns([column]).iter(batch_size=64):
        for cell in batch[column]:
            try:
                with Image.open(BytesIO(cell["bytes"]) if cell.get("bytes") is not None else cell["path"]) as image:
                    w, h = image.size
                    if image.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated a quarter turn
                        w, h = h, w
                yield {"width": w, "height": h}
            except Exception:  # noqa: BLE001 - an unreadable image is the record's error, not the dataset's
                yield None


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
