"""Judge someone else's answer: compare a claimed response with refimpl's reference for the same image.

    >>> from refimpl.audit import judge
    >>> reference, size = judge.reference("@cf/facebook/detr-resnet-50", image_bytes)
    >>> verdict = judge.judge("@cf/facebook/detr-resnet-50", claimed, reference, image_size=size)
    >>> verdict.status, verdict.signatures, verdict.problems
    ('explained', ['no_threshold', 'integer_rounding', 'uint16_wraparound'], [])

`claimed` is what an endpoint returned: a bare result list, the REST envelope
`{"result": [...], "success": true, "errors": [], "messages": []}`, or the seeds' Worker example
`{"inputs": ..., "response": [...]}`. `reference` is refimpl's own result for the same image:

* classification: `[{"label", "score"}]`, best first, as many items as the claim has (see
  `reference()`, which asks for `top_k=len(claimed)`);
* detection: refimpl's reference-shape detections (float pixel boxes, query order). Pass *every
  query* (`threshold=None`, what `reference()` returns) so that a claim without a threshold or
  with a different score scale can be matched query by query; a list already thresholded at
  `Tolerances.threshold` also works, with less to match against.

The verdict (`Verdict`) has a `status`:

* `agree`: schema-valid, same answer within the tolerances, nothing to explain;
* `explained`: every difference is one of the named `signatures` below (a known, systematic
  reshaping of the same answer), nothing else is wrong;
* `disagree`: at least one entry in `problems`, or the claim looks like another image's
  (`wrong_image`);
* `incomplete`: nothing contradicts the reference but too little of the claim was judged
  (`coverage`: the rule is in `coverage.py`; a claimed row the judge could not pair with anything
  in the reference is not judged, and one such row is enough).

`agree` is `status == "agree"`; `verdict.accepted(accept)` is True when the status is `agree`, or
`explained` and every signature is in `accept` (check-endpoint's `--accept`); never for
`incomplete` or a wrong image. `verdict.coverage` says how many claimed rows and reference
detections were judged of how many, and what was not judged and why.

What is compared (tolerances in `Tolerances`, defaults below):

* both tasks: the REST envelope (when given), the seed's output schema (a small hand-written
  validator, `validate()`, for the keywords the seeds use), every item has the fields the task
  needs, every number is finite;
* classification: same labels in the same order (a swap of two labels whose reference scores
  are within `score_atol` is a near tie: a note, not a problem), the same number of items, score
  differences matched by label;
* detection: claimed and reference detections are paired greedily by IoU among same-label pairs
  (pairs whose scores also agree first, then highest IoU first; IoU >= `match_iou`); for every
  pair: score difference, IoU, largest corner difference in pixels. Boxes agree when the IoU is
  at least `iou_min` and every corner is within `corner_px`. A reference detection above `threshold` with no partner is *missing*;
  a claimed detection above `threshold` with no partner is *extra*. IoU and corners are judged
  on every pair (every query of a claim without a threshold has a box to compare). A claim
  without a threshold (`no_threshold`) is judged row by row against the reference's per-query
  outputs: a row left without a same-label partner is paired with the query whose box it
  overlaps (any label; with refimpl's logits, `outputs`), its label judged against that query's
  class probabilities (a near tie, within `score_atol`, is not a problem) and its score against
  that query's probability of the claimed label (or the named score formula).

Signatures (`SIGNATURES`: the diagnosis catalogue's "claim" entries, refimpl/diagnoses/claim_*.py,
where each recogniser is) are recognised before comparing, undone, and named:

* `no_threshold`: far more detections than the reference keeps (at least `no_threshold_extra`
  more than its detections above `threshold`) and scores at or below the threshold among them:
  every query was returned. Low-score claims are then not "extra".
* `integer_rounding`: every claimed corner is a whole number while the reference's are not: boxes
  were rounded (or truncated) to pixels. They are compared with the reference's corners rounded
  to integers, the corner tolerance grows by 1 px (truncation), and the IoU is not required (on
  a box a few pixels tall, a pixel of rounding costs more IoU than any useful `iou_min`).
* `uint16_wraparound`: corners in 32768..65535 (integers): negative coordinates stored as unsigned
  16-bit (65534 is -2); they are unwrapped (v - 65536) before comparing.
* `normalized_boxes`: every corner within [0, 1] (with a slack of 0.02): boxes relative to the
  image; they are scaled by `image_size` (required to compare them) before comparing.
* `monotonic_score_transform`: scores differ beyond `score_atol` but rank like the reference's
  (Spearman correlation over matched detections >= `rank_corr_min`, at least 3 pairs). The
  verdict reports the correlation and whether labels and boxes still agree after IoU matching.
* `score_formula`: (detection, with `outputs`) the claimed scores are what another post-processing
  formula computes from refimpl's own logits (`formulas.explain_scores`: a joint softmax, softmax
  over queries, sigmoid, a temperature, a label offset, ...); the formula is named, and the score
  differences are then not problems.
* `label_style`: labels differ only in style ("Persian cat" vs "PERSIAN CAT": the first
  comma-separated name, upper-cased, is the same).

The package: `verdict` (Tolerances, SIGNATURES, Verdict), `classification` and `detection` (one
judge per task), `scores` (matched scores and the monotonic transform, both tasks), `stats`
(box_iou, spearman), `report` (`format_verdict`: a verdict as text, for check-endpoint and audit).
"""

