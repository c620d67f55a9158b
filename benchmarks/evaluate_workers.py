"""Throughput (images/s) and peak memory of `refimpl evaluate` for ResNet-50, by workers x BLAS
threads per worker x batch, against the one-process loop (one image at a time, BLAS defaults), on
one synthesized dataset built once.

    python benchmarks/evaluate_workers.py [--weights W] [--n 1000] [--repeats 2] \\
        [--out benchmarks/results/evaluate_workers.json] [--markdown benchmarks/results/evaluate_workers.md]

Configurations (`--configs`, default: all of them for this machine's C cores): `loop`, then
`WxTxB` = W workers x T BLAS threads each x batch B, for W in {1, C}, T in {1, C/W}, B in
{1, 4, 8, 16}. Every configuration runs `--repeats` times, in alternating order (forward,
backward, forward, ...) so that a drift of the machine's load does not favour one end of the
list. Each run is its own process (`evaluate` on a fresh results file); its peak memory is the
largest sum of RSS over that process and all its descendants (the workers), sampled every
50 ms with psutil. A run's images/s is evaluate's own (images computed / seconds, worker start
and model loading included, as a user sees them).

Writes the JSON (every run, the median per configuration, the machine, the load average before
and after) and the Markdown table for the README, and prints the best configuration and the
lines to put in refimpl/evaluation/defaults.py. Do not run it on a machine that is busy: the
numbers would say more about the other jobs than about refimpl.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
data, weights, out, workers, threads, batch = sys.argv[1:7]
weights = weights or None
if workers == "loop":
    import refimpl
    from refimpl.evaluation.data import classification_items
    model = refimpl.load("resnet-50", weights)
    items = classification_items(data, model.checkpoint.id2label)
    t = time.perf_counter()
    for item in items:
        model(item.path)
    seconds = time.perf_counter() - t
    print(json.dumps({"images": len(items), "seconds": seconds, "rate": len(items) / seconds}))
else:
    from refimpl.evaluation import evaluate
    r = evaluate(data, "resnet-50", out=out, workers=int(workers), threads=int(threads), batch=int(batch),
                 progress=False, weights=weights)
    print(json.dumps({"images": r["computed_now"], "seconds": r["seconds"], "rate": r["images_per_second"]}))
"""


