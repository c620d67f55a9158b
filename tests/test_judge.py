"""judge(): comparing someone's answer with ours, and naming issue 8's signatures.

Each signature is produced from our own output by a small transformation, fed back to the judge,
and must be named in the verdict. Detection cases run on a deterministic synthetic reference
(always) and on the synthesized DETR's real output (when refimpl has DETR).
"""

import copy
import json

import jsonschema
import numpy as np
import pytest

from refimpl.serving import contract
from refimpl.audit import judge
from refimpl.audit.judge import Tolerances, detection, vocabulary
from refimpl.audit.judge import coverage
from refimpl.audit.judge import report as detection_report
from refimpl.pipeline import postprocess
from refimpl.serving import schemas
from fixtures_contract import DETR, RESNET

# --- classification -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ours(small_png, contract_weights):
    return contract.run(RESNET, small_png, weights=contract_weights["resnet-50"])


def env(result):
    return {"result": result, "success": True, "errors": [], "messages": []}


def test_classification_agrees_with_itself(ours):
    for claimed in (ours, env(ours), {"inputs": {"image": []}, "response": ours}):
        v = judge.judge(RESNET, claimed, ours)
        assert v.status == "agree" and v.agree and not v.problems and not v.signatures, v.problems
    noisy = [dict(r, score=r["score"] + 1e-6) for r in ours]
    v = judge.judge(RESNET, noisy, ours)
    assert v.agree and v.stats["max_score_diff"] == pytest.approx(1e-6)
    assert [r["ok"] for r in v.rows] == [True] * 5


def test_label_style(ours, small_png, contract_weights):
    raw = contract.run(RESNET, small_png, weights=contract_weights["resnet-50"], labels="raw")
    v = judge.judge(RESNET, raw, ours)
    assert v.status == "explained" and v.signatures == ["label_style"], v.problems


def test_classification_monotonic_score_transform(ours):
    cubed = [dict(r, score=r["score"] ** 3) for r in ours]
    v = judge.judge(RESNET, cubed, ours, Tolerances(score_atol=1e-4))
    assert v.status == "explained" and v.signatures == ["monotonic_score_transform"]
    assert "Spearman rho = 1.0000" in v.details["monotonic_score_transform"]
    assert "labels agree: yes" in v.details["monotonic_score_transform"]
    assert v.accepted(["monotonic_score_transform"]) and not v.accepted(["hosted"])


@pytest.mark.parametrize("change,fragment", [
    (lambda r: [r[4], r[1], r[2], r[3], r[0]], "rank 1: label"),
    (lambda r: r[:3], "3 labels claimed, the reference has 5"),
    (lambda r: [dict(x, label="TABBY") for x in r], "label 'TABBY'"),
    (lambda r: [dict(x, score=s) for x, s in zip(r, [0.01, 0.5, 0.02, 0.3, 0.04])], "do not rank like"),
    (lambda r: [dict(r[0], score="0.5")] + r[1:], "schema: $[0].score: expected number, got string"),
    (lambda r: [dict(r[0], score=float("nan"))] + r[1:], "not a JSON number"),
    (lambda r: {"result": None, "success": False, "errors": [{"code": 5004, "message": "bad"}], "messages": []},
     "[5004] bad"),
    (lambda r: {"result": r, "success": True}, "envelope: $: missing required property 'errors'"),
    (lambda r: "PERSIAN CAT", "response is string"),
])
def test_classification_disagreements(ours, change, fragment):
    v = judge.judge(RESNET, change(copy.deepcopy(ours)), ours, Tolerances(score_atol=1e-4))
    assert v.status == "disagree" and not v.agree
    assert any(fragment in p for p in v.problems), v.problems


def test_near_tie_swap_is_a_note():
    reference = [{"label": "A", "score": 0.30}, {"label": "B", "score": 0.299}, {"label": "C", "score": 0.1}]
    claimed = [{"label": "B", "score": 0.2995}, {"label": "A", "score": 0.2994}, {"label": "C", "score": 0.1}]
    v = judge.judge(RESNET, claimed, reference)
    assert v.agree and any("near tie" in n for n in v.notes)


# --- detection: the references ------------------------------------------------------------------


