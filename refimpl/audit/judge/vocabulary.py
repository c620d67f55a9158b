"""One vocabulary for every verdict: `audit`, `audit-dir` and `check-endpoint` say the same words
for the same situation, and `--accept` decides only the exit code.

    AGREE         the reference gives the same answer within the tolerances
    EXPLAINED     the same answer, reshaped only by the named signature(s)
    DISAGREE      a different answer (the problems say how)
    WRONG IMAGE?  a different answer that looks like it belongs to another image (boxes far
                  outside this image, or nothing in common with the reference)
    INCOMPLETE    nothing contradicts the reference, but too little of the claim was judged to say
                  it agrees (the coverage says what was and was not compared, and why)
    MALFORMED     the claimed response cannot be compared (not JSON, not a result, breaks the schema)

Exit codes: 0 AGREE (or EXPLAINED with every signature accepted), 1 DISAGREE, WRONG IMAGE? and
EXPLAINED not accepted, 3 INCOMPLETE and MALFORMED (not judged, or not judged enough: the exit code
certify gives an incomplete run), 2 (audit-dir) an image that could not be audited. `--accept`
turns only EXPLAINED into 0, never INCOMPLETE or WRONG IMAGE?.

`word(status, wrong_image)` gives the word, `headline(...)` the sentence after it, `exit_code(...)`
the exit status, `group_rows(rows)` folds repeated detection rows into one line each.
"""

WORDS = {
    "agree": "AGREE",
    "explained": "EXPLAINED",
    "disagree": "DISAGREE",
    "wrong_image": "WRONG IMAGE?",
    "incomplete": "INCOMPLETE",
    "malformed": "MALFORMED",
    "no-claim": "NO CLAIM",
    "error": "ERROR",
}

MEANINGS = {
    "agree": "the reference gives the same answer within the tolerances",
    "explained": "the same answer, reshaped by the named signature(s)",
    "disagree": "the reference gives a different answer",
    "wrong_image": "this response is probably for another image",
    "incomplete": "too little of the claim was judged to give a verdict",
    "malformed": "the claimed response cannot be compared",
    "no-claim": "reference output recorded",
    "error": "the image could not be audited",
}

# exit status by word; EXPLAINED is 0 only when every signature is accepted (see exit_code)
EXIT_CODES = {"agree": 0, "no-claim": 0, "explained": 1, "disagree": 1, "wrong_image": 1, "error": 2, "malformed": 3,
              "incomplete": 3}

# the order of severity, worst first (a run's verdict is its worst image's word)
SEVERITY = ("malformed", "wrong_image", "disagree", "incomplete", "explained", "agree")

# how a detection row's status reads in a grouped line
ROW_WORDS = {"missing": "missing in the claim", "extra": "extra in the claim (not in the reference)",
             "low": "not judged (a low score with no partner in the reference)", "match": "matched"}


def kind(status, wrong_image=None):
    """The vocabulary key of a verdict: its status, or "wrong_image" for a disagreement that
    looks like another image's answer."""
    return "wrong_image" if status == "disagree" and wrong_image else status


def word(status, wrong_image=None):
    """"AGREE", "EXPLAINED", "DISAGREE", "WRONG IMAGE?", "INCOMPLETE", "MALFORMED" (or audit-dir's
    "NO CLAIM", "ERROR")."""
    return WORDS[kind(status, wrong_image)]


def exit_code(status, accepted=False, wrong_image=None):
    """0 agree (or explained and accepted), 1 disagree / wrong image / explained but not accepted,
    3 incomplete or malformed (2: audit-dir's error). `accepted` counts only for EXPLAINED."""
    if status == "explained" and not wrong_image:
        return 0 if accepted else 1
    return EXIT_CODES[kind(status, wrong_image)]


def headline(status, accepted=False, signatures=(), wrong_image=None, coverage=None):
    """"EXPLAINED: the same answer, reshaped by no_threshold, integer_rounding (accepted)"; the
    coverage text (`Verdict.coverage["text"]`) is added to AGREE, EXPLAINED and INCOMPLETE: a
    verdict that something agrees always says how much of it was judged."""
    k = kind(status, wrong_image)
    text = f"{WORDS[k]}: {MEANINGS[k]}"
    covered = (coverage or {}).get("text")
    if k == "explained":
        if signatures:
            text = f"{WORDS[k]}: the same answer, reshaped by {', '.join(signatures)}"
        text += " (accepted)" if accepted else (" (not accepted: exit 1; pass --accept "
                                                f"{','.join(signatures) or 'SIGNATURE'} to accept)")
    elif k == "wrong_image":
        text += f" ({wrong_image})"
    if covered and k in ("agree", "explained", "incomplete"):
        text += f" [{covered}]"
    return text


def group_rows(rows, min_group=3):
    """Detection rows -> a list of items in the rows' order: a row (dict) shown alone, or a group
    {"group": True, "status", "label", "count", "rows", "ok"} for `min_group` or more rows of the
    same status and label that are not matches ("99 queries: fire hydrant, missing in the claim").
    Matched rows are always shown alone: each has its own IoU and score difference."""
    buckets = {}
    for r in rows:
        if r.get("status") in ("missing", "extra", "low"):
            buckets.setdefault((r["status"], r.get("label")), []).append(r)
    out, done = [], set()
    for r in rows:
        key = (r.get("status"), r.get("label"))
        members = buckets.get(key)
        if members is None or len(members) < min_group:
            out.append(r)
        elif key not in done:
            done.add(key)
            out.append({"group": True, "status": key[0], "label": key[1], "count": len(members), "rows": members,
                        "ok": all(m["ok"] for m in members)})
    return out


def group_text(g):
    """One grouped line: "99 queries: fire hydrant, missing in the claim (reference scores 0.55..0.91)"."""
    scores = [m["reference_score"] if m["reference_score"] is not None else m["claimed_score"] for m in g["rows"]]
    scores = [s for s in scores if s is not None]
    side = "reference" if g["rows"][0]["reference_score"] is not None else "claimed"
    rng = f" ({side} scores {min(scores):.3g}..{max(scores):.3g})" if scores else ""
    return f"{g['count']} queries: {g['label']}, {ROW_WORDS[g['status']]}{rng}"
