"""NaN and inf: a non-finite value where the other side has a number (or another non-finite value)."""

import numpy as np

from . import register


@register("NaN/inf", order=10,
          look_at="the weights (NaN in the checkpoint?) and divisions/logs/exps in this op")
def nan_inf(case):
    """NaN or inf in A or B where the other side differs (counts on both sides, the first index)."""
    if not case.same_shape:
        return None
    a, b = case.a, case.b
    fa, fb = np.isfinite(a), np.isfinite(b)
    if np.array_equal(fa, fb) and np.array_equal(a[~fa], b[~fb], equal_nan=True):
        return None
    nan_a, inf_a = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    nan_b, inf_b = int(np.isnan(b).sum()), int(np.isinf(b).sum())
    side, x = ("A", a) if (nan_a + inf_a) >= (nan_b + inf_b) else ("B", b)
    first = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
    what = "NaN" if np.isnan(x).any() else "inf"
    return {"kind": "NaN/inf", "nan_a": nan_a, "inf_a": inf_a, "nan_b": nan_b, "inf_b": inf_b,
            "first_index": list(first),
            "message": f"{what} in {side}: A has {nan_a} NaN and {inf_a} inf, B has {nan_b} NaN and {inf_b} inf "
                       f"(first at index {first})"}
