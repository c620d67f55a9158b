"""refimpl summary MODEL: every layer with its checkpoint name, output shape, parameters and MACs.

Computed from the architecture's tensor shapes and the input size; nothing is downloaded unless
--weights names a hub repo. With --weights, the checkpoint's config.json is used (e.g. its number
of classes) and its tensors' shapes are checked against the table's.
"""

from .common import add_model_argument, print_json


def register(sub):
    p = sub.add_parser("summary", help="layer table: output shapes, parameters, MACs", description=__doc__)
    add_model_argument(p, positional=True)
    p.add_argument("--size", nargs=2, type=int, metavar=("H", "W"),
                   help="input height and width (default: 224 224 for resnet-50; 800 1066 for "
                   "detr-resnet-50, a 4:3 photo after DETR's resize)")
    p.add_argument("--weights", metavar="DIR_OR_REPO",
                   help="read config.json from this checkpoint (folder or hub repo id) and check its "
                   "tensor shapes (default: the official architecture, no weights needed)")
    p.add_argument("--revision", default=None, help="hub revision, with --weights (default: main)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=run)


def run(args):
    from refimpl.viz import summary

    spec = args.model
    config = None
    if args.weights:
        config = summary.checkpoint_config(args.weights, args.revision or spec.default_revision,
                                           spec.model_class.expected_shapes)
    height, width = args.size or (None, None)
    result = summary.summarize(spec, height, width, config)
    if args.json:
        print_json(result.to_json())
    else:
        print(result.table())
    return 0
