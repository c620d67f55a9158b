"""Judging a classification claim: the same labels in the same order, scores matched by label."""

from refimpl.diagnoses import CATALOGUE
from refimpl.errors import short

from .coverage import classification_coverage
from .scores import judge_scores
from .verdict import finite_number, name_signature

HOSTED_TOP_K = 5  # the hosted API answers with this many labels


def judge_classification(v, result, reference, tol):
    """Fill `v` with the comparison of a claimed label list with the reference's."""
    claimed = read_claimed(v, result)
    ref = [(r["label"], float(r["score"])) for r in reference]
    claimed_labels, ref_labels = undo_label_style(v, [lab for lab, _ in claimed], [lab for lab, _ in ref])
    if len(claimed) != len(ref):
        v.problems.append(f"{len(claimed)} labels claimed, the reference has {len(ref)}")
    pairs, labels_agree = compare_ranks(v, claimed_labels, [s for _, s in claimed], ref_labels,
                                        [s for _, s in ref], tol)
    v.stats.update(n_claimed=len(claimed), n_reference=len(ref), matched=len(pairs), labels_agree=labels_agree,
                   max_score_diff=max(abs(c - r) for c, r in pairs) if pairs else None)
    judge_scores(v, pairs, tol, labels_agree, None)
    recognise_wrong_image(v, claimed_labels, ref_labels)
    judged = min(len(claimed), len(ref))  # every rank both lists have: its label compared
    classification_coverage(v, len(claimed), judged, len(ref),
                            [f"{len(claimed) - judged} claimed label(s) beyond the reference's {len(ref)}"]
                            if judged < len(claimed) else [])
    if len(claimed) != HOSTED_TOP_K:
        v.notes.append(f"{len(claimed)} labels; the hosted API returns {HOSTED_TOP_K}")


def read_claimed(v, result):
    """The claimed (label, score) items; an item without a string label and a finite score is a
    problem and is left out."""
    items = []
    for i, item in enumerate(result):
        if not isinstance(item, dict) or not isinstance(item.get("label"), str) or not finite_number(item.get("score")):
            v.problems.append(f"item {i} lacks a string label and a finite number score: {short(item, 80)}")
            continue
        items.append((item["label"], float(item["score"])))
    return items


def undo_label_style(v, claimed_labels, ref_labels):
    """Labels in another style ("Persian cat" for "PERSIAN CAT") -> the label_style signature, and
    both lists in the seed's style; otherwise both lists unchanged."""
    found = CATALOGUE["label_style"].check(claimed_labels, ref_labels)
    if found is None:
        return claimed_labels, ref_labels
    name_signature(v, "label_style", found["detail"])
    return found["claimed"], found["reference"]


def compare_ranks(v, claimed_labels, claimed_scores, ref_labels, ref_scores, tol):
    """One row per rank: the same label (or a near tie), and the score difference of each claimed
    label the reference also has -> ((claimed, reference) score pairs, whether the labels agree)."""
    ref_score = dict(zip(ref_labels, ref_scores))
    pairs, labels_agree = [], True
    for rank in range(max(len(claimed_labels), len(ref_labels))):
        c_label, c_score = (claimed_labels[rank], claimed_scores[rank]) if rank < len(claimed_labels) else (None, None)
        r_label, r_score = (ref_labels[rank], ref_scores[rank]) if rank < len(ref_labels) else (None, None)
        diff = None
        if c_label is not None and c_label in ref_score:
            diff = abs(c_score - ref_score[c_label])
            pairs.append((c_score, ref_score[c_label]))
        ok = c_label == r_label
        if not ok and c_label is not None and r_label is not None and c_label in ref_score:
            gap = abs(ref_score[c_label] - r_score)
            if gap <= tol.score_atol:
                ok = True
                v.notes.append(f"rank {rank + 1}: {c_label!r} instead of {r_label!r}, a near tie "
                               f"(reference scores differ by {gap:.2g})")
        if not ok and c_label is not None and r_label is not None:
            labels_agree = False
            v.problems.append(f"rank {rank + 1}: label {c_label!r}, the reference has {r_label!r}")
        v.rows.append({"rank": rank + 1, "reference_label": r_label, "reference_score": r_score,
                       "claimed_label": c_label, "claimed_score": c_score, "score_diff": diff,
                       "ok": bool(ok and (diff is None or diff <= tol.score_atol))})
    return pairs, labels_agree


# A claim is probably for another image when its top labels and the reference's barely meet. The
# numbers are measured (README, "Conformance and audit"): on the synthesized ResNet-50 at 64 px,
# claims for the same image made with another resize filter (bilinear vs bicubic, 16 photos) share
# 2 to 5 of the reference's top 5 and their top label is always in it; claims for another image
# (240 ordered pairs) share 1 (118 pairs), 2 or 3 labels, never 0 - the synthesized model favours a
# few classes whatever the image, so "nothing in common" alone would never fire. A trained model's
# answers for two unrelated photos usually share nothing.
WRONG_IMAGE_MAX_SHARED = 1


def recognise_wrong_image(v, claimed_labels, ref_labels, k=HOSTED_TOP_K):
    """Say when a disagreeing claim is probably for another image: its top label is not among the
    reference's top k and the two top-k lists share at most WRONG_IMAGE_MAX_SHARED labels. Sets
    `v.wrong_image` (the reason); the status stays disagree."""
    if not v.problems or not claimed_labels or not ref_labels:
        return
    top_c, top_r = claimed_labels[:k], ref_labels[:k]
    shared = [x for x in top_c if x in set(top_r)]
    if top_c[0] not in set(top_r) and len(shared) <= WRONG_IMAGE_MAX_SHARED:
        v.wrong_image = (f"the claimed top label {top_c[0]!r} is not in the reference's top {len(top_r)}, and the "
                         f"two top-{k} lists share {len(shared) or 'no'} label{'' if len(shared) == 1 else 's'}"
                         f"{' (' + shared[0] + ')' if shared else ''}")
