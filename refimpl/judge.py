"""Judge someone else's answer: compare a claimed response with refimpl's reference for the same image.

    >>> from refimpl import judge
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
* `disagree`: at least one entry in `problems`.

`agree` is `status == "agree"`; `verdict.accepted(accept)` is True when the status is `agree`, or
`explained` and every signature is in `accept` (check-endpoint's `--accept`).

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
  on pairs where either side is above the threshold; low-score pairs only feed the statistics
  and the rank correlation.

Signatures (`SIGNATURES`) are recognised before comparing, undone, and named:

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
* `label_style`: labels differ only in style ("Persian cat" vs "PERSIAN CAT": the first
  comma-separated name, upper-cased, is the same).
"""

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from . import contract
from .postprocess import seed_label

# --- tolerances ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerances:
    """How far a claimed answer may be from the reference and still agree.

    The defaults accept another correct float32 implementation that decodes and resizes images
    the same way (those differ from refimpl by about 1e-5 in score and far below a pixel), with
    room for a different BLAS or float64; a different image decoder or resize implementation can
    need looser values.
    """

    score_atol: float = 0.01  # max |claimed - reference| score, per matched item
    iou_min: float = 0.9  # min IoU of a matched detection above the threshold
    corner_px: float = 2.0  # max |claimed - reference| of any box corner, pixels (+1 when rounded)
    match_iou: float = 0.5  # min IoU for two same-label detections to be paired
    threshold: float = 0.5  # the reference's detection threshold (transformers' default)
    rank_corr_min: float = 0.9  # min Spearman correlation to call a score change monotonic
    no_threshold_extra: int = 10  # this many more detections than ours above threshold = no threshold

    def __post_init__(self):
        for name in ("score_atol", "corner_px", "no_threshold_extra"):
            if getattr(self, name) < 0:
                raise ValueError(f"tolerance {name} must be >= 0, got {getattr(self, name)}")
        for name in ("iou_min", "match_iou", "threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"tolerance {name} must be in [0, 1], got {getattr(self, name)}")
        if not -1 <= self.rank_corr_min <= 1:
            raise ValueError(f"tolerance rank_corr_min must be in [-1, 1], got {self.rank_corr_min}")


SIGNATURES = {
    "no_threshold": "every query returned, no score threshold applied",
    "integer_rounding": "box corners rounded (or truncated) to integer pixels",
    "uint16_wraparound": "negative coordinates wrapped to unsigned 16-bit (65534 = -2)",
    "normalized_boxes": "boxes relative to the image size (all corners within [0, 1]), not pixels",
    "monotonic_score_transform": "scores differ from the reference's but rank the same way",
    "label_style": "labels differ only in style (first comma-separated name, upper-cased)",
}

# Presets for check-endpoint's --accept.
ACCEPT_PRESETS = {
    "hosted": ("no_threshold", "integer_rounding", "uint16_wraparound"),
    "all": tuple(SIGNATURES),
}

# --- the verdict --------------------------------------------------------------------------------


@dataclass
class Verdict:
    """The judgement of one claimed answer.

    rows: one dict per compared item. Classification rows: rank, reference_label,
      reference_score, claimed_label, claimed_score, score_diff, ok. Detection rows: status
      ("match", "missing", "extra", "low": a low-score pair or an unmatched low-score claim),
      reference_index, claimed_index, label, reference_score, claimed_score, score_diff, iou,
      corner_px, ok.
    signatures: names from SIGNATURES recognised in the claim; `details` explains each.
    problems: what disagrees beyond the tolerances (empty unless status is "disagree").
    notes: observations that are not problems (near ties, ordering, excused items).
    stats: counts and extremes (n_claimed, n_reference, matched, missing, extra, max_score_diff,
      min_iou, max_corner_px, spearman, labels_agree, boxes_agree, ...).
    """

    model: str
    task: str
    status: str
    agree: bool
    rows: list = field(default_factory=list)
    signatures: list = field(default_factory=list)
    details: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    schema_errors: list = field(default_factory=list)
    tolerances: Tolerances = field(default_factory=Tolerances)

    def accepted(self, accept=()):
        """True if the claim agrees, or is explained entirely by signatures listed in `accept`
        (names, or the presets "hosted" and "all")."""
        if self.status == "agree":
            return True
        allowed = set()
        for name in accept:
            allowed.update(ACCEPT_PRESETS.get(name, (name,)))
        return self.status == "explained" and set(self.signatures) <= allowed

    def to_dict(self):
        return asdict(self)

    def to_json(self, indent=None):
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, default=_json_default)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


