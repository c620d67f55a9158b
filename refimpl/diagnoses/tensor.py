"""Why two tensors differ: the diagnosis of the first divergence `refimpl compare` finds.

`diagnose(a, b, rtol, atol, *, name=None, bn=None)` tries, in order: shape mismatch (with a
stride, padding or extra/missing class hint), layout transposed (NHWC vs NCHW, H and W swapped, a
transposed matrix), NaN/inf, a missing or extra activation (relu(A) == B: also "tapped before the
activation"), the detection head and attention (a missing or extra sigmoid, boxes in the other
format, a softmax over the wrong axis or with another temperature: a missing attention scale), a
label-index offset or class permutation (vector tensors such as logits), channel swap or
permutation (with an RGB/BGR hint), a spatial shift (crop offset), constant or per-channel
offset, scale factor, BN eps (with the BN's running_var), per-channel scale, scale and offset,
per-channel scale and offset (normalization), else generic drift - numerical error that no simple
transformation explains, which is what a wrong weight, a wrong formula or accumulated rounding
looks like. At `pixel_values`, given the image and the preprocessor config, generic drift is first
checked against candidate resize filters (diagnose_resize.py: "resize filter" or "preprocessing
drift"). Every diagnosis says how sure it is (`confidence`) and what to look at (`look_at`).
"""

from itertools import permutations

import numpy as np

from refimpl.numerics import DEFAULT_ATOL, DEFAULT_RTOL, as_float64, num, shape_text, squeeze_batch

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


def diagnose(a, b, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, *, name=None, bn=None, resize=None):
    """Why does A differ from the reference B? -> {"kind", "message", "confidence", "look_at",
    ...details}.

    name: the tensor's name (optional): hints for the input (`pixel_values`: preprocessing) and
    for normalization outputs (tapped before the activation?). bn: optional {"running_var": (C,),
    "eps": B's eps} of the batch norm that produced this tensor: a per-channel scale is then
    checked against a different eps ("consistent with eps = 1e-3"). resize: optional {"images":
    [(H, W, 3) uint8], "config": preprocessor_config.json, "task": "classification" | "detection"}
    for `pixel_values`: what would be generic drift is then checked against candidate resizes
    (refimpl.diagnoses.resize): "resize filter" names the one that reproduces A.

    kinds: "shape mismatch", "stride mismatch", "padding mismatch", "layout transposed", "NaN/inf",
    "channel swap", "channel permutation", "class permutation", "label-index offset",
    "missing activation", "extra activation", "spatial shift", "constant offset",
    "per-channel offset", "scale factor", "per-channel scale", "per-channel scale and offset",
    "bn eps", "scale and offset", "resize filter", "preprocessing drift", "generic drift". Vector
    tensors (one element per index, such as
    logits (1, 1000)) never get a per-channel diagnosis: with one element per channel it always fits.
    confidence: "certain" (the named transformation reproduces A from B within the tolerance),
    "likely" (a pattern such as a size ratio points at it) or "unknown" (generic drift)."""
    d = _diagnose(a, b, rtol, atol, name, bn)
    if d["kind"] == "generic drift":  # r4-verdicts (H3): the catalogue's "box scaling" entry, until diagnose() asks the catalogue
        d = __import__("refimpl.diagnoses.box_scaling", fromlist=["check"]).check(dict(a=a, b=b, rtol=rtol, atol=atol, name=name)) or d
    if d["kind"] == "generic drift" and name == "pixel_values" and resize:
        from refimpl.diagnoses.resize import resize_diagnosis

        found = resize_diagnosis(a, resize["images"], resize["config"], resize["task"], rtol, atol)
        if found is not None:
            found["drift"] = d["message"]
            d = found
    d.setdefault("confidence", CONFIDENCE.get(d["kind"], "certain"))
    d.setdefault("look_at", LOOK_AT.get(d["kind"], ""))
    return d


