"""Audit answers someone received from a hosted model: does the reference agree?

    >>> from refimpl.audit import audit, audit_dir
    >>> result = audit("photo.jpg", "response.json", model="resnet-50")
    >>> result.status, result.exit_code          # ("agree", 0)
    >>> summary = audit_dir("photos/", model="detr-resnet-50")   # photos/NAME.json beside NAME.jpg

The comparison itself is `refimpl.judge` (the same engine as `refimpl check-endpoint`): the claimed
response may be the bare output list, the REST envelope `{"result", "success", "errors",
"messages"}` or the seeds' Worker example `{"inputs", "response"}`; classification is judged on
labels and their order and score differences, detection on IoU-matched boxes (IoU and corner
differences per detection, missing and extra detections); the hosted API's known signatures (no
threshold, integer rounding, uint16 wrap-around, normalized boxes, a different score transform,
label style) are recognised and named. Tolerances: `refimpl.judge.Tolerances` (documented
defaults: score 0.01, IoU 0.9, corners 2 px, pairing IoU 0.5, threshold 0.5).

Verdicts (`AuditResult.status`) and exit codes:

    agree       0  the reference gives the same answer within the tolerances
    explained   0 if every signature is in `accept`, else 1: the same answer, systematically reshaped
    disagree    1  labels, order, scores or boxes differ beyond the tolerances (or the claimed
                   response is an error while the reference answers)
    malformed   3  the claimed response is not JSON, not a result list or envelope, or breaks the
                   output schema: there is nothing to compare
    no-claim    0  (audit_dir only) an image without NAME.json: the reference output is recorded
    error       2  (audit_dir only) the image could not be audited (unreadable file, ...)

An image refimpl itself refuses (not an image, truncated...) agrees with a claimed error envelope
and disagrees with a claimed result.
"""

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, contract
from . import judge as judging
from .errors import RefimplError, WeightsError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
EXIT_CODES = {"agree": 0, "no-claim": 0, "explained": 1, "disagree": 1, "error": 2, "malformed": 3}


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
    def exit_code(self):
        if self.status == "explained":
            return 0 if self.accepted else 1
        return EXIT_CODES[self.status]

    def to_dict(self):
        v = self.verdict.to_dict() if self.verdict else None
        return {
            "image": self.image, "model": self.model, "status": self.status, "accepted": self.accepted,
            "exit_code": self.exit_code, "claimed": self.claimed, "input_sha256": self.input_sha256,
            "claimed_sha256": self.claimed_sha256,
            "signatures": v["signatures"] if v else [],
            "problems": self.problems + [p for p in (v["problems"] if v else []) if p not in self.problems],
            "notes": v["notes"] if v else [], "stats": v["stats"] if v else {},
            "reference": self.reference, "verdict": v, "refimpl_version": __version__,
        }


def _sha(data):
    return hashlib.sha256(data).hexdigest()


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
        return json.loads(data.decode("utf-8")), origin, _sha(data), None
    except (UnicodeDecodeError, ValueError) as e:
        return None, origin, _sha(data), f"the claimed response is not JSON: {e}"


def _malformed(obj, verdict):
    """Reasons the claimed response is malformed (nothing to compare), else []."""
    result, problems, _ = judging.unwrap(obj)
    if result is None:
        return [p for p in problems if "reported failure" not in p]
    reasons = [p for p in problems if p.startswith("envelope:")]
    if verdict is not None:
        reasons += [f"schema: {e}" for e in verdict.schema_errors]
    return reasons


