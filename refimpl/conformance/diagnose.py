"""Why two tensors differ: the diagnosis of the first divergence `refimpl compare` finds.

`diagnose(a, b, rtol, atol)` tries, in order: shape mismatch, layout transposed (NHWC vs NCHW, H
and W swapped, a transposed matrix), NaN/inf, channel swap or permutation (with an RGB/BGR hint),
constant or per-channel offset, scale factor (or per-channel scale, or scale and offset), else
generic drift - numerical error that no simple transformation explains, which is what a wrong
weight, a wrong formula or accumulated rounding looks like.
"""

from itertools import permutations

import numpy as np

from refimpl.conformance.numerics import DEFAULT_ATOL, DEFAULT_RTOL, as_float64, num, shape_text, squeeze_batch

def _close(a, b, rtol, atol):
    if a.shape != b.shape:
        return False
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return False
    scale = float(np.abs(b).max()) if b.size else 0.0
    return float(np.abs(a - b).max(initial=0.0)) <= atol + rtol * scale


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


def _transposition(a, b, rtol, atol):
    """A permutation of B's axes that makes it equal A, other than the identity, or None."""
    if a.ndim != b.ndim or a.ndim < 2 or a.ndim > 6 or sorted(a.shape) != sorted(b.shape):
        return None
    for perm in permutations(range(b.ndim)):
        if perm == tuple(range(b.ndim)):
            continue
        if tuple(b.shape[i] for i in perm) != a.shape:
            continue
        if _close(a, np.transpose(b, perm), rtol, atol):
            return perm
    return None


def _slice_permutation(a, b, axis, rtol, atol):
    """If A equals B with some indices along `axis` permuted: the mapping {i: j} (A[i] = B[j])."""
    n = a.shape[axis]
    if n < 2:
        return None
    A = np.moveaxis(a, axis, 0).reshape(n, -1)
    B = np.moveaxis(b, axis, 0).reshape(n, -1)
    limit = atol + rtol * float(np.abs(B).max(initial=0.0))
    err = np.abs(A - B).max(axis=1)
    bad = np.flatnonzero(err > limit)
    if len(bad) < 2:
        return None
    if len(bad) > 4096:
        return None
    # Necessary conditions first, exact check only for the pairs that meet them: if A[i] == B[j]
    # within `limit` elementwise, then at a few sampled positions they differ by <= limit, their
    # sums by <= S * limit, their sums of squares by <= 2 * S * limit * (max|B| + limit).
    s, bmax = A.shape[1], float(np.abs(B).max(initial=0.0))
    probe = np.linspace(0, s - 1, min(s, 16)).astype(int)
    sig_a = np.concatenate([A[bad][:, probe], A[bad].sum(1, keepdims=True), (A[bad] ** 2).sum(1, keepdims=True)], 1)
    sig_b = np.concatenate([B[bad][:, probe], B[bad].sum(1, keepdims=True), (B[bad] ** 2).sum(1, keepdims=True)], 1)
    slack = 1e-9 * (np.abs(sig_b).max(0) + 1e-300)
    tol = np.concatenate([np.full(len(probe), limit), [s * limit, 2 * s * limit * (bmax + limit)]]) + slack
    candidates = [np.flatnonzero((np.abs(sig_b - sig_a[ia]) <= tol).all(1)) for ia in range(len(bad))]
    if any(len(c) == 0 for c in candidates) or sum(len(c) for c in candidates) * s > 5e8:
        return None  # some slice has no possible partner (or too many to check: not a permutation)
    mapping, used = {}, set()
    for ia, i in enumerate(bad):
        found = None
        for jb in candidates[ia]:
            j = bad[jb]
            if j != i and j not in used and np.abs(A[i] - B[j]).max() <= limit:
                found = j
                break
        if found is None:
            return None
        mapping[int(i)] = int(found)
        used.add(found)
    return mapping


