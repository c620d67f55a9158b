"""refimpl audit IMAGE --claimed RESPONSE.json: does the reference agree with a response someone
received for IMAGE (the bare output list, or the REST envelope)?

Compares labels and their order and scores (classification), or IoU-matched boxes with per-
detection IoU, corner and score differences, missing and extra detections (detection), with the
engine of `refimpl check-endpoint` (refimpl.judge), and names the hosted API's known signatures
(no_threshold, integer_rounding, uint16_wraparound, normalized_boxes, monotonic_score_transform,
label_style).

Exit status: 0 agree (or explained by signatures given to --accept); 1 disagree (or explained by
signatures not accepted); 3 malformed claimed response (not JSON, not a result list or envelope,
breaks the output schema); 2 usage errors (unreadable files, unknown model, no weights)."""

import argparse
import dataclasses

from .common import add_weights_options, print_json
from .trace import add_model_option

TOLERANCE_HELP = {
    "score_atol": "max score difference per matched item",
    "iou_min": "min IoU of a matched detection above the threshold",
    "corner_px": "max box corner difference in pixels (+1 when the claim rounds to integers)",
    "match_iou": "min IoU to pair two same-label detections",
    "threshold": "the reference's detection threshold",
    "rank_corr_min": "min Spearman correlation to call a score change a monotonic transform",
    "no_threshold_extra": "this many more detections than the reference keeps means no threshold",
}


def add_judging_options(p):
    """--accept and one option per refimpl.judge.Tolerances field, with its default."""
    from ..judge import ACCEPT_PRESETS, SIGNATURES, Tolerances

    p.add_argument("--accept", action="append", default=[], metavar="SIGNATURE",
                   help=f"count a difference explained by SIGNATURE as agreement (repeatable or comma-separated): "
                   f"{', '.join(SIGNATURES)}, or the presets {', '.join(ACCEPT_PRESETS)}")
    g = p.add_argument_group("tolerances (refimpl.judge.Tolerances)")
    for f in dataclasses.fields(Tolerances):
        g.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default, dest=f.name,
                       help=f"{TOLERANCE_HELP.get(f.name, f.name)} (default {f.default})")


def judging_options(args):
    """(Tolerances, accept list) from the parsed options."""
    from ..judge import ACCEPT_PRESETS, SIGNATURES, Tolerances

    accept = [a.strip() for item in args.accept for a in item.split(",") if a.strip()]
    unknown = [a for a in accept if a not in SIGNATURES and a not in ACCEPT_PRESETS]
    if unknown:
        raise ValueError(f"--accept: unknown signature(s) {', '.join(unknown)}")
    tol = Tolerances(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Tolerances)})
    return tol, accept


def register(sub):
    p = sub.add_parser("audit", help="judge a claimed response for one image against the reference",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", help="the image the response was for")
    p.add_argument("--claimed", required=True, metavar="RESPONSE.json",
                   help="the response received: the output list or the REST envelope")
    add_model_option(p)
    add_weights_options(p, "REFIMPL_RESNET50_WEIGHTS or REFIMPL_DETR_WEIGHTS")
    add_judging_options(p)
    p.add_argument("--all-rows", action="store_true", help="also show low-score detection rows")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args):
    from pathlib import Path

    from ..audit import audit, format_result

    tol, accept = judging_options(args)
    result = audit(args.image, Path(args.claimed), args.model, tol, accept, args.weights, args.revision, args.dtype)
    if args.json:
        print_json(result.to_dict())
    else:
        print(format_result(result, args.all_rows))
    return result.exit_code
