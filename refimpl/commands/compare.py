"""refimpl compare A B: tensor-by-tensor comparison of two traces, in data-flow order, with the first
divergence diagnosed. B is the reference: max rel = max|A - B| / max|B|.

A and B may each be a trace (.safetensors), an .npz file, a golden case folder, or a folder of
<module.path>.npy files from another implementation. A tensor passes when
max|A - B| <= atol + rtol * max|B|.

AGREE needs the final outputs compared (the model's, when either side's metadata names it, else
the reference's last tensor in data-flow order) plus every --require NAME.
Exit code 0: agree; 1: disagree; 3: incomplete (nothing failed, but a required tensor was not
compared); 2: unreadable input.

--weights DIR (with --model) gives the diagnosis the checkpoint: a per-channel scale at a batch
norm's output is checked against that BN's running_var ("consistent with eps = 1e-3"), and with
--image, a divergence at pixel_values against candidate resize filters."""

from .common import add_model_argument, add_weights_options, nonnegative_float, print_json


def register(sub):
    p = sub.add_parser("compare", help="compare two traces layer by layer; find and diagnose the first divergence",
                       description=__doc__)
    p.add_argument("a", help="trace under test (file or folder)")
    p.add_argument("b", help="reference trace (file or folder)")
    p.add_argument("--rtol", type=nonnegative_float, default=None, help="relative tolerance, of max|B| (default 1e-4)")
    p.add_argument("--atol", type=nonnegative_float, default=None, help="absolute tolerance (default 1e-6)")
    p.add_argument("--map", action="append", default=[], metavar="OLD=NEW",
                   help="rename a tensor before matching (repeatable); OLD*=NEW* rewrites a prefix; "
                        "'layer{S}.{B}=stages.{S-1}.layers.{B}' captures; 're:REGEX=...' a regular expression")
    p.add_argument("--map-file", metavar="JSON",
                   help='a JSON object {"old name": "new name" or ["name", "other name"], "prefix*": "other*", ...}')
    p.add_argument("--require", nargs="+", default=[], metavar="NAME",
                   help="tensors that must be compared for AGREE, besides the final outputs")
    p.add_argument("--layout", choices=["nchw", "nhwc"], default="nchw",
                   help="nhwc: A's 4-D tensors are channels-last (transposed before comparing)")
    p.add_argument("--failures-only", action="store_true", help="list only the tensors that fail")
    p.add_argument("--json", action="store_true", help="machine-readable output (the report dict, docs/conformance.md)")
    p.add_argument("--report", metavar="OUT.html", help="also write a self-contained HTML report (verdict, coverage, "
                   "each tensor's error against its tolerance, the first divergence and its diagnosis)")
    i = p.add_argument_group("evidence for the diagnosis, and isolating the first divergence")
    i.add_argument("--isolate", action="store_true",
                   help="re-run refimpl's layer at the first divergence on A's input of that layer (the ResNet "
                   "backbone's layers; DETR's input projection, encoder and decoder layers and heads): is this layer "
                   "wrong, or did it inherit the error from upstream, and which variant of it reproduces A? Needs "
                   "--model and --weights")
    i.add_argument("--image", nargs="+", metavar="IMAGE",
                   help="the input image(s) both traces were made from: a divergence at pixel_values is checked "
                   "against candidate resize filters (uses the preprocessor_config.json of --weights)")
    add_model_argument(i, default="resnet-50")
    add_weights_options(i)
    p.set_defaults(func=run)


def run(args):
    from refimpl.conformance.compare import DEFAULT_ATOL, DEFAULT_RTOL, compare, parse_map

    rtol = DEFAULT_RTOL if args.rtol is None else args.rtol
    atol = DEFAULT_ATOL if args.atol is None else args.atol
    model = _model(args) if (args.weights or args.isolate or args.image) else None
    evidence = {}
    if model is not None:
        evidence = dict(params=model.checkpoint.params, image=args.image, preprocessor=model.checkpoint.preprocessor)
    report = compare(args.a, args.b, rtol, atol, parse_map(args.map, args.map_file), require=args.require,
                     layout=args.layout, **evidence)
    isolated = _isolate(args, model, report, rtol, atol) if args.isolate else None
    if args.json:
        print_json(dict(report.to_json(), **({"isolate": isolated} if isolated else {})))
    else:
        print(report.text(all_rows=not args.failures_only))
        if isolated:
            print(f"isolate: {isolated['verdict'].upper()}: {isolated['message']}")
    if args.report:
        import sys

        from refimpl.reports import html as report_html

        report_html.write(args.report, report_html.render_compare(report.to_json()))
        print(f"report: {args.report}", file=sys.stderr)
    return report.exit_code


def _model(args):
    """The reference model of --model/--weights (its parameters and preprocessor config)."""
    from refimpl import registry

    return registry.load(args.model.name, args.weights, args.revision, args.dtype, path="reference")


def _isolate(args, model, report, rtol, atol):
    """refimpl.conformance.isolate at the report's first divergence (None when nothing diverges)."""
    from refimpl.conformance.isolate import isolate
    from refimpl.models import detr

    if report.first is None:
        return None
    if args.model.task == "image-classification":
        names, hp = model.backbone_names, None  # its architecture and names
    else:
        hp = detr.hparams(model.checkpoint.config)
        names = hp.backbone_names
    return isolate(report.a.tensors, report.b.tensors, report.first["name"], model.checkpoint.params, names,
                   rtol, atol, hp=hp)
