"""From model outputs to the hosted API's output contract (see the seeds in ../shared/seeds/).

Classification: softmax over the logits, the top k, `[{"label", "score"}]` sorted by score.
"""

import numpy as np

from . import ops

LABEL_STYLES = ("seed", "raw")


def seed_label(name):
    """The hosted API's label style: the first comma-separated name, upper-cased
    ("Pekinese, Pekingese, Peke" -> "PEKINESE")."""
    return name.split(",")[0].strip().upper()


def format_label(name, style="seed"):
    if style == "seed":
        return seed_label(name)
    if style == "raw":
        return name
    raise ValueError(f"label style must be one of {LABEL_STYLES}, got {style!r}")


def top_k(logits, id2label, k=5, labels="seed"):
    """logits: (num_labels,) -> the k most probable classes as [{"label", "score"}], best first.

    Ties are broken by class index (a stable sort), so the order is deterministic.
    """
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {k}")
    probs = ops.softmax(logits)
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"label": format_label(id2label[int(i)], labels), "score": float(probs[i])} for i in order]


# --- object detection (DETR) --------------------------------------------------------------------
#
# DETR answers with one (class, box) per object query. As transformers'
# `post_process_object_detection` does: softmax over all classes, drop the last ("no object"), the
# best class and its probability per query, keep the queries scoring strictly above the threshold,
# and turn the normalized (cx, cy, w, h) boxes into corners in pixels of the original image.

BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


def center_to_corners(boxes):
    """(..., 4) boxes (cx, cy, w, h) -> (..., 4) (xmin, ymin, xmax, ymax), same units."""
    cx, cy, w, h = np.moveaxis(boxes, -1, 0)
    return np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def detections(logits, pred_boxes, size, id2label, threshold=0.5):
    """One image's DETR outputs -> [{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}].

    logits: (Q, num_labels + 1), the last column "no object"; pred_boxes: (Q, 4) normalized
    (cx, cy, w, h); size: (height, width) of the original image, so the boxes come out in its
    absolute pixel coordinates (floats, not clipped: a box may reach past the border).
    threshold: keep the queries whose score is strictly above it; None keeps every query.
    The order is the query order (transformers' order); nothing is sorted.
    """
    probs = ops.softmax(logits, axis=-1)[:, :-1]
    scores = probs.max(axis=-1)
    labels = probs.argmax(axis=-1)  # the first best class on a tie
    height, width = size
    scale = np.array([width, height, width, height], dtype=pred_boxes.dtype)
    boxes = center_to_corners(pred_boxes) * scale
    if threshold is None:
        keep = np.arange(len(scores))
    else:
        # Compared in the scores' own precision, as torch compares a float32 tensor with a scalar.
        keep = np.flatnonzero(scores > scores.dtype.type(threshold))
    return [
        {
            "score": float(scores[q]),
            "label": id2label[int(labels[q])],
            "box": {k: float(v) for k, v in zip(BOX_KEYS, boxes[q])},
        }
        for q in keep
    ]


def object_detection(outputs, sizes, id2label, threshold=0.5):
    """A batch: outputs {"logits": (N, Q, C+1), "pred_boxes": (N, Q, 4)}, sizes N (height, width)
    of the original images -> a list of N detection lists (see `detections`)."""
    logits, pred_boxes = outputs["logits"], outputs["pred_boxes"]
    if len(sizes) != len(logits):
        raise ValueError(f"{len(sizes)} sizes given for a batch of {len(logits)} images")
    return [detections(lg, pb, size, id2label, threshold) for lg, pb, size in zip(logits, pred_boxes, sizes)]
