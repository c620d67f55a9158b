"""refimpl summary MODEL: every layer with its checkpoint name, output shape, parameters and MACs.

Computed from the architecture's tensor shapes and the input size; nothing is downloaded unless
--weights names a hub repo. With --weights, the checkpoint's config.json is used (e.g. its number
of classes) and its tensors' shapes are checked against the table's.
"""

from .common import add_model_argument, model_type, print_json


def register(sub):
    p = sub.add_parser("summary", help="layer table: output shapes, parameters, MACs", description=__doc__)
    add_model_argument(p, positional=True)  # also --model M (see run)
    p.add_argument("--size", nargs=2, type=int, metavar=("H", "W"),
                   help="input height and width (default: 224 224 for the ResNets; 800 1066 for "
                   "the DETRs, a 4:3 photo after DETR's resize)")
    p.add_argument("--weights", metavar="DIR_OR_REPO",
                   help="read config.json from this checkpoint (folder or hub repo id) and check its "
                   "tensor shapes (default: the official architecture, no weights needed)")
    p.add_argument("--revision", default=None, help="hub revision, with --weights (default: main)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=run)
    # `summary --model M` as every other command spells it: the positional becomes optional.
    for action in p._actions:
        if action.dest == "model":
            action.nargs = "?"
            action.default = None
    p.add_argument("--model", dest="model_option", metavar="M", type=model_type, default=None,
                   help="the model, as the positional MODEL")


def run(args):
    from refimpl.pipeline.loaded import expecting
    from refimpl.viz import summary

    if (args.model is None) == (args.model_option is None) and args.model != args.model_option:
        raise ValueError("summary: name the model once, as MODEL or --model M")
    spec = args.model or args.model_option
    if spec is None:
        raise ValueError("summary: name the model, as MODEL or --model M")
    config = None
    if args.weights:  # the checkpoint must be this entry's architecture, with the shapes counted
        config = summary.checkpoint_config(args.weights, args.revision or spec.default_revision,
                                           expecting(spec.model_class, (spec.name, spec.architecture)))
    height, width = args.size or (None, None)
    result = summary.summarize(spec, height, width, config)
    if args.json:
        print_json(result.to_json())
    else:
        print(result.table())
    return 0
