"""Negatives after a ReLU: a structural check that names a missing activation inside the noise.

A reduced-precision port's tensors are far from the float64 truth by their rounding, so a small
bug can hide under the budget. A ReLU's output is non-negative in every precision (float16,
bfloat16 and int8 round a non-negative value to a non-negative value; a QDQ graph quantizes it with
zero point 0), so a tensor that is a ReLU's output in the reference (no negative value, and exact
zeros) but has negative values in A is a missing activation whatever their size.

case (a dict, or an object with these attributes): "name", "a", "b" (same shape, float64), "budget" (relative), "precision".
"""

import numpy as np

from . import register

# A tensor is a ReLU's output in the reference when at least this fraction of it is exactly 0
# (refimpl's ReLU outputs on the test images: 20-70%); A fails when at least this fraction of it
# is negative beyond rounding (a dropped ReLU: about half of the elements).
ZERO_FRACTION = 0.01
NEGATIVE_FRACTION = 0.001


@register("negatives after relu", applies_to="structure", order=10, confidence="certain",
          look_at="the activation after this op (missing in A), or where A's tensor was tapped (before the ReLU)")
def check(case):
    """A has negative values where the reference's tensor is a ReLU's output (>= 0 with exact zeros)."""
    get = _getter(case)
    a, b = np.asarray(get("a"), dtype=np.float64), np.asarray(get("b"), dtype=np.float64)
    if a.shape != b.shape or not b.size or b.min() < 0 or (b == 0).mean() < ZERO_FRACTION:
        return None
    scale = float(np.abs(b).max())
    limit = float(get("unit_roundoff", 0.0)) * scale  # a rounded negative zero, never more
    negative = a < -limit
    if negative.mean() < NEGATIVE_FRACTION:
        return None
    return {"kind": "negatives after relu", "negative_fraction": float(negative.mean()),
            "zero_fraction_b": float((b == 0).mean()), "min_a": float(a.min()),
            "message": f"negatives after a ReLU: the reference's {get('name', 'tensor')} is a ReLU's output "
                       f"(no negative value, {(b == 0).mean():.0%} exact zeros) but {negative.mean():.1%} of A's values "
                       f"are negative (down to {a.min():.4g}, {abs(a.min()) / scale:.2%} of max|B|): a missing "
                       "activation in A (no rounding makes a value negative)"}


def _getter(case):
    """case.get for a dict case, attribute access for an object case (the catalogue's other kinds)."""
    return case.get if isinstance(case, dict) else (lambda key, default=None: getattr(case, key, default))
