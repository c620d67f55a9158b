"""Check any endpoint that implements the hosted API's contract against the local reference.

    >>> from refimpl.audit.endpoint import check_endpoint, format_report
    >>> report = check_endpoint("http://127.0.0.1:8787", "@cf/microsoft/resnet-50", ["examples/cat.png"])
    >>> print(format_report(report)); report.ok

For each image: POST its bytes to the endpoint (the raw body, like the seeds' `curl
--data-binary @image`; or `{"image": [...]}` with body="json"), compute refimpl's reference for
the same bytes, and judge the answer with `refimpl.audit.judge` (envelope, schema, labels, scores,
boxes, and the named hosted-API signatures). An image that refimpl itself refuses (not an image,
truncated, ...) agrees when the endpoint refuses it too, with the same HTTP status.

URL is the full route (`.../client/v4/accounts/ID/ai/run/@cf/microsoft/resnet-50`, which also
names the model), a prefix ending in `/ai/run` (the model is appended), or a bare origin
(`http://127.0.0.1:8787`, for `refimpl serve`: `/client/v4/accounts/local/ai/run/{model}` is
appended). A query string is kept (`?shape=hosted` for `refimpl serve`).

Only the standard library's urllib talks to the endpoint.
"""

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from refimpl import __version__, registry
from refimpl.serving import contract
from refimpl.serving.schemas import unwrap
from refimpl.audit import judge as judging
from refimpl.audit.judge import vocabulary
from refimpl.audit.judge.coverage import refusal_coverage
from refimpl.errors import ImageDecodeError, InvalidInputError

TOKEN_ENV = "REFIMPL_ENDPOINT_TOKEN"
BODY_FORMS = ("raw", "json")


def endpoint_url(url, model=None):
    """(full route URL, model) from a route, an `/ai/run` prefix or a bare origin."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"URL must start with http:// or https:// and name a host, got {url!r}")
    path = parts.path
    if "/ai/run/" in path and not path.endswith("/ai/run/"):
        named = unquote(path.split("/ai/run/", 1)[1])
        if model is None:
            model = named
        elif named.lower() in [n.lower() for n in registry.names()] and registry.get(named) is not registry.get(model):
            raise ValueError(f"the URL runs {named!r} but --model is {model!r}")
        return url, model
    if model is None:
        raise ValueError("--model is required unless the URL is the full .../ai/run/{model} route")
    registry.get(model)  # an unknown model is refused before anything is sent
    path = path.rstrip("/")
    if path.endswith("/ai/run"):
        path = f"{path}/{model}"
    elif path == "":
        path = f"/client/v4/accounts/local/ai/run/{model}"
    else:
        raise ValueError(f"cannot tell the route from {url!r}: give the full .../ai/run/{{model}} route, "
                         "a prefix ending in /ai/run, or the server's origin")
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")), model


@dataclass
class Exchange:
    """One HTTP request and its answer."""

    status: int | None  # None if no HTTP answer came back
    body: object = None  # the parsed JSON answer, or None
    text: str = ""  # the raw answer (first 500 characters) when it is not JSON
    ms: float = 0.0
    error: str | None = None  # a transport error (connection refused, timeout, ...)


def post(url, data, token=None, body="raw", timeout=120.0):
    """POST image bytes to `url` as a raw body or as {"image": [...]} JSON -> Exchange."""
    if body == "json":
        payload, ctype = json.dumps({"image": list(data)}).encode(), "application/json"
    elif body == "raw":
        payload, ctype = data, "application/octet-stream"
    else:
        raise ValueError(f"body must be one of {BODY_FORMS}, got {body!r}")
    headers = {"Content-Type": ctype, "User-Agent": f"refimpl-check-endpoint/{__version__}",
               "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return Exchange(None, ms=(time.perf_counter() - start) * 1000, error=f"{type(e).__name__}: {reason}")
    ms = (time.perf_counter() - start) * 1000
    try:
        return Exchange(status, json.loads(raw), ms=ms)
    except ValueError:
        return Exchange(status, None, text=raw[:500].decode("utf-8", "replace"), ms=ms)


@dataclass
class ImageCheck:
    """The check of one image."""

    image: str
    exchange: Exchange
    verdict: judging.Verdict
    accepted: bool

    def to_dict(self):
        ex = self.exchange
        return {"image": self.image, "http_status": ex.status, "ms": round(ex.ms, 1), "transport_error": ex.error,
                "accepted": self.accepted, "verdict": self.verdict.to_dict()}


@dataclass
class Report:
    url: str
    model: str
    accept: tuple = ()
    checks: list = field(default_factory=list)

    @property
    def ok(self):
        """True if every image's answer agrees (or is explained by accepted signatures)."""
        return bool(self.checks) and all(c.accepted for c in self.checks)

    @property
    def exit_code(self):
        """0 every answer accepted; 1 one disagrees (or is another image's, malformed, or explained
        by a signature not accepted); 3 none of those but one INCOMPLETE (too little judged)."""
        if self.ok:
            return 0
        if any(c.verdict.status != "incomplete" and not c.accepted for c in self.checks) or not self.checks:
            return 1
        return 3

    def to_dict(self):
        return {"url": self.url, "model": self.model, "accept": list(self.accept), "ok": self.ok,
                "exit_code": self.exit_code,
                "coverage": {"images": len(self.checks),
                             "claimed": sum(c.verdict.coverage.get("claimed", 0) for c in self.checks),
                             "claimed_judged": sum(c.verdict.coverage.get("claimed_judged", 0) for c in self.checks)},
                "images": len(self.checks), "accepted": sum(c.accepted for c in self.checks),
                "checks": [c.to_dict() for c in self.checks]}

    def to_json(self, indent=2):
        return json.dumps(self.to_dict(), indent=indent, default=judging.json_default)


