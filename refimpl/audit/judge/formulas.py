"""Explain a score transform: which post-processing formula turns refimpl's own DETR logits into
the claimed scores? (The formulas and the fit are the diagnosis catalogue's `score_formula` entry,
refimpl/diagnoses/claim_scores.py; this module ties the claimed detections to refimpl's queries.)

When `monotonic_score_transform` fires (the claim's scores rank like ours but are on another
scale), the judge recomputes the scores from refimpl's logits for the same image under each
candidate formula (`FORMULAS`: a joint softmax, softmax over queries, sigmoid, a temperature, a
label offset, ...) and names the one that reproduces the claim. Each claimed detection is tied to
the query whose box it overlaps most (any label, IoU >= `match_iou`) and to the class index its
label names; the fit is by relative error, within FORMULA_RTOL.

    >>> explain_scores(claimed_boxes, claimed_scores, claimed_labels, logits, boxes, id2label)
    {"formula": "softmax_joint", "max_rel_error": 3e-7, "text": "...", "errors": {...}, "matched": 100}
"""

import numpy as np

from refimpl.diagnoses import CATALOGUE
from refimpl.diagnoses.claim_scores import FORMULA_RTOL, FORMULAS, _softmax  # noqa: F401 (the judge's names)

from .stats import box_iou


def explain_scores(claimed_boxes, claimed_scores, claimed_labels, logits, boxes, id2label, match_iou=0.5):
    """Which formula turns `logits` into the claimed scores?

    claimed_boxes (n, 4) corners in pixels (signatures undone), claimed_scores (n,), claimed_labels
    (n names); logits (Q, C+1) refimpl's for the same image, boxes (Q, 4) refimpl's corners per
    query (the same pixels); id2label {index: name}.
    -> {"formula": name or None, "max_rel_error", "temperature" (when fitted), "errors" {name:
    max relative error}, "matched": how many claims were tied to a query, "text"}, or None when
    fewer than 3 claims can be tied to a query (nothing to fit).
    """
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
    return CATALOGUE["score_formula"].check(logits, q, c, s)