def all_configs(cores):
    configs = ["loop"]
    for w in sorted({1, cores}):
        for t in sorted({1, max(1, cores // w)}):
            configs += [f"{w}x{t}x{b}" for b in (1, 4, 8, 16)]
    return configs


def parse(config):
    """'loop' or 'WxTxB' -> (workers, threads, batch) as strings for the child."""
    if config == "loop":
        return "loop", "0", "1"
    parts = config.split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise SystemExit(f"--configs: {config!r} is neither 'loop' nor WORKERSxTHREADSxBATCH (e.g. 2x1x8)")
    return tuple(parts)


def tree_rss(pid):
    """(RSS of the process `pid` and all its descendants in bytes, number of processes)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total, len(procs)


def run_one(config, data, weights, folder, env):
    """One run of `config` in its own process -> {"rate", "seconds", "images", "peak_rss_mb", "processes"}."""
    workers, threads, batch = parse(config)
    out = folder / f"{config}.jsonl"
    out.unlink(missing_ok=True)  # every run computes every image
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data), weights or "", str(out), workers, threads, batch],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = {"rss": 0, "processes": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            rss, n = tree_rss(proc.pid)
            peak["rss"], peak["processes"] = max(peak["rss"], rss), max(peak["processes"], n)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{config} failed (exit {proc.returncode}):\n{stderr[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    return dict(result, peak_rss_mb=round(peak["rss"] / 2**20, 1), processes=peak["processes"])


def summarize(runs, configs):
    rows = []
    for config in configs:
        mine = [r for r in runs if r["config"] == config]
        rows.append({"config": config, "workers": parse(config)[0], "threads": parse(config)[1], "batch": parse(config)[2],
                     "rate_median": statistics.median(r["rate"] for r in mine),
                     "rates": [r["rate"] for r in mine], "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
                     "processes": max(r["processes"] for r in mine)})
    base = next((r["rate_median"] for r in rows if r["config"] == "loop"), None)
    for r in rows:
        r["speedup_vs_loop"] = r["rate_median"] / base if base else None
    return rows


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown(result):
    lines = [f"ResNet-50, {result['n_images']} synthesized images, {result['machine']['cores']} cores "
             f"({result['machine']['cpu']}), {result['repeats']} run(s) per configuration in alternating order; "
             f"load average before/after: {result['load_before']} / {result['load_after']}.", "",
             "| configuration | workers x BLAS threads | batch | images/s (median) | speed-up vs loop | peak RSS, all processes (MB) |",
             "|---|---|---|---|---|---|"]
    for r in result["summary"]:
        name = "one-process loop (image at a time, BLAS defaults)" if r["config"] == "loop" else r["config"]
        who = "1 x default" if r["config"] == "loop" else f"{r['workers']} x {r['threads']}"
        batch = "1" if r["config"] == "loop" else r["batch"]
        speed = "n/a" if r["speedup_vs_loop"] is None else f"{r['speedup_vs_loop']:.2f}x"
        lines.append(f"| {name} | {who} | {batch} | {r['rate_median']:.2f} | {speed} | {r['peak_rss_mb']:.0f} |")
    best = result["best"]
    if best:
        lines += ["", f"Best: {best['config']} ({best['rate_median']:.2f} images/s)."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="ResNet-50 checkpoint folder or repo id (default: the model's usual source)")
    parser.add_argument("--n", type=int, default=1000, help="images in the synthesized dataset (default 1000)")
    parser.add_argument("--data", help="an existing synthesized dataset (default: build one in a temp folder)")
    parser.add_argument("--configs", help="comma-separated: loop and/or WxTxB (default: all for this machine)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration (default 2)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "evaluate_workers.json"))
    parser.add_argument("--markdown", default=str(ROOT / "benchmarks" / "results" / "evaluate_workers.md"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from refimpl.evaluation import defaults

    cores = defaults.cores()
    configs = args.configs.split(",") if args.configs else all_configs(cores)
    for c in configs:
        parse(c)
    folder = Path(tempfile.mkdtemp(prefix="evaluate-bench-"))
    data = Path(args.data) if args.data else folder / "data"
    if not args.data:
        from refimpl.synth.datasets import make_classification

        print(f"building {args.n} synthesized images in {data} ...", file=sys.stderr, flush=True)
        make_classification(data, weights=args.weights, n=args.n)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs = []
    for repeat in range(args.repeats):
        for config in (configs if repeat % 2 == 0 else configs[::-1]):  # alternating order
            r = dict(run_one(config, data, args.weights, folder, env), config=config, repeat=repeat)
            runs.append(r)
            print(f"{config:>10} run {repeat + 1}: {r['rate']:.2f} images/s, peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"({r['processes']} process(es))", file=sys.stderr, flush=True)
    summary = summarize(runs, configs)
    parallel = [r for r in summary if r["config"] != "loop"]
    best = max(parallel, key=lambda r: r["rate_median"]) if parallel else None
    result = {"n_images": args.n, "weights": args.weights, "repeats": args.repeats, "configs": configs,
              "machine": {"cores": cores, "cpu": cpu_name(), "python": platform.python_version()},
              "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
              "runs": runs, "summary": summary, "best": best}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    Path(args.markdown).write_text(table)
    print(table)
    if best:
        workers = "None  # one per core" if int(best["workers"]) == cores else best["workers"]
        print(f"to make it the default, in refimpl/evaluation/defaults.py: WORKERS = {workers}, "
              f"THREADS = {best['threads']}, BATCH['image-classification'] = {best['batch']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