# --- a small JSON-schema validator (the keywords the seeds use) ---------------------------------

_JSON_TYPES = {dict: "object", list: "array", tuple: "array", str: "string", bool: "boolean", type(None): "null"}


def json_type(v):
    """The JSON type name of a Python value ("number" for int/float, not bool)."""
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float, np.integer, np.floating)):
        return "number"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "binary"
    return _JSON_TYPES.get(type(v), type(v).__name__)


def _has_type(v, t, schema):
    kind = json_type(v)
    if t == "number":
        return kind == "number"
    if t == "integer":
        return kind == "number" and math.isfinite(float(v)) and float(v).is_integer()
    if t == "string":  # Python bytes are the "binary string" the input schema allows
        return kind == "string" or (kind == "binary" and schema.get("format") == "binary")
    return kind == t


def validate(instance, schema, path="$"):
    """Validate `instance` against a JSON schema; return a list of messages ("$[0].score: ...").

    Supports what the seeds' schemas use -- type (number, integer, string with format binary
    accepting bytes, object, array, boolean, null), properties, items, oneOf -- plus required,
    additionalProperties: false, minimum, maximum and enum. Numbers must be finite (JSON has no
    NaN or Infinity). Description keywords are ignored.
    """
    if "oneOf" in schema:
        passing = [i for i, s in enumerate(schema["oneOf"]) if not validate(instance, s, path)]
        if len(passing) != 1:
            return [f"{path}: matches {len(passing)} of the {len(schema['oneOf'])} oneOf alternatives, expected 1"]
        return []
    errors = []
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_has_type(instance, x, schema) for x in types):
            return [f"{path}: expected {' or '.join(types)}, got {json_type(instance)}"]
    if json_type(instance) == "number":
        x = float(instance)
        if not math.isfinite(x):
            return [f"{path}: {x} is not a JSON number (NaN and infinities are not allowed)"]
        if "minimum" in schema and x < schema["minimum"]:
            errors.append(f"{path}: {instance} is below the minimum {schema['minimum']}")
        if "maximum" in schema and x > schema["maximum"]:
            errors.append(f"{path}: {instance} is above the maximum {schema['maximum']}")
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} is not one of {schema['enum']}")
    if isinstance(instance, dict):
        for name in schema.get("required", []):
            if name not in instance:
                errors.append(f"{path}: missing required property {name!r}")
        props = schema.get("properties", {})
        for name, sub in props.items():
            if name in instance:
                errors += validate(instance[name], sub, f"{path}.{name}")
        if schema.get("additionalProperties") is False:
            for name in instance:
                if name not in props:
                    errors.append(f"{path}: unexpected property {name!r}")
    if isinstance(instance, (list, tuple)) and "items" in schema:
        for i, item in enumerate(instance):
            errors += validate(item, schema["items"], f"{path}[{i}]")
    return errors


ENVELOPE_SCHEMA = {
    "type": "object",
    "required": ["result", "success", "errors", "messages"],
    "properties": {
        "success": {"type": "boolean"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
            },
        },
        "messages": {"type": "array"},
    },
}


