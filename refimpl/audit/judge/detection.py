"""Judging a detection claim: undo the box signatures, pair claimed and reference detections by
IoU, compare the pairs, and report what is left unpaired."""

from dataclasses import dataclass, replace

import numpy as np

from refimpl.diagnoses import CATALOGUE
from refimpl.errors import short
from refimpl.pipeline.postprocess import BOX_KEYS

from .formulas import explain_scores
from .scores import judge_scores
from .stats import box_iou
from .coverage import detection_coverage
from .verdict import finite_number, name_signature


@dataclass(frozen=True)
class Detections:
    """Detections as arrays: corners (n, 4) as (xmin, ymin, xmax, ymax), scores (n,), labels, and
    each one's index in the list it came from (a claim's malformed items are left out)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: list
    index: list

    def __len__(self):
        return len(self.labels)

    def above(self, threshold):
        """How many score above `threshold`."""
        return int(np.sum(self.scores > threshold))


def judge_detection(v, result, reference, tol, image_size, outputs=None):
    """Fill `v` with the comparison of claimed detections with the reference's (every query, or
    those above the threshold), and its coverage (coverage.py)."""
    # read the claimed items
    claimed, ref = read_claimed(v, result), read_reference(reference)
    v.stats.update(n_claimed=len(claimed), n_reference=len(ref), n_reference_above_threshold=ref.above(tol.threshold))
    note_score_order(v, claimed, ref)
    # undo the signatures
    undone = undo_box_signatures(v, claimed, ref, image_size)
    if undone is None:
        return
    claimed, ref, corner_slack = undone
    recognise_no_threshold(v, claimed, ref, tol)
    # pair, compare the pairs, report the unpaired
    every_query = "no_threshold" in v.signatures
    probs = class_probabilities(outputs, ref)
    corner_max = tol.corner_px + corner_slack
    iou = box_iou(claimed.boxes, ref.boxes)
    corner = corner_distance(claimed.boxes, ref.boxes)
    pairs = pair_detections(claimed, ref, iou, tol, corner=corner, corner_max=corner_max,
                            probs=probs if every_query else None)
    boxes = compare_pairs(v, claimed, ref, pairs, iou, tol, corner_slack, probs)
    missing = report_missing(v, ref, pairs, tol)
    labels_agree = not missing and boxes["labels_ok"]
    score_pairs = [(claimed.scores[i], reference_score(ref, j, claimed.labels[i], probs)) for i, j in pairs]
    before = len(v.problems)
    scale_ok = judge_scores(v, score_pairs, tol, labels_agree, boxes["ok"])
    if outputs is not None and len(claimed) and len(outputs["logits"]) == len(ref):
        if explain_score_formula(v, claimed, ref, outputs, tol):
            del v.problems[before:]  # the scores are explained: the formula, not a ranking problem
    extra, low = report_unpaired_claims(v, claimed, pairs, tol, scale_ok, any_label=probs is not None and every_query)
    recognise_wrong_image(v, claimed, ref, pairs, tol, image_size)
    v.stats.update(matched=len(pairs), missing=len(missing), extra=len(extra), unmatched_low=len(low),
                   min_iou=boxes["min_iou"], max_corner_px=boxes["max_corner_px"],
                   min_iou_all=boxes["min_iou"], labels_agree=labels_agree,
                   boxes_agree=bool(boxes["ok"] and labels_agree))
    not_judged = []
    if low:
        partner = "any reference query" if probs is not None and every_query else "a same-label reference detection"
        not_judged.append(f"{len(low)} low-score claimed row(s) have no partner ({partner} with IoU >= "
                          f"{tol.match_iou:g} or every corner within {corner_max:g} px)")
    confident = ref.above(tol.threshold)
    detection_coverage(v, len(claimed), len(pairs) + len(extra), confident, confident, not_judged)


# --- reading ------------------------------------------------------------------------------------


def read_claimed(v, result):
    """The claimed detections; an item without a string label, a finite score and a box of four
    finite numbers is a problem and is left out."""
    keep, boxes, scores, labels = [], [], [], []
    for i, item in enumerate(result):
        box = item.get("box") if isinstance(item, dict) else None
        if (not isinstance(item, dict) or not isinstance(item.get("label"), str) or not finite_number(item.get("score"))
                or not isinstance(box, dict) or not all(finite_number(box.get(k)) for k in BOX_KEYS)):
            v.problems.append(f"item {i} lacks a string label, a finite score and a box of four finite "
                              f"numbers: {short(item, 80)}")
            continue
        keep.append(i)
        boxes.append([float(box[k]) for k in BOX_KEYS])
        scores.append(float(item["score"]))
        labels.append(item["label"])
    return Detections(np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(scores, dtype=np.float64),
                      labels, keep)


def read_reference(reference):
    """refimpl's reference-shape detections."""
    return Detections(np.array([[float(d["box"][k]) for k in BOX_KEYS] for d in reference],
                               dtype=np.float64).reshape(-1, 4),
                      np.array([float(d["score"]) for d in reference], dtype=np.float64),
                      [d["label"] for d in reference], list(range(len(reference))))


