"""Throughput and peak memory of `refimpl evaluate` by workers, threads and batch, against the
one-process loop (one image at a time, BLAS on every core), on one synthesized dataset.

    python benchmarks/evaluate_workers.py --weights DIR [--n 1000] [--data DIR] [--configs 1x1x1,1x1x8,2x1x8]

Each configuration (workers x threads x batch) runs in its own process so its peak RSS (the
parent's and the largest worker's) is its own. Prints a Markdown table; docs/evaluation.md quotes one run.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from refimpl.evaluation import evaluate
data, weights, out, workers, threads, batch = sys.argv[1:7]
if workers == "loop":
    import refimpl
    from refimpl.evaluation.data import classification_items
    model = refimpl.load("resnet-50", weights)
    items = classification_items(data, model.checkpoint.id2label)
    t = time.perf_counter()
    for item in items:
        model(item.path)
    seconds = time.perf_counter() - t
    rate = len(items) / seconds
else:
    r = evaluate(data, "resnet-50", out=out, workers=int(workers), threads=int(threads), batch=int(batch),
                 progress=False, weights=weights)
    rate, seconds = r["images_per_second"], r["seconds"]
print(json.dumps({"rate": rate, "seconds": seconds,
                  "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--data", help="an existing synthesized dataset (default: make one in a temp folder)")
    parser.add_argument("--configs", default="loop,1x1x1,1x1x8,1x2x8,2x1x1,2x1x8,2x1x16")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="evaluate-bench-"))
    data = Path(args.data) if args.data else tmp / "data"
    if not args.data:
        from refimpl.synth.datasets import make_classification

        make_classification(data, weights=args.weights, n=args.n)
    print(f"| workers x threads | batch | images/s | speed-up vs loop | peak RSS main / per worker (MB) |")
    print("|---|---|---|---|---|")
    base = None
    for config in args.configs.split(","):
        workers, threads, batch = ("loop", "0", "1") if config == "loop" else config.split("x")
        out = tmp / f"{config}.jsonl"
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", CHILD, str(data), args.weights, str(out), workers, threads, batch],
                                capture_output=True, text=True, check=True)
        r = json.loads(result.stdout.strip().splitlines()[-1])
        base = base or r["rate"]
        label = "one-process loop (BLAS default threads)" if config == "loop" else f"{workers} x {threads}"
        print(f"| {label} | {batch} | {r['rate']:.2f} | {r['rate'] / base:.2f}x | "
              f"{r['rss_main_mb']:.0f} / {r['rss_worker_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