def unwrap(claimed):
    """A claimed response -> (result or None, problems, notes). Accepts a bare result list, the
    REST envelope, or the seeds' Worker example {"inputs": ..., "response": [...]}."""
    if isinstance(claimed, (list, tuple)):
        return list(claimed), [], []
    if not isinstance(claimed, dict):
        return None, [f"response is {json_type(claimed)}, expected a result array or the REST envelope"], []
    if "response" in claimed and "result" not in claimed:
        return claimed["response"], [], ["response is the seeds' Worker example shape {inputs, response}"]
    if "result" not in claimed and "success" not in claimed:
        return None, ["response is an object that is neither a result array nor the REST envelope"], []
    problems = [f"envelope: {e}" for e in validate(claimed, ENVELOPE_SCHEMA)]
    if claimed.get("success") is not True or claimed.get("errors"):
        errs = claimed.get("errors") or []
        text = "; ".join(f"[{e.get('code')}] {e.get('message')}" if isinstance(e, dict) else str(e) for e in errs)
        problems.append(f"the endpoint reported failure (success={claimed.get('success')!r}): {text or 'no errors given'}")
        return None, problems, []
    return claimed.get("result"), problems, []


# --- the judge ----------------------------------------------------------------------------------


def judge(model, claimed, reference, tolerances=None, *, image_size=None):
    """Compare `claimed` with refimpl's `reference` for the same image -> Verdict.

    model: any name run() accepts. claimed: a result list or an envelope. reference: refimpl's
    result (see the module docstring). tolerances: a Tolerances (defaults if None).
    image_size: (width, height) of the image, needed to compare normalized boxes.
    """
    tol = tolerances or Tolerances()
    name = contract.hosted_name(model)
    v = Verdict(model=name, task=contract.task(model), status="disagree", agree=False, tolerances=tol)
    result, problems, notes = unwrap(claimed)
    v.problems += problems
    v.notes += notes
    if result is not None:
        v.schema_errors = validate(result, contract.OUTPUT_SCHEMAS[name])
        v.problems += [f"schema: {e}" for e in v.schema_errors]
        if isinstance(result, list):
            if v.task == "image-classification":
                _classification(v, result, reference, tol)
            else:
                _detection(v, result, reference, tol, image_size)
    elif not v.problems:
        v.problems.append("no result")
    v.status = "disagree" if v.problems else ("explained" if v.signatures else "agree")
    v.agree = v.status == "agree"
    return v


def reference(model, image, top_k=5, **loading):
    """refimpl's reference for judging: (result, (width, height)).

    image: encoded bytes (or anything run() accepts as inputs). Classification: top_k items (use
    the claim's length). Detection: every query (threshold None), reference shape.
    loading: weights=, revision=, dtype= as for run().
    """
    pixels = contract.decode_inputs(image)
    size = (int(pixels.shape[1]), int(pixels.shape[0]))
    loaded = contract.get_model(model, **loading)
    if contract.task(model) == "image-classification":
        return loaded(pixels, top_k=max(1, int(top_k))), size
    return contract.detect(loaded, pixels, shape="reference", threshold=None), size


def _signature(v, name, detail):
    if name not in v.signatures:
        v.signatures.append(name)
    v.details[name] = detail


def _number(x):
    return json_type(x) == "number" and math.isfinite(float(x))


# --- classification -----------------------------------------------------------------------------


def _classification(v, result, reference, tol):
    items = []
    for i, item in enumerate(result):
        if not isinstance(item, dict) or not isinstance(item.get("label"), str) or not _number(item.get("score")):
            v.problems.append(f"item {i} lacks a string label and a finite number score: {_short(item)}")
            continue
        items.append((item["label"], float(item["score"])))
    ref = [(r["label"], float(r["score"])) for r in reference]

    claimed_labels = [lab for lab, _ in items]
    ref_labels = [lab for lab, _ in ref]
    if claimed_labels != ref_labels:
        norm_c = [seed_label(x) for x in claimed_labels]
        norm_r = [seed_label(x) for x in ref_labels]
        same_after = sum(a == b for a, b in zip(norm_c, norm_r)) > sum(a == b for a, b in zip(claimed_labels, ref_labels))
        if same_after:
            _signature(v, "label_style", "labels differ only in style, e.g. "
                       f"{next(c for c, r in zip(claimed_labels, ref_labels) if c != r)!r}; compared as "
                       "first comma-separated name, upper-cased")
            claimed_labels = norm_c
            ref_labels = norm_r
    ref_score = dict(zip(ref_labels, (s for _, s in ref)))

    if len(items) != len(ref):
        v.problems.append(f"{len(items)} labels claimed, the reference has {len(ref)}")
    diffs, pairs, labels_agree = [], [], True
    for rank in range(max(len(items), len(ref))):
        c_label, c_score = (claimed_labels[rank], items[rank][1]) if rank < len(items) else (None, None)
        r_label, r_score = (ref_labels[rank], ref[rank][1]) if rank < len(ref) else (None, None)
        diff = None
        if c_label is not None and c_label in ref_score:
            diff = abs(c_score - ref_score[c_label])
            diffs.append(diff)
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
    v.stats.update(n_claimed=len(items), n_reference=len(ref), matched=len(diffs), labels_agree=labels_agree,
                   max_score_diff=max(diffs) if diffs else None)
    _judge_scores(v, pairs, tol, labels_agree, None)
    if len(items) != 5:
        v.notes.append(f"{len(items)} labels; the hosted API returns 5")


