"""refimpl bench: time refimpl against PyTorch eager, ONNX Runtime and onnx.reference on the same
weights, in one process and at one thread count (see refimpl/perf/bench.py for how it measures)."""

import sys

from .common import model_weights, print_json

DOC_JSON = """JSON (--json): {"environment": {threads, openblas_env, blas: {libraries: [threadpoolctl info]},
versions}, "settings": {...}, "weights": {model: {source, synthesized}}, "cases": [{model, status,
batch, input, gflop, sgemm: {median_gflops, best_gflops, times_ms}, peers: [{peer, status ("ok" or
"skipped" + reason), median_ms, min_ms, runs, times_ms, ratio_to_pytorch, gflops,
fraction_of_sgemm_peak, memory: {peak_rss_mb, rss_after_imports_mb}}]}], "profile": {...} with --profile}"""


def register(sub):
    from refimpl.perf.bench import MODELS, PEER_DOC, PEERS

    p = sub.add_parser("bench", help="benchmark refimpl against PyTorch, ONNX Runtime and onnx.reference",
                       description=__doc__, epilog="peers: " + "; ".join(f"{k}: {v}" for k, v in PEER_DOC.items()) + ". " + DOC_JSON)
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--repeat", type=int, default=10, help="timed runs per peer after warm-up (default 10; onnx-reference at most 3)")
    p.add_argument("--models", "--model", dest="models", default="resnet-50,detr-resnet-50",
                   help=f"comma-separated model names (any alias), of {', '.join(MODELS)}")
    p.add_argument("--batch", default="1,8", help="classifier batch sizes (default 1,8; DETR runs batch 1)")
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, of {', '.join(PEERS)}")
    p.add_argument("--threads", type=int, default=None, help="threads for every peer (default: the CPU count)")
    p.add_argument("--weights", action="append", default=[], metavar="MODEL=DIR",
                   help="checkpoint folder for a model, e.g. resnet-50=weights/resnet-50 (repeatable; "
                        "default: a synthesized checkpoint, built by refimpl.synth)")
    p.add_argument("--size", type=int, default=224, help="classifier input size (default 224)")
    p.add_argument("--detr-size", default="800x1066", help="DETR input HxW (default 800x1066)")
    p.add_argument("--gap", type=float, default=None, help="idle seconds before each timed run, so that other "
                   "peers' spinning worker threads have gone to sleep (default 0.25)")
    p.add_argument("--no-rss", action="store_true", help="skip the per-peer peak-memory subprocesses")
    p.add_argument("--profile", action="store_true", help="also profile refimpl's ResNet-50 (im2col vs GEMM vs the rest)")
    p.set_defaults(func=run)


def _list(text, allowed, what):
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise ValueError(f"--{what}: unknown {', '.join(bad) or '(empty)'}; choose from {', '.join(allowed)}")
    return items


def run(args):
    from refimpl import registry
    from refimpl.perf import bench

    models = [registry.get(m).name for m in args.models.split(",") if m.strip()]
    if not models:
        raise ValueError("--models: give at least one model")
    peers = _list(args.peers, bench.PEERS, "peers")
    batches = [int(b) for b in args.batch.split(",") if b.strip()]
    if not batches or min(batches) < 1 or args.repeat < 1:
        raise ValueError("--batch and --repeat must be positive")
    weights = model_weights(args.weights)
    report = bench.run(models, batches, peers, args.repeat, args.threads, weights, args.size,
                       bench.parse_size(args.detr_size), rss=not args.no_rss, profile=args.profile,
                       gap=bench.GAP_S if args.gap is None else args.gap)
    if args.json:
        print_json(report)
    else:
        print(bench.format_report(report))
    sys.stdout.flush()
    return 0
