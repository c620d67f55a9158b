"""Options shared by several commands: the model (any registry alias), the weights, the path,
the detection threshold, and the judging tolerances."""

import argparse
import dataclasses
import json
import sys

PATH_HELP = {
    "fast": "fast (default): refimpl/models/fast.py's BN-folded backbone, checked against the reference "
            "on every traced tensor (<= 1e-5 float32, <= 1e-12 float64)",
    "reference": "reference (default): refimpl/models/resnet.py and detr.py, one op per line, the code "
                 "held against transformers layer by layer",
}


def model_type(text):
    """argparse type: any name the registry accepts -> its ModelSpec."""
    from refimpl import registry
    from refimpl.errors import UnknownModelError

    try:
        return registry.get(text)
    except UnknownModelError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def model_names():
    from refimpl import registry

    return ", ".join(registry.names())


def add_model_argument(p, default=None, positional=False):
    """The model, by any registry alias (hosted name, Hugging Face id, short name)."""
    help_ = f"the model: {model_names()}"
    if positional:
        p.add_argument("model", metavar="MODEL", type=model_type, help=help_)
    else:
        p.add_argument("--model", metavar="M", type=model_type, default=default, required=default is None,
                       help=help_ + (f" (default {default})" if default else ""))


def require_task(spec, task, command):
    """`spec` itself if its task is `task`; else UnknownModelError naming the models that fit."""
    from refimpl import registry
    from refimpl.errors import UnknownModelError

    if spec.task != task:
        fitting = [m.name for m in registry.MODELS if m.task == task]
        raise UnknownModelError(f"{command}: {spec.name} is an {spec.task} model; {command} takes {', '.join(fitting)}")
    return spec


def model_weights(items):
    """Repeated `--weights MODEL=DIR_OR_REPO` values -> {model's short name: source}; MODEL is any alias."""
    from refimpl import registry

    weights = {}
    for item in items:
        model, sep, source = item.partition("=")
        if not sep or not source:
            raise ValueError(f"--weights {item!r}: expected MODEL=DIR_OR_REPO")
        weights[registry.get(model).name] = source
    return weights


def add_weights_options(parser, what="the model's"):
    parser.add_argument(
        "--weights",
        metavar="DIR_OR_REPO",
        help=f"a folder holding model.safetensors, config.json and preprocessor_config.json, or a "
        f"Hugging Face repo id (default: {what} environment variable, e.g. REFIMPL_RESNET50_WEIGHTS / "
        "REFIMPL_DETR_WEIGHTS / REFIMPL_RESNET18_WEIGHTS (docs/models.md), else the official repo)",
    )
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) to pin (default: main)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="compute precision")


def add_path_option(parser, default):
    """--path reference|fast: which code computes the answer (never chosen implicitly)."""
    other = "reference" if default == "fast" else "fast"
    parser.add_argument("--path", choices=["reference", "fast"], default=default,
                        help=f"which code computes the answer: {PATH_HELP[default]}; or {other}")


def add_model_options(parser, path_default, model_default="resnet-50"):
    """--model (any alias), the weights options and --path: what every command that loads a
    model by name takes."""
    add_model_argument(parser, default=model_default)
    add_weights_options(parser)
    add_path_option(parser, path_default)


def threshold_type(text):
    """argparse type: a score threshold in [0, 1], or 'none'/'all' for every query."""
    from refimpl.errors import InvalidOptionError
    from refimpl.pipeline.postprocess import parse_threshold

    try:
        return parse_threshold(text)
    except InvalidOptionError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def nonnegative_float(text):
    """argparse type: a tolerance, budget factor or floor: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def print_json(obj, file=None):
    json.dump(obj, file or sys.stdout, indent=2, allow_nan=False)
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
    """--accept and one option per refimpl.audit.judge.Tolerances field, with its default."""
    from refimpl.audit.judge import ACCEPT_PRESETS, SIGNATURES, Tolerances

    p.add_argument("--accept", action="append", default=[], metavar="SIGNATURE",
                   help=f"count a difference explained by SIGNATURE as agreement (repeatable or comma-separated): "
                   f"{', '.join(SIGNATURES)}, or the presets {', '.join(ACCEPT_PRESETS)}")
    g = p.add_argument_group("tolerances (refimpl.audit.judge.Tolerances)")
    for f in dataclasses.fields(Tolerances):
        g.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default, dest=f.name,
                       help=f"{TOLERANCE_HELP.get(f.name, f.name)} (default {f.default})")


def judging_options(args):
    """(Tolerances, accept list) from the parsed options."""
    from refimpl.audit.judge import ACCEPT_PRESETS, SIGNATURES, Tolerances

    accept = [a.strip() for item in args.accept for a in item.split(",") if a.strip()]
    unknown = [a for a in accept if a not in SIGNATURES and a not in ACCEPT_PRESETS]
    if unknown:
        raise ValueError(f"--accept: unknown signature(s) {', '.join(unknown)}")
    tol = Tolerances(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Tolerances)})
    return tol, accept
