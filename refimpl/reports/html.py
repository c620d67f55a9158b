"""Reports to look at: one self-contained HTML file per compare, certify, audit or audit-dir run.

Everything is inline (CSS, SVG plots, the audited image as a data: URI): the file opens offline
and asks the network for nothing. The verdict is a coloured banner in the shared vocabulary
(judge.vocabulary: AGREE, EXPLAINED, DISAGREE, WRONG IMAGE?, MALFORMED).

    render_compare(report)            compare's Report.to_json(): coverage, a plot of each tensor's
                                      error against its budget in data-flow order, the first
                                      divergence marked, its diagnosis
    render_certify(report)            certify's JSON report: its verdict, then every compare-style
                                      section it holds (rows named "tensors")
    render_audit(result, image, claimed)  audit's AuditResult.to_dict(); for detection the image with
                                      the reference's (green) and the claim's (red, dashed) boxes
    render_audit_dir(summary)         audit-dir's summary dict: counts per word, the images that
                                      do not agree
    write(path, html)                 write the file (UTF-8)

All renderers take the JSON-able dicts the commands already print with --json.
"""

import base64
import html
import math
from pathlib import Path

from refimpl.audit.judge import vocabulary

COLORS = {"AGREE": "#1b7f3b", "EXPLAINED": "#1f5fa8", "DISAGREE": "#b3261e", "WRONG IMAGE?": "#c25e00",
          "MALFORMED": "#6a1b9a", "NO CLAIM": "#555555", "ERROR": "#555555", "INCOMPLETE": "#7a5c00",
          "CERTIFIED": "#1b7f3b", "DIVERGES": "#b3261e"}
