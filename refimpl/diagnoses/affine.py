"""Affine diagnoses: A == s * B + t for a constant or per-channel scale s and offset t - a bias or
mean added twice or missing, a scale applied twice or missing (0-255 vs 0-1 pixels), a wrong
normalization, a batch norm's statistics or its eps.

Tried from the simplest transformation to the most general (a constant offset, a scale, per
channel an offset, a BN eps, a scale, then a scale and an offset together, then both per channel),
so the diagnosis names the fewest numbers that explain A. Per-channel fits are along axis 1 of an
(N, C, ...) tensor, never on a vector (with one element per channel they always fit)."""

import numpy as np

from . import register
from .case import fmt


@register("constant offset", order=100, look_at="a bias or mean added twice or missing")
def constant_offset(case):
    """A == B + c for one constant c."""
    if not case.same_shape:
        return None
    c = float((case.a - case.b).mean())
    if not case.close(case.a - c, case.b):
        return None
    return {"kind": "constant offset", "offset": c, "message": f"constant offset: A == B + {fmt(c)}"}


@register("scale factor", order=110,
          look_at="a scale applied twice or missing (pixel range 0-255 vs 0-1, attention scale)")
def scale_factor(case):
    """A == k * B for one constant k (a flipped sign, 255 for a 0-255 vs 0-1 pixel range)."""
    if not case.same_shape:
        return None
    a, b = case.a, case.b
    k = float((a * b).sum() / (b * b).sum()) if (b * b).sum() > 0 else 1.0
    if k == 0 or not case.close(a / k, b):
        return None
    hint = ""
    if abs(k + 1) < 1e-3:
        hint = " (sign flipped)"
    elif abs(k - 255) / 255 < 1e-3 or abs(k * 255 - 1) < 1e-3:
        hint = " (0-255 vs 0-1 pixel range?)"
    return {"kind": "scale factor", "scale": k, "message": f"scale factor: A == {fmt(k)} * B{hint}"}


@register("per-channel offset", order=120,
          look_at="this layer's bias / BN beta / running_mean, or the normalization mean")
def per_channel_offset(case):
    """A[:, c] == B[:, c] + t[c], some channel moved past the tolerance: a wrong mean or bias."""
    if not case.channels:
        return None
    a, b = case.a, case.b
    off, _ = case.per_channel
    moved = np.flatnonzero(np.abs(off.ravel()) > case.atol + case.rtol * float(np.abs(b).max()))
    if not (case.close(a - off, b) and len(moved)):  # (no channel moved past the budget: not an offset)
        return None
    return {"kind": "per-channel offset", "axis": 1, "offsets": off.ravel().tolist()[:16],
            "channels": moved.tolist()[:16],
            "message": f"per-channel offset along axis 1: {len(moved)} of {b.shape[1]} channels shifted "
                       f"(e.g. channel {moved[0]} by {fmt(off.ravel()[moved[0]])}; a wrong mean or bias?)"}


def bn_eps(scales, bn):
    """Per-channel scales s = sqrt((var + eps_B) / (var + eps_A)) explained by one eps_A -> eps_A
    (two significant digits) or None."""
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


@register("bn eps", order=130, look_at="this batch norm's eps")
def batch_norm_eps(case):
    """Per-channel scales that follow the batch norm's running_var as another eps makes them
    (needs the BN's running_var).

    The per-channel affine fit's scale is used: unbiased by the BN's beta, which the eps does not
    touch."""
    if not case.channels or case.bn is None:
        return None
    affine = case.per_channel_affine
    eps = bn_eps(affine[0], case.bn) if affine is not None else None
    if eps is None:
        return None
    bn = case.bn
    where = f" ({bn['module']})" if bn.get("module") else ""
    return {"kind": "bn eps", "eps": eps, "eps_b": float(bn["eps"]), "scales": np.ravel(affine[0]).tolist()[:16],
            "message": f"bn eps: the per-channel scales follow this batch norm's{where} running_var exactly as a "
                       f"different eps makes them: consistent with eps = {eps:g} in A (B uses {float(bn['eps']):g})"}


@register("per-channel scale", order=140,
          look_at="this layer's BN gamma / running_var / eps, or the normalization std")
def per_channel_scale(case):
    """A[:, c] == s[c] * B[:, c], some s[c] != 1: a wrong std or gamma."""
    if not case.channels:
        return None
    a, b = case.a, case.b
    _, sc = case.per_channel
    moved = np.flatnonzero(np.abs(sc.ravel() - 1) > 1e-6)
    if not (np.all(sc != 0) and case.close(a / sc, b) and len(moved)):
        return None
    return {"kind": "per-channel scale", "axis": 1, "scales": sc.ravel().tolist()[:16],
            "channels": moved.tolist()[:16],
            "message": f"per-channel scale along axis 1: {len(moved)} of {b.shape[1]} channels scaled "
                       f"(e.g. channel {moved[0]} by {fmt(sc.ravel()[moved[0]])}; a wrong std or gamma?)"}


@register("scale and offset", order=150, look_at="the normalization of this tensor")
def scale_and_offset(case):
    """A == k * B + c (least squares): a different normalisation."""
    if not case.same_shape:
        return None
    a, b = case.a, case.b
    bm, am = b.mean(), a.mean()
    var = ((b - bm) ** 2).sum()
    if not var > 0:
        return None
    k = float(((a - am) * (b - bm)).sum() / var)
    c = float(am - k * bm)
    if k == 0 or not case.close((a - c) / k, b):
        return None
    return {"kind": "scale and offset", "scale": k, "offset": c,
            "message": f"scale and offset: A == {fmt(k)} * B + {fmt(c)} (a different normalisation?)"}


@register("per-channel scale and offset", order=160,
          look_at="the normalization (mean and std) or this BN's statistics")
def per_channel_scale_and_offset(case):
    """A[:, c] == s[c] * B[:, c] + t[c]: the normalization's mean and std, or a batch norm's statistics."""
    if not case.channels or case.per_channel_affine is None:
        return None
    s, t = case.per_channel_affine
    the_input = case.b.shape[1] == 3 or case.name == "pixel_values"
    hint = (" (the input: normalization mean/std wrong or missing?)" if the_input
            else " (a batch norm's statistics, or a normalization?)")
    return {"kind": "per-channel scale and offset", "axis": 1, "scales": s.tolist()[:16], "offsets": t.tolist()[:16],
            "message": f"per-channel scale and offset along axis 1: A[c] == s[c] * B[c] + t[c] (e.g. channel 0: "
                       f"s = {fmt(s[0])}, t = {fmt(t[0])}){hint}"}
