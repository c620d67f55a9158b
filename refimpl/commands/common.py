"""Options shared by several commands."""

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
