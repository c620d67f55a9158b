"""DETR's heads and attention: a missing or extra sigmoid (the box head ends in one), boxes in the
other format ((cx, cy, w, h) vs corners), a softmax over the wrong axis or with another temperature
(attention probabilities without the scale 1/sqrt(d_head))."""

import numpy as np

from . import register
from .case import fmt


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


def _corners(x):
    cx, cy, w, h = np.moveaxis(x, -1, 0)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def _centers(x):
    x0, y0, x1, y1 = np.moveaxis(x, -1, 0)
    return np.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1)


def _row_stochastic(x, axis=-1):
    return x.ndim >= 2 and x.min(initial=0.0) >= 0 and np.allclose(x.sum(axis), 1, atol=1e-3)


@register("missing sigmoid", order=70, look_at="the box head: DETR applies a sigmoid to the box MLP's output")
def missing_sigmoid(case):
    """sigmoid(A) == B (B within [0, 1]): A is B before its sigmoid (boxes as logits)."""
    a, b = case.a, case.b
    if not (case.same_shape and b.size and b.min() >= 0 and b.max() <= 1 and case.close(_sigmoid(a), b)):
        return None
    return {"kind": "missing sigmoid", "message": "missing sigmoid: sigmoid(A) == B: A is B before its sigmoid "
            "(DETR's box head ends in a sigmoid: boxes as logits?)"}


@register("extra sigmoid", order=71, look_at="a sigmoid applied twice, or to a tensor the reference keeps as logits")
def extra_sigmoid(case):
    """A == sigmoid(B) (A within [0, 1]): a sigmoid A applies that B does not."""
    a, b = case.a, case.b
    if not (case.same_shape and a.size and a.min() >= 0 and a.max() <= 1 and case.close(a, _sigmoid(b))):
        return None
    return {"kind": "extra sigmoid", "message": "extra sigmoid: A == sigmoid(B): a sigmoid A applies that B does not"}


@register("box format", order=72,
          look_at="the box format: DETR predicts (cx, cy, w, h); the contract's boxes are corners")
def box_format(case):
    """Boxes (..., 4) in the other format: A is B converted from (cx, cy, w, h) to corners, or back."""
    a, b = case.a, case.b
    if not (case.same_shape and b.shape[-1] == 4 and b.ndim >= 2):
        return None
    if case.close(a, _corners(b)):
        return {"kind": "box format", "message": "box format: A is B converted to corners (xmin, ymin, xmax, ymax) "
                "where B is (cx, cy, w, h)"}
    if case.close(a, _centers(b)):
        return {"kind": "box format", "message": "box format: A is (cx, cy, w, h) where B is corners "
                "(xmin, ymin, xmax, ymax): boxes in cxcywh instead of xyxy"}
    return None


def _probabilities(case):
    """B sums to 1 along its last axis and A is non-negative: both may be softmax outputs."""
    return case.same_shape and _row_stochastic(case.b) and case.a.min(initial=0.0) >= 0


@register("softmax axis", order=73, confidence="likely",
          look_at="the softmax's axis (attention: over the keys, the last axis)")
def softmax_axis(case):
    """A sums to 1 along another axis than B's last: a softmax over the wrong axis (over the queries?)."""
    a = case.a
    if not _probabilities(case) or _row_stochastic(a):
        return None
    for axis in range(a.ndim - 2, -1, -1):
        if a.shape[axis] > 1 and np.allclose(a.sum(axis), 1, atol=1e-3):
            return {"kind": "softmax axis", "axis": axis - a.ndim,
                    "message": f"softmax axis: A sums to 1 along axis {axis - a.ndim}, B along the last axis: a "
                               "softmax over the wrong axis (attention: over the queries instead of the keys?)"}
    return None


@register("softmax temperature", order=74,
          look_at="the attention scale 1/sqrt(d_head) (missing, or applied twice) or a temperature")
def softmax_temperature(case):
    """A == softmax(t x log B) row by row, t != 1: another temperature (t = sqrt(d_head): a missing attention scale)."""
    a, b = case.a, case.b
    if not _probabilities(case) or not _row_stochastic(a):
        return None
    # log A = t log B + a constant per row: measure t against each row's largest entry, on entries
    # neither side has underflowed
    tiny = 1e-30
    with np.errstate(divide="ignore"):
        la, lb = np.log(a), np.log(b)
    da = la - la.max(-1, keepdims=True)
    db = lb - lb.max(-1, keepdims=True)
    use = (a > 1e-12) & (b > 1e-12) & (db < -1e-3)
    if not use.any():
        return None
    t = float(np.median(da[use] / db[use]))
    z = t * np.log(b + tiny)
    soft = np.exp(z - z.max(-1, keepdims=True))
    soft /= soft.sum(-1, keepdims=True)
    if abs(t - 1) < 1e-3 or not case.close(soft, a, factor=10):
        return None
    d = round(t * t)
    if t > 1 and d >= 4 and abs(t - np.sqrt(d)) < 1e-2 * t:
        what = (f"a missing attention scale: A is softmax(sqrt({d}) x B's scores), i.e. QK^T without "
                f"1/sqrt(d_head), d_head = {d}")
    elif t < 1 and round(1 / t ** 2) >= 4 and abs(1 / t - np.sqrt(round(1 / t ** 2))) < 1e-2 / t:
        what = f"the attention scale applied twice? (temperature sqrt({round(1 / t ** 2)}))"
    else:
        what = f"a temperature of {1 / t:.4g}"
    return {"kind": "softmax temperature", "factor": t,
            "message": f"softmax temperature: A == softmax({fmt(t)} x log B) row by row: {what}"}