def audit(image, claimed, model="resnet-50", tolerances=None, accept=(), weights=None, revision="main",
          dtype="float32"):
    """Judge one claimed response for one image -> AuditResult.

    image: a path or the encoded bytes. claimed: a path to a JSON file, JSON text, or the parsed
    response. accept: signature names (or the presets "hosted", "all") to count as agreement.
    tolerances: a judge.Tolerances (defaults if None)."""
    name = _hosted(model)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data, label = bytes(image), "<bytes>"
    else:
        data, label = Path(image).read_bytes(), str(image)
    obj, origin, claimed_sha, problem = read_claimed(claimed)
    result = AuditResult(label, name, "malformed", False, claimed=origin, input_sha256=_sha(data),
                         claimed_sha256=claimed_sha)
    payload = None if problem else judging.unwrap(obj)[0]
    # as many classes as the claim has (as check-endpoint does); 5, the hosted default, when the
    # claim cannot be read
    valid = isinstance(payload, list) and payload and not judging.validate(payload, contract.OUTPUT_SCHEMAS[name])
    top_k = len(payload) if valid else 5
    loading = {"weights": weights, "revision": revision, "dtype": dtype}
    try:
        reference, size = judging.reference(name, data, top_k=top_k, **loading)
    except RefimplError as e:  # refimpl refuses the image itself
        if problem:
            result.problems += [problem, f"refimpl refuses this image too: {e}"]
            return result
        return _refused(result, obj, e, tolerances)
    if problem:  # nothing to compare; the reference is still recorded
        result.problems.append(problem)
        result.reference = _contract_output(name, reference, tolerances or judging.Tolerances())
        return result
    verdict = judging.judge(name, obj, reference, tolerances, image_size=size)
    result.verdict = verdict
    result.reference = _contract_output(name, reference, verdict.tolerances)
    reasons = _malformed(obj, verdict)
    if reasons:
        result.problems += reasons
        return result
    result.status = verdict.status
    result.accepted = verdict.accepted(accept)
    return result


def _hosted(model):
    from .trace import HOSTED, model_id

    return HOSTED[model_id(model)]


def _contract_output(name, reference, tol):
    """What refimpl's own contract output would be (the detections above the threshold)."""
    if contract.task(name) == "object-detection":
        return [d for d in reference if d["score"] > tol.threshold]
    return reference


def _refused(result, obj, error, tolerances):
    ours = f"refimpl refuses this image: HTTP {error.status}, code {error.code}: {error}"
    payload, problems, _ = judging.unwrap(obj)
    tol = tolerances or judging.Tolerances()
    v = judging.Verdict(model=result.model, task=contract.task(result.model), status="disagree", agree=False,
                        tolerances=tol)
    if payload is None and any("reported failure" in p for p in problems):
        v.status, v.agree = "agree", True
        v.notes += [ours, "the claimed response is an error too: " + problems[-1]]
    else:
        v.problems += [ours, "but the claimed response has a result"]
    result.verdict, result.status, result.accepted = v, v.status, v.agree
    return result


# --- the report -------------------------------------------------------------------------------------

HEADLINES = {
    "agree": "AGREE: the reference gives the same answer within the tolerances",
    "explained": "EXPLAINED: the same answer, reshaped by the named signature(s)",
    "disagree": "DISAGREE: the reference gives a different answer",
    "malformed": "MALFORMED: the claimed response cannot be compared",
    "no-claim": "NO CLAIM: reference output recorded",
    "error": "ERROR: the image could not be audited",
}


def format_result(result, all_rows=False):
    from .endpoint_check import Exchange, ImageCheck, format_check

    lines = [f"audit {result.image} against {result.model} (claimed: {result.claimed})"]
    if result.verdict is not None:
        body = format_check(ImageCheck(result.image, Exchange(200), result.verdict, result.accepted), all_rows)
        lines += body.splitlines()[1:]
    shown = set(result.verdict.problems) if result.verdict is not None else set()
    lines += [f"  problem: {p}" for p in result.problems if p not in shown]
    word = HEADLINES[result.status]
    if result.status == "explained":
        word += " (accepted)" if result.accepted else " (not accepted: pass --accept SIGNATURE or --accept hosted)"
    lines.append(f"verdict: {word}")
    return "\n".join(lines)


# --- a folder -----------------------------------------------------------------------------------------

