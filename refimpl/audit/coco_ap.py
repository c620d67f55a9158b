"""COCO box AP with pycocotools' COCOeval, for `refimpl evaluate` (refimpl's detections against
annotations) and for the audits over a dataset (a service's claimed detections against refimpl's
reference detections taken as the ground truth, or both services' against annotations).

    >>> coco_metrics(coco_dict, [{"image_id": 1, "detections": [{"category_id": 18, "bbox": [x, y, w, h], "score": 0.9}]}])
    {"AP": …, "AP50": …, …, "AR100": …}

Detections in the contract's shape (`{"label", "score", "box": {"xmin", "ymin", "xmax", "ymax"}}`)
become COCO results with `as_coco`: boxes [x, y, width, height] in pixels, labels mapped to
category ids by name.
"""

import contextlib
import copy
import io
import json
from pathlib import Path

from refimpl.errors import DatasetError

COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")  # COCOeval.stats[0:9]
UINT16_SPAN = 65536


def coco_metrics(coco_dict, records):
    """COCOeval (bbox) of the records' detections (`{"image_id", "detections": [COCO results
    without image_id]}`) against the annotations `coco_dict` (a parsed instances JSON), on the
    records' images only -> {"AP": …, …, "AR100": …}. COCOeval's value -1 (no ground truth in
    that area range) is reported as None. Needs pycocotools."""
    COCO, COCOeval = _pycocotools()
    image_ids = sorted({r["image_id"] for r in records})
    if not image_ids:
        return dict.fromkeys(COCO_STATS)
    results = [dict(d, image_id=r["image_id"]) for r in records for d in r["detections"]]
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its table; ours comes after
        gt = COCO()
        gt.dataset = copy.deepcopy(coco_dict)  # COCOeval marks the ground truth in place
        gt.createIndex()
        if not results:  # loadRes refuses an empty list; no detection at all scores 0
            return {k: 0.0 for k in COCO_STATS}
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: (None if v < 0 else float(v)) for k, v in zip(COCO_STATS, ev.stats)}


def read_coco(annotations):
    """The COCO annotation file as a dict, checked for what evaluation needs."""
    annotations = Path(annotations)
    if not annotations.is_file():
        raise DatasetError(f"no such annotation file: {annotations}")
    try:
        data = json.loads(annotations.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DatasetError(f"{annotations} is not JSON: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise DatasetError(f"{annotations} is not a COCO instances file (needs lists 'images', 'annotations', 'categories')")
    return data


def as_coco(detections, categories):
    """Contract-shape detections -> COCO results (no image_id): the label -> its category id by
    name (`categories`: name -> id; a label without a category is left out: COCOeval could not
    score it), corners -> [x, y, width, height]. Corners a hosted service wrapped to unsigned
    16-bit (integers in 32768..65535, the judge's `uint16_wraparound`) are unwrapped; items
    without a string label, a number score and four number corners are left out."""
    out = []
    for d in detections or []:
        box = d.get("box") if isinstance(d, dict) else None
        if (not isinstance(box, dict) or d.get("label") not in categories or not _real(d.get("score"))
                or not all(_real(box.get(k)) for k in ("xmin", "ymin", "xmax", "ymax"))):
            continue
        x0, y0, x1, y1 = (_unwrap(box[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        out.append({"category_id": categories[d["label"]], "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(d["score"])})
    return out


def claimed_vs_reference(pairs):
    """AP of claimed detections with refimpl's reference detections as the ground truth.

    pairs: one (reference, claimed) per image, both contract-shape lists; `reference` is what
    refimpl's contract returns (its detections above the contract threshold), `claimed` the
    service's detections with their scores. Categories are the labels either side uses, so a
    claimed label the reference never gives on the whole dataset has no ground truth and is not
    scored (COCOeval averages over the categories with ground truth). -> (metrics, coco_dict,
    results): the metrics and the exact ground truth and detections COCOeval was given."""
    labels = sorted({d["label"] for ref, claimed in pairs for d in (ref or []) + (claimed or [])
                     if isinstance(d, dict) and isinstance(d.get("label"), str)})
    categories = {name: i + 1 for i, name in enumerate(labels)}
    coco = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for n, i in categories.items()]}
    records = []
    for image_id, (ref, claimed) in enumerate(pairs, 1):
        coco["images"].append({"id": image_id})
        for d in as_coco(ref, categories):
            w, h = d["bbox"][2:]
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id, "iscrowd": 0,
                                        "category_id": d["category_id"], "bbox": d["bbox"], "area": w * h})
        records.append({"image_id": image_id, "detections": as_coco(claimed, categories)})
    return coco_metrics(coco, records), coco, records


def _real(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) != float("inf")


def _unwrap(v):
    v = float(v)
    return v - UINT16_SPAN if UINT16_SPAN // 2 <= v < UINT16_SPAN and v == int(v) else v


def _pycocotools():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise DatasetError("COCO AP is computed with pycocotools: pip install 'refimpl[evaluate]' "
                           "(or pip install pycocotools)") from None
    return COCO, COCOeval