def check_image(url, model, image, token=None, tolerances=None, accept=(), body="raw", timeout=120.0,
                **loading):
    """Send one image (a path) and judge the answer -> ImageCheck."""
    with open(image, "rb") as f:
        data = f.read()
    exchange = post(url, data, token, body, timeout)
    if exchange.error is not None:
        verdict = _failed(model, [f"no answer from the endpoint: {exchange.error}"], tolerances)
        return ImageCheck(str(image), exchange, verdict, False)
    if exchange.body is None:
        verdict = _failed(model, [f"HTTP {exchange.status}: the answer is not JSON: {exchange.text[:200]!r}"],
                          tolerances)
        return ImageCheck(str(image), exchange, verdict, False)
    result, _, _ = unwrap(exchange.body)
    try:
        if isinstance(result, list):
            top_k = len(result) or 5
            reference, size, outputs = judging.reference_outputs(model, data, top_k=top_k, **loading)
        else:  # nothing to compare with: only decode, to know whether refimpl refuses the image too
            pixels = contract.decode_inputs(data)
            reference, size, outputs = [], (int(pixels.shape[1]), int(pixels.shape[0])), None
    except (ImageDecodeError, InvalidInputError) as e:  # refimpl refuses the image (missing weights: exit 2)
        return ImageCheck(str(image), exchange, *_both_refuse(model, e, exchange, tolerances))
    verdict = judging.judge(model, exchange.body, reference, tolerances, image_size=size, outputs=outputs)
    if exchange.status != 200:
        verdict.problems.insert(0, f"HTTP {exchange.status}")
        verdict.status, verdict.agree = "disagree", False
    return ImageCheck(str(image), exchange, verdict, verdict.accepted(accept))


def _failed(model, problems, tolerances):
    return judging.Verdict(model=registry.get(model).hosted_name, task=registry.get(model).task, status="disagree",
                           agree=False, problems=problems, tolerances=tolerances or judging.Tolerances())


def _both_refuse(model, error, exchange, tolerances):
    """refimpl refuses the image: the endpoint agrees if it refuses it with the same status."""
    ours = f"refimpl refuses this image: HTTP {error.status}, code {error.code}: {error}"
    body = exchange.body if isinstance(exchange.body, dict) else {}
    theirs = body.get("errors") or []
    if exchange.status == error.status and body.get("success") is False:
        v = judging.Verdict(model=registry.get(model).hosted_name, task=registry.get(model).task, status="agree", agree=True,
                            notes=[ours, f"the endpoint refuses it too: HTTP {exchange.status} {theirs}"],
                            tolerances=tolerances or judging.Tolerances())
        refusal_coverage(v)
        return v, True
    v = _failed(model, [ours, f"the endpoint answered HTTP {exchange.status} instead"], tolerances)
    return v, False


def check_endpoint(url, model, images, token=None, tolerances=None, accept=(), body="raw", timeout=120.0,
                   **loading):
    """Check every image -> Report. token: default $REFIMPL_ENDPOINT_TOKEN. loading: weights=,
    revision=, dtype=, path= for the local reference."""
    url, model = endpoint_url(url, model)
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    report = Report(url, registry.get(model).hosted_name, tuple(accept))
    for image in images:
        report.checks.append(check_image(url, model, image, token, tolerances, accept, body, timeout, **loading))
    return report


# --- the human-readable report ------------------------------------------------------------------


def format_check(check, all_rows=False):
    """One image's check as text: the headline (HTTP status, time, verdict), then the verdict."""
    v, ex = check.verdict, check.exchange
    status = "no answer" if ex.status is None else f"HTTP {ex.status}"
    word = vocabulary.headline(v.status, check.accepted, v.signatures, v.wrong_image, v.coverage)
    lines = [f"{check.image}: {status}, {ex.ms:.0f} ms: {word}"] + judging.format_verdict(v, all_rows)
    return "\n".join(lines)


def format_report(report, all_rows=False):
    lines = [f"check-endpoint {report.url} ({report.model})", ""]
    for check in report.checks:
        lines += [format_check(check, all_rows), ""]
    lines.append("verdict: " + summary_line(report))
    return "\n".join(lines)


def summary_line(report):
    """The run's verdict in the shared vocabulary (judge.vocabulary): the worst image's word, then
    how many images got each word. --accept changes only whether EXPLAINED passes (the exit code)."""
    kinds = [vocabulary.kind(c.verdict.status, c.verdict.wrong_image) for c in report.checks]
    order = vocabulary.SEVERITY
    worst = min(kinds, key=order.index, default="disagree")
    n = len(report.checks)
    counts = ", ".join(f"{kinds.count(k)} of {n} image(s) {vocabulary.WORDS[k]}" for k in order if k in kinds)
    judged = sum(c.verdict.coverage.get("claimed_judged", 0) for c in report.checks)
    claimed = sum(c.verdict.coverage.get("claimed", 0) for c in report.checks)
    if worst == "agree":
        return f"AGREE: {n} of {n} image(s) agree with the reference [{judged} of {claimed} claimed row(s) judged]"
    text = f"{vocabulary.WORDS[worst]}: {counts}"
    names = sorted({s for c in report.checks if c.verdict.status == "explained" for s in c.verdict.signatures})
    if names:
        text += f"; explained only by the signatures {', '.join(names)}"
        text += (" (accepted)" if all(c.accepted for c in report.checks if c.verdict.status == "explained")
                 else f" (not accepted: exit 1; --accept {','.join(names)} to accept them)")
    return text + f" [{judged} of {claimed} claimed row(s) judged]"