def find_images(folder):
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_records(path):
    """Complete JSONL records of an earlier run. A last line cut short by an interruption is
    dropped from the file (truncated), so the next record starts on a fresh line."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    records, good_end, pos = [], 0, 0
    for line in data.splitlines(keepends=True):
        pos += len(line)
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if isinstance(rec, dict) and "image" in rec and line.endswith(b"\n"):
            records.append(rec)
            good_end = pos
    if good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return records


class Progress:
    """A plain-text progress bar on stderr: redrawn in place on a terminal, one line per image
    otherwise (logs, CI)."""

    def __init__(self, total, stream=None, width=30):
        self.total, self.width, self.stream = total, width, stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()

    def update(self, done, label):
        frac = done / self.total if self.total else 1.0
        bar = "#" * int(self.width * frac) + "." * (self.width - int(self.width * frac))
        elapsed = time.monotonic() - self.start
        text = f"[{bar}] {done}/{self.total} {elapsed:5.1f}s {label}"
        if self.tty:
            self.stream.write("\r" + text[:120].ljust(120))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def audit_dir(folder, model="resnet-50", out=None, tolerances=None, accept=(), restart=False, limit=None,
              progress=True, weights=None, revision="main", dtype="float32"):
    """Audit every image of `folder` against its claimed response `NAME.json` (when present).

    Results go to `out` (default FOLDER/audit.jsonl), one JSON line per image, written as each
    image is done; a rerun skips the images already in the file (resume), `restart=True` starts
    over. `limit`: audit at most this many new images in this run. Returns the summary (dict) of
    every record in `out`."""
    folder = Path(folder)
    name = _hosted(model)
    out = Path(out) if out else folder / "audit.jsonl"
    images = find_images(folder)
    if restart and out.exists():
        out.unlink()
    records = read_records(out)
    others = sorted({r.get("model") for r in records} - {name})
    if others:
        raise ValueError(f"{out} holds results for {', '.join(map(str, others))}, not {name}: "
                         "pass another --out or --restart")
    done = {r["image"] for r in records}
    todo = [p for p in images if p.name not in done]
    if limit is not None:
        todo = todo[:limit]
    bar = Progress(len(todo), progress if hasattr(progress, "write") else None) if progress else None
    loading = {"weights": weights, "revision": revision, "dtype": dtype}
    try:
        with open(out, "a", encoding="utf-8") as f:
            for i, image in enumerate(todo):
                rec = _audit_one(image, name, tolerances, accept, loading)
                f.write(json.dumps(rec, sort_keys=True, allow_nan=False, default=judging._json_default) + "\n")
                f.flush()
                records.append(rec)
                if bar:
                    bar.update(i + 1, f"{image.name}: {rec['status']}")
    finally:
        if bar:
            bar.close()
    return summarize(records, images, folder, out, len(todo))


def _audit_one(image, name, tolerances, accept, loading):
    claim = image.with_suffix(".json")
    try:
        if claim.is_file():
            rec = audit(image, claim, name, tolerances, accept, **loading).to_dict()
            rec["claimed"] = claim.name
        else:
            data = image.read_bytes()
            try:
                reference, _ = judging.reference(name, data, top_k=5, **loading)
                reference = _contract_output(name, reference, tolerances or judging.Tolerances())
                problems = []
            except RefimplError as e:
                reference, problems = None, [f"refimpl refuses this image: {e}"]
            rec = AuditResult(image.name, name, "no-claim", True, reference=reference, input_sha256=_sha(data),
                              problems=problems).to_dict()
    except WeightsError:  # no model, no audit: stop the run (it resumes once the weights are there)
        raise
    except (OSError, RefimplError) as e:  # this image only: an unreadable file, ...
        rec = AuditResult(image.name, name, "error", False, problems=[f"{type(e).__name__}: {e}"]).to_dict()
    rec["image"] = image.name
    return rec


def summarize(records, images, folder, out, audited_now):
    by_status = {}
    for r in records:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    names = {p.name for p in images}
    stems = {p.stem for p in images}
    bad = [r for r in records if r["exit_code"] != 0]
    orphans = sorted(p.name for p in Path(folder).glob("*.json") if p.stem not in stems)
    return {
        "folder": str(folder), "out": str(out), "images": len(images), "recorded": len(records),
        "audited_now": audited_now, "remaining": len(names - {r["image"] for r in records}),
        "by_status": dict(sorted(by_status.items())),
        "not_agreeing": [{"image": r["image"], "status": r["status"],
                          "first_problem": (r["problems"] or [None])[0]} for r in bad],
        "claims_without_image": orphans,
        "ok": not bad,
    }


def format_summary(s):
    lines = [f"audit-dir {s['folder']}: {s['recorded']} of {s['images']} image(s) recorded in {s['out']} "
             f"({s['audited_now']} audited in this run, {s['remaining']} remaining)"]
    lines.append("  " + ", ".join(f"{k}: {v}" for k, v in s["by_status"].items()) if s["by_status"] else "  nothing audited")
    for r in s["not_agreeing"]:
        lines.append(f"  {r['status']:<10} {r['image']}: {r['first_problem'] or ''}")
    if s["claims_without_image"]:
        lines.append(f"  claims without an image (ignored): {', '.join(s['claims_without_image'])}")
    verdict = "every recorded claim agrees with the reference" if s["ok"] else f"{len(s['not_agreeing'])} image(s) do not agree"
    if s["remaining"]:
        verdict += f"; {s['remaining']} image(s) not audited yet (rerun to continue)"
    lines.append("verdict: " + verdict)
    return "\n".join(lines)
