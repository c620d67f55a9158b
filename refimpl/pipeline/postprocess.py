"""From model outputs to the hosted API's output contract (see the seeds in ../shared/seeds/).

Classification: softmax over the logits, the top k, `[{"label", "score"}]` sorted by score.
Detection: transformers' `post_process_object_detection`, then optionally the hosted API's shape.

The output options of each task (`CLASSIFICATION_OPTIONS`, `DETECTION_OPTIONS`) are checked here,
once, for every caller: the Python API, `refimpl.run`, the server's query string and the CLI.
"""

import math
import numbers

import numpy as np

from refimpl.errors import InvalidOptionError
from refimpl.models import ops

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


def per_query(logits, pred_boxes, size):
    """Every query's answer before thresholding: logits (Q, num_labels + 1), pred_boxes (Q, 4)
    normalized (cx, cy, w, h), size (height, width) of the original image ->
    scores (Q,) (the best real class's probability), labels (Q,) int (that class, the first on a
    tie), boxes (Q, 4) (xmin, ymin, xmax, ymax) in the original image's pixels.
    What `detections` keeps from; a trace records scores and boxes as `post_process.*`."""
    probs = ops.softmax(logits, axis=-1)[:, :-1]
    scores = probs.max(axis=-1)
    labels = probs.argmax(axis=-1)  # the first best class on a tie
    height, width = size
    scale = np.array([width, height, width, height], dtype=pred_boxes.dtype)
    boxes = center_to_corners(pred_boxes) * scale
    return scores, labels, boxes


def detections(logits, pred_boxes, size, id2label, threshold=0.5):
    """One image's DETR outputs -> [{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}].

    logits: (Q, num_labels + 1), the last column "no object"; pred_boxes: (Q, 4) normalized
    (cx, cy, w, h); size: (height, width) of the original image, so the boxes come out in its
    absolute pixel coordinates (floats, not clipped: a box may reach past the border).
    threshold: keep the queries whose score is strictly above it; None keeps every query.
    The order is the query order (transformers' order); nothing is sorted.
    """
    scores, labels, boxes = per_query(logits, pred_boxes, size)
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


# --- the hosted API's detection shape -----------------------------------------------------------

def hosted_shape(detections, wrap_uint16=False):
    """Reference-style detections (query order, float boxes) -> the hosted API's shape: sorted by
    score descending (a stable sort: ties keep query order), corners rounded to the nearest
    integer (ties to even), optionally wrapped to unsigned 16-bit (-2 -> 65534)."""
    ordered = sorted(detections, key=lambda d: -d["score"])
    out = []
    for d in ordered:
        box = {}
        for k in BOX_KEYS:
            v = int(round(d["box"][k]))
            box[k] = v % 65536 if wrap_uint16 else v
        out.append({"score": d["score"], "label": d["label"], "box": box})
    return out


# --- output options ---------------------------------------------------------------------------

SHAPES = ("reference", "hosted")
REFERENCE_THRESHOLD = 0.5  # transformers' default; `shape="hosted"` keeps every query instead
CLASSIFICATION_OPTIONS = {"top_k": 5, "labels": "seed"}  # name -> default
DETECTION_OPTIONS = {"shape": "reference", "threshold": "auto", "wrap_uint16": False}  # "auto": by shape


def _known(defaults, options, what):
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise InvalidOptionError(f"unknown option(s) {', '.join(unknown)} for {what}; allowed: {', '.join(defaults)}")
    return dict(defaults, **options)


def classification_options(options, what="image classification"):
    """Check top_k / labels and fill in the defaults -> a new dict. Raises InvalidOptionError."""
    out = _known(CLASSIFICATION_OPTIONS, options, what)
    k = out["top_k"]
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise InvalidOptionError(f"top_k must be an integer >= 1, got {k!r}")
    out["top_k"] = int(k)
    if out["labels"] not in LABEL_STYLES:
        raise InvalidOptionError(f"labels must be 'seed' or 'raw', got {out['labels']!r}")
    return out


def detection_options(options, what="object detection"):
    """Check shape / threshold / wrap_uint16 and fill in the defaults -> a new dict (threshold
    resolved: 0.5 for the reference shape, None = every query for the hosted one)."""
    out = _known(DETECTION_OPTIONS, options, what)
    if out["shape"] not in SHAPES:
        raise InvalidOptionError(f"shape must be one of {', '.join(SHAPES)}, got {out['shape']!r}")
    if out["threshold"] == "auto":
        out["threshold"] = REFERENCE_THRESHOLD if out["shape"] == "reference" else None
    t = out["threshold"]
    if t is not None:
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 <= float(t) <= 1:
            raise InvalidOptionError(f"threshold must be a number in [0, 1] or None (every query), got {t!r}")
        out["threshold"] = float(t)
    if not isinstance(out["wrap_uint16"], bool):
        raise InvalidOptionError(f"wrap_uint16 must be True or False, got {out['wrap_uint16']!r}")
    if out["wrap_uint16"] and out["shape"] != "hosted":
        raise InvalidOptionError("wrap_uint16=True only applies to shape='hosted' (integer boxes)")
    return out


def parse_threshold(text):
    """A threshold written as text (a command-line option, a query string) -> float, or None for
    'none'/'null'/'all'/'' (every query). Raises InvalidOptionError."""
    if text.strip().lower() in ("none", "null", "all", ""):
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise InvalidOptionError(f"threshold must be a number in [0, 1] or 'none', got {text!r}")
    return value


def parse_flag(name, text):
    """'1'/'true'/'yes' -> True, '0'/'false'/'no' -> False; else InvalidOptionError."""
    flags = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    if text.lower() not in flags:
        raise InvalidOptionError(f"{name} must be 1/0/true/false, got {text!r}")
    return flags[text.lower()]