def synthetic_reference(seed=0, width=640, height=480):
    """100 DETR-like queries: a few confident, the rest low, some boxes over the image edges."""
    rng = np.random.default_rng(seed)
    out = []
    for q in range(100):
        w, h = rng.uniform(30, 200), rng.uniform(30, 200)
        x0, y0 = rng.uniform(-20, width - w + 20), rng.uniform(-20, height - h + 20)
        score = float(rng.uniform(0.7, 0.999)) if q % 12 == 0 else float(rng.uniform(0.001, 0.4))
        out.append({"score": score, "label": str(rng.choice(["person", "cat", "dog", "clock", "bench"])),
                    "box": {"xmin": x0, "ymin": y0, "xmax": x0 + w, "ymax": y0 + h}})
    return out, (width, height)


@pytest.fixture(scope="module", params=["synthetic", "detr"])
def det(request):
    """(every query of our output, image size, tolerances) for the detection cases."""
    if request.param == "synthetic":
        every, size = synthetic_reference()
        return every, size, Tolerances()
    every = request.getfixturevalue("detr_all_queries")
    png = request.getfixturevalue("detr_image")
    size = contract.decode_inputs(png).shape[1::-1]
    scores = sorted((d["score"] for d in every), reverse=True)
    # The synthesized DETR is random: if few of its queries pass 0.5, judge at a threshold that
    # keeps its top 10 (the judge's threshold is a tolerance like the others).
    threshold = 0.5 if sum(s > 0.5 for s in scores) >= 3 else (scores[9] + scores[10]) / 2
    return every, tuple(size), Tolerances(threshold=threshold)


def above(every, tol):
    return [d for d in every if d["score"] > tol.threshold]


def with_negative_corner(every, tol):
    """Our output with at least one confident box over the left edge (xmin = -2.3)."""
    every = copy.deepcopy(every)
    if not any(v < -0.5 for d in every for v in d["box"].values()):
        d = next(d for d in every if d["score"] > tol.threshold)
        d["box"]["xmin"] = -2.3
    return every


def boxes_map(dets, f):
    return [dict(d, box={k: f(k, v) for k, v in d["box"].items()}) for d in dets]


def verdict(claimed, reference, size, tol, **kw):
    return judge.judge(DETR, claimed, reference, tol, image_size=kw.get("image_size", size))


# --- detection: agreement and each signature ----------------------------------------------------


def test_detection_agrees_with_itself(det):
    every, size, tol = det
    for reference in (every, above(every, tol)):
        v = verdict(above(every, tol), reference, size, tol)
        assert v.status == "agree", (v.problems, v.signatures)
        assert v.stats["matched"] == len(above(every, tol)) and v.stats["min_iou"] == pytest.approx(1.0)
    v = verdict(env(above(every, tol)), every, size, tol)
    assert v.agree


def test_no_threshold(det):
    every, size, tol = det
    v = verdict(every, every, size, tol)
    assert v.status == "explained" and v.signatures == ["no_threshold"], v.problems
    assert v.stats["matched"] == 100
    assert v.coverage["claimed_judged"] == v.coverage["claimed"] == 100 and "100 of 100 claimed" in v.coverage["text"]
    # against a thresholded reference the low rows have nothing to be judged against: INCOMPLETE,
    # which no --accept accepts
    v = verdict(every, above(every, tol), size, tol)
    n = len(above(every, tol))
    assert v.status == "incomplete" and v.word == "INCOMPLETE" and v.signatures == ["no_threshold"], v.problems
    assert v.coverage["claimed_judged"] == n < v.coverage["claimed"] == 100
    assert f"only {n} of 100 claimed row(s) judged" in coverage.too_little(v.coverage)
    assert not v.accepted(["all"]) and vocabulary.exit_code(v.status, v.accepted(["all"])) == 3


def test_integer_rounding(det):
    every, size, tol = det
    rounded = boxes_map(above(every, tol), lambda k, x: int(round(x)))
    v = verdict(rounded, every, size, tol)
    assert v.status == "explained" and v.signatures == ["integer_rounding"], v.problems
    truncated = boxes_map(above(every, tol), lambda k, x: int(x))
    v = verdict(truncated, every, size, tol)
    assert "integer_rounding" in v.signatures and v.status == "explained", v.problems


def test_uint16_wraparound(det):
    every, size, tol = det
    every = with_negative_corner(every, tol)
    claimed = boxes_map(above(every, tol), lambda k, x: int(round(x)) % 65536)
    assert any(x >= 65500 for d in claimed for x in d["box"].values())
    v = verdict(claimed, every, size, tol)
    assert v.status == "explained" and set(v.signatures) == {"uint16_wraparound", "integer_rounding"}, v.problems
    assert "65534 = -2" in v.details["uint16_wraparound"] or "= -" in v.details["uint16_wraparound"]