def note_score_order(v, claimed, ref):
    """Claims sorted by score are worth a note: DETR's own order is the query order."""
    if len(claimed) > 1 and _descending(claimed.scores) and not (len(ref) > 1 and _descending(ref.scores)):
        v.notes.append("claimed detections are sorted by score (the reference keeps DETR's query order)")


def _descending(scores):
    return bool(np.all(np.diff(scores) <= 0))


# --- the signatures: the diagnosis catalogue's "claim" entries (refimpl/diagnoses/claim_boxes.py) --


def undo_box_signatures(v, claimed, ref, image_size):
    """Name and undo the box signatures -> (claimed, reference, extra corner tolerance in px), or
    None when the boxes cannot be compared (normalized boxes and no image size)."""
    if not len(claimed):
        return claimed, ref, 0.0
    claimed = unwrap_uint16(v, claimed, image_size)
    claimed, ref, corner_slack = undo_integer_rounding(v, claimed, ref)
    claimed = scale_normalized(v, claimed, ref, image_size)
    if claimed is None:
        return None
    return claimed, ref, corner_slack


def unwrap_uint16(v, claimed, image_size):
    """Corners wrapped to unsigned 16-bit (`uint16_wraparound`): named, and unwrapped."""
    found = CATALOGUE["uint16_wraparound"].check(claimed.boxes, image_size)
    if found is None:
        return claimed
    name_signature(v, "uint16_wraparound", found["detail"])
    return replace(claimed, boxes=found["boxes"])


def undo_integer_rounding(v, claimed, ref):
    """Whole-pixel claimed corners (`integer_rounding`): named; the reference rounded too, and the
    extra corner tolerance -> (claimed, ref, slack)."""
    found = CATALOGUE["integer_rounding"].check(claimed.boxes, ref.boxes)
    if found is None:
        return claimed, ref, 0.0
    name_signature(v, "integer_rounding", found["detail"])
    return claimed, replace(ref, boxes=found["reference_boxes"]), found["corner_slack"]


def scale_normalized(v, claimed, ref, image_size):
    """Boxes relative to the image (`normalized_boxes`): named, and scaled by image_size. None (and
    a problem) when the image size is unknown."""
    found = CATALOGUE["normalized_boxes"].check(claimed.boxes, ref.boxes, image_size)
    if found is None:
        return claimed
    name_signature(v, "normalized_boxes", found["detail"])
    if found["boxes"] is None:
        v.problems.append(found["problem"])
        return None
    return replace(claimed, boxes=found["boxes"])


def recognise_no_threshold(v, claimed, ref, tol):
    """Every query returned (`no_threshold`): named whatever else is wrong with the claim."""
    found = CATALOGUE["no_threshold"].check(claimed.scores, ref.scores, tol.threshold, tol.no_threshold_extra)
    if found is not None:
        name_signature(v, "no_threshold", found["detail"])


def _at_or_below(claimed, tol):
    return int(np.sum(claimed.scores <= tol.threshold))


