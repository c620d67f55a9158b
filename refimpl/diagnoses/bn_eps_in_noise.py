"""A batch norm's eps, recognised inside a reduced-precision port's rounding noise.

Another eps (TensorFlow's 1e-3 for PyTorch's 1e-5) scales each channel of a BN's output by
s[c] = sqrt((var[c] + eps_B) / (var[c] + eps_A)) around its beta: A[c] = s[c] * B[c] + (1 - s[c]) * beta[c].
With float16 rounding that is below the budget on channels whose running_var is large, but it is
systematic: a per-channel least-squares fit over thousands of elements measures each s[c] far more
precisely than one element's rounding, and only an eps change makes the scales follow the running
variances. The check fits s[c] with its standard error (the fit's residuals, plus the precision's
unit roundoff for the per-channel rounding of the port's weights), finds the eps that best explains
the scales, and names it when it explains them far better than eps_B does (chi-square, in standard
errors) and the scales are not already explained by eps_B. Given refimpl's run in the port's
precision ("rounded"), the scales are first measured against that run's per-channel scales (an
int8 port's weight quantization moves each channel's scale by as much as the eps does, and the
rounded run carries the same quantization), then - float16 and bfloat16 only - against 1 (a port
that folds BN into its conv rounds other numbers than the rounded run does; its per-channel error
is the unit roundoff; int8's is not bounded so: a calibrated range clips channels unevenly).

case (a dict, or an object with these attributes): "name", "a", "b" (same shape, float64), "bn" ({"running_var", "eps", "module"}: the
batch norm whose output this tensor is, from compare's context), "unit_roundoff", optional "rounded"
(refimpl's tensor run in the port's precision).
"""

import numpy as np

from . import register

# The eps change must lower the chi-square by this much (10 standard errors: one fitted parameter
# lowers it by about 1 on noise), explain at least half of it and leave a fit consistent with the
# noise (at most 4 per channel: the control run is not the port op for op); and move the scales by more than the unit roundoff on some channel.
MIN_IMPROVEMENT = 100.0
MIN_EXPLAINED = 0.5
MAX_CHI2_PER_CHANNEL = 4.0
CANDIDATES = np.concatenate([[0.0], np.logspace(-8, -1, 57)])


def channel_scales(a, b):
    """Per-channel least-squares A[c] = s[c] * B[c] + t[c] over the elements where B > 0 and A > 0
    (both sides of a ReLU see the BN's affine map there) -> (s, standard error of s), NaN where a
    channel has too few such elements."""
    n = b.shape[1]
    A = np.moveaxis(a, 1, 0).reshape(n, -1)
    B = np.moveaxis(b, 1, 0).reshape(n, -1)
    s, se = np.full(n, np.nan), np.full(n, np.nan)
    for c in range(n):
        keep = (B[c] != 0) & (A[c] != 0) if (b >= 0).all() else np.ones(B.shape[1], bool)
        x, y = B[c][keep], A[c][keep]
        if x.size < 16:
            continue
        xm, ym = x.mean(), y.mean()
        sxx = float(((x - xm) ** 2).sum())
        if sxx <= 0:
            continue
        s[c] = float(((x - xm) * (y - ym)).sum() / sxx)
        resid = y - ym - s[c] * (x - xm)
        se[c] = float(np.sqrt((resid ** 2).sum() / max(x.size - 2, 1) / sxx))
    return s, se


@register("bn eps in noise", applies_to="structure", order=20, confidence="likely", look_at="this batch norm's eps")
def check(case):
    """Per-channel scales of a BN's output that follow its running_var as another eps makes them, inside the noise."""
    get = _getter(case)
    bn = get("bn")
    a, b = np.asarray(get("a"), dtype=np.float64), np.asarray(get("b"), dtype=np.float64)
    if bn is None or a.shape != b.shape or a.ndim != 4:
        return None
    var = np.asarray(bn["running_var"], dtype=np.float64).ravel()
    if var.shape != (b.shape[1],):
        return None
    eps_b = float(bn["eps"])
    s, se = channel_scales(a, b)
    ok = np.isfinite(s) & np.isfinite(se)
    if ok.sum() < 8:
        return None
    u = float(get("unit_roundoff", 0.0))
    baselines = []
    rounded = get("rounded")
    if rounded is not None and np.shape(rounded) == b.shape:
        # refimpl run in the port's precision is the control: its per-channel scales carry the same
        # weight quantization as a correct int8 port's, so the port is measured against them
        base, base_se = channel_scales(np.asarray(rounded, dtype=np.float64), b)
        both = ok & np.isfinite(base) & np.isfinite(base_se)
        baselines.append((both, base, np.sqrt(se ** 2 + base_se ** 2)))
    # and against 1, the per-channel weight rounding allowed as the unit roundoff (a float16 port
    # that folds BN into its conv rounds other numbers than the control does). Not for int8: its
    # per-channel errors are not bounded by a unit roundoff (a calibrated range clips the channels
    # with the largest activations, which are the channels with the largest running_var)
    if get("precision") != "int8":
        baselines.append((ok, np.ones_like(s), np.sqrt(se ** 2 + u ** 2)))
    for keep, base, sigma in baselines:
        found = _fit(s[keep], base[keep], sigma[keep], var[keep], eps_b, u)
        if found is not None:
            break
    else:
        return None
    null, best, eps_a, moved, n = found
    where = f" ({bn['module']})" if bn.get("module") else ""
    return {"kind": "bn eps in noise", "eps": float(f"{eps_a:.2g}"), "eps_b": eps_b,
            "chi2_eps_b": null, "chi2_eps_a": best, "channels": n,
            "message": f"bn eps: the per-channel scales of this batch norm's{where} output follow its running_var as "
                       f"eps = {eps_a:.2g} makes them (B uses {eps_b:g}): over {n} channels the fit's "
                       f"chi-square drops from {null:.4g} (eps {eps_b:g}) to {best:.4g}; the largest channel scale "
                       f"moves by {moved:.2%}, inside the {get('precision', 'reduced precision')} budget but "
                       "systematic"}


def _fit(sc, base, sigma, v, eps_b, u):
    """The eps that best explains the scales `sc` around `base` (standard errors `sigma`) ->
    (chi2 at eps_B, chi2 at the best, the best eps, the largest scale change it makes, channels) when
    it passes the thresholds above, else None."""
    if sc.size < 8:
        return None

    def chi2(eps):
        return float((((sc - base * np.sqrt((v + eps_b) / (v + eps))) / sigma) ** 2).sum())

    null = chi2(eps_b)
    best, eps_a = min((chi2(e), e) for e in CANDIDATES)
    moved = float(np.abs(np.sqrt((v + eps_b) / (v + eps_a)) - 1).max())
    if null - best < MIN_IMPROVEMENT or best > (1 - MIN_EXPLAINED) * null or best > MAX_CHI2_PER_CHANNEL * sc.size \
            or moved <= u or abs(np.log10((eps_a + 1e-12) / (eps_b + 1e-12))) < 0.3:
        return None
    return null, best, eps_a, moved, int(sc.size)


def _getter(case):
    """case.get for a dict case, attribute access for an object case (the catalogue's other kinds)."""
    return case.get if isinstance(case, dict) else (lambda key, default=None: getattr(case, key, default))