CONFIDENCE = {"softmax axis": "likely", "shape mismatch": "likely", "stride mismatch": "likely", "padding mismatch": "likely",
              "generic drift": "unknown"}

LOOK_AT = {
    "shape mismatch": "the op that produced this tensor: its output size, reshape or flatten order",
    "stride mismatch": "which conv of the block carries the stride (v1: first 1x1, v1.5: the 3x3), or a "
                       "missing/extra pooling",
    "padding mismatch": "this op's padding (off by one?) and its output-size rounding (ceil_mode)",
    "layout transposed": "the dump or the op's memory layout (channels-last vs channels-first)",
    "NaN/inf": "the weights (NaN in the checkpoint?) and divisions/logs/exps in this op",
    "channel swap": "the channel order of the input (RGB vs BGR) or of this layer's weights",
    "channel permutation": "the order of this layer's output channels (weights loaded in another order?)",
    "class permutation": "the label table or the classifier rows' order",
    "label-index offset": "the label table: an off-by-one (a background class added or dropped?)",
    "missing activation": "the activation after this op (missing in A), or where A's tensor was tapped "
                          "(before the ReLU while B is after it)",
    "extra activation": "an activation A applies that B does not, or where B's tensor was tapped",
    "spatial shift": "the crop offset or padding (off by one pixel?)",
    "constant offset": "a bias or mean added twice or missing",
    "per-channel offset": "this layer's bias / BN beta / running_mean, or the normalization mean",
    "scale factor": "a scale applied twice or missing (pixel range 0-255 vs 0-1, attention scale)",
    "per-channel scale": "this layer's BN gamma / running_var / eps, or the normalization std",
    "per-channel scale and offset": "the normalization (mean and std) or this BN's statistics",
    "bn eps": "this batch norm's eps",
    "extra class": "the post-processing: the no-object class must be dropped after the softmax",
    "missing class": "the post-processing: a class dropped that should be kept (or the label table)",
    "missing sigmoid": "the box head: DETR applies a sigmoid to the box MLP's output",
    "extra sigmoid": "a sigmoid applied twice, or to a tensor the reference keeps as logits",
    "box format": "the box format: DETR predicts (cx, cy, w, h); the contract's boxes are corners",
    "softmax axis": "the softmax's axis (attention: over the keys, the last axis)",
    "softmax temperature": "the attention scale 1/sqrt(d_head) (missing, or applied twice) or a temperature",
    "scale and offset": "the normalization of this tensor",
    "generic drift": "this layer's weights and formula; rerun with isolate to see if it is inherited",
}


def _is_vector(b):
    """One element per index (logits (1, 1000), a (N,) vector): per-channel fits are meaningless."""
    return b.ndim >= 1 and b.size == max(b.shape)


def _spatial_hint(a, b):
    """NCHW tensors whose height and width differ: a stride or a padding difference, or None."""
    if a.ndim != 4 or b.ndim != 4 or a.shape[:2] != b.shape[:2]:
        return None
    (ha, wa), (hb, wb) = a.shape[2:], b.shape[2:]
    sizes = f"A is {ha}x{wa}, B is {hb}x{wb}"
    for big, small, who in ((hb, ha, "A"), (ha, hb, "B")):
        ratio = big / small if small else 0
        if ratio in (2, 4) and (wb / wa if who == "A" else wa / wb) == ratio:
            return {"kind": "stride mismatch", "factor": int(ratio), "downsampled": who,
                    "message": f"stride mismatch: {sizes}: {who} is downsampled {int(ratio)}x more at this tensor. A "
                               "stride on a different conv of the block? (ResNet v1 strides the first 1x1, v1.5 - "
                               "torchvision, transformers, timm - the 3x3; both give the same block output size) "
                               "or a missing/extra pooling"}
    if abs(ha - hb) <= 2 and abs(wa - wb) <= 2:
        return {"kind": "padding mismatch", "difference": [ha - hb, wa - wb],
                "message": f"padding mismatch: {sizes}: off by {abs(ha - hb)} / {abs(wa - wb)}: padding off by one, "
                           "or a different output-size rounding (e.g. max-pool padding or ceil_mode)"}
    return None