def explain_score_formula(v, claimed, ref, outputs, tol):
    """When the scores are not DETR's own: name the post-processing formula that reproduces them from
    refimpl's logits (judge.formulas) as the signature `score_formula`, or say that none does.
    -> True when a formula reproduces them (the score comparison's problems are then moot)."""
    found = explain_scores(claimed.boxes, claimed.scores, claimed.labels, outputs["logits"], ref.boxes,
                           outputs["id2label"], tol.match_iou)
    if found is None or found["formula"] == "softmax_per_query":
        return False  # DETR's own formula: nothing to explain
    v.score_formula = found
    if "monotonic_score_transform" in v.signatures:
        v.details["monotonic_score_transform"] += "; score formula: " + found["text"]
    if found["formula"] is None:
        return False
    name_signature(v, "score_formula", found["text"])
    return True


# DETR predicts box centres and sizes within [0, 1] of the image, so no corner of its boxes can lie
# beyond half the image's size outside it: such a corner means the boxes were for a larger image.
DETR_CORNER_REACH = 0.5


def recognise_wrong_image(v, claimed, ref, pairs, tol, image_size):
    """Say when the claim is probably for another image: a claimed corner beyond what any box on
    this image can reach, or no confident reference detection paired and the claim's top labels
    share none with the reference's. Sets `v.wrong_image` (the reason), which makes the status
    disagree (coverage.settle). The box extent is judged whatever the threshold, the scores or
    anything else: no box DETR predicts for this image can reach there."""
    if not len(claimed):
        return
    reasons = []
    if image_size is not None:
        w, h = image_size
        B = claimed.boxes
        reach_x, reach_y = DETR_CORNER_REACH * w, DETR_CORNER_REACH * h
        out = ((B[:, [0, 2]] < -reach_x) | (B[:, [0, 2]] > w + reach_x)).any(1) | \
              ((B[:, [1, 3]] < -reach_y) | (B[:, [1, 3]] > h + reach_y)).any(1)
        if out.any():
            reasons.append(f"{int(out.sum())} claimed box(es) reach x={B[:, 2].max():.0f}, y={B[:, 3].max():.0f} "
                           f"(min x={B[:, 0].min():.0f}, y={B[:, 1].min():.0f}) on a {w}x{h} image, farther "
                           f"outside it than any box predicted for this image can")
    confident = [j for j in range(len(ref)) if ref.scores[j] > tol.threshold]
    if v.problems and confident and not any(j in confident for _, j in pairs):
        k = max(5, len(confident))
        top = [claimed.labels[i] for i in np.argsort(-claimed.scores, kind="stable")[:k]]
        ours = sorted({ref.labels[j] for j in confident})
        if not set(top) & set(ours):
            reasons.append(f"none of the {len(confident)} reference detection(s) above {tol.threshold} has a "
                           f"partner, and the claim's top labels ({', '.join(sorted(set(top))[:6])}) share none "
                           f"with the reference's ({', '.join(ours[:6])})")
    if reasons:
        v.wrong_image = "; ".join(reasons)


# --- pairing ------------------------------------------------------------------------------------


def pair_detections(claimed, ref, iou, tol, corner=None, corner_max=None, probs=None):
    """Greedy matching of claimed and reference detections, highest IoU first -> (claimed index,
    reference index) pairs in reference order. Two boxes overlap when their IoU is at least
    match_iou or (with `corner`, the (n_claimed, n_reference) largest corner differences) every
    corner is within corner_max px (a box a few pixels tall, rounded to integers, keeps its corners
    but can lose half its IoU).

    First the same-label pairs whose scores also agree (so rounding cannot swap near-duplicate
    queries), then the same-label pairs by overlap alone (a changed score scale), then, when
    `probs` is given (a claim with every query, and refimpl's class probabilities per query), any
    label: the label is then judged against that query's probabilities (compare_pairs)."""
    same = np.array([[a == b for b in ref.labels] for a in claimed.labels], dtype=bool).reshape(len(claimed), len(ref))
    close = np.abs(claimed.scores[:, None] - ref.scores[None, :]) <= tol.score_atol
    overlap = iou >= tol.match_iou
    if corner is not None and corner_max is not None:
        overlap = overlap | (corner <= corner_max)
    passes = [same & close & overlap, same & overlap] + ([overlap] if probs is not None else [])
    c_used, r_used, pairs = set(), set(), []
    for allowed in passes:
        cand = np.argwhere(allowed)
        order = np.lexsort((corner[cand[:, 0], cand[:, 1]] if corner is not None else np.zeros(len(cand)),
                            -iou[cand[:, 0], cand[:, 1]])) if len(cand) else []
        for k in order:
            i, j = (int(x) for x in cand[k])
            if i not in c_used and j not in r_used:
                c_used.add(i)
                r_used.add(j)
                pairs.append((i, j))
    return sorted(pairs, key=lambda p: p[1])


