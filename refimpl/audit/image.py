"""Audit answers someone received from a hosted model: does the reference agree?

    >>> from refimpl.audit.image import audit
    >>> result = audit("photo.jpg", "response.json", model="resnet-50")
    >>> result.status, result.exit_code          # ("agree", 0)
    >>> # a folder of images and claims: refimpl.audit.folder

The comparison itself is `refimpl.audit.judge` (the same engine as `refimpl check-endpoint`): the claimed
response may be the bare output list, the REST envelope `{"result", "success", "errors",
"messages"}` or the seeds' Worker example `{"inputs", "response"}`; classification is judged on
labels and their order and score differences, detection on IoU-matched boxes (IoU and corner
differences per detection, missing and extra detections); the hosted API's known signatures (no
threshold, integer rounding, uint16 wrap-around, normalized boxes, a different score transform,
label style) are recognised and named. Tolerances: `refimpl.audit.judge.Tolerances` (documented
defaults: score 0.01, IoU 0.9, corners 2 px, pairing IoU 0.5, threshold 0.5).

Verdicts (`AuditResult.status`; `AuditResult.word` in the shared vocabulary of
`refimpl.audit.judge.vocabulary`) and exit codes:

    agree       0  the reference gives the same answer within the tolerances
    explained   0 if every signature is in `accept`, else 1: the same answer, systematically reshaped
    disagree    1  labels, order, scores or boxes differ beyond the tolerances (or the claimed
                   response is an error while the reference answers); said WRONG IMAGE? when
                   the claim looks like another image's (`AuditResult.wrong_image` says why);
                   never accepted
    incomplete  3  nothing contradicts the reference, but a claimed row could not be judged (the
                   coverage says how many were, of how many, and why not; refimpl.audit.judge.
                   coverage has the rule); never accepted
    malformed   3  the claimed response is not JSON, not a result list or envelope, or breaks the
                   output schema: there is nothing to compare
    no-claim    0  (audit_dir only) an image without NAME.json: the reference output is recorded
    error       2  (audit_dir only) the image could not be audited (unreadable file, ...)

An image refimpl itself refuses (not an image, truncated...) agrees with a claimed error envelope
and disagrees with a claimed result.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from refimpl import __version__, registry
from refimpl.audit import judge as judging
from refimpl.audit.judge import vocabulary
from refimpl.audit.judge.coverage import refusal_coverage
from refimpl.errors import ImageDecodeError, InvalidInputError
from refimpl.provenance import sha256_bytes
from refimpl.serving.schemas import unwrap, validate

EXIT_CODES = vocabulary.EXIT_CODES


@dataclass
class AuditResult:
    image: str
    model: str  # the hosted name
    status: str
    accepted: bool
    verdict: judging.Verdict | None = None
    reference: list | None = None  # refimpl's output for the image (the contract output)
    claimed: str | None = None  # where the claimed response came from
    input_sha256: str | None = None
    claimed_sha256: str | None = None
    problems: list = field(default_factory=list)  # malformed/error reasons (else the verdict's)

    @property
    def wrong_image(self):
        """Why the claim looks like another image's answer, or None."""
        return self.verdict.wrong_image if self.verdict is not None and self.status == "disagree" else None

    @property
    def word(self):
        """AGREE, EXPLAINED, DISAGREE, WRONG IMAGE?, INCOMPLETE, MALFORMED (judge.vocabulary)."""
        return vocabulary.word(self.status, self.wrong_image)

    @property
    def exit_code(self):
        return vocabulary.exit_code(self.status, self.accepted, self.wrong_image)

    def to_dict(self):
        v = self.verdict.to_dict() if self.verdict else None
        return {
            "image": self.image, "model": self.model, "status": self.status, "word": self.word,
            "wrong_image": self.wrong_image, "accepted": self.accepted,
            "exit_code": self.exit_code, "claimed": self.claimed, "input_sha256": self.input_sha256,
            "claimed_sha256": self.claimed_sha256,
            "signatures": v["signatures"] if v else [],
            "problems": self.problems + [p for p in (v["problems"] if v else []) if p not in self.problems],
            "notes": v["notes"] if v else [], "stats": v["stats"] if v else {},
            "coverage": v["coverage"] if v and v["coverage"] else {"text": "nothing was compared"},
            "reference": self.reference, "verdict": v, "refimpl_version": __version__,
        }


def read_claimed(claimed):
    """A claimed response (a path to a JSON file, JSON text or bytes, or the parsed object) ->
    (parsed object or None, where it came from, sha256 of its bytes or None, problem or None)."""
    if isinstance(claimed, (dict, list)):
        return claimed, "<object>", None, None
    if isinstance(claimed, os.PathLike) or (isinstance(claimed, str) and not claimed.lstrip().startswith(("{", "["))):
        path = Path(claimed)
        data = path.read_bytes()  # OSError: the caller's mistake, not a malformed claim
        origin = str(path)
    elif isinstance(claimed, (bytes, bytearray, str)):
        data = claimed.encode() if isinstance(claimed, str) else bytes(claimed)
        origin = "<text>"
    else:
        raise TypeError(f"claimed must be a path, JSON text or a parsed response, got {type(claimed).__name__}")
    try:
        return json.loads(data.decode("utf-8")), origin, sha256_bytes(data), None
    except (UnicodeDecodeError, ValueError) as e:
        return None, origin, sha256_bytes(data), f"the claimed response is not JSON: {e}"


