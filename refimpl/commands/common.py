"""Options shared by several commands."""

import dataclasses
import json
import sys


def add_weights_options(parser, env_var):
    parser.add_argument(
        "--weights",
        metavar="DIR_OR_REPO",
        help=f"a folder holding model.safetensors, config.json and preprocessor_config.json, or a "
        f"Hugging Face repo id (default: ${env_var}, else the official repo)",
    )
    parser.add_argument("--revision", default="main", help="hub revision (branch, tag or commit) to pin (default: main)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="compute precision")


def print_json(obj, file=None):
    json.dump(obj, file or sys.stdout, indent=2)
    (file or sys.stdout).write("\n")


# --- judging options (check-endpoint, audit, audit-dir): one option per Tolerances field ------

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
