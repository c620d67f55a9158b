"""A verdict as text: the rows as a table, then the signatures, problems and notes. Shared by
check-endpoint's and audit's reports, which add their own headline."""

from .verdict import SIGNATURES
from .vocabulary import group_rows, group_text

MAX_ROWS = 15  # detection table lines by default (repeated rows are grouped first)


def format_verdict(v, all_rows=False):
    """The body of a verdict's report -> list of lines (indented by two spaces).

    all_rows: every detection row, one line each, the low-score ones included. By default
    repeated missing/extra/low rows of one label are one line ("99 queries: fire hydrant, missing
    in the claim"), low rows (unpaired, not judged) are hidden and the table stops after MAX_ROWS
    lines. The coverage (what was judged) is the caller's headline's; what was not judged is
    listed here ("not judged: ...")."""
    if v.task == "image-classification":
        lines = _classification_table(v.rows) if v.rows else []
    else:
        lines = _detection_table(v.rows, all_rows) if v.rows else []
    if v.wrong_image:
        lines.append(f"  WRONG IMAGE?: {v.wrong_image}")
    lines += [f"  signature {name}: {v.details.get(name, SIGNATURES[name])}" for name in v.signatures]
    if v.score_formula and "score_formula" not in v.signatures:  # "none reproduces them" (else the signature says it)
        lines.append(f"  score formula: {v.score_formula['text']}")
    lines += [f"  problem: {p}" for p in v.problems]
    lines += [f"  note: {n}" for n in v.notes]
    lines += [f"  not judged: {n}" for n in (v.coverage or {}).get("not_judged", ())]
    return lines


def _classification_table(rows):
    lines = [f"  {'rank':<5}{'reference':<26}{'score':>9}   {'claimed':<26}{'score':>9}  {'|diff|':>8}  ok"]
    for r in rows:
        lines.append(f"  {r['rank']:<5}{str(r['reference_label'] or '-')[:25]:<26}{_f(r['reference_score'], '.5f'):>9}"
                     f"   {str(r['claimed_label'] or '-')[:25]:<26}{_f(r['claimed_score'], '.5f'):>9}"
                     f"  {_f(r['score_diff'], '.1e'):>8}  {_yes(r['ok'])}")
    return lines


def _detection_table(rows, all_rows):
    shown = rows if all_rows else [r for r in rows if r["status"] != "low"]
    lines = [f"  {'status':<9}{'ref#':>5}{'claim#':>7}  {'label':<16}{'ref score':>10}{'claimed':>10}"
             f"{'|diff|':>9}{'IoU':>8}{'corner px':>10}  ok"]
    items = shown if all_rows else group_rows(shown)
    cut = [] if all_rows else items[MAX_ROWS:]
    for r in items[:len(items) - len(cut)]:
        if r.get("group"):
            lines.append(f"  {r['status']:<9}{'':>12}  {group_text(r)}  {_yes(r['ok'])}")
            continue
        lines.append(f"  {r['status']:<9}{_f(r['reference_index'], 'd'):>5}{_f(r['claimed_index'], 'd'):>7}  "
                     f"{r['label'][:15]:<16}{_f(r['reference_score'], '.4f'):>10}{_f(r['claimed_score'], '.4g'):>10}"
                     f"{_f(r['score_diff'], '.1e'):>9}{_f(r['iou'], '.4f'):>8}{_f(r['corner_px'], '.2f'):>10}"
                     f"  {_yes(r['ok'])}")
    if cut:
        n = sum(c["count"] if c.get("group") else 1 for c in cut)
        bad = sum(not c["ok"] for c in cut)
        lines.append(f"  ... and {n} more row(s) ({bad} line(s) not ok; --all-rows shows every row)")
    hidden = len(rows) - len(shown)
    if hidden:
        lines.append(f"  ... and {hidden} unjudged low-score row(s) (no partner in the reference; --all-rows shows them)")
    return lines


def _f(x, spec):
    return "-" if x is None else format(x, spec)


def _yes(ok):
    return "yes" if ok else "NO"