def corner_distance(C, R):
    """(n, 4) and (m, 4) corners -> (n, m): the largest |corner difference| of each pair, pixels."""
    if not len(C) or not len(R):
        return np.zeros((len(C), len(R)))
    return np.abs(C[:, None, :] - R[None, :, :]).max(-1)


def class_probabilities(outputs, ref):
    """refimpl's per-query class probabilities (DETR's own: softmax over each query's classes,
    no-object dropped after) and the class indices of each label -> (P (Q, C), {label: [index]}),
    or None without outputs (or when the reference is not every query)."""
    if outputs is None or len(outputs["logits"]) != len(ref) or not len(ref):
        return None
    L = np.asarray(outputs["logits"], dtype=np.float64)
    e = np.exp(L - L.max(-1, keepdims=True))
    P = (e / e.sum(-1, keepdims=True))[:, :-1]
    by_label = {}
    for k, name in outputs["id2label"].items():
        if int(k) < P.shape[1]:
            by_label.setdefault(name, []).append(int(k))
    return P, by_label


def reference_score(ref, j, label, probs):
    """The reference's score for `label` at query j: its own score when the labels agree, else (with
    probs) its probability of `label` at that query."""
    if label == ref.labels[j] or probs is None:
        return ref.scores[j]
    P, by_label = probs
    index = by_label.get(label)
    return float(P[j, index].max()) if index else 0.0


# --- comparing ----------------------------------------------------------------------------------


def compare_pairs(v, claimed, ref, pairs, iou, tol, corner_slack, probs=None):
    """One row per pair: label, score difference, IoU, largest corner difference; every pair is
    judged -> {"ok", "labels_ok", "min_iou", "max_corner_px"}.

    Boxes agree when every corner is within corner_px and the IoU is at least iou_min; for integer
    boxes only the corners count (on a box a few pixels tall, rounding alone moves the IoU far
    below any useful iou_min). A pair of different labels (a claim with every query, paired by box)
    has the right label when the reference's probability of the claimed label at that query is
    within score_atol of its best class's (a near tie: low-score queries have flat distributions)."""
    iou_min = 0.0 if corner_slack else tol.iou_min
    corner_max = tol.corner_px + corner_slack
    judged, wrong_labels = [], []
    for i, j in pairs:
        corner = float(np.max(np.abs(claimed.boxes[i] - ref.boxes[j])))
        label_ok = True
        if claimed.labels[i] != ref.labels[j]:
            p_label = reference_score(ref, j, claimed.labels[i], probs)
            label_ok = probs is not None and ref.scores[j] - p_label <= tol.score_atol
            if not label_ok:
                wrong_labels.append((i, j, p_label))
        box_ok = iou[i, j] >= iou_min and corner <= corner_max
        judged.append((float(iou[i, j]), corner))
        row = _row("match", j, claimed.index[i], claimed.labels[i], reference_score(ref, j, claimed.labels[i], probs),
                   claimed.scores[i], iou[i, j], corner, box_ok and label_ok)
        row["reference_label"] = ref.labels[j]
        v.rows.append(row)
    bad = sum(not (a >= iou_min and c <= corner_max) for a, c in judged)
    if bad:
        what = f"IoU < {iou_min:g} or a corner" if iou_min else "a corner"
        v.problems.append(f"{bad} matched detection(s) have {what} off by more than {corner_max:g} px (min IoU "
                          f"{min(a for a, _ in judged):.4f}, max corner difference {max(c for _, c in judged):.3g} px)")
    if wrong_labels:
        i, j, p = wrong_labels[0]
        v.problems.append(f"{len(wrong_labels)} claimed detection(s) name another label than the reference's query "
                          f"at the same box, beyond a near tie (e.g. claimed {claimed.labels[i]} where query {j} "
                          f"is {ref.labels[j]} {ref.scores[j]:.3g}, {claimed.labels[i]} {p:.3g})")
    return {"ok": bad == 0, "labels_ok": not wrong_labels, "min_iou": min((a for a, _ in judged), default=None),
            "max_corner_px": max((c for _, c in judged), default=None)}