def _judge_scores(v, pairs, tol, labels_agree, boxes_agree):
    """Scores of matched items: within tolerance, a monotonic transform (signature), or a problem.
    Returns True if the scores are on the reference's scale."""
    if not pairs:
        return True
    c, r = np.array(pairs, dtype=np.float64).T
    worst = float(np.max(np.abs(c - r)))
    v.stats["max_score_diff"] = worst
    rho = spearman(c, r) if len(pairs) >= 3 else None
    v.stats["spearman"] = rho
    if worst <= tol.score_atol:
        return True
    if rho is not None and rho >= tol.rank_corr_min:
        agree = "yes" if labels_agree else "no"
        if boxes_agree is not None:
            agree = "yes" if labels_agree and boxes_agree else "no"
            what = "labels and boxes agree after IoU matching"
        else:
            what = "labels agree"
        _signature(v, "monotonic_score_transform",
                   f"scores differ by up to {worst:.3g} but rank like the reference's: Spearman rho = {rho:.4f} "
                   f"over {len(pairs)} matched items; {what}: {agree}")
        return False
    if rho is None:
        v.problems.append(f"scores differ by up to {worst:.3g} (tolerance {tol.score_atol}); too few matched "
                          f"items ({len(pairs)}) to test for a monotonic score transform")
    else:
        v.problems.append(f"scores differ by up to {worst:.3g} (tolerance {tol.score_atol}) and do not rank like "
                          f"the reference's (Spearman rho = {rho:.4f} < {tol.rank_corr_min})")
    return False


# --- detection ----------------------------------------------------------------------------------