def test_normalized_boxes(det):
    every, size, tol = det
    w, h = size
    claimed = boxes_map(above(every, tol), lambda k, x: x / (w if k[0] == "x" else h))
    claimed = boxes_map(claimed, lambda k, x: min(max(x, 0.0), 1.0))  # normalized boxes are usually clipped
    v = verdict(claimed, [dict(d, box=_clip(d["box"], size)) for d in every], size, tol)
    assert v.status == "explained" and v.signatures == ["normalized_boxes"], v.problems
    v = judge.judge(DETR, claimed, every, tol)  # without the image size the boxes cannot be compared
    assert v.status == "disagree" and "normalized_boxes" in v.signatures


def _clip(box, size):
    w, h = size
    return {k: min(max(x, 0.0), w if k[0] == "x" else h) for k, x in box.items()}


def test_monotonic_score_transform(det):
    every, size, tol = det
    claimed = [dict(d, score=d["score"] ** 4 * 1e-3) for d in every]
    v = verdict(claimed, every, size, tol)
    assert v.status == "explained", v.problems
    assert set(v.signatures) == {"no_threshold", "monotonic_score_transform"}
    detail = v.details["monotonic_score_transform"]
    assert "Spearman rho = 1.0000 over 100 matched" in detail
    assert "labels and boxes agree after IoU matching: yes" in detail
    assert v.stats["spearman"] == pytest.approx(1.0)


def test_the_hosted_response_shape(det):
    """What FACTS.md records of the real hosted DETR: every query, sorted, integer boxes wrapped to
    uint16, scores on another scale. All four signatures are named, nothing else is wrong."""
    every, size, tol = det
    every = with_negative_corner(every, tol)
    hosted = postprocess.hosted_shape([dict(d, score=d["score"] ** 3 * 4e-4) for d in every], wrap_uint16=True)
    jsonschema.validate(hosted, schemas.DETECTION_OUTPUT)
    v = verdict(env(hosted), every, size, tol)
    assert v.status == "explained", v.problems
    assert set(v.signatures) == {"no_threshold", "integer_rounding", "uint16_wraparound", "monotonic_score_transform"}
    assert any("sorted by score" in n for n in v.notes)
    assert not v.accepted(["hosted"]) and v.accepted(["hosted", "monotonic_score_transform"])
    json.loads(v.to_json())


def test_hosted_shape_is_schema_valid_and_explained(det):
    every, size, tol = det
    hosted = postprocess.hosted_shape(every)
    jsonschema.validate(hosted, schemas.DETECTION_OUTPUT)
    assert schemas.validate(hosted, schemas.DETECTION_OUTPUT) == []
    v = verdict(hosted, every, size, tol)
    assert v.status == "explained" and set(v.signatures) == {"no_threshold", "integer_rounding"}, v.problems
    assert v.accepted(["hosted"])


# --- detection: disagreements are still disagreements -------------------------------------------


def test_shifted_boxes(det):
    every, size, tol = det
    shift = 0.3 * np.median([d["box"]["xmax"] - d["box"]["xmin"] for d in above(every, tol)])
    claimed = boxes_map(above(every, tol), lambda k, x: x + shift if k[0] == "x" else x)
    v = verdict(claimed, every, size, tol)
    assert v.status == "disagree" and any("IoU" in p or "missing" in p for p in v.problems)


def test_wrong_labels(det):
    every, size, tol = det
    claimed = [dict(d, label="unicorn") for d in above(every, tol)]
    v = verdict(claimed, every, size, tol)
    assert v.status == "disagree"
    assert any("missing" in p for p in v.problems) and any("not in the reference" in p for p in v.problems)


def test_dropped_detection(det):
    every, size, tol = det
    v = verdict(above(every, tol)[1:], every, size, tol)
    assert v.status == "disagree" and any("1 reference detection(s) missing" in p for p in v.problems)


def test_scrambled_scores(det):
    every, size, tol = det
    rng = np.random.default_rng(1)
    scores = rng.permutation([d["score"] for d in every])
    v = verdict([dict(d, score=float(s)) for d, s in zip(every, scores)], every, size, tol)
    assert v.status == "disagree" and "monotonic_score_transform" not in v.signatures
    assert any("do not rank like" in p for p in v.problems)


