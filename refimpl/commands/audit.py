"""refimpl audit IMAGE --claimed RESPONSE.json: does the reference agree with a response someone
received for IMAGE (the bare output list, or the REST envelope)?

Compares labels and their order and scores (classification), or IoU-matched boxes with per-
detection IoU, corner and score differences, missing and extra detections (detection), with the
engine of `refimpl check-endpoint` (refimpl.audit.judge), and names the hosted API's known signatures
(no_threshold, integer_rounding, uint16_wraparound, normalized_boxes, monotonic_score_transform,
label_style, score_formula). Verdict words (shared with check-endpoint and audit-dir): AGREE,
EXPLAINED, DISAGREE, WRONG IMAGE? (claimed boxes far outside the image, or nothing in common with
the reference), INCOMPLETE (nothing contradicts the reference, but a claimed row could not be
judged), MALFORMED. Every verdict line ends with its coverage: how many claimed rows (and
reference detections above the threshold) were judged, of how many; "not judged:" lines say
what was not and why. --report OUT.html writes a self-contained HTML report.

Exit status: 0 agree (or explained by signatures given to --accept); 1 disagree or wrong image
(whatever --accept says), or explained by signatures not accepted; 3 incomplete (too little
judged: never accepted) or a malformed claimed response (not JSON, not a result list or
envelope, breaks the output schema); 2 usage errors (unreadable files, unknown model, no
weights)."""

import argparse

from .common import add_judging_options, add_model_options, judging_options, print_json

def register(sub):
    p = sub.add_parser("audit", help="judge a claimed response for one image against the reference",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", help="the image the response was for")
    p.add_argument("--claimed", required=True, metavar="RESPONSE.json",
                   help="the response received: the output list or the REST envelope")
    add_model_options(p, "fast")
    add_judging_options(p)
    p.add_argument("--all-rows", action="store_true", help="also show low-score detection rows")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--report", metavar="OUT.html", help="also write a self-contained HTML report (the verdict, "
                   "signatures, problems, rows, and for detection the image with both sets of boxes)")
    p.set_defaults(func=run)


def run(args):
    from pathlib import Path

    from refimpl.audit.image import audit, format_result

    tol, accept = judging_options(args)
    result = audit(args.image, Path(args.claimed), args.model.name, tol, accept, args.weights, args.revision, args.dtype,
                   args.path)
    if args.json:
        print_json(result.to_dict())
    else:
        print(format_result(result, args.all_rows))
    if args.report:
        _write_report(args.report, result, args.image, args.claimed)
    return result.exit_code


def _write_report(out, result, image, claimed_path):
    import json
    import sys

    from refimpl.reports import html as report_html
    from refimpl.serving.schemas import unwrap

    try:
        claimed = unwrap(json.loads(open(claimed_path, encoding="utf-8").read()))[0]
    except ValueError:  # a malformed claim: nothing to draw
        claimed = None
    try:
        page = report_html.render_audit(result.to_dict(), image=image, claimed=claimed if isinstance(claimed, list) else None)
    except OSError:  # an image Pillow cannot read: the report without it
        page = report_html.render_audit(result.to_dict())
    report_html.write(out, page)
    print(f"report: {out}", file=sys.stderr)
