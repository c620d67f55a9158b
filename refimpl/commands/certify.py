"""refimpl certify IMPL --model M [IMAGES...]: run another implementation and refimpl on the same
images, compare every tensor both have against per-tensor error budgets, and give a verdict.

IMPL: onnx:FILE.onnx | torchvision:resnet50 | timm:resnet50 | transformers | torch:FILE.py:FACTORY |
cmd:'PROGRAM ... {image} {pixel_values} {out}' | dump:PATH (docs/conformance.md, "certify").

Exit code 0: certified (the final outputs and every compared tensor within budget); 1: diverges
(the first divergence is named and diagnosed); 3: incomplete (the final outputs were not
compared); 2: the implementation could not be run or read."""

import sys

from .common import add_model_argument, nonnegative_float, print_json


def register(sub):
    p = sub.add_parser("certify", help="run another implementation (ONNX, torchvision, timm, transformers, any program) "
                                       "and certify it tensor by tensor", description=__doc__)
    p.add_argument("impl", metavar="IMPL", help="onnx:FILE | torchvision:resnet50 | timm:resnet50 | transformers | "
                                                "torch:FILE.py:FACTORY | cmd:'PROGRAM {image} {pixel_values} {out}' | dump:PATH")
    p.add_argument("images", nargs="*", help="images (default: the examples)")
    add_model_argument(p, default="resnet-50")
    p.add_argument("--weights", help="checkpoint folder or repo id (default: the model's)")
    p.add_argument("--revision", help="hub revision")
    p.add_argument("--map-file", metavar="JSON", help="name map for the implementation's tensors (compare's syntax)")
    p.add_argument("--layout", choices=["nchw", "nhwc"], default="nchw", help="nhwc: a channels-last dump")
    p.add_argument("--factor", type=nonnegative_float, default=None, help="budget factor on refimpl's own float32 error (default 10; reduced precision: its own)")
    p.add_argument("--floor", type=nonnegative_float, default=None, help="budget floor, relative (default 1e-6)")
    p.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16", "int8"], default="auto",
                   help="the port's precision: budgets from refimpl run in it (auto: declared by an int8 graph, else "
                        "the port's tensor dtypes; docs/conformance.md, Reduced precision)")
    p.add_argument("--tensors", action="store_true", help="print the per-tensor table (budget, headroom)")
    p.add_argument("--json", action="store_true", help="the report as JSON (docs/conformance.md)")
    p.add_argument("--report", metavar="OUT.html", help="also write a self-contained HTML report (verdict, coverage, error vs budget per tensor)")
    p.set_defaults(func=run)


def run(args):
    from refimpl.conformance.certify import certify

    factor, floor = args.factor, args.floor  # None: the precision's defaults

    def progress(i, n, name):
        print(f"[{i}/{n}] {name}", file=sys.stderr)

    report = certify(args.impl, args.model.name, args.weights, args.revision, args.images or None, args.map_file,
                     args.layout, factor, floor, progress=progress, precision=args.precision)
    if args.report:
        _write_html(report.to_json(), args.report)
    if args.json:
        print_json(report.to_json())
    else:
        print(report.text(tensors=args.tensors))
    return report.exit_code


def _write_html(data, out):
    """The self-contained HTML report (refimpl.reports.html) of certify's JSON report."""
    import sys

    from refimpl.reports import html as report_html

    report_html.write(out, report_html.render_certify(data))
    print(f"report: {out}", file=sys.stderr)