def _axis_name(axis, ndim):
    if ndim == 4 and axis == 1:
        return "channels"
    if ndim == 4 and axis == 3:
        return "channels (last axis)"
    if ndim == 2 and axis == 1:
        return "classes/features"
    return f"indices along axis {axis}"


def _per_axis(a, b, axis):
    """Per-index least-squares offset and scale of A against B along `axis`."""
    n = a.shape[axis]
    A = np.moveaxis(a, axis, 0).reshape(n, -1)
    B = np.moveaxis(b, axis, 0).reshape(n, -1)
    offset = (A - B).mean(1)
    denom = (B * B).sum(1)
    scale = np.where(denom > 0, (A * B).sum(1) / np.where(denom > 0, denom, 1), 1.0)
    shape = [1] * a.ndim
    shape[axis] = n
    return offset.reshape(shape), scale.reshape(shape)


def _fmt(x):
    return f"{x:.6g}"


def diagnose(a, b, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL):
    """Why does A differ from the reference B? -> {"kind", "message", ...details}.

    kinds: "shape mismatch", "layout transposed", "NaN/inf", "channel swap", "channel permutation",
    "constant offset", "per-channel offset", "scale factor", "per-channel scale",
    "scale and offset", "generic drift"."""
    a0, b0 = np.asarray(a), np.asarray(b)
    a, b = as_float64(a0), as_float64(b0)
    if a.shape != b.shape:
        a2, b2, _ = squeeze_batch(a, b)
        if a2.shape != b2.shape:
            perm = _transposition(a2, b2, rtol, atol)
            if perm is not None:
                return {"kind": "layout transposed", "axes": list(perm),
                        "message": f"layout transposed: {_perm_words(perm, b2.ndim)} "
                                   f"(A == B.transpose{perm}; shapes {shape_text(a.shape)} vs {shape_text(b.shape)})"}
            hint = ""
            if a.size == b.size:
                hint = "; same number of elements: a reshape or flatten in a different order?"
            elif sorted(a.shape) == sorted(b.shape):
                hint = "; same axis sizes in another order, but no transposition of B equals A"
            return {"kind": "shape mismatch", "message": f"shape mismatch: A is {shape_text(a.shape)}, B is {shape_text(b.shape)}{hint}"}
        a, b = a2, b2
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(fa, fb) or not np.array_equal(a[~fa], b[~fb], equal_nan=True):
        nan_a, inf_a = int(np.isnan(a).sum()), int(np.isinf(a).sum())
        nan_b, inf_b = int(np.isnan(b).sum()), int(np.isinf(b).sum())
        side, x = ("A", a) if (nan_a + inf_a) >= (nan_b + inf_b) else ("B", b)
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        what = "NaN" if np.isnan(x).any() else "inf"
        return {"kind": "NaN/inf", "nan_a": nan_a, "inf_a": inf_a, "nan_b": nan_b, "inf_b": inf_b,
                "first_index": list(first),
                "message": f"{what} in {side}: A has {nan_a} NaN and {inf_a} inf, B has {nan_b} NaN and {inf_b} inf "
                           f"(first at index {first})"}
    perm = _transposition(a, b, rtol, atol)
    if perm is not None:
        return {"kind": "layout transposed", "axes": list(perm),
                "message": f"layout transposed: {_perm_words(perm, b.ndim)} (A == B.transpose{perm})"}
    axes = [ax for ax in ([1, b.ndim - 1] + list(range(b.ndim))) if 0 <= ax < b.ndim]
    axes = [ax for i, ax in enumerate(axes) if ax not in axes[:i] and b.shape[ax] > 1 and not (ax == 0 and b.ndim > 2)]
    for axis in axes:
        mapping = _slice_permutation(a, b, axis, rtol, atol)
        if mapping:
            what = _axis_name(axis, b.ndim)
            if len(mapping) == 2:
                i, j = sorted(mapping)
                hint = " (RGB vs BGR?)" if b.shape[axis] == 3 and {i, j} == {0, 2} else ""
                return {"kind": "channel swap", "axis": axis, "swapped": [i, j],
                        "message": f"channel swap: {what} {i} and {j} are exchanged{hint} "
                                   f"(A[{i}] == B[{j}] and A[{j}] == B[{i}] along axis {axis})"}
            example = ", ".join(f"A[{i}] == B[{j}]" for i, j in list(mapping.items())[:4])
            return {"kind": "channel permutation", "axis": axis, "mapping": {str(k): v for k, v in mapping.items()},
                    "message": f"channel permutation: {len(mapping)} {what} are in a different order along axis {axis} "
                               f"({example}{', ...' if len(mapping) > 4 else ''})"}
    d = a - b
    c = float(d.mean())
    if _close(a - c, b, rtol, atol):
        return {"kind": "constant offset", "offset": c, "message": f"constant offset: A == B + {_fmt(c)}"}
    k = float((a * b).sum() / (b * b).sum()) if (b * b).sum() > 0 else 1.0
    if k != 0 and _close(a / k, b, rtol, atol):
        hint = ""
        if abs(k + 1) < 1e-3:
            hint = " (sign flipped)"
        elif abs(k - 255) / 255 < 1e-3 or abs(k * 255 - 1) < 1e-3:
            hint = " (0-255 vs 0-1 pixel range?)"
        return {"kind": "scale factor", "scale": k, "message": f"scale factor: A == {_fmt(k)} * B{hint}"}
    if b.ndim >= 2:
        axis = 1
        off, sc = _per_axis(a, b, axis)
        if _close(a - off, b, rtol, atol):
            moved = np.flatnonzero(np.abs(off.ravel()) > atol + rtol * float(np.abs(b).max()))
            return {"kind": "per-channel offset", "axis": axis, "offsets": off.ravel().tolist()[:16],
                    "channels": moved.tolist()[:16],
                    "message": f"per-channel offset along axis {axis}: {len(moved)} of {b.shape[axis]} channels shifted "
                               f"(e.g. channel {moved[0]} by {_fmt(off.ravel()[moved[0]])}; a wrong mean or bias?)"}
        if np.all(sc != 0) and _close(a / sc, b, rtol, atol):
            moved = np.flatnonzero(np.abs(sc.ravel() - 1) > 1e-6)
            return {"kind": "per-channel scale", "axis": axis, "scales": sc.ravel().tolist()[:16],
                    "channels": moved.tolist()[:16],
                    "message": f"per-channel scale along axis {axis}: {len(moved)} of {b.shape[axis]} channels scaled "
                               f"(e.g. channel {moved[0]} by {_fmt(sc.ravel()[moved[0]])}; a wrong std or gamma?)"}
    # scale and offset together (least squares): e.g. a different normalisation
    bm, am = b.mean(), a.mean()
    var = ((b - bm) ** 2).sum()
    if var > 0:
        k2 = float(((a - am) * (b - bm)).sum() / var)
        c2 = float(am - k2 * bm)
        if k2 != 0 and _close((a - c2) / k2, b, rtol, atol):
            return {"kind": "scale and offset", "scale": k2, "offset": c2,
                    "message": f"scale and offset: A == {_fmt(k2)} * B + {_fmt(c2)} (a different normalisation?)"}
    scale = float(np.abs(b).max()) if b.size else 0.0
    limit = atol + rtol * scale
    err = np.abs(d)
    worst = tuple(int(i) for i in np.unravel_index(int(err.argmax()), err.shape)) if err.size else ()
    frac = float((err > limit).mean()) if err.size else 0.0
    sa, sb = a.std(), b.std()
    corr = float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb)) if sa > 0 and sb > 0 else float("nan")
    return {"kind": "generic drift", "fraction_over": frac, "worst_index": list(worst), "correlation": num(corr),
            "message": f"generic drift: {frac:.1%} of the elements exceed the tolerance, worst at index {worst} "
                       f"(A={_fmt(a[worst])}, B={_fmt(b[worst])}); correlation with B {corr:.6f}. No layout, "
                       "offset, scale or channel-order change explains it: look at this layer's weights and formula"}


