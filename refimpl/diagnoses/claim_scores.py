"""The "claim" entries about scores: claimed scores on another scale that still rank like the
reference's, and the post-processing formula that computes them from refimpl's own logits.

`score_formula`'s candidates (`FORMULAS`, each logits (Q, C+1) -> scores (Q, C) of the real
classes):

    softmax_per_query      softmax over one query's classes, no-object dropped after (DETR's own)
    softmax_joint          one softmax over every query x class (no-object included) jointly
    softmax_joint_objects  one softmax over every query x real class (no-object left out)
    softmax_over_queries   softmax along the query axis, per class
    softmax_no_object_dropped  the no-object logit dropped before the softmax (renormalised)
    sigmoid                an independent sigmoid per logit (a focal-loss detector's scoring)
    temperature            softmax per query of logits / T, T fitted (T != 1)
    label_offset_+1/-1     DETR's scores, reported under the neighbouring class index's label

The judge ties each claimed detection to a query and a class index (refimpl.audit.judge.formulas);
the formula's score for (query, class) is compared with the claimed score by relative error (the
hosted scores are as small as 1e-7, where an absolute tolerance says nothing). A formula is named
when its largest relative error is at most FORMULA_RTOL.
"""

import numpy as np

from . import register

FORMULA_RTOL = 1e-3  # float32 logits from another implementation differ by ~1e-5 relative
TEMPERATURE_RANGE = (0.05, 50.0)


@register("monotonic_score_transform", "claim", order=50, confidence="likely",
          scope=("classification", "detection"),
          look_at="the endpoint's score post-processing (another softmax, a calibration, a temperature)")
def monotonic_score_transform(worst, rho, n, score_atol, rank_corr_min):
    """scores differ from the reference's but rank the same way

    worst: the largest |claimed - reference| score over the n matched items; rho: their Spearman
    rank correlation (None with fewer than 3 items or a constant side) -> {"detail"} when the
    scores differ beyond score_atol and rho >= rank_corr_min, else None."""
    if worst <= score_atol or rho is None or rho < rank_corr_min:
        return None
    return {"detail": f"scores differ by up to {worst:.3g} but rank like the reference's: Spearman rho = "
                      f"{rho:.4f} over {n} matched items"}


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _joint(x):
    return _softmax(x.reshape(-1), 0).reshape(x.shape)


def _shift(scores, k):
    """Scores of class c reported as class c + k: out[:, c + k] = scores[:, c] (NaN where none)."""
    out = np.full_like(scores, np.nan)
    if k > 0:
        out[:, k:] = scores[:, :-k]
    else:
        out[:, :k] = scores[:, -k:]
    return out


# name -> (what it is, logits (Q, C+1) -> scores (Q, C) for the real classes)
FORMULAS = {
    "softmax_per_query": ("softmax over each query's classes, no-object dropped after (DETR's own)",
                          lambda L: _softmax(L, -1)[:, :-1]),
    "softmax_joint": ("one softmax over all queries x classes jointly (no-object included)",
                      lambda L: _joint(L)[:, :-1]),
    "softmax_joint_objects": ("one softmax over all queries x real classes jointly (no-object left out)",
                              lambda L: _joint(L[:, :-1])),
    "softmax_over_queries": ("softmax along the query axis (per class) instead of the class axis",
                             lambda L: _softmax(L, 0)[:, :-1]),
    "softmax_no_object_dropped": ("the no-object logit dropped before the softmax (renormalised over the "
                                  "real classes)", lambda L: _softmax(L[:, :-1], -1)),
    "sigmoid": ("an independent sigmoid per logit", lambda L: 1 / (1 + np.exp(-L[:, :-1]))),
    "label_offset_+1": ("DETR's scores reported under the label of the next class index (off by +1)",
                        lambda L: _shift(_softmax(L, -1)[:, :-1], 1)),
    "label_offset_-1": ("DETR's scores reported under the label of the previous class index (off by -1)",
                        lambda L: _shift(_softmax(L, -1)[:, :-1], -1)),
}


def _rel_error(formula_scores, claimed):
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.abs(formula_scores - claimed) / np.maximum(np.abs(claimed), 1e-30)
    return float(np.nanmax(err)) if np.isfinite(formula_scores).all() else float("inf")


def _fit_temperature(logits, q, c, claimed):
    """The temperature T minimising the largest relative error of softmax(logits / T) -> (T, error)."""
    def err(t):
        return _rel_error(_softmax(logits / t, -1)[q, c], claimed)

    grid = np.geomspace(*TEMPERATURE_RANGE, 200)
    errors = [err(t) for t in grid]
    k = int(np.argmin(errors))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    for _ in range(60):  # golden-section refinement (the error is unimodal near its minimum)
        m1, m2 = lo + 0.382 * (hi - lo), lo + 0.618 * (hi - lo)
        if err(m1) < err(m2):
            hi = m2
        else:
            lo = m1
    t = (lo + hi) / 2
    return float(t), err(t)


@register("score_formula", "claim", order=60, scope=("detection",),
          look_at="the endpoint's score post-processing formula (named in the detail)")
def score_formula(logits, q, c, scores):
    """scores computed from the same logits by another post-processing formula (named; detection,
    when refimpl's logits are at hand)

    logits (Q, C+1) refimpl's for the image; q, c (n,): the query and class index each claimed
    score is tied to; scores (n,) the claimed scores -> {"formula": a FORMULAS name, "temperature"
    or None (None: no candidate reproduces them; DETR's own is "softmax_per_query"),
    "max_rel_error", "temperature" (when fitted), "errors" {name: max relative error},
    "matched": n, "text"}."""
    logits = np.asarray(logits, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    errors = {name: _rel_error(f(logits)[q, c], s) for name, (_, f) in FORMULAS.items()}
    t, errors["temperature"] = _fit_temperature(logits, q, c, s)
    best = min(FORMULAS, key=errors.get)  # a fixed formula first: T = 1 is DETR's own
    if errors[best] > FORMULA_RTOL and errors["temperature"] < errors[best]:
        best = "temperature"
    # JSON has no infinity: a formula that cannot score a claim (a label offset past the last
    # class) reports None
    out = {"errors": {k: (v if np.isfinite(v) else None) for k, v in errors.items()}, "matched": len(s),
           "max_rel_error": errors[best], "formula": None}
    if best == "temperature":
        out["temperature"] = t
    if errors[best] <= FORMULA_RTOL and not (best == "temperature" and abs(t - 1) < 1e-3):
        what = FORMULAS[best][0] if best in FORMULAS else f"softmax per query of logits / T with T = {t:.4g}"
        out["formula"] = best
        out["text"] = (f"{best}: {what} reproduces the claimed scores from refimpl's logits (max relative error "
                       f"{errors[best]:.2g} over {len(s)} detections tied to a query by IoU)")
    else:
        near = ", ".join(f"{k} {v:.2g}" for k, v in sorted(errors.items(), key=lambda kv: kv[1])[:3])
        out["text"] = (f"no candidate formula reproduces the claimed scores within relative error {FORMULA_RTOL:g} "
                       f"(closest: {near}; over {len(s)} detections tied to a query by IoU)")
    return out