# --- the unpaired -------------------------------------------------------------------------------


def report_missing(v, ref, pairs, tol):
    """Reference detections above the threshold with no partner -> those that count as missing
    (one within score_atol of the threshold is excused: a note, not a problem)."""
    paired = {j for _, j in pairs}
    missing = [j for j in range(len(ref)) if j not in paired and ref.scores[j] > tol.threshold]
    near = [j for j in missing if ref.scores[j] - tol.threshold <= tol.score_atol]
    for j in missing:
        v.rows.append(_row("missing", j, None, ref.labels[j], ref.scores[j], None, None, None, j in near))
    if near:
        v.notes.append(f"{len(near)} reference detection(s) within score_atol of the threshold are missing: excused")
    really_missing = [j for j in missing if j not in near]
    if really_missing:
        v.problems.append(f"{len(really_missing)} reference detection(s) missing: "
                          + ", ".join(_described(ref, j) for j in really_missing[:5]))
    return really_missing


def report_unpaired_claims(v, claimed, pairs, tol, scale_ok, any_label=False):
    """Claimed detections with no partner -> (extra, low). On the reference's score scale one above
    the threshold (by more than score_atol) is extra, a problem (judged); the others are low, not
    judged (the coverage counts them). Claims at or below the threshold without the no_threshold
    signature are a lower threshold."""
    paired = {i for i, _ in pairs}
    extra, low = [], []
    for i in range(len(claimed)):
        if i in paired:
            continue
        is_extra = scale_ok and claimed.scores[i] > tol.threshold + tol.score_atol
        (extra if is_extra else low).append(i)
        v.rows.append(_row("extra" if is_extra else "low", None, claimed.index[i], claimed.labels[i], None,
                           claimed.scores[i], None, None, not is_extra, judged=is_extra))
    if extra:
        v.problems.append(f"{len(extra)} claimed detection(s) above {tol.threshold} not in the reference: "
                          + ", ".join(_described(claimed, i) for i in extra[:5]))
    low_claimed = _at_or_below(claimed, tol)
    if scale_ok and low_claimed and "no_threshold" not in v.signatures:
        v.problems.append(f"{low_claimed} claimed detection(s) score at or below the threshold {tol.threshold} "
                          "(a lower threshold than the reference's?)")
    # (unpaired low-score claims are not judged: the coverage says so, judge_detection)
    return extra, low


def _row(status, ref_index, claimed_index, label, ref_score, claimed_score, iou, corner, ok, judged=True):
    f = (lambda x: None if x is None else float(x))
    diff = None if ref_score is None or claimed_score is None else abs(float(claimed_score) - float(ref_score))
    return {"status": status, "reference_index": ref_index, "claimed_index": claimed_index, "label": label,
            "reference_score": f(ref_score), "claimed_score": f(claimed_score), "score_diff": diff,
            "iou": f(iou), "corner_px": f(corner), "ok": bool(ok), "judged": bool(judged)}


def _described(dets, k):
    """"person 0.913 at (12.0, 4.5, 80.2, 120.0)": a detection in a problem's text."""
    return f"{dets.labels[k]} {dets.scores[k]:.3f} at (" + ", ".join(f"{x:.1f}" for x in dets.boxes[k]) + ")"