def _label_offset(a, b, rtol, atol, max_k=3):
    """A vector equal to B shifted by k indices (on the overlap): k, or None."""
    x, y = a.reshape(-1), b.reshape(-1)
    if len(x) < 8:
        return None
    for k in [s * m for m in range(1, max_k + 1) for s in (1, -1)]:
        xa, yb = (x[k:], y[:-k]) if k > 0 else (x[:k], y[-k:])
        if _close(xa, yb, rtol, atol) and not _close(x, y, rtol, atol):
            return k
    return None


def _spatial_shift(a, b, rtol, atol, max_shift=2):
    """(dy, dx) such that A[..., y, x] == B[..., y - dy, x - dx] on the overlap, or None."""
    if a.ndim < 3 or min(a.shape[-2:]) <= 2 * max_shift + 2:
        return None
    H, W = a.shape[-2:]
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            if dy == dx == 0:
                continue
            ya, yb = slice(max(dy, 0), H + min(dy, 0)), slice(max(-dy, 0), H + min(-dy, 0))
            xa, xb = slice(max(dx, 0), W + min(dx, 0)), slice(max(-dx, 0), W + min(-dx, 0))
            if _close(a[..., ya, xa], b[..., yb, xb], rtol, atol):
                return dy, dx
    return None


def _bn_eps(scales, bn):
    """Per-channel scales s = sqrt((var + eps_B) / (var + eps_A)) explained by one eps_A -> eps_A or None."""
    var = np.asarray(bn["running_var"], dtype=np.float64).ravel()
    eps_b = float(bn["eps"])
    s = np.asarray(scales, dtype=np.float64).ravel()
    if var.shape != s.shape or np.any(s <= 0):
        return None
    estimates = (var + eps_b) / s ** 2 - var
    eps_a = float(np.median(estimates))
    if eps_a <= 0 or abs(eps_a - eps_b) <= 1e-3 * eps_b:
        return None
    predicted = np.sqrt((var + eps_b) / (var + eps_a))
    # the scales must follow the running variances the way an eps change makes them
    if np.max(np.abs(predicted - s)) > 0.1 * np.max(np.abs(s - 1)) + 1e-7:
        return None
    return float(f"{eps_a:.2g}")


