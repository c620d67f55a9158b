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
          "MALFORMED": "#6a1b9a", "NO CLAIM": "#555555", "ERROR": "#555555"}
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


def error_plot(rows, first_name=None, width=1040, height=300):
    """SVG: each compared tensor's max|A-B| divided by its budget (atol + rtol * max|B|), log scale,
    in data-flow order; 1 is the budget line; the first divergence is marked."""
    pts = [(i, r) for i, r in enumerate(rows) if r.get("status") in ("ok", "fail")]
    if not pts:
        return "<p class=meta>no tensor was compared</p>"
    left, top, bottom = 60, 20, 40
    w, h = width - left - 20, height - top - bottom
    lo, hi = -8.0, 3.0  # log10 of error / budget
    n = max(len(rows) - 1, 1)

    def y(v):
        return top + h * (hi - min(max(v, lo), hi)) / (hi - lo)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role=img "
             f"aria-label='error against budget per tensor'>",
             f"<rect x='{left}' y='{top}' width='{w}' height='{h}' fill='#fff' stroke='#ccc'/>"]
    for k in range(int(lo), int(hi) + 1):
        parts.append(f"<line x1='{left}' x2='{left + w}' y1='{y(k):.1f}' y2='{y(k):.1f}' stroke='#eee'/>"
                     f"<text x='{left - 6}' y='{y(k) + 4:.1f}' font-size='11' text-anchor='end'>1e{k}</text>")
    parts.append(f"<line x1='{left}' x2='{left + w}' y1='{y(0):.1f}' y2='{y(0):.1f}' stroke='#b3261e' "
                 f"stroke-dasharray='6 4'/><text x='{left + w - 4}' y='{y(0) - 4:.1f}' font-size='11' "
                 f"text-anchor='end' fill='#b3261e'>budget (atol + rtol*max|B|)</text>")
    for i, r in pts:
        x = left + w * i / n
        limit = r.get("limit")
        err = r.get("max_abs")
        try:
            ratio = float(err) / float(limit) if limit else (0.0 if not float(err) else math.inf)
        except (TypeError, ValueError):
            ratio = math.inf  # a shape mismatch: no number, off the scale
        v = hi if not math.isfinite(ratio) else (lo if ratio <= 0 else math.log10(ratio))
        color = "#1b7f3b" if r["status"] == "ok" else "#b3261e"
        parts.append(f"<circle cx='{x:.1f}' cy='{y(v):.1f}' r='3' fill='{color}'><title>{_e(r['name'])}: "
                     f"{_num(err)} / {_num(limit)}</title></circle>")
        if r["name"] == first_name:
            parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top}' y2='{top + h}' stroke='#c25e00' stroke-width='2'/>"
                         f"<text x='{min(x + 4, left + w - 200):.1f}' y='{top + 14}' font-size='12' fill='#c25e00'>"
                         f"first divergence: {_e(r['name'])}</text>")
    parts.append(f"<text x='{left}' y='{height - 12}' font-size='12'>tensors in data-flow order (first left) -&gt;"
                 f"</text><text x='14' y='{top + h / 2}' font-size='12' transform='rotate(-90 14 {top + h / 2})' "
                 f"text-anchor='middle'>max|A-B| / budget</text></svg>")
    return "".join(parts)


def _compare_body(report):
    s = report.get("summary", {})
    rows = report.get("tensors", [])
    first = report.get("first_divergence")
    body = [f"<p class=meta>A: {_e(report.get('a', {}).get('path'))} &nbsp; B (reference): "
            f"{_e(report.get('b', {}).get('path'))}<br>rule: {_e(report.get('rule'))} (rtol {report.get('rtol')}, "
            f"atol {report.get('atol')})</p>",
            f"<h2>Coverage</h2><p>{s.get('compared', 0)} tensors compared, {s.get('failed', 0)} over budget; "
            f"only in A: {len(s.get('only_in_a', []))}, only in B: {len(s.get('only_in_b', []))}</p>",
            "<h2>Error against budget</h2>", error_plot(rows, first["name"] if first else None)]
    if first:
        d = first.get("diagnosis", {})
        body.append(f"<h2>First divergence: {_e(first['name'])}</h2><div class=diag><b>{_e(d.get('kind'))}</b>"
                    f" ({_e(d.get('confidence', ''))}): {_e(d.get('message'))}"
                    + (f"<br>look at: {_e(d['look_at'])}" if d.get("look_at") else "") + "</div>")
        if first.get("isolate"):
            body.append(f"<div class=diag>isolate: {_e(first['isolate'].get('message'))}</div>")
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
    """compare's Report.to_json() -> HTML."""
    word = "AGREE" if report.get("agree") else "DISAGREE"
    s = report.get("summary", {})
    sub = (f"all {s.get('compared', 0)} compared tensors within budget" if report.get("agree") else
           f"{s.get('failed', 0)} of {s.get('compared', 0)} compared tensors exceed the budget"
           + (f"; first divergence {report['first_divergence']['name']}" if report.get("first_divergence") else ""))
    return page(title, word, sub, _compare_body(report))


def render_certify(report, title="refimpl certify"):
    """certify's JSON report -> HTML: its verdict (`verdict` or `status` or `agree`), its top-level
    facts, and every compare-style section (a dict holding "tensors") with its plot."""
    raw = report.get("verdict") or report.get("status")
    word = str(raw).upper() if raw else ("AGREE" if report.get("agree") else "DISAGREE")
    word = word if word in COLORS else ("AGREE" if report.get("agree") else "DISAGREE")
    facts = [(k, v) for k, v in report.items() if isinstance(v, (str, int, float, bool)) or v is None]
    body = ["<h2>Facts</h2><table>"] + [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts] + ["</table>"]
    sections = [(k, v) for k, v in report.items() if isinstance(v, dict) and "tensors" in v]
    if "tensors" in report:
        sections.insert(0, ("comparison", report))
    for k, v in sections:
        body.append(f"<h2>{_e(k)}</h2>{_compare_body(v)}")
    return page(title, word, str(report.get("message") or ""), "".join(body))


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
    sub = vocabulary.headline(status, result.get("accepted"), result.get("signatures", ()), result.get("wrong_image"))
    sub = sub.split(": ", 1)[1] if ": " in sub else sub
    body = [f"<p class=meta>image {_e(result['image'])} &nbsp; model {_e(result['model'])} &nbsp; claimed "
            f"{_e(result.get('claimed'))} &nbsp; exit code {result.get('exit_code')}</p>"]
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
    """audit-dir's summary dict -> HTML: counts per word and the images that do not agree."""
    counts = summary.get("by_status", {})
    word = "AGREE" if summary.get("ok") else "DISAGREE"
    sub = (f"{summary.get('recorded', 0)} of {summary.get('images', 0)} image(s) recorded; "
           f"{len(summary.get('not_agreeing', []))} do not agree")
    body = ["<h2>Counts</h2><table>"]
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
