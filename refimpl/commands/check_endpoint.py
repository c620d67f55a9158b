"""refimpl check-endpoint URL IMAGE...: send each image to an endpoint that implements the hosted
API's contract (refimpl serve, the hosted API, someone's port) and compare every answer with the
local reference.

Prints a per-image table and a verdict, or JSON with --json. Exit status: 0 when every answer
agrees within the tolerances (or differs only by signatures given to --accept), 1 when one
disagrees (or is another image's, or malformed), 3 when none does but one is INCOMPLETE (too
little of it judged), 2 on usage errors. Options and IMAGEs may come in any order.

Verdict words (the same in audit and audit-dir): AGREE, EXPLAINED, DISAGREE, WRONG IMAGE? (the
answer looks like another image's), INCOMPLETE, MALFORMED; --accept decides only whether
EXPLAINED passes, never INCOMPLETE or WRONG IMAGE?. Each image's line and the run's verdict say
how many claimed rows were judged, of how many.
Signatures named in the verdict: no_threshold, integer_rounding, uint16_wraparound,
normalized_boxes, monotonic_score_transform, label_style, score_formula (the post-processing
formula that reproduces the claimed scores from refimpl's logits). --accept hosted accepts the
hosted DETR's observed shape (no_threshold, integer_rounding, uint16_wraparound).
"""

import argparse

from .common import add_judging_options, add_path_option, add_weights_options, judging_options, model_type, print_json


def register(sub):
    p = sub.add_parser("check-endpoint", help="check an endpoint's answers against the local reference",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", metavar="URL",
                   help="the route .../client/v4/accounts/ID/ai/run/MODEL, a prefix ending in /ai/run, "
                   "or a server origin such as http://127.0.0.1:8787")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files to send")
    p.add_argument("--model", type=model_type, help="@cf/microsoft/resnet-50 or @cf/facebook/detr-resnet-50 "
                   "(or any alias refimpl knows; optional when URL names it)")
    p.add_argument("--token", help="sent as 'Authorization: Bearer TOKEN' (default: $REFIMPL_ENDPOINT_TOKEN)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--all-rows", action="store_true", help="also show low-score detection rows")
    p.add_argument("--body", choices=["raw", "json"], default="raw",
                   help='raw: the image bytes as the body (default, like curl --data-binary); json: {"image": [...]}')
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    add_judging_options(p)
    w = p.add_argument_group("local reference")
    add_weights_options(w)
    add_path_option(w, "fast")
    p.set_defaults(func=run)


def run(args):
    from refimpl.audit.endpoint import check_endpoint, format_report

    tolerances, accept = judging_options(args)
    model = args.model.hosted_name if args.model is not None else None
    report = check_endpoint(args.url, model, args.images, token=args.token, tolerances=tolerances,
                            accept=accept, body=args.body, timeout=args.timeout, weights=args.weights,
                            revision=args.revision, dtype=args.dtype, path=args.path)
    if args.json:
        print_json(report.to_dict())
    else:
        print(format_report(report, args.all_rows))
    return report.exit_code