def test_verdict_json(det):
    every, size, tol = det
    v = verdict(postprocess.hosted_shape(every), every, size, tol)
    data = json.loads(v.to_json())
    assert data["status"] == "explained" and data["tolerances"]["threshold"] == tol.threshold
    assert {"status", "reference_index", "claimed_index", "iou", "corner_px", "ok"} <= set(data["rows"][0])


# --- helpers ------------------------------------------------------------------------------------


def test_box_iou_and_spearman():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 5]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10]])
    assert judge.box_iou(a, b).tolist() == [[1 / 3, 1.0], [0.0, 0.0]]
    assert judge.spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == pytest.approx(1.0)
    assert judge.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert judge.spearman([1, 1, 1], [1, 2, 3]) is None


def test_tolerances_are_checked():
    with pytest.raises(ValueError):
        Tolerances(iou_min=1.5)
    with pytest.raises(ValueError):
        Tolerances(score_atol=-1)


# --- the steps of detection judging -------------------------------------------------------------


def dets(*items):
    """Detections from (label, score, box) triples."""
    return detection.Detections(np.array([b for _, _, b in items], dtype=np.float64).reshape(-1, 4),
                                np.array([s for _, s, _ in items], dtype=np.float64),
                                [lab for lab, _, _ in items], list(range(len(items))))


def test_pairing_prefers_agreeing_scores():
    """Two near-duplicate reference queries: each claim pairs with the one whose score agrees, even
    where the other overlaps more; different labels never pair."""
    ref = dets(("cat", 0.9, [0, 0, 100, 100]), ("cat", 0.3, [1, 0, 101, 100]), ("dog", 0.8, [0, 0, 100, 100]))
    claimed = dets(("cat", 0.3, [0, 0, 100, 100]), ("cat", 0.9, [1, 0, 101, 100]))
    tol = Tolerances()
    pairs = detection.pair_detections(claimed, ref, judge.box_iou(claimed.boxes, ref.boxes), tol)
    assert pairs == [(1, 0), (0, 1)]  # in reference order
    scaled = dets(("cat", 0.09, [0, 0, 100, 100]))  # no score agrees: the highest IoU wins
    assert detection.pair_detections(scaled, ref, judge.box_iou(scaled.boxes, ref.boxes), tol) == [(0, 0)]


def test_box_signatures_are_undone_in_order():
    """Wrapped corners are unwrapped before the integer test; on an image 32768 px wide such
    corners are real, not wrapped."""
    ref = dets(("cat", 0.9, [-2.4, 10.2, 50.7, 60.1]))
    claimed = dets(("cat", 0.9, [65534, 10, 51, 60]))
    v = judge.Verdict(DETR, "object-detection", "disagree", False)
    c, r, slack = detection.undo_box_signatures(v, claimed, ref, (640, 480))
    assert v.signatures == ["uint16_wraparound", "integer_rounding"] and slack == 1.0
    assert c.boxes.tolist() == [[-2, 10, 51, 60]] and r.boxes.tolist() == [[-2, 10, 51, 60]]
    assert claimed.boxes[0, 0] == 65534  # the inputs are not changed
    v = judge.Verdict(DETR, "object-detection", "disagree", False)
    c, _, _ = detection.undo_box_signatures(v, claimed, ref, (40000, 480))
    assert v.signatures == ["integer_rounding"] and c.boxes[0, 0] == 65534


# --- the verdict as text ------------------------------------------------------------------------


def test_format_verdict_classification():
    reference = [{"label": "A", "score": 0.30}, {"label": "B", "score": 0.299}]
    v = judge.judge(RESNET, [{"label": "B", "score": 0.299}, {"label": "A", "score": 0.9}], reference)
    lines = judge.format_verdict(v)
    assert lines[0].split() == ["rank", "reference", "score", "claimed", "score", "|diff|", "ok"]
    assert lines[1].split() == ["1", "A", "0.30000", "B", "0.29900", "0.0e+00", "yes"]
    assert lines[2].split() == ["2", "B", "0.29900", "A", "0.90000", "6.0e-01", "NO"]
    assert lines[3].startswith("  problem: scores differ by up to 0.6")
    assert lines[4] == "  note: rank 1: 'B' instead of 'A', a near tie (reference scores differ by 0.001)"
    assert lines[5] == "  note: rank 2: 'A' instead of 'B', a near tie (reference scores differ by 0.001)"
    assert lines[6:] == ["  note: 2 labels; the hosted API returns 5"]
    assert all(line.startswith("  ") for line in lines)


