"""One tensor against another: the error measures and the small helpers `compare` and `diagnose` share."""

import math

import numpy as np

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-6


def num(x):
    """JSON-safe number: non-finite values as strings."""
    x = float(x)
    return x if math.isfinite(x) else str(x)


def shape_text(s):
    return "x".join(str(d) for d in s) if len(s) else "scalar"


def squeeze_batch(a, b):
    """Drop leading size-1 axes from the side that has more axes, if that makes the shapes equal."""
    if a.shape == b.shape:
        return a, b, None
    if a.ndim > b.ndim and a.shape[a.ndim - b.ndim:] == b.shape and all(d == 1 for d in a.shape[:a.ndim - b.ndim]):
        return a.reshape(b.shape), b, "B lacks A's leading axis of size 1 (ignored)"
    if b.ndim > a.ndim and b.shape[b.ndim - a.ndim:] == a.shape and all(d == 1 for d in b.shape[:b.ndim - a.ndim]):
        return a, b.reshape(a.shape), "A lacks B's leading axis of size 1 (ignored)"
    return a, b, None


def as_float64(x):
    x = np.asarray(x)
    return x.astype(np.float64) if x.dtype != np.float64 else x


def measure(a, b, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL):
    """Errors of A against the reference B (same shape): dict with max_abs, max_rel, limit, ok,
    plus nonfinite counts when NaN/inf appear."""
    a, b = as_float64(a), as_float64(b)
    fa, fb = np.isfinite(a), np.isfinite(b)
    out = {}
    same_nonfinite = np.array_equal(fa, fb) and np.array_equal(a[~fa], b[~fb], equal_nan=True)
    if not (fa.all() and fb.all()):
        out["nonfinite_a"] = int((~fa).sum())
        out["nonfinite_b"] = int((~fb).sum())
    both = fa & fb
    diff = np.abs(a[both] - b[both]) if both.any() else np.zeros(0)
    scale = float(np.abs(b[fb]).max()) if fb.any() else 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    limit = atol + rtol * scale
    if not same_nonfinite:  # NaN or inf where the other side has a number (or another one)
        max_abs = math.nan
    out.update(
        max_abs=max_abs,
        max_rel=(max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)),
        ref_max=scale,
        limit=limit,
        ok=bool(same_nonfinite and max_abs <= limit),
    )
    return out
