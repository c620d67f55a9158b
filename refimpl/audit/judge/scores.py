"""Scores of matched items, for both tasks: on the reference's scale, a monotonic transform of
it (a signature), or wrong."""

import numpy as np

from refimpl.diagnoses import CATALOGUE

from .stats import spearman
from .verdict import name_signature


def judge_scores(v, pairs, tol, labels_agree, boxes_agree):
    """Scores of matched items: within tolerance, a monotonic transform (signature), or a problem.

    pairs: (claimed score, reference score) per matched item. boxes_agree: None for
    classification (no boxes to report). Returns True if the scores are on the reference's scale.
    """
    if not pairs:
        return True
    c, r = np.array(pairs, dtype=np.float64).T
    worst = float(np.max(np.abs(c - r)))
    v.stats["max_score_diff"] = worst
    rho = spearman(c, r) if len(pairs) >= 3 else None
    v.stats["spearman"] = rho
    if worst <= tol.score_atol:
        return True
    found = CATALOGUE["monotonic_score_transform"].check(worst, rho, len(pairs), tol.score_atol, tol.rank_corr_min)
    if found is not None:
        if boxes_agree is None:
            what, agree = "labels agree", labels_agree
        else:
            what, agree = "labels and boxes agree after IoU matching", labels_agree and boxes_agree
        name_signature(v, "monotonic_score_transform", f"{found['detail']}; {what}: {'yes' if agree else 'no'}")
        return False
    if rho is None:
        v.problems.append(f"scores differ by up to {worst:.3g} (tolerance {tol.score_atol}); too few matched "
                          f"items ({len(pairs)}) to test for a monotonic score transform")
    else:
        v.problems.append(f"scores differ by up to {worst:.3g} (tolerance {tol.score_atol}) and do not rank like "
                          f"the reference's (Spearman rho = {rho:.4f} < {tol.rank_corr_min})")
    return False