def _detection(v, result, reference, tol, image_size):
    keep, boxes, scores, labels = [], [], [], []
    for i, item in enumerate(result):
        box = item.get("box") if isinstance(item, dict) else None
        if (not isinstance(item, dict) or not isinstance(item.get("label"), str) or not _number(item.get("score"))
                or not isinstance(box, dict) or not all(_number(box.get(k)) for k in contract.BOX_KEYS)):
            v.problems.append(f"item {i} lacks a string label, a finite score and a box of four finite "
                              f"numbers: {_short(item)}")
            continue
        keep.append(i)
        boxes.append([float(box[k]) for k in contract.BOX_KEYS])
        scores.append(float(item["score"]))
        labels.append(item["label"])
    C = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    cs = np.array(scores, dtype=np.float64)
    R = np.array([[float(d["box"][k]) for k in contract.BOX_KEYS] for d in reference], dtype=np.float64).reshape(-1, 4)
    rs = np.array([float(d["score"]) for d in reference], dtype=np.float64)
    rl = [d["label"] for d in reference]
    n, m = len(C), len(R)
    confident_ref = int(np.sum(rs > tol.threshold))
    v.stats.update(n_claimed=n, n_reference=m, n_reference_above_threshold=confident_ref)
    if n > 1 and np.all(np.diff(cs) <= 0) and not (m > 1 and np.all(np.diff(rs) <= 0)):
        v.notes.append("claimed detections are sorted by score (the reference keeps DETR's query order)")

    # Box signatures: undo them before comparing.
    corner_slack = 0.0
    if n:
        wrapped = (C >= 32768) & (C <= 65535) & (C == np.round(C))
        if image_size is not None and max(image_size) >= 32768:
            wrapped[:] = False
        if wrapped.any():
            examples = ", ".join(f"{int(x)} = {int(x) - 65536}" for x in np.unique(C[wrapped])[:4])
            _signature(v, "uint16_wraparound", f"{int(wrapped.sum())} corner(s) wrapped to unsigned 16-bit "
                       f"({examples}); unwrapped before comparing")
            C = np.where(wrapped, C - 65536, C)
        ref_whole = m > 0 and bool(np.all(R == np.round(R)))
        if np.all(C == np.round(C)) and not ref_whole and (np.abs(C) > 1).any():
            _signature(v, "integer_rounding", "every box corner is a whole number of pixels; compared with the "
                       "reference's corners rounded to integers, with 1 px more tolerance (truncation)")
            corner_slack = 1.0
            R = np.round(R)
        big_ref = (m > 0 and np.abs(R).max() > 1.5) or (image_size is not None and max(image_size) > 2)
        if np.all((C >= -0.02) & (C <= 1.02)) and big_ref:
            if image_size is None:
                _signature(v, "normalized_boxes", "every corner is within [0, 1]: boxes are relative to the image "
                           "size; image_size unknown, boxes not compared")
                v.problems.append("boxes are normalized (0..1) and no image_size was given: cannot compare boxes")
                return
            w, h = image_size
            _signature(v, "normalized_boxes", f"every corner is within [0, 1]: boxes are relative to the image "
                       f"size; scaled by {w}x{h} before comparing")
            C = C * np.array([w, h, w, h], dtype=np.float64)

    # Pair same-label detections greedily by IoU.
    iou = box_iou(C, R)
    same = np.array([[a == b for b in rl] for a in labels], dtype=bool).reshape(n, m)
    c_used, r_used, pairs = set(), set(), []
    close = np.abs(cs[:, None] - rs[None, :]) <= tol.score_atol
    # First the pairs whose scores also agree (so rounding cannot swap near-duplicate queries),
    # then the rest by IoU alone (a changed score scale).
    for allowed in (same & close & (iou >= tol.match_iou), same & (iou >= tol.match_iou)):
        cand = np.argwhere(allowed)
        order = np.argsort(-iou[cand[:, 0], cand[:, 1]], kind="stable") if len(cand) else []
        for k in order:
            i, j = (int(x) for x in cand[k])
            if i not in c_used and j not in r_used:
                c_used.add(i)
                r_used.add(j)
                pairs.append((i, j))

    # No threshold?
    low_claimed = int(np.sum(cs <= tol.threshold))
    if n >= confident_ref + tol.no_threshold_extra and low_claimed:
        _signature(v, "no_threshold", f"{n} detections claimed ({low_claimed} at or below {tol.threshold}, the "
                   f"lowest {cs.min():.3g}); the reference keeps {confident_ref} above {tol.threshold}")

    # Matched pairs. Boxes agree when every corner is within corner_px and the IoU is at least
    # iou_min; for integer boxes only the corners count (on a box a few pixels tall, rounding
    # alone moves the IoU far below any useful iou_min).
    iou_min = 0.0 if corner_slack else tol.iou_min
    corner_max = tol.corner_px + corner_slack

    def box_ok(i_o_u, corner):
        return i_o_u >= iou_min and corner <= corner_max

    ious, corners, conf_ious, conf_corners, score_pairs = [], [], [], [], []
    for i, j in sorted(pairs, key=lambda p: p[1]):
        corner = float(np.max(np.abs(C[i] - R[j])))
        confident = rs[j] > tol.threshold or cs[i] > tol.threshold
        ious.append(float(iou[i, j]))
        corners.append(corner)
        score_pairs.append((cs[i], rs[j]))
        ok = True
        if confident:
            conf_ious.append(float(iou[i, j]))
            conf_corners.append(corner)
            ok = box_ok(iou[i, j], corner)
        v.rows.append(_det_row("match" if confident else "low", j, keep[i], rl[j], rs[j], cs[i],
                               iou[i, j], corner, ok))
    bad = sum(not box_ok(a, b) for a, b in zip(conf_ious, conf_corners))
    boxes_ok = bad == 0
    if bad:
        v.problems.append(f"{bad} matched detection(s) have IoU < {iou_min:g} or a corner off by more than "
                          f"{corner_max:g} px (min IoU {min(conf_ious):.4f}, max corner "
                          f"difference {max(conf_corners):.3g} px)")

    # Unmatched detections.
    missing = [j for j in range(m) if j not in r_used and rs[j] > tol.threshold]
    near = [j for j in missing if rs[j] - tol.threshold <= tol.score_atol]
    for j in missing:
        v.rows.append(_det_row("missing", j, None, rl[j], rs[j], None, None, None, j in near))
    if near:
        v.notes.append(f"{len(near)} reference detection(s) within score_atol of the threshold are missing: excused")
    really_missing = [j for j in missing if j not in near]
    if really_missing:
        v.problems.append(f"{len(really_missing)} reference detection(s) missing: "
                          + ", ".join(f"{rl[j]} {rs[j]:.3f} at {_box_text(R[j])}" for j in really_missing[:5]))
    unmatched = [i for i in range(n) if i not in c_used]
    labels_agree = not really_missing

    scale_ok = _judge_scores(v, score_pairs, tol, labels_agree and boxes_ok, boxes_ok and not really_missing)
    extra, low_extra = [], []
    for i in unmatched:
        high = cs[i] > tol.threshold + (tol.score_atol if scale_ok else 0)
        (extra if high and scale_ok else low_extra).append(i)
        v.rows.append(_det_row("extra" if high and scale_ok else "low", None, keep[i], labels[i], None, cs[i],
                               None, None, not (high and scale_ok)))
    if extra:
        v.problems.append(f"{len(extra)} claimed detection(s) above {tol.threshold} not in the reference: "
                          + ", ".join(f"{labels[i]} {cs[i]:.3f} at {_box_text(C[i])}" for i in extra[:5]))
    if scale_ok and low_claimed and "no_threshold" not in v.signatures:
        v.problems.append(f"{low_claimed} claimed detection(s) score at or below the threshold {tol.threshold} "
                          "(a lower threshold than the reference's?)")
    elif low_extra:
        v.notes.append(f"{len(low_extra)} low-score claimed detection(s) have no same-label partner "
                       f"(IoU >= {tol.match_iou}) in the reference: not judged")
    v.stats.update(matched=len(pairs), missing=len(really_missing), extra=len(extra), unmatched_low=len(low_extra),
                   min_iou=min(conf_ious) if conf_ious else None,
                   max_corner_px=max(conf_corners) if conf_corners else None,
                   min_iou_all=min(ious) if ious else None, labels_agree=labels_agree,
                   boxes_agree=bool(boxes_ok and not really_missing))