from refimpl import registry
from refimpl.serving import contract
from refimpl.serving.schemas import unwrap, validate

from .classification import judge_classification
from .coverage import settle
from .detection import judge_detection
from .report import format_verdict
from .stats import box_iou, spearman
from .verdict import ACCEPT_PRESETS, SIGNATURES, Tolerances, Verdict, json_default

__all__ = ["judge", "reference", "reference_outputs", "Verdict", "Tolerances", "SIGNATURES", "ACCEPT_PRESETS", "format_verdict",
           "box_iou", "spearman", "json_default", "validate", "unwrap"]


def judge(model, claimed, reference, tolerances=None, *, image_size=None, outputs=None):
    """Compare `claimed` with refimpl's `reference` for the same image -> Verdict.

    model: any name run() accepts. claimed: a result list or an envelope. reference: refimpl's
    result (see the module docstring). tolerances: a Tolerances (defaults if None).
    image_size: (width, height) of the image, needed to compare normalized boxes.
    outputs: detection only, optional: {"logits": (Q, C+1), "id2label": {i: name}}, refimpl's raw
      outputs for the image (`reference_outputs()`), with `reference` holding every query in query
      order. With them a changed score scale is explained by name (`formulas.explain_scores`,
      `verdict.score_formula`).
    """
    tol = tolerances or Tolerances()
    spec = registry.get(model)
    v = Verdict(model=spec.hosted_name, task=spec.task, status="disagree", agree=False, tolerances=tol)
    result, problems, notes = unwrap(claimed)
    v.problems += problems
    v.notes += notes
    if result is not None:
        v.schema_errors = validate(result, spec.output_schema)
        v.problems += [f"schema: {e}" for e in v.schema_errors]
        if isinstance(result, list):
            if v.task == "image-classification":
                judge_classification(v, result, reference, tol)
            else:
                judge_detection(v, result, reference, tol, image_size, outputs)
    elif not v.problems:
        v.problems.append("no result")
    return settle(v)


def reference_outputs(model, image, top_k=5, **loading):
    """Detection: refimpl's reference (every query) with its raw outputs, to explain a score
    transform -> (result, (width, height), {"logits": (Q, C+1), "id2label"}). Classification: as
    reference() with outputs None."""
    if registry.get(model).task == "image-classification":
        return (*reference(model, image, top_k, **loading), None)
    pixels = contract.decode_inputs(image)
    size = (int(pixels.shape[1]), int(pixels.shape[0]))
    loaded = contract.get_model(model, **loading)
    trace = {}
    result = loaded.predict(pixels, trace=trace, shape="reference", threshold=None)[0]
    return result, size, {"logits": trace["class_labels_classifier"][0], "id2label": loaded.checkpoint.id2label}


def reference(model, image, top_k=5, **loading):
    """refimpl's reference for judging: (result, (width, height)).

    image: encoded bytes (or anything run() accepts as inputs). Classification: top_k items (use
    the claim's length). Detection: every query (threshold None), reference shape.
    loading: weights=, revision=, dtype= as for run().
    """
    pixels = contract.decode_inputs(image)
    size = (int(pixels.shape[1]), int(pixels.shape[0]))
    loaded = contract.get_model(model, **loading)
    if registry.get(model).task == "image-classification":
        return loaded.predict(pixels, top_k=max(1, int(top_k)))[0], size
    return loaded.predict(pixels, shape="reference", threshold=None)[0], size
