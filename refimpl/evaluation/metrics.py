"""Records -> the metrics the model repositories report.

Classification: top-1 and top-5 accuracy, a direct count (as timm's validate.py and torchvision's
reference script compute them: the true class is the first of the logits' stable descending order,
or among its first five).

Detection: COCO box AP with pycocotools' COCOeval, exactly as DETR's `main.py --eval` scores it:
every query's detection (no score threshold), boxes `[x, y, width, height]` in the original
image's pixels, the 12 standard numbers of which we report nine.
"""

import contextlib
import copy
import io

from refimpl.errors import DatasetError

COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")  # COCOeval.stats[0:9]


def classification_metrics(records):
    """records with `label` (int) and `top5` (class indices, best first) -> {"top1", "top5"}
    (fractions), plus the counts they come from."""
    n = len(records)
    top1 = sum(1 for r in records if r["top5"][:1] == [r["label"]])
    top5 = sum(1 for r in records if r["label"] in r["top5"][:5])
    return {"top1": top1 / n if n else None, "top5": top5 / n if n else None, "top1_correct": top1, "top5_correct": top5}


def coco_results(records):
    """Detection records -> pycocotools' result list ({"image_id", "category_id", "bbox", "score"})."""
    return [dict(d, image_id=r["image_id"]) for r in records for d in r["detections"]]


def coco_metrics(coco_dict, records):
    """COCOeval (bbox) of the records' detections against the annotations `coco_dict` (the parsed
    instances JSON), on the records' images only -> {"AP": …, …, "AR100": …}. COCOeval's value
    -1 (no ground truth in that area range) is reported as None. Needs pycocotools."""
    COCO, COCOeval = _pycocotools()
    image_ids = sorted({r["image_id"] for r in records})
    if not image_ids:
        return dict.fromkeys(COCO_STATS)
    results = coco_results(records)
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


def _pycocotools():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise DatasetError("detection evaluation scores with pycocotools: pip install 'refimpl[evaluate]' "
                           "(or pip install pycocotools)") from None
    return COCO, COCOeval