def test_format_verdict_detection_and_its_users():
    from refimpl.audit.image import AuditResult, format_result
    from refimpl.audit.endpoint import Exchange, ImageCheck, format_check

    every, size = synthetic_reference()
    v = judge.judge(DETR, postprocess.hosted_shape(every), every, image_size=size)
    lines = judge.format_verdict(v)
    assert lines[0].split()[:3] == ["status", "ref#", "claim#"]
    assert all(r["status"] == "match" and r["judged"] for r in v.rows)  # every query paired and judged
    cut = len(v.rows) - detection_report.MAX_ROWS
    assert f"  ... and {cut} more row(s) (0 line(s) not ok; --all-rows shows every row)" in lines
    assert f"  signature no_threshold: {v.details['no_threshold']}" in lines
    every_row = judge.format_verdict(v, all_rows=True)
    assert len(every_row) == len(lines) + cut - 1 and "more row(s)" not in "\n".join(every_row)
    # check-endpoint and audit show the same body under their own headline
    check = format_check(ImageCheck("x.png", Exchange(200, ms=12.0), v, False)).splitlines()
    assert check == ["x.png: HTTP 200, 12 ms: " + vocabulary.headline("explained", False, v.signatures, coverage=v.coverage)] + lines
    assert check[0].endswith("[100 of 100 claimed detection(s) judged; 9 of 9 reference detection(s) above 0.5 judged]")
    assert check[0].startswith("x.png: HTTP 200, 12 ms: EXPLAINED: the same answer, reshaped by ") and "no_threshold" in check[0]
    audited = format_result(AuditResult("x.png", DETR, "explained", True, verdict=v, claimed="x.json")).splitlines()
    assert audited == [f"audit x.png against {DETR} (claimed: x.json)"] + lines + [
        f"verdict: EXPLAINED: the same answer, reshaped by {', '.join(v.signatures)} (accepted) [{v.coverage['text']}]"]


def test_verdict_json_holds_numpy_numbers():
    assert json.loads(json.dumps({"a": np.float32(0.5), "b": np.int64(3)}, default=judge.json_default)) == {
        "a": 0.5, "b": 3}
    with pytest.raises(TypeError):
        json.dumps({"a": object()}, default=judge.json_default)


# --- explaining a score transform (issue 13) ----------------------------------------------------


@pytest.fixture(scope="module")
def detr_outputs(detr_weights, detr_image):
    """refimpl's every-query reference for detr_image with its logits."""
    return judge.reference_outputs(DETR, detr_image, weights=detr_weights)


def claim_with(formula, logits, every, id2label, temperature=None):
    """The hosted shape of a claim whose scores come from `formula` applied to our own logits:
    each query reports the class the formula scores highest, with that score."""
    from refimpl.audit.judge.formulas import FORMULAS, _softmax

    L = np.asarray(logits, dtype=np.float64)
    F = _softmax(L / temperature, -1)[:, :-1] if formula == "temperature" else FORMULAS[formula][1](L)
    out = []
    for q, d in enumerate(every):
        c = int(np.nanargmax(F[q]))
        out.append({"score": float(F[q, c]), "label": id2label[c], "box": d["box"]})
    return postprocess.hosted_shape(out)


@pytest.mark.parametrize("formula", ["softmax_joint", "softmax_joint_objects", "softmax_over_queries",
                                     "softmax_no_object_dropped", "sigmoid", "temperature", "label_offset_+1",
                                     "label_offset_-1"])
def test_score_formula_is_named(detr_outputs, formula):
    every, size, outputs = detr_outputs
    t = 2.5 if formula == "temperature" else None
    claimed = claim_with(formula, outputs["logits"], every, outputs["id2label"], t)
    v = judge.judge(DETR, claimed, every, image_size=size, outputs=outputs)
    assert v.score_formula is not None and v.score_formula["formula"] == formula, v.score_formula
    assert v.score_formula["max_rel_error"] <= 1e-3 and formula in format_text(v)
    if formula == "temperature":
        assert v.score_formula["temperature"] == pytest.approx(t, rel=1e-3)
    if "monotonic_score_transform" in v.signatures:
        assert "score formula: " + formula in v.details["monotonic_score_transform"]


