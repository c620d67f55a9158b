"""Order diagnoses: A holds B's slices in another order - classes shifted by an index (a background
class added or dropped), two channels swapped (RGB vs BGR), channels or classes permuted.

The channel-order search (`slice_order`) runs once per case: along axis 1, the last axis, then the
others, the first axis along which A is B with some indices permuted; "channel swap", "class
permutation" and "channel permutation" each name one kind of what it finds."""

import numpy as np

from . import register


@register("label-index offset", order=50,
          look_at="the label table: an off-by-one (a background class added or dropped?)")
def label_index_offset(case):
    """A vector equal to B shifted by 1 to 3 indices (on the overlap): class indices off by k."""
    if not (case.same_shape and case.vector):
        return None
    k = _label_offset(case)
    if k is None:
        return None
    return {"kind": "label-index offset", "offset": k,
            "message": f"label-index offset: A[i] == B[i - {k}] for every class (class indices off by {k}: "
                       "a background class added or dropped, or a 0/1-based label table?)"}


def _label_offset(case, max_k=3):
    x, y = case.a.reshape(-1), case.b.reshape(-1)
    if len(x) < 8:
        return None
    for k in [s * m for m in range(1, max_k + 1) for s in (1, -1)]:
        xa, yb = (x[k:], y[:-k]) if k > 0 else (x[:k], y[-k:])
        if case.close(xa, yb) and not case.close(x, y):
            return k
    return None


def _axis_name(axis, ndim):
    if ndim == 4 and axis == 1:
        return "channels"
    if ndim == 4 and axis == 3:
        return "channels (last axis)"
    if ndim == 2 and axis == 1:
        return "classes/features"
    return f"indices along axis {axis}"


def slice_permutation(a, b, axis, rtol, atol):
    """If A equals B with some indices along `axis` permuted: the mapping {i: j} (A[i] = B[j]) of
    the indices that moved, else None."""
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


def slice_order(case):
    """The first axis (1, the last, then the others; not the batch axis) along which A is B with
    some indices permuted -> (axis, {i: j}), or None."""
    b = case.b
    axes = [ax for ax in ([1, b.ndim - 1] + list(range(b.ndim))) if 0 <= ax < b.ndim]
    axes = [ax for i, ax in enumerate(axes) if ax not in axes[:i] and b.shape[ax] > 1 and not (ax == 0 and b.ndim > 2)]
    for axis in axes:
        mapping = slice_permutation(case.a, case.b, axis, case.rtol, case.atol)
        if mapping:
            return axis, mapping
    return None


def _found(case, kind):
    """slice_order's result when it is a `kind` ("channel swap", "class permutation", "channel
    permutation"), else None."""
    if not case.same_shape:
        return None
    found = case.memo(slice_order)
    if found is None:
        return None
    axis, mapping = found
    named = "channel swap" if len(mapping) == 2 else "class permutation" if case.vector else "channel permutation"
    return found if named == kind else None


def _example(mapping):
    return ", ".join(f"A[{i}] == B[{j}]" for i, j in list(mapping.items())[:4]) + (", ..." if len(mapping) > 4 else "")


@register("channel swap", order=80,
          look_at="the channel order of the input (RGB vs BGR) or of this layer's weights")
def channel_swap(case):
    """Two indices along one axis exchanged, A[i] == B[j] and A[j] == B[i] (RGB vs BGR at the input)."""
    found = _found(case, "channel swap")
    if found is None:
        return None
    axis, mapping = found
    i, j = sorted(mapping)
    hint = " (RGB vs BGR?)" if case.b.shape[axis] == 3 and {i, j} == {0, 2} else ""
    return {"kind": "channel swap", "axis": axis, "swapped": [i, j],
            "message": f"channel swap: {_axis_name(axis, case.b.ndim)} {i} and {j} are exchanged{hint} "
                       f"(A[{i}] == B[{j}] and A[{j}] == B[{i}] along axis {axis})"}


@register("class permutation", order=81, look_at="the label table or the classifier rows' order")
def class_permutation(case):
    """A vector (logits) with three or more classes in another order: another label table or row order."""
    found = _found(case, "class permutation")
    if found is None:
        return None
    axis, mapping = found
    return {"kind": "class permutation", "axis": axis, "mapping": {str(k): v for k, v in mapping.items()},
            "message": f"class permutation: {len(mapping)} classes are in a different order ({_example(mapping)}): "
                       "a different label table or classifier row order"}


@register("channel permutation", order=82,
          look_at="the order of this layer's output channels (weights loaded in another order?)")
def channel_permutation(case):
    """Three or more channels (or indices along another axis) in another order."""
    found = _found(case, "channel permutation")
    if found is None:
        return None
    axis, mapping = found
    return {"kind": "channel permutation", "axis": axis, "mapping": {str(k): v for k, v in mapping.items()},
            "message": f"channel permutation: {len(mapping)} {_axis_name(axis, case.b.ndim)} are in a different "
                       f"order along axis {axis} ({_example(mapping)})"}

