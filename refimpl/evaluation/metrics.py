"""Records -> the metrics the model repositories report.

Classification: top-1 and top-5 accuracy, a direct count (as timm's validate.py and torchvision's
reference script compute them: the true class is the first of the logits' stable descending order,
or among its first five).

Detection: COCO box AP with pycocotools' COCOeval, exactly as DETR's `main.py --eval` scores it:
every query's detection (no score threshold), boxes `[x, y, width, height]` in the original
image's pixels, the 12 standard numbers of which we report nine.
"""

from refimpl.audit.coco_ap import COCO_STATS, coco_metrics  # noqa: F401  (one COCOeval call for evaluate and the audits)


def classification_metrics(records):
    """records with `label` (int) and `top5` (class indices, best first) -> {"top1", "top5"}
    (fractions), plus the counts they come from."""
    n = len(records)
    top1 = sum(1 for r in records if r["top5"][:1] == [r["label"]])
    top5 = sum(1 for r in records if r["label"] in r["top5"][:5])
    return {"top1": top1 / n if n else None, "top5": top5 / n if n else None, "top1_correct": top1, "top5_correct": top5}