def _det_row(status, ref_index, claimed_index, label, ref_score, claimed_score, iou, corner, ok):
    f = (lambda x: None if x is None else float(x))
    diff = None if ref_score is None or claimed_score is None else abs(float(claimed_score) - float(ref_score))
    return {"status": status, "reference_index": ref_index, "claimed_index": claimed_index, "label": label,
            "reference_score": f(ref_score), "claimed_score": f(claimed_score), "score_diff": diff,
            "iou": f(iou), "corner_px": f(corner), "ok": bool(ok)}


def _box_text(b):
    return "(" + ", ".join(f"{x:.1f}" for x in b) + ")"


def _short(x, n=80):
    text = repr(x)
    return text if len(text) <= n else text[: n - 3] + "..."


# --- geometry and statistics --------------------------------------------------------------------


def box_iou(a, b):
    """IoU of every box in a (n, 4) with every box in b (m, 4), corners (xmin, ymin, xmax, ymax)
    -> (n, m). Degenerate boxes (zero or negative area) have IoU 0."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _ranks(x):
    """Ranks 0..n-1, ties get their average rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x))
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return np.bincount(inverse, weights=ranks)[inverse] / counts[inverse]


def spearman(a, b):
    """Spearman rank correlation of two equal-length sequences (None if either is constant)."""
    ra, rb = _ranks(a), _ranks(b)
    if len(ra) < 2 or ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])
