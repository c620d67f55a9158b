"""Boxes scaled per coordinate: the image size given as (w, h) where (h, w) is expected.

DETR predicts boxes relative to the image, (cx, cy, w, h) in [0, 1]; post-processing turns them
into corners and multiplies by the image's size, x by its width and y by its height:
transformers' `post_process_object_detection(outputs, target_sizes=[(height, width)])`. A port
that passes `(width, height)` - PIL's `image.size` is (w, h) - scales x by the height and y by the
width: its `post_process.boxes` are the reference's times (h/w, w/h, h/w, w/h). Any other
per-coordinate factor (one coordinate scaled twice, a resized image's size instead of the
original's) is named with its factors too.

    >>> check({"a": a, "b": b, "rtol": 1e-4, "atol": 1e-5, "name": "post_process.boxes"})
    {"kind": "box scaling", "factors": [0.75, 1.333, 0.75, 1.333], "swapped_sizes": True, ...}

A uniform factor is the catalogue's "scale factor"; this entry is tried after it, just before
generic drift, on any tensor whose last axis holds four box coordinates.
"""

import numpy as np

from . import register

SWAP_RTOL = 1e-3  # x factor * y factor == 1 within this: h/w and w/h, the sizes swapped


def _get(case, key, default=None):
    """The case's field: a TensorCase (attributes) or a dict with a, b, rtol, atol, name."""
    return case.get(key, default) if isinstance(case, dict) else getattr(case, key, default)


def _close(a, b, rtol, atol):
    if a.shape != b.shape or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return False
    scale = float(np.abs(b).max()) if b.size else 0.0
    return float(np.abs(a - b).max(initial=0.0)) <= atol + rtol * scale


@register("box scaling", applies_to="tensor", order=145, confidence="certain",
          look_at="the image size given to the box post-processing: target_sizes must be (height, width) "
                  "(PIL's image.size is (width, height)), and that it is the original image's size")
def check(case):
    """Boxes whose x and y coordinates are scaled by different factors (swapped image sizes)."""
    a = np.asarray(_get(case, "a"), dtype=np.float64)
    b = np.asarray(_get(case, "b"), dtype=np.float64)
    rtol, atol = float(_get(case, "rtol")), float(_get(case, "atol"))
    if a.shape != b.shape or b.ndim < 2 or b.shape[-1] != 4 or b.size < 8:
        return None
    A, B = a.reshape(-1, 4), b.reshape(-1, 4)
    denom = (B * B).sum(0)
    if np.any(denom == 0):
        return None
    factors = (A * B).sum(0) / denom  # least squares, per coordinate
    if np.allclose(factors, factors[0], rtol=SWAP_RTOL) or not np.all(np.isfinite(factors)):
        return None  # one factor for all: "scale factor", not this
    if not _close(a, b * factors, rtol, atol):
        return None
    sx, sy = (factors[0] + factors[2]) / 2, (factors[1] + factors[3]) / 2
    per_axis = np.allclose(factors[[0, 1]], factors[[2, 3]], rtol=SWAP_RTOL)
    swapped = bool(per_axis and abs(sx * sy - 1) <= SWAP_RTOL)
    name = _get(case, "name") or "this tensor"
    shown = ", ".join(f"{f:.6g}" for f in factors)
    if swapped:
        what = (f"x scaled by {sx:.6g} and y by {sy:.6g} = 1/{1 / sy:.6g}: x by h/w and y by w/h, the image "
                f"size given as (w, h) where (h, w) is expected (an image of aspect h/w = {sx:.6g})")
    elif per_axis:
        what = f"x scaled by {sx:.6g} and y by {sy:.6g}: another image size than the original's (w, h)?"
    else:
        what = "a different factor per coordinate"
    return {"kind": "box scaling", "factors": [float(f) for f in factors], "swapped_sizes": swapped,
            "message": f"box scaling: {name} == B * ({shown}) per coordinate (xmin, ymin, xmax, ymax): {what}"}