def test_own_formula_needs_no_explanation_and_others_are_not_forced(detr_outputs):
    every, size, outputs = detr_outputs
    v = judge.judge(DETR, postprocess.hosted_shape(every), every, image_size=size, outputs=outputs)
    assert v.score_formula is None
    # scores that no candidate formula makes: said so, nothing named
    scrambled = [dict(d, score=d["score"] ** 3 * 4e-4) for d in postprocess.hosted_shape(every)]
    v = judge.judge(DETR, scrambled, every, image_size=size, outputs=outputs)
    assert v.score_formula["formula"] is None and "no candidate formula" in v.score_formula["text"]


def format_text(v):
    return "\n".join(judge.format_verdict(v))


def test_a_named_formula_explains_the_scores(detr_outputs):
    """A joint softmax does not rank queries like DETR's own, yet it is the same answer: with the
    formula named, labels and boxes agreeing, the claim is EXPLAINED, not DISAGREE."""
    every, size, outputs = detr_outputs
    claimed = claim_with("softmax_joint", outputs["logits"], every, outputs["id2label"])
    without = judge.judge(DETR, claimed, every, image_size=size)
    v = judge.judge(DETR, claimed, every, image_size=size, outputs=outputs)
    assert v.status == "explained" and "score_formula" in v.signatures, v.problems
    assert v.details["score_formula"].startswith("softmax_joint:")
    if without.status == "disagree":  # without the logits the scores cannot be explained
        assert any("scores differ" in p for p in without.problems)
    assert not v.accepted(["hosted"]) and v.accepted(["hosted", "score_formula"])


def test_one_vocabulary_for_every_command():
    """The same word for the same situation; --accept changes only the exit code."""
    from refimpl.audit.endpoint import Exchange, ImageCheck, Report, summary_line

    assert [vocabulary.word(s) for s in ("agree", "explained", "disagree", "malformed")] == \
        ["AGREE", "EXPLAINED", "DISAGREE", "MALFORMED"]
    assert vocabulary.word("disagree", "boxes far outside") == "WRONG IMAGE?"
    assert vocabulary.exit_code("explained", accepted=True) == 0 and vocabulary.exit_code("explained") == 1
    assert vocabulary.exit_code("disagree", True, "boxes far outside") == 1
    rows = [{"status": "missing", "label": "fire hydrant", "reference_score": 0.6 + i / 1000, "claimed_score": None,
             "ok": False} for i in range(99)] + [{"status": "missing", "label": "clock", "reference_score": 0.9,
                                                   "claimed_score": None, "ok": False}]
    items = vocabulary.group_rows(rows)
    assert len(items) == 2 and items[0]["count"] == 99 and items[1] is rows[-1]
    assert vocabulary.group_text(items[0]) == "99 queries: fire hydrant, missing in the claim (reference scores 0.6..0.698)"
    every, size = synthetic_reference()
    v = judge.judge(DETR, postprocess.hosted_shape(every), every, image_size=size)
    report = Report("http://x", DETR, (), [ImageCheck("a.png", Exchange(200), v, False)])
    assert summary_line(report).startswith("EXPLAINED: 1 of 1 image(s) EXPLAINED; explained only by the signatures")
    assert "(not accepted: exit 1" in summary_line(report)


# --- coverage: never pass what was not judged (issue 21) -----------------------------------------


def test_incomplete_boundary_every_row_must_be_judged():
    """A claim without a threshold: 100 of 100 rows judged -> EXPLAINED; move one low-score row
    where no reference query is (99 of 100 judged) -> INCOMPLETE, exit 3, whatever --accept says."""
    every, size = synthetic_reference()
    hosted = postprocess.hosted_shape(every)
    v = judge.judge(DETR, hosted, every, image_size=size)
    assert v.status == "explained" and v.coverage["claimed_judged"] == 100, v.problems
    low = next(i for i, d in enumerate(hosted) if d["score"] < 0.1)
    moved = copy.deepcopy(hosted)
    moved[low]["box"] = {"xmin": 600, "ymin": 2, "xmax": 603, "ymax": 4}  # no query there, inside the image
    v = judge.judge(DETR, moved, every, image_size=size)
    assert v.status == "incomplete" and v.word == "INCOMPLETE" and not v.problems and v.wrong_image is None
    assert v.coverage["claimed_judged"] == 99 and v.coverage["claimed"] == 100
    assert "1 low-score claimed row(s) have no partner" in v.coverage["not_judged"][0]
    assert not v.accepted(["all"]) and vocabulary.exit_code(v.status, v.accepted(["all"])) == 3
    line = vocabulary.headline(v.status, False, v.signatures, coverage=v.coverage)
    assert line.startswith("INCOMPLETE: too little of the claim was judged") and "99 of 100 claimed" in line