def _malformed(obj, verdict):
    """Reasons the claimed response is malformed (nothing to compare), else []."""
    result, problems, _ = unwrap(obj)
    if result is None:
        return [p for p in problems if "reported failure" not in p]
    reasons = [p for p in problems if p.startswith("envelope:")]
    if verdict is not None:
        reasons += [f"schema: {e}" for e in verdict.schema_errors]
    return reasons


def audit(image, claimed, model="resnet-50", tolerances=None, accept=(), weights=None, revision=None,
          dtype="float32", path="fast"):
    """Judge one claimed response for one image -> AuditResult.

    image: a path or the encoded bytes. claimed: a path to a JSON file, JSON text, or the parsed
    response. accept: signature names (or the presets "hosted", "all") to count as agreement.
    tolerances: a judge.Tolerances (defaults if None)."""
    spec = registry.get(model)
    name = spec.hosted_name
    if isinstance(image, (bytes, bytearray, memoryview)):
        data, label = bytes(image), "<bytes>"
    else:
        data, label = Path(image).read_bytes(), str(image)
    obj, origin, claimed_sha, problem = read_claimed(claimed)
    result = AuditResult(label, name, "malformed", False, claimed=origin, input_sha256=sha256_bytes(data),
                         claimed_sha256=claimed_sha)
    payload = None if problem else unwrap(obj)[0]
    # as many classes as the claim has (as check-endpoint does); 5, the hosted default, when the
    # claim cannot be read
    valid = isinstance(payload, list) and payload and not validate(payload, spec.output_schema)
    top_k = len(payload) if valid else 5
    loading = {"weights": weights, "revision": revision, "dtype": dtype, "path": path}
    try:
        reference, size, outputs = judging.reference_outputs(name, data, top_k=top_k, **loading)
    except (ImageDecodeError, InvalidInputError) as e:  # refimpl refuses the image itself
        # (any other error - no weights, a bad preprocessor config - is the caller's: exit 2, never
        # a verdict about the claim)
        if problem:
            result.problems += [problem, f"refimpl refuses this image too: {e}"]
            return result
        return _refused(result, obj, e, tolerances)
    if problem:  # nothing to compare; the reference is still recorded
        result.problems.append(problem)
        result.reference = _contract_output(name, reference, tolerances or judging.Tolerances())
        return result
    verdict = judging.judge(name, obj, reference, tolerances, image_size=size, outputs=outputs)
    result.verdict = verdict
    result.reference = _contract_output(name, reference, verdict.tolerances)
    reasons = _malformed(obj, verdict)
    if reasons:
        result.problems += reasons
        return result
    result.status = verdict.status
    result.accepted = verdict.accepted(accept)
    return result


def _contract_output(name, reference, tol):
    """What refimpl's own contract output would be (the detections above the threshold)."""
    if registry.get(name).task == "object-detection":
        return [d for d in reference if d["score"] > tol.threshold]
    return reference


def _refused(result, obj, error, tolerances):
    ours = f"refimpl refuses this image: HTTP {error.status}, code {error.code}: {error}"
    payload, problems, _ = unwrap(obj)
    tol = tolerances or judging.Tolerances()
    v = judging.Verdict(model=result.model, task=registry.get(result.model).task, status="disagree", agree=False,
                        tolerances=tol)
    if payload is None and any("reported failure" in p for p in problems):
        v.status, v.agree = "agree", True
        v.notes += [ours, "the claimed response is an error too: " + problems[-1]]
        refusal_coverage(v)
    else:
        v.problems += [ours, "but the claimed response has a result"]
    result.verdict, result.status, result.accepted = v, v.status, v.agree
    return result


# --- the report -------------------------------------------------------------------------------------

HEADLINES = {k: f"{vocabulary.WORDS[k]}: {m}" for k, m in vocabulary.MEANINGS.items()}


def format_result(result, all_rows=False):
    """The audit of one image as text: the verdict's rows, signatures, problems and notes, the
    malformed/error reasons the verdict does not already show, and the headline."""
    lines = [f"audit {result.image} against {result.model} (claimed: {result.claimed})"]
    if result.verdict is not None:
        lines += judging.format_verdict(result.verdict, all_rows)
    shown = set(result.verdict.problems) if result.verdict is not None else set()
    lines += [f"  problem: {p}" for p in result.problems if p not in shown]
    signatures = result.verdict.signatures if result.verdict is not None else ()
    coverage = result.verdict.coverage if result.verdict is not None else None
    lines.append("verdict: " + vocabulary.headline(result.status, result.accepted, signatures, result.wrong_image,
                                                   coverage))
    return "\n".join(lines)