def _diagnose(a, b, rtol, atol, name, bn):
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
            spatial = _spatial_hint(a2, b2)
            if spatial is not None:
                return spatial
            extra = _extra_class(a2, b2, rtol, atol)
            if extra is not None:
                return extra
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
    vector = _is_vector(b)
    if vector:
        k = _label_offset(a, b, rtol, atol)
        if k is not None:
            return {"kind": "label-index offset", "offset": k,
                    "message": f"label-index offset: A[i] == B[i - {k}] for every class (class indices off by {k}: "
                               "a background class added or dropped, or a 0/1-based label table?)"}
    limit = atol + rtol * float(np.abs(b).max(initial=0.0))
    if _close(np.maximum(a, 0), b, rtol, atol) and (a < -limit).any():
        tapped = " (this is a normalization output: torchvision's bn1/bn2 are before the ReLU)" if name and (
            "bn" in name.rsplit(".", 1)[-1] or "normalization" in name) else ""
        return {"kind": "missing activation", "negative_fraction": float((a < -limit).mean()),
                "message": f"missing activation: relu(A) == B: A is B before the ReLU - a missing ReLU in A, or A "
                           f"was tapped before the activation and B after it{tapped}"}
    if _close(a, np.maximum(b, 0), rtol, atol) and (b < -limit).any():
        return {"kind": "extra activation", "negative_fraction": float((b < -limit).mean()),
                "message": "extra activation: A == relu(B): A applies a ReLU that B does not, or B was tapped "
                           "before the activation and A after it"}
    found = _detection_head(a, b, rtol, atol)
    if found is not None:
        return found
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
            if vector:
                return {"kind": "class permutation", "axis": axis, "mapping": {str(k): v for k, v in mapping.items()},
                        "message": f"class permutation: {len(mapping)} classes are in a different order "
                                   f"({example}{', ...' if len(mapping) > 4 else ''}): a different label table or "
                                   "classifier row order"}
            return {"kind": "channel permutation", "axis": axis, "mapping": {str(k): v for k, v in mapping.items()},
                    "message": f"channel permutation: {len(mapping)} {what} are in a different order along axis {axis} "
                               f"({example}{', ...' if len(mapping) > 4 else ''})"}
    shift = _spatial_shift(a, b, rtol, atol)
    if shift is not None:
        where = " (the input image: a one-pixel crop offset - crop rounding?)" if name == "pixel_values" else ""
        return {"kind": "spatial shift", "shift": list(shift),
                "message": f"spatial shift: A == B moved by {shift[0]} row(s) and {shift[1]} column(s) on the overlap"
                           f"{where}: a crop offset or padding off by one"}
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
    if b.ndim >= 2 and not vector:
        axis = 1
        off, sc = _per_axis(a, b, axis)
        moved = np.flatnonzero(np.abs(off.ravel()) > atol + rtol * float(np.abs(b).max()))
        if _close(a - off, b, rtol, atol) and len(moved):  # (no channel moved past the budget: not an offset)
            return {"kind": "per-channel offset", "axis": axis, "offsets": off.ravel().tolist()[:16],
                    "channels": moved.tolist()[:16],
                    "message": f"per-channel offset along axis {axis}: {len(moved)} of {b.shape[axis]} channels shifted "
                               f"(e.g. channel {moved[0]} by {_fmt(off.ravel()[moved[0]])}; a wrong mean or bias?)"}
        if bn is not None:  # the affine fit's scale is unbiased by the BN's beta
            affine = _per_channel_affine(a, b, rtol, atol)
            eps = _bn_eps(affine[0], bn) if affine is not None else None
            if eps is not None:
                return _bn_eps_result(eps, bn, affine[0])
        moved = np.flatnonzero(np.abs(sc.ravel() - 1) > 1e-6)
        if np.all(sc != 0) and _close(a / sc, b, rtol, atol) and len(moved):
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
    if b.ndim >= 2 and not vector:  # a scale and offset per channel: the normalization, a BN's statistics
        affine = _per_channel_affine(a, b, rtol, atol)
        if affine is not None:
            sc2, off2 = affine
            eps = _bn_eps(sc2, bn) if bn is not None else None
            if eps is not None:
                return _bn_eps_result(eps, bn, sc2)
            hint = (" (the input: normalization mean/std wrong or missing?)" if b.shape[1] == 3 or name == "pixel_values"
                    else " (a batch norm's statistics, or a normalization?)")
            return {"kind": "per-channel scale and offset", "axis": 1, "scales": sc2.tolist()[:16],
                    "offsets": off2.tolist()[:16],
                    "message": f"per-channel scale and offset along axis 1: A[c] == s[c] * B[c] + t[c] (e.g. channel 0: "
                               f"s = {_fmt(sc2[0])}, t = {_fmt(off2[0])}){hint}"}
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




def _per_channel_affine(a, b, rtol, atol):
    """Least-squares A[:, c] = s[c] * B[:, c] + t[c] per channel of an (N, C, ...) tensor -> (s, t) if
    it reproduces A within the tolerance, else None."""
    n = b.shape[1]
    A = np.moveaxis(a, 1, 0).reshape(n, -1)
    B = np.moveaxis(b, 1, 0).reshape(n, -1)
    if A.shape[1] < 2:
        return None
    bm, am = B.mean(1, keepdims=True), A.mean(1, keepdims=True)
    var = ((B - bm) ** 2).sum(1)
    s = np.where(var > 0, ((A - am) * (B - bm)).sum(1) / np.where(var > 0, var, 1), 1.0)
    t = am.ravel() - s * bm.ravel()
    if np.any(s == 0):
        return None
    shape = [1] * a.ndim
    shape[1] = n
    if _close((a - t.reshape(shape)) / s.reshape(shape), b, rtol, atol):
        return s, t
    return None


