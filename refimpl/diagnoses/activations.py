"""Activation diagnoses: a ReLU one side applies and the other does not (or a tensor tapped on the
other side of it)."""

import numpy as np

from . import register


@register("missing activation", order=60,
          look_at="the activation after this op (missing in A), or where A's tensor was tapped (before the ReLU "
                  "while B is after it)")
def missing_activation(case):
    """relu(A) == B and A has negative values: A is B before its ReLU."""
    if not case.same_shape:
        return None
    a, b, limit = case.a, case.b, case.limit
    if not (case.close(np.maximum(a, 0), b) and (a < -limit).any()):
        return None
    name = case.name
    tapped = " (this is a normalization output: torchvision's bn1/bn2 are before the ReLU)" if name and (
        "bn" in name.rsplit(".", 1)[-1] or "normalization" in name) else ""
    return {"kind": "missing activation", "negative_fraction": float((a < -limit).mean()),
            "message": f"missing activation: relu(A) == B: A is B before the ReLU - a missing ReLU in A, or A "
                       f"was tapped before the activation and B after it{tapped}"}


@register("extra activation", order=61,
          look_at="an activation A applies that B does not, or where B's tensor was tapped")
def extra_activation(case):
    """A == relu(B) and B has negative values: A applies a ReLU that B does not."""
    if not case.same_shape:
        return None
    a, b, limit = case.a, case.b, case.limit
    if not (case.close(a, np.maximum(b, 0)) and (b < -limit).any()):
        return None
    return {"kind": "extra activation", "negative_fraction": float((b < -limit).mean()),
            "message": "extra activation: A == relu(B): A applies a ReLU that B does not, or B was tapped "
                       "before the activation and A after it"}
