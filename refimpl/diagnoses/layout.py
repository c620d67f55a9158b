"""Layout diagnoses: A holds B's values in other places - its axes in another order (NHWC vs NCHW, a
transposed matrix), or its image moved by a pixel or two (a crop offset)."""

from itertools import permutations

import numpy as np

from refimpl.numerics import shape_text

from . import register


def _perm_words(perm, ndim):
    if ndim == 4 and perm == (0, 2, 3, 1):
        return "A is channels-last (NHWC) where B is channels-first (NCHW)"
    if ndim == 4 and perm == (0, 3, 1, 2):
        return "A is channels-first (NCHW) where B is channels-last (NHWC)"
    if ndim == 4 and perm == (0, 1, 3, 2):
        return "height and width are swapped (the image or feature map is transposed)"
    if ndim == 2 and perm == (1, 0):
        return "A is B transposed (a transposed matrix)"
    if ndim >= 2 and perm == tuple(range(ndim - 2)) + (ndim - 1, ndim - 2):
        return "the last two axes are swapped (a transposed matrix per batch item)"
    return f"A's axes are B's in the order {perm}"


def transposition(case):
    """A permutation of B's axes, other than the identity, that makes it equal A, or None."""
    a, b = case.a, case.b
    if a.ndim != b.ndim or a.ndim < 2 or a.ndim > 6 or sorted(a.shape) != sorted(b.shape):
        return None
    for perm in permutations(range(b.ndim)):
        if perm == tuple(range(b.ndim)):
            continue
        if tuple(b.shape[i] for i in perm) != a.shape:
            continue
        if case.close(a, np.transpose(b, perm)):
            return perm
    return None


@register("layout transposed", order=20,
          look_at="the dump or the op's memory layout (channels-last vs channels-first)")
def layout_transposed(case):
    """A is B with its axes in another order (A == B.transpose(perm)): NHWC vs NCHW, H and W
    swapped, a transposed matrix."""
    perm = transposition(case)
    if perm is None:
        return None
    shapes = "" if case.same_shape else f"; shapes {shape_text(case.shape_a)} vs {shape_text(case.shape_b)}"
    return {"kind": "layout transposed", "axes": list(perm),
            "message": f"layout transposed: {_perm_words(perm, case.b.ndim)} (A == B.transpose{perm}{shapes})"}


def _spatial_shift(case, max_shift=2):
    """(dy, dx) such that A[..., y, x] == B[..., y - dy, x - dx] on the overlap, or None."""
    a, b = case.a, case.b
    if a.ndim < 3 or min(a.shape[-2:]) <= 2 * max_shift + 2:
        return None
    H, W = a.shape[-2:]
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            if dy == dx == 0:
                continue
            ya, yb = slice(max(dy, 0), H + min(dy, 0)), slice(max(-dy, 0), H + min(-dy, 0))
            xa, xb = slice(max(dx, 0), W + min(dx, 0)), slice(max(-dx, 0), W + min(-dx, 0))
            if case.close(a[..., ya, xa], b[..., yb, xb]):
                return dy, dx
    return None


@register("spatial shift", order=90, look_at="the crop offset or padding (off by one pixel?)")
def spatial_shift(case):
    """A is B moved by one or two rows or columns (equal on the overlap): a crop offset or padding off by one."""
    if not case.same_shape:
        return None
    shift = _spatial_shift(case)
    if shift is None:
        return None
    where = " (the input image: a one-pixel crop offset - crop rounding?)" if case.name == "pixel_values" else ""
    return {"kind": "spatial shift", "shift": list(shift),
            "message": f"spatial shift: A == B moved by {shift[0]} row(s) and {shift[1]} column(s) on the overlap"
                       f"{where}: a crop offset or padding off by one"}