def _bn_eps_result(eps, bn, scales):
    where = f" ({bn['module']})" if bn.get("module") else ""
    return {"kind": "bn eps", "eps": eps, "eps_b": float(bn["eps"]), "scales": np.ravel(scales).tolist()[:16],
            "message": f"bn eps: the per-channel scales follow this batch norm's{where} running_var exactly as a different "
                       f"eps makes them: consistent with eps = {eps:g} in A (B uses {float(bn['eps']):g})"}


# --- detection heads and attention (DETR) -------------------------------------------------------


def _extra_class(a, b, rtol, atol):
    """Shapes differing by one along the last axis, the rest equal: a class kept or dropped."""
    if a.ndim != b.ndim or a.shape[:-1] != b.shape[:-1] or abs(a.shape[-1] - b.shape[-1]) != 1:
        return None
    if a.shape[-1] > b.shape[-1]:
        exact = _close(a[..., :-1], b, rtol, atol)
        return {"kind": "extra class", "confidence": "certain" if exact else "likely",
                "message": f"extra class: A has {a.shape[-1]} classes along the last axis, B {b.shape[-1]}"
                           + (" and A's first ones equal B" if exact else "")
                           + ": the no-object class not dropped after the softmax?"}
    exact = _close(a, b[..., :-1], rtol, atol)
    return {"kind": "missing class", "confidence": "certain" if exact else "likely",
            "message": f"missing class: A has {a.shape[-1]} classes along the last axis, B {b.shape[-1]}"
                       + (" and A equals B's first ones" if exact else "") + ": a class dropped that B keeps?"}


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


def _detection_head(a, b, rtol, atol):
    """Box and score heads, attention probabilities: a missing or extra sigmoid, boxes in the other
    format, a softmax over the wrong axis or with another temperature (a missing attention scale)."""
    if b.size and b.min() >= 0 and b.max() <= 1 and _close(_sigmoid(a), b, rtol, atol):
        return {"kind": "missing sigmoid", "message": "missing sigmoid: sigmoid(A) == B: A is B before its sigmoid "
                "(DETR's box head ends in a sigmoid: boxes as logits?)"}
    if a.size and a.min() >= 0 and a.max() <= 1 and _close(a, _sigmoid(b), rtol, atol):
        return {"kind": "extra sigmoid", "message": "extra sigmoid: A == sigmoid(B): a sigmoid A applies that B does not"}
    if b.shape[-1] == 4 and b.ndim >= 2:
        if _close(a, _corners(b), rtol, atol):
            return {"kind": "box format", "message": "box format: A is B converted to corners (xmin, ymin, xmax, ymax) "
                    "where B is (cx, cy, w, h)"}
        if _close(a, _centers(b), rtol, atol):
            return {"kind": "box format", "message": "box format: A is (cx, cy, w, h) where B is corners "
                    "(xmin, ymin, xmax, ymax): boxes in cxcywh instead of xyxy"}
    if not (_row_stochastic(b) and a.min(initial=0.0) >= 0):
        return None
    if not _row_stochastic(a):
        for axis in range(a.ndim - 2, -1, -1):
            if a.shape[axis] > 1 and np.allclose(a.sum(axis), 1, atol=1e-3):
                return {"kind": "softmax axis", "axis": axis - a.ndim,
                        "message": f"softmax axis: A sums to 1 along axis {axis - a.ndim}, B along the last axis: a "
                                   "softmax over the wrong axis (attention: over the queries instead of the keys?)"}
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
    if abs(t - 1) < 1e-3 or not _close(soft, a, rtol * 10, atol * 10):
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
            "message": f"softmax temperature: A == softmax({_fmt(t)} x log B) row by row: {what}"}