def test_nothing_judged_is_never_agreement():
    """Every row of a no-threshold claim low and nowhere near a reference query: 0 judged ->
    INCOMPLETE, never AGREE or EXPLAINED."""
    every, size = synthetic_reference()
    lows = [dict(d, box={"xmin": 300 + k % 7, "ymin": 5, "xmax": 302 + k % 7, "ymax": 7}, score=0.01)
            for k, d in enumerate(every)]
    v = judge.judge(DETR, lows, [d for d in every if d["score"] < 0.5], image_size=size)
    assert v.status == "incomplete" and v.coverage["judged"] == 0 and v.coverage["claimed"] == 100


def test_empty_claim_against_an_empty_reference_agrees_and_says_so():
    every, size = synthetic_reference()
    v = judge.judge(DETR, [], [d for d in every if d["score"] < 0.5], image_size=size)
    assert v.status == "agree" and "both answers are empty" in v.coverage["text"]


def test_wrong_image_from_box_extent_whatever_the_threshold():
    """Boxes far outside the image are another image's, even when nothing else is judged (every
    claimed score low, the reference with nothing above the threshold): WRONG IMAGE?, never
    accepted."""
    every, size = synthetic_reference(width=512, height=512)
    low_ref = [dict(d, score=min(d["score"], 0.3)) for d in every]
    far = [dict(d, box={"xmin": 900.0 + k, "ymin": 1500.0, "xmax": 1191.0, "ymax": 1816.0}, score=1e-4)
           for k, d in enumerate(every)]
    for tol in (Tolerances(), Tolerances(threshold=0.0), Tolerances(threshold=1.0)):
        v = judge.judge(DETR, far, low_ref, tol, image_size=size)
        assert v.status == "disagree" and v.word == "WRONG IMAGE?", (tol, v.problems)
        assert "reach x=1191, y=1816" in v.wrong_image and "on a 512x512 image" in v.wrong_image
        assert not v.accepted(["all"]) and vocabulary.exit_code(v.status, True, v.wrong_image) == 1


def test_no_threshold_rows_are_judged_per_query_label_and_score(detr_outputs):
    """A claim with every query is judged row by row against the reference's per-query outputs: a
    row whose label flipped between two near-tied classes of a low query is paired by its box and
    passes; a confident query given another label fails."""
    every, size, outputs = detr_outputs
    probs, by_label = detection.class_probabilities(outputs, detection.read_reference(every))
    hosted = [dict(d) for d in every]  # DETR's own scores, every query
    # a low query whose second class is within score_atol of its first: claim the second
    ranked = np.sort(probs, axis=1)
    ties = [q for q in range(len(every)) if ranked[q, -1] - ranked[q, -2] <= Tolerances().score_atol
            and outputs["id2label"][int(np.argsort(probs[q])[-2])] != every[q]["label"]]
    assert ties, "the synthesized DETR should have a query with two near-tied classes"
    low = ties[0]
    second = int(np.argsort(probs[low])[-2])
    hosted[low] = dict(hosted[low], label=outputs["id2label"][second], score=float(probs[low, second]))
    v = judge.judge(DETR, hosted, every, image_size=size, outputs=outputs)
    assert v.status == "explained" and v.coverage["claimed_judged"] == len(every), (v.problems, v.coverage)
    row = next(r for r in v.rows if r["claimed_index"] == low)
    assert row["status"] == "match" and row["reference_label"] != row["label"] and row["ok"]
    # a confident query under a label the reference gives (nearly) no probability
    top = int(np.argmax([d["score"] for d in every]))
    worst = int(np.argmin(probs[top]))
    wrong = [dict(d) for d in every]
    wrong[top] = dict(wrong[top], label=outputs["id2label"][worst])
    v = judge.judge(DETR, wrong, every, image_size=size, outputs=outputs)
    assert v.status == "disagree" and any("another label" in p for p in v.problems), v.problems
