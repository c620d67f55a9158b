"""Explain a score transform: which post-processing formula turns refimpl's own DETR logits into
the claimed scores?

When `monotonic_score_transform` fires (the claim's scores rank like ours but are on another
scale), the judge recomputes the scores from refimpl's logits for the same image under each
candidate formula and names the one that reproduces the claim:

    softmax_per_query      softmax over one query's classes, no-object dropped after (DETR's own)
    softmax_joint          one softmax over every query x class (no-object included) jointly
    softmax_joint_objects  one softmax over every query x real class (no-object left out)
    softmax_over_queries   softmax along the query axis, per class
    softmax_no_object_dropped  the no-object logit dropped before the softmax (renormalised)
    sigmoid                an independent sigmoid per logit (a focal-loss detector's scoring)
    temperature            softmax per query of logits / T, T fitted (T != 1)
    label_offset_+1/-1     DETR's scores, reported under the neighbouring class index's label

Each claimed detection is tied to the query whose box it overlaps most (any label, IoU >=
`match_iou`) and to the class index its label names; the formula's score for (query, class) is
compared with the claimed score by relative error (the hosted scores are as small as 1e-7, where
an absolute tolerance says nothing). A formula is named when its largest relative error is at most
FORMULA_RTOL.

    >>> explain_scores(claimed_boxes, claimed_scores, claimed_labels, logits, boxes, id2label)
    {"formula": "softmax_joint", "max_rel_error": 3e-7, "text": "...", "errors": {...}, "matched": 100}
"""

import numpy as np

from .stats import box_iou

FORMULA_RTOL = 1e-3  # float32 logits from another implementation differ by ~1e-5 relative
TEMPERATURE_RANGE = (0.05, 50.0)


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


def explain_scores(claimed_boxes, claimed_scores, claimed_labels, logits, boxes, id2label, match_iou=0.5):
    """Which formula turns `logits` into the claimed scores?

    claimed_boxes (n, 4) corners in pixels (signatures undone), claimed_scores (n,), claimed_labels
    (n names); logits (Q, C+1) refimpl's for the same image, boxes (Q, 4) refimpl's corners per
    query (the same pixels); id2label {index: name}.
    -> {"formula": name or None, "max_rel_error", "temperature" (when fitted), "errors" {name:
    max relative error}, "matched": how many claims were tied to a query, "text"}, or None when
    fewer than 3 claims can be tied to a query (nothing to fit).
    """
    logits = np.asarray(logits, dtype=np.float64)
    names = list(id2label.values())
    # a name used by several indices (COCO's "N/A" gaps) cannot say which class it is
    label2id = {name: int(i) for i, name in id2label.items() if names.count(name) == 1}
    iou = box_iou(claimed_boxes, boxes)
    keep = [i for i in range(len(claimed_scores)) if claimed_labels[i] in label2id and iou[i].max() >= match_iou]
    if len(keep) < 3:
        return None
    q = np.array([int(iou[i].argmax()) for i in keep])
    c = np.array([label2id[claimed_labels[i]] for i in keep])
    s = np.asarray(claimed_scores, dtype=np.float64)[keep]
    errors = {name: _rel_error(f(logits)[q, c], s) for name, (_, f) in FORMULAS.items()}
    t, errors["temperature"] = _fit_temperature(logits, q, c, s)
    best = min(FORMULAS, key=errors.get)  # a fixed formula first: T = 1 is DETR's own
    if errors[best] > FORMULA_RTOL and errors["temperature"] < errors[best]:
        best = "temperature"
    # JSON has no infinity: a formula that cannot score a claim (a label offset past the last
    # class) reports None
    out = {"errors": {k: (v if np.isfinite(v) else None) for k, v in errors.items()}, "matched": len(keep),
           "max_rel_error": errors[best], "formula": None}
    if best == "temperature":
        out["temperature"] = t
    if errors[best] <= FORMULA_RTOL and not (best == "temperature" and abs(t - 1) < 1e-3):
        what = FORMULAS[best][0] if best in FORMULAS else f"softmax per query of logits / T with T = {t:.4g}"
        out["formula"] = best
        out["text"] = (f"{best}: {what} reproduces the claimed scores from refimpl's logits (max relative error "
                       f"{errors[best]:.2g} over {len(keep)} detections tied to a query by IoU)")
    else:
        near = ", ".join(f"{k} {v:.2g}" for k, v in sorted(errors.items(), key=lambda kv: kv[1])[:3])
        out["text"] = (f"no candidate formula reproduces the claimed scores within relative error {FORMULA_RTOL:g} "
                       f"(closest: {near}; over {len(keep)} detections tied to a query by IoU)")
    return out