MAX_DRAWN = 25  # claimed boxes drawn on the image (the highest scores)
UINT16_HALF, UINT16_SPAN = 32768, 65536

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:0 24px 40px}
.banner{color:#fff;padding:22px 24px;font-size:30px;font-weight:700;letter-spacing:.5px}
.banner small{display:block;font-size:16px;font-weight:400;margin-top:6px;opacity:.95}
h2{font-size:18px;margin:26px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;width:100%}
td,th{border-bottom:1px solid #e3e3e3;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b3261e;font-weight:600}.ok{color:#1b7f3b}
.diag{background:#fff4e5;border-left:4px solid #c25e00;padding:10px 14px;margin:8px 0}
ul{margin:4px 0 4px 18px;padding:0}
.meta{font-size:13px;color:#555}
svg text{font-family:system-ui,sans-serif}
"""


def _e(x):
    return html.escape(str(x))


def page(title, word, subtitle, body):
    """A complete HTML document: the verdict banner, then `body` (HTML)."""
    color = COLORS.get(word, "#444")
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body><div class=banner id=verdict style='background:{color}'>"
            f"{_e(word)}<small>{_e(subtitle)}</small></div><main>{body}</main></body></html>")


def write(path, text):
    Path(path).write_text(text, encoding="utf-8")
    return Path(path)


def _list(title, items, cls=""):
    if not items:
        return ""
    return f"<h2>{_e(title)}</h2><ul>" + "".join(f"<li class='{cls}'>{_e(i)}</li>" for i in items) + "</ul>"


def _num(x, spec=".3g"):
    if x is None or x == "n/a":
        return "-"
    try:
        return format(float(x), spec)
    except (TypeError, ValueError):
        return _e(x)


# --- compare / certify -------------------------------------------------------------------------

COMPARE_WORDS = {"agree": "AGREE", "disagree": "DISAGREE", "incomplete": "INCOMPLETE"}
CERTIFY_WORDS = {"certified": "CERTIFIED", "diverges": "DIVERGES", "incomplete": "INCOMPLETE"}


def _float(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def error_plot(rows, first_name=None, width=1040, height=320):
    """SVG: for each compared tensor, in data-flow order, its max|A-B| (a dot: green within
    budget, red over) and its budget - the largest error allowed, atol + rtol * max|B| or budget *
    max|B| (a dashed red step) - on a log scale; the first divergence is marked with a vertical
    line. A tensor whose shapes differ has no error: a red mark at the top."""
    pts = [(i, r) for i, r in enumerate(rows) if r.get("status") in ("ok", "fail")]
    if not pts:
        return "<p class=meta>no tensor was compared: nothing to plot</p>"
    left, top, bottom, right = 64, 24, 44, 16
    w, h = width - left - right, height - top - bottom
    values = [v for _, r in pts for v in (_float(r.get("max_abs")), _float(r.get("limit"))) if v and v > 0]
    lo = math.floor(math.log10(min(values))) if values else -8
    hi = math.ceil(math.log10(max(values))) + 1 if values else 1
    lo, hi = max(lo, hi - 14), max(hi, lo + 2)  # at most 14 decades, at least 2
    n = len(pts)
    step = w / n

    def y(v):
        v = _float(v)
        if v is None:
            return top
        if v <= 0:
            return top + h
        return top + h * (hi - min(max(math.log10(v), lo), hi)) / (hi - lo)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role=img id=error-plot "
             f"aria-label='error against budget per tensor, log scale'>",
             f"<rect x='{left}' y='{top}' width='{w}' height='{h}' fill='#fff' stroke='#ccc'/>"]
    for k in range(lo, hi + 1):
        parts.append(f"<line x1='{left}' x2='{left + w}' y1='{y(10.0 ** k):.1f}' y2='{y(10.0 ** k):.1f}' stroke='#eee'/>"
                     f"<text x='{left - 6}' y='{y(10.0 ** k) + 4:.1f}' font-size='11' text-anchor='end'>1e{k}</text>")
    budget = []
    for k, (i, r) in enumerate(pts):
        x0, x1 = left + step * k, left + step * (k + 1)
        limit = _float(r.get("limit"))
        if limit is not None:
            budget.append(f"M{x0:.1f},{y(limit):.1f}H{x1:.1f}")
    parts.append(f"<path d='{''.join(budget)}' fill='none' stroke='#b3261e' stroke-dasharray='4 3' stroke-width='1.5'/>")
    for k, (i, r) in enumerate(pts):
        x = left + step * (k + 0.5)
        err = _float(r.get("max_abs"))
        color = "#1b7f3b" if r["status"] == "ok" else "#b3261e"
        label = f"{_e(r['name'])}: max|A-B| {_num(r.get('max_abs'))}, budget {_num(r.get('limit'))}"
        if err is None:  # shapes differ
            parts.append(f"<path d='M{x - 4:.1f},{top + 2}L{x + 4:.1f},{top + 10}M{x + 4:.1f},{top + 2}L{x - 4:.1f},"
                         f"{top + 10}' stroke='{color}' stroke-width='2'><title>{label}</title></path>")
        else:
            parts.append(f"<circle cx='{x:.1f}' cy='{y(err):.1f}' r='3' fill='{color}'><title>{label}</title></circle>")
        if r["name"] == first_name:
            parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top}' y2='{top + h}' stroke='#c25e00' stroke-width='2'/>"
                         f"<text x='{min(x + 4, left + w - 260):.1f}' y='{top + 14}' font-size='12' fill='#c25e00'>"
                         f"first divergence: {_e(r['name'])}</text>")
    parts.append(f"<text x='{left}' y='{height - 22}' font-size='12'>{n} compared tensors in data-flow order (first "
                 f"left) -&gt;; dots: max|A-B| (green within budget, red over); dashed red: each tensor's budget</text>"
                 f"<text x='14' y='{top + h / 2}' font-size='12' transform='rotate(-90 14 {top + h / 2})' "
                 f"text-anchor='middle'>max|A-B| (log)</text></svg>")
    return "".join(parts)


def _diagnosis(first, case=None):
    """The first divergence and its diagnosis (HTML)."""
    d = first.get("diagnosis") or {}
    where = f" (image {_e(case)})" if case else ""
    out = (f"<h2 id=first-divergence>First divergence: {_e(first['name'])}{where}</h2><div class=diag>"
           f"<b>{_e(d.get('kind'))}</b> ({_e(d.get('confidence', ''))}): {_e(d.get('message'))}"
           + (f"<br>look at: {_e(d['look_at'])}" if d.get("look_at") else "") + "</div>")
    if first.get("isolate"):
        out += f"<div class=diag>isolate: {_e(first['isolate'].get('message'))}</div>"
    return out


def _compare_coverage(report):
    s = report.get("summary", {})
    text = (f"{s.get('compared', 0)} of the reference's {s.get('reference_tensors', '?')} tensors compared, "
            f"{s.get('failed', 0)} over budget; only in A: {len(s.get('only_in_a', []))}, only in B: "
            f"{len(s.get('only_in_b', []))}")
    missing = report.get("missing_required") or []
    if missing:
        text += f"; required but not compared: {', '.join(missing)}"
    return text


def _compare_body(report, with_diagnosis=True):
    rows = report.get("tensors", [])
    first = report.get("first_divergence")
    body = [f"<p class=meta>A: {_e(report.get('a', {}).get('path'))} &nbsp; B (reference): "
            f"{_e(report.get('b', {}).get('path'))}<br>rule: {_e(report.get('rule'))} (rtol {report.get('rtol')}, "
            f"atol {report.get('atol')})</p>",
            f"<h2>Coverage</h2><p id=coverage>{_e(_compare_coverage(report))}</p>"]
    not_compared = [r["name"] for r in rows if r.get("status") not in ("ok", "fail")]
    if not_compared:
        body.append(f"<p class=meta>not compared (not in both): {_e(', '.join(not_compared[:20]))}"
                    f"{' ...' if len(not_compared) > 20 else ''}</p>")
    if first and with_diagnosis:
        body.append(_diagnosis(first))
    body += ["<h2>Error against budget</h2>", error_plot(rows, first["name"] if first else None)]
    body.append("<h2>Tensors</h2><table><tr><th>#</th><th>tensor</th><th>shape A</th><th>shape B</th>"
                "<th>max abs</th><th>budget</th><th>result</th></tr>")
    for i, r in enumerate(rows, 1):
        cls = "bad" if r.get("status") == "fail" else "ok" if r.get("status") == "ok" else ""
        mark = " &lt;- first divergence" if first and r["name"] == first["name"] else ""
        body.append(f"<tr><td class=num>{i}</td><td>{_e(r['name'])}</td><td>{_e(r.get('shape_a'))}</td>"
                    f"<td>{_e(r.get('shape_b'))}</td><td class=num>{_num(r.get('max_abs'))}</td>"
                    f"<td class=num>{_num(r.get('limit'))}</td><td class='{cls}'>{_e(r.get('status'))}{mark}</td></tr>")
    body.append("</table>")
    return "".join(body)


def render_compare(report, title="refimpl compare"):
    """compare's Report.to_json() -> HTML: compare's own verdict (AGREE, DISAGREE, INCOMPLETE),
    coverage, the first divergence and its diagnosis, the error-vs-budget plot, the tensors."""
    verdict = report.get("verdict") or ("agree" if report.get("agree") else "disagree")
    word = COMPARE_WORDS.get(verdict, "DISAGREE")
    s = report.get("summary", {})
    if verdict == "agree":
        sub = f"all {s.get('compared', 0)} compared tensors within budget"
    elif verdict == "incomplete":
        sub = ("nothing compared" if not s.get("compared") else "the required outputs were not compared: "
               + ", ".join(report.get("missing_required") or []))
    else:
        sub = (f"{s.get('failed', 0)} of {s.get('compared', 0)} compared tensors exceed the budget"
               + (f"; first divergence {report['first_divergence']['name']}" if report.get("first_divergence") else ""))
    return page(title, word, sub, _compare_body(report))


def render_certify(report, title="refimpl certify"):
    """certify's JSON report (CertifyReport.to_json()) -> HTML: certify's own verdict (CERTIFIED,
    DIVERGES, INCOMPLETE) and scope, the coverage (tensors compared of the reference's, the parts
    of the network covered and not), the first divergence with its diagnosis, the least headroom,
    then for each image its error-vs-budget plot and per-tensor table (`cases[].compare`)."""
    verdict = str(report.get("verdict") or "")
    word = CERTIFY_WORDS.get(verdict, "INCOMPLETE")  # anything unknown is not a pass
    cov = report.get("coverage") or {}
    first = report.get("first_divergence")
    cases = report.get("cases") or []
    head = report.get("min_headroom")
    prec = report.get("precision") or {}
    reduced = prec.get("precision") not in (None, "fp32")
    within = (" within " + ("int8 quantization" if prec.get("precision") == "int8" else f"{prec.get('precision')} rounding")
              if reduced else "")
    if verdict == "certified":
        sub = (f"{cov.get('scope', '')} on {len(cases)} image(s){within}: every compared tensor within its budget"
               + (f"; least headroom {float(head['headroom']):.3g}x at {head['name']}" if head and _float(head.get('headroom')) else ""))
    elif verdict == "diverges" and first:
        sub = f"first divergence {first['name']} (image {first.get('case')}): {(first.get('diagnosis') or {}).get('kind')}"
    else:
        missing = sorted({m for c in cases for m in (c.get("compare") or {}).get("missing_required") or []})
        sub = "the final outputs were not compared" + (f" ({', '.join(missing)})" if missing else "") + ": nothing is certified"
    impl = report.get("impl") or {}
    rule = report.get("budget_rule") or {}
    weights = report.get("weights") or {}
    body = [f"<p class=meta>implementation: {_e(impl.get('spec'))} ({_e(impl.get('description'))})<br>model "
            f"{_e(report.get('model'))}; truth: {_e(report.get('truth'))}; weights {_e(weights.get('source'))} sha256 "
            f"{_e(str(weights.get('sha256'))[:16])}...<br>budget: {_e(rule.get('text'))} (factor {_e(rule.get('factor'))}, "
            f"floor {_e(rule.get('floor'))})<br>precision: <b id=precision>{_e(prec.get('precision', 'fp32'))}</b> "
            f"({_e(prec.get('why', ''))})</p>"]
    parts_covered, parts_missing = cov.get("parts_covered") or [], cov.get("parts_missing") or []
    body.append(f"<h2>Coverage</h2><p id=coverage>{cov.get('compared', 0)} of the reference's "
                f"{cov.get('reference_tensors', 0)} tensors compared ({_e(cov.get('scope', ''))}); "
                f"{len(parts_covered)} of {len(parts_covered) + len(parts_missing)} parts of the network covered"
                + (f"; not covered: {_e(', '.join(parts_missing))}" if parts_missing else "") + "</p>")
    if report.get("unmapped"):
        shown = report["unmapped"][:12]
        body.append(f"<p class=meta>not mapped to a checkpoint name (not compared): {_e(', '.join(shown))}"
                    f"{' ...' if len(report['unmapped']) > 12 else ''}</p>")
    if first:
        body.append(_diagnosis(first, first.get("case")))
    for c in cases:
        cmp = c.get("compare") or {}
        case_word = {"agree": "CERTIFIED", "disagree": "DIVERGES"}.get(c.get("verdict"), "INCOMPLETE")
        body.append(f"<h2>Image {_e(c.get('name'))}: {case_word}</h2>")
        body += [f"<p class=meta>note: {_e(n)}</p>" for n in c.get("notes") or []]
        if c.get("top_k"):  # reduced precision: does the port still rank the classes the same?
            k = c["top_k"]
            body.append(f"<p class=meta>top-1 {'agrees' if k.get('top1') else 'DIFFERS'}; top-{_e(k.get('k'))} overlap "
                        f"{float(k.get('top_k', 0)):.0%}</p>")
        if c.get("isolate"):
            body.append(f"<p class=meta>isolate in {_e(prec.get('precision'))}: {_e(c['isolate'].get('message', c['isolate']))}</p>")
        body.append(_compare_body(cmp, with_diagnosis=False))
    if not cases:
        body.append("<p class=meta>no image was compared</p>")
    return page(title, word, sub, "".join(body))


# --- audit ---------------------------------------------------------------------------------------


def _image_uri(image):
    from PIL import Image
    import io

    data = Path(image).read_bytes() if isinstance(image, (str, Path)) else bytes(image)
    with Image.open(io.BytesIO(data)) as im:
        size = im.size
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "PNG")  # any decodable format becomes a PNG the browser shows
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), size


def _unwrap(v):
    v = float(v)
    return v - UINT16_SPAN if UINT16_HALF <= v < UINT16_SPAN and v == int(v) else v


def boxes_figure(image, reference, claimed, max_width=1040):
    """SVG: the image, refimpl's detections (green, solid) and the claim's (red, dashed; the
    MAX_DRAWN highest scores, uint16-wrapped corners unwrapped). The view extends to every box, so
    boxes far outside the image (another image's answer) show where they are."""
    uri, (w, h) = _image_uri(image)
    claimed = sorted([c for c in (claimed or []) if isinstance(c, dict) and isinstance(c.get("box"), dict)],
                     key=lambda c: -float(c.get("score") or 0))[:MAX_DRAWN]
    corners = [[_unwrap(c["box"][k]) for k in ("xmin", "ymin", "xmax", "ymax")] for c in claimed]
    xs = [0, w] + [v for b in corners for v in (b[0], b[2])] + [d["box"][k] for d in reference or [] for k in ("xmin", "xmax")]
    ys = [0, h] + [v for b in corners for v in (b[1], b[3])] + [d["box"][k] for d in reference or [] for k in ("ymin", "ymax")]
    x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
    scale = min(1.0, max_width / (x1 - x0)) if x1 > x0 else 1.0
    lw = max(1.0, 2 / scale)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{(x1 - x0) * scale:.0f}' height='{(y1 - y0) * scale:.0f}' "
             f"viewBox='{x0} {y0} {x1 - x0} {y1 - y0}' style='background:#eee'>",
             f"<image href='{uri}' x='0' y='0' width='{w}' height='{h}'/>",
             f"<rect x='0' y='0' width='{w}' height='{h}' fill='none' stroke='#000' stroke-width='{lw}'/>"]
    for d in reference or []:
        b = d["box"]
        parts.append(f"<rect x='{b['xmin']}' y='{b['ymin']}' width='{b['xmax'] - b['xmin']}' height='{b['ymax'] - b['ymin']}' "
                     f"fill='none' stroke='#1b7f3b' stroke-width='{lw * 1.5}'><title>reference: {_e(d['label'])} "
                     f"{float(d['score']):.3f}</title></rect>")
    for c, b in zip(claimed, corners):
        parts.append(f"<rect x='{b[0]}' y='{b[1]}' width='{b[2] - b[0]}' height='{b[3] - b[1]}' fill='none' "
                     f"stroke='#d32f2f' stroke-dasharray='{4 * lw} {3 * lw}' stroke-width='{lw}'><title>claimed: "
                     f"{_e(c.get('label'))} {float(c.get('score') or 0):.3g}</title></rect>")
    parts.append("</svg>")
    return ("".join(parts) + f"<p class=meta>image {w}x{h} (black frame); green: refimpl's detections above the "
            f"threshold ({len(reference or [])}); red dashed: the claim's {len(claimed)} highest-scoring boxes</p>")


def _audit_rows(v):
    rows = v.get("rows") or []
    if v.get("task") == "image-classification":
        out = ["<table><tr><th>rank</th><th>reference</th><th>score</th><th>claimed</th><th>score</th><th>ok</th></tr>"]
        for r in rows:
            out.append(f"<tr><td>{r['rank']}</td><td>{_e(r['reference_label'])}</td><td class=num>"
                       f"{_num(r['reference_score'], '.5f')}</td><td>{_e(r['claimed_label'])}</td><td class=num>"
                       f"{_num(r['claimed_score'], '.5f')}</td><td class='{'ok' if r['ok'] else 'bad'}'>"
                       f"{'yes' if r['ok'] else 'NO'}</td></tr>")
        return "".join(out) + "</table>"
    shown = [r for r in rows if r["status"] != "low"]
    out = ["<table><tr><th>status</th><th>label</th><th>ref score</th><th>claimed</th><th>IoU</th>"
           "<th>corner px</th><th>ok</th></tr>"]
    for r in vocabulary.group_rows(shown):
        ok = f"<td class='{'ok' if r['ok'] else 'bad'}'>{'yes' if r['ok'] else 'NO'}</td>"
        if r.get("group"):
            out.append(f"<tr><td>{_e(r['status'])}</td><td colspan=5>{_e(vocabulary.group_text(r))}</td>{ok}</tr>")
        else:
            out.append(f"<tr><td>{_e(r['status'])}</td><td>{_e(r['label'])}</td><td class=num>"
                       f"{_num(r['reference_score'], '.4f')}</td><td class=num>{_num(r['claimed_score'], '.4g')}</td>"
                       f"<td class=num>{_num(r['iou'], '.4f')}</td><td class=num>{_num(r['corner_px'], '.2f')}</td>{ok}</tr>")
    hidden = len(rows) - len(shown)
    return "".join(out) + "</table>" + (f"<p class=meta>{hidden} low-score row(s) not shown</p>" if hidden else "")


def render_audit(result, image=None, claimed=None, title="refimpl audit"):
    """audit's AuditResult.to_dict() -> HTML. image: the audited image (path or bytes) to draw the
    boxes on (detection); claimed: the claimed result list (its boxes are drawn)."""
    v = result.get("verdict") or {}
    status = result["status"]
    word = vocabulary.word(status, result.get("wrong_image"))
    coverage = result.get("coverage") or v.get("coverage") or {}
    sub = vocabulary.headline(status, result.get("accepted"), result.get("signatures", ()), result.get("wrong_image"))
    sub = sub.split(": ", 1)[1] if ": " in sub else sub
    body = [f"<p class=meta>image {_e(result['image'])} &nbsp; model {_e(result['model'])} &nbsp; claimed "
            f"{_e(result.get('claimed'))} &nbsp; exit code {result.get('exit_code')}</p>",
            f"<h2>Coverage</h2><p id=coverage>{_e(coverage.get('text') or 'nothing was compared')}</p>"]
    body.append(_list("Not judged", coverage.get("not_judged") or []))
    if result.get("wrong_image"):
        body.append(f"<div class=diag><b>WRONG IMAGE?</b> {_e(result['wrong_image'])}</div>")
    details = v.get("details", {})
    body.append(_list("Signatures", [f"{s}: {details.get(s, '')}" for s in result.get("signatures", [])]))
    if v.get("score_formula"):
        body.append(f"<h2>Score formula</h2><div class=diag>{_e(v['score_formula']['text'])}</div>")
    body.append(_list("Problems", result.get("problems", []), "bad"))
    body.append(_list("Notes", result.get("notes", [])))
    if image is not None and v.get("task") == "object-detection":
        body.append("<h2>Boxes</h2>" + boxes_figure(image, result.get("reference"), claimed))
    if v.get("rows"):
        body.append("<h2>Rows</h2>" + _audit_rows(v))
    return page(title, word, sub, "".join(body))


def render_audit_dir(summary, title="refimpl audit-dir"):
    """audit-dir's summary dict -> HTML: the run's word (AGREE when every claim agrees, else the
    worst word among the images: MALFORMED, WRONG IMAGE?, DISAGREE, INCOMPLETE, EXPLAINED), the
    coverage, counts per word and the images that do not agree."""
    counts = summary.get("by_status", {})
    kinds = [vocabulary.kind(r["status"], r.get("wrong_image")) for r in summary.get("not_agreeing", [])]
    worst = min((k for k in kinds if k in vocabulary.SEVERITY), key=vocabulary.SEVERITY.index, default=None)
    word = "AGREE" if summary.get("ok") else vocabulary.WORDS.get(worst, "DISAGREE")
    sub = (f"{summary.get('recorded', 0)} of {summary.get('images', 0)} image(s) recorded; "
           f"{len(summary.get('not_agreeing', []))} do not agree")
    cov = summary.get("coverage")
    body = []
    if cov:
        body.append(f"<h2>Coverage</h2><p id=coverage>{cov['claimed_judged']} of {cov['claimed']} claimed row(s) judged "
                    f"over {cov['claims']} claim(s); {cov['incomplete']} claim(s) INCOMPLETE (too little judged)</p>")
    body.append("<h2>Counts</h2><table>")
    for status, n in counts.items():
        w = vocabulary.WORDS.get(status, status)
        body.append(f"<tr><th style='color:{COLORS.get(w, '#444')}'>{_e(w)}</th><td class=num>{n}</td></tr>")
    body.append("</table><h2>Not agreeing</h2><table><tr><th>image</th><th>verdict</th><th>first problem</th></tr>")
    for r in summary.get("not_agreeing", []):
        w = vocabulary.word(r["status"], r.get("wrong_image"))
        body.append(f"<tr><td>{_e(r['image'])}</td><td style='color:{COLORS.get(w, '#444')}'>{_e(w)}</td>"
                    f"<td>{_e(r.get('first_problem') or '')}</td></tr>")
    body.append("</table>")
    if summary.get("remaining"):
        body.append(f"<p class=meta>{summary['remaining']} image(s) not audited yet</p>")
    return page(title, word, sub, "".join(body))
