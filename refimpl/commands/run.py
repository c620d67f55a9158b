"""refimpl run MODEL IMAGE: the hosted API's call, `refimpl.run(model, inputs)`, from the shell.

Prints the result as JSON, exactly what the hosted API's "result" would hold (--envelope: the
whole REST envelope). MODEL: @cf/microsoft/resnet-50, @cf/facebook/detr-resnet-50 or their
Hugging Face ids. Output shapes for DETR:

    --shape reference   threshold 0.5, float pixel boxes, query order (default; transformers)
    --shape hosted      every query, sorted by score, integer boxes (as the hosted API answers)
    --shape hosted --wrap-uint16   also negative coordinates as unsigned 16-bit (-2 -> 65534)
"""

import argparse

from .common import add_model_argument, add_path_option, add_weights_options, print_json, threshold_type


def register(sub):
    p = sub.add_parser("run", help="the hosted API's call: run(model, inputs), printed as JSON", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_argument(p, positional=True)
    p.add_argument("image", metavar="IMAGE", help="image file; its bytes are the inputs")
    p.add_argument("--input-form", choices=["raw", "json"], default="raw",
                   help='raw: the bytes (default); json: {"image": [...the bytes...]}, the other input form')
    p.add_argument("--envelope", action="store_true", help="print the REST envelope {result, success, errors, messages}")
    c = p.add_argument_group("ResNet-50 options")
    c.add_argument("--top-k", type=int, help="number of classes (default 5)")
    c.add_argument("--labels", choices=["seed", "raw"], help="label style (default seed: 'PERSIAN CAT')")
    d = p.add_argument_group("DETR options")
    d.add_argument("--shape", choices=["reference", "hosted"], help="output shape (default reference)")
    d.add_argument("--threshold", type=threshold_type, default=argparse.SUPPRESS, metavar="T|none",
                   help="score threshold; none: every query (default 0.5 for reference, none for hosted)")
    d.add_argument("--wrap-uint16", action="store_true",
                   help="with --shape hosted: negative coordinates as unsigned 16-bit (65534 for -2)")
    w = p.add_argument_group("weights and path")
    add_weights_options(w)
    add_path_option(w, "fast")
    p.set_defaults(func=run)


def read_bytes(path):
    """The image file's bytes, or InvalidInputError naming the file (as `classify` says it)."""
    from refimpl.errors import InvalidInputError

    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise InvalidInputError(f"image file not found: {path}") from None
    except OSError as e:
        raise InvalidInputError(f"cannot read image file {path}: {e.strerror or e}") from None


def run(args):
    from refimpl.serving.contract import run as contract_run
    from refimpl.serving.schemas import envelope

    options = {k: v for k, v in (("top_k", args.top_k), ("labels", args.labels), ("shape", args.shape)) if v is not None}
    if hasattr(args, "threshold"):
        options["threshold"] = args.threshold
    if args.wrap_uint16:
        options["wrap_uint16"] = True
    data = read_bytes(args.image)
    inputs = {"image": list(data)} if args.input_form == "json" else data
    result = contract_run(args.model.hosted_name, inputs, weights=args.weights, revision=args.revision, dtype=args.dtype,
                          path=args.path, **options)
    print_json(envelope(result) if args.envelope else result)
    return 0
