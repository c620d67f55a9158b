"""What each of fast.py's choices is worth, one at a time: the fast ResNet-50 forward timed with
one setting changed against the default, in alternating rounds in one process (so machine noise
lands on both), with the median ratio per variant. Random weights (timing does not depend on the
values); the outputs of every variant are checked equal to the default's first (bit-identical
where the variant only moves work between threads, else within 1e-5).

    python benchmarks/fast_ablation.py [--batch 1,8] [--rounds 15] [--gemm] [--json out.json]
    python benchmarks/fast_ablation.py --detr CHECKPOINT_DIR [--rounds 6]     # DETR 800x1066

Variants (each against "default", fast.py's defaults):
- split-2^N: the elementwise passes split over two threads (fast.set_elementwise_threads(2)),
  passes under 2^N elements unsplit (fast.SPLIT_MIN_ELEMENTS). (The first results committed,
  benchmarks/results/ablation-*.json, were measured when the split at 2^17 was the default: there
  "default" is split-2^17 and "one-thread" is today's default; the files say so.)
- no-bands: every conv as one GEMM (fast.BAND_MIN_BYTES = infinity);
- DETR only, reference-transformer: fast.py's backbone under detr.py's transformer
  (detr.forward(backbone=fast.backbone)) instead of fast_detr.py: what fast_detr's attention savings and
  `last_stage` are worth together.
GEMM-shape experiments (the joint conv3+shortcut GEMM, bias in the GEMM, the transposed
orientation for small-M GEMMs) are micro-benchmarks of the GEMMs alone: `--gemm`.
"""

import argparse
import json
import statistics
import time

import numpy as np

from refimpl.models import fast, resnet


def random_params(seed=0):
    """A ResNet-50 params mapping with random weights of the right shapes (float32)."""
    rng = np.random.default_rng(seed)
    p = {}
    names = resnet.CLASSIFIER_NAMES
    conv, norm, _, _ = names.stem()

    def conv_bn(c, n, o, i, k):
        p[c + ".weight"] = (rng.standard_normal((o, i, k, k)) * (2 / (i * k * k)) ** 0.5).astype(np.float32)
        p[n + ".weight"] = np.ones(o, np.float32)
        p[n + ".bias"] = (rng.standard_normal(o) * 0.1).astype(np.float32)
        p[n + ".running_mean"] = np.zeros(o, np.float32)
        p[n + ".running_var"] = np.ones(o, np.float32)

    conv_bn(conv, norm, 64, 3, 7)
    c_in = 64
    for block in resnet.blocks(names):
        width = 64 * 2 ** block.stage
        shapes = ((width, c_in, 1), (width, width, 3), (4 * width, width, 1))
        for (o, i, k), c, n in zip(shapes, block.convs, block.norms):
            conv_bn(c, n, o, i, k)
        if block.shortcut is not None:
            conv_bn(*block.shortcut, 4 * width, c_in, 1)
        c_in = 4 * width
    p["classifier.1.weight"] = (rng.standard_normal((1000, 2048)) * 0.02).astype(np.float32)
    p["classifier.1.bias"] = np.zeros(1000, np.float32)
    return p


class Setting:
    """A context manager that changes one of fast.py's knobs and restores it."""

    def __init__(self, split_min=None, threads=None, band_min=None):
        self.split_min, self.threads, self.band_min = split_min, threads, band_min

    def __enter__(self):
        self.saved = (fast.SPLIT_MIN_ELEMENTS, fast._HELPER["threads"], fast.BAND_MIN_BYTES)
        if self.split_min is not None:
            fast.SPLIT_MIN_ELEMENTS = self.split_min
        if self.threads is not None:
            fast.set_elementwise_threads(self.threads)
        if self.band_min is not None:
            fast.BAND_MIN_BYTES = self.band_min

    def __exit__(self, *exc):
        fast.SPLIT_MIN_ELEMENTS, threads, fast.BAND_MIN_BYTES = self.saved
        fast.set_elementwise_threads(threads)


VARIANTS = {
    "default": Setting(),  # fast.py's defaults: elementwise passes on one thread
    "split-2^17": Setting(threads=2, split_min=1 << 17),
    "split-2^18": Setting(threads=2, split_min=1 << 18),
    "split-2^19": Setting(threads=2, split_min=1 << 19),
    "split-2^20": Setting(threads=2, split_min=1 << 20),
    "no-bands": Setting(band_min=1 << 62),
    "reference-transformer": Setting(),  # DETR only (detr_runner)
}
RESNET_VARIANTS = ("default", "split-2^17", "split-2^18", "split-2^19", "split-2^20", "no-bands")


def time_variants(run, variants, rounds, warmup=2):
    """{variant: [ms per round]}, the variants interleaved within each round. run(variant) runs
    one forward and returns its output array."""
    checks = {}
    for v in variants:
        with VARIANTS[v]:
            checks[v] = run(v)
            for _ in range(warmup):
                run(v)
    base = checks["default"]
    for v in variants:  # how far each variant's output is from the default's (0: bit-identical)
        diff = float(np.max(np.abs(checks[v].astype(np.float64) - base)) / np.max(np.abs(base)))
        print(f"  {v}: max |output - default's| / max |default's| = {diff:.1e}")
        assert diff < 1e-4, f"{v} changes the output by {diff:.1e}"
    out = {v: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            with VARIANTS[v]:
                t = time.perf_counter()
                run(v)
                out[v].append(1e3 * (time.perf_counter() - t))
    return out


def detr_runner(checkpoint, height=800, width=1066):
    """run(variant) for DETR at height x width on a loaded checkpoint (the fast path)."""
    from refimpl import registry
    from refimpl.models import detr, fast_detr

    model = registry.get("detr-resnet-50").load(checkpoint, path="fast")
    params, hp = model.checkpoint.params, model.hparams
    x = np.random.default_rng(1).standard_normal((1, 3, height, width)).astype(np.float32)

    def run(variant):
        if variant == "reference-transformer":
            return detr.forward(params, hp, x, None, None, fast.backbone)["logits"]
        return fast_detr.forward(params, hp, x)["logits"]

    return run


def summarize(times):
    base = times["default"]
    rows = {}
    for v, ts in times.items():
        ratios = [a / b for a, b in zip(ts, base)]
        rows[v] = {"median_ms": statistics.median(ts), "min_ms": min(ts), "ratio_to_default": statistics.median(ratios)}
    return rows


# --- GEMM micro-benchmarks ----------------------------------------------------------------------

def _best(fn, repeat):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts)


def gemm_experiments(batch, repeat=30):
    """Per shape: the alternatives to fast.py's choices, timed alone (median ms)."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    rows = []
    # 1. conv3 + projection shortcut: one GEMM [t | x'] @ [W3; Ws] vs two GEMMs and an add.
    for stage, (hw, c_mid, c_in) in enumerate(((56, 64, 64), (28, 128, 256), (14, 256, 512), (7, 512, 1024))):
        m, o = batch * hw * hw, 4 * c_mid
        t, xs = rng.standard_normal((m, c_mid), f32), rng.standard_normal((m, c_in), f32)
        joint = np.concatenate([t, xs], 1)
        w3, ws = rng.standard_normal((c_mid, o), f32), rng.standard_normal((c_in, o), f32)
        wj = np.concatenate([w3, ws], 0)
        out, tmp = np.empty((m, o), f32), np.empty((m, o), f32)

        def one():
            np.matmul(joint, wj, out=out)

        def two():
            np.matmul(t, w3, out=out)
            np.matmul(xs, ws, out=tmp)
            np.add(out, tmp, out=out)

        rows.append({"experiment": "joint conv3+shortcut", "stage": stage + 1, "M": m, "K": c_mid + c_in, "N": o,
                     "chosen_ms": _best(one, repeat), "alternative_ms": _best(two, repeat)})
    # 2. bias in the GEMM (a ones column in the 3x3 convs' columns) vs a separate bias pass.
    for stage, (hw, c) in enumerate(((56, 64), (28, 128), (14, 256), (7, 512))):
        m, k = batch * hw * hw, 9 * c
        cols = rng.standard_normal((m, k), f32)
        cols1 = np.concatenate([cols, np.ones((m, 1), f32)], 1)
        w = rng.standard_normal((k, c), f32)
        w1 = np.concatenate([w, rng.standard_normal((1, c), f32)], 0)
        b = w1[-1].copy()
        out = np.empty((m, c), f32)

        def separate():
            np.matmul(cols, w, out=out)
            np.add(out, b, out=out)

        def folded():
            np.matmul(cols1, w1, out=out)

        rows.append({"experiment": "bias in the GEMM (3x3 conv)", "stage": stage + 1, "M": m, "K": k, "N": c,
                     "chosen_ms": _best(separate, repeat), "alternative_ms": _best(folded, repeat)})
    # 3. orientation: cols (M, K) @ W (K, O) vs W^T (O, K) @ cols^T (K, M), for the stem and stage 4.
    for label, m, k, o in (("stem 7x7", batch * 112 * 112, 147, 64), ("stage 4 3x3", batch * 49, 4608, 512),
                           ("stage 4 1x1 expand", batch * 49, 512, 2048), ("stage 4 1x1 reduce", batch * 49, 2048, 512)):
        cols, w = rng.standard_normal((m, k), f32), rng.standard_normal((k, o), f32)
        cols_t, w_t = np.ascontiguousarray(cols.T), np.ascontiguousarray(w.T)
        out, out_t = np.empty((m, o), f32), np.empty((o, m), f32)
        rows.append({"experiment": "orientation (O,K)@(K,M)", "stage": label, "M": m, "K": k, "N": o,
                     "chosen_ms": _best(lambda: np.matmul(cols, w, out=out), repeat),
                     "alternative_ms": _best(lambda: np.matmul(w_t, cols_t, out=out_t), repeat)})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--variants", help="comma-separated (default: all that apply)")
    ap.add_argument("--detr", metavar="CHECKPOINT_DIR", help="time DETR 800x1066 instead of ResNet-50")
    ap.add_argument("--gemm", action="store_true", help="also the GEMM micro-benchmarks")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_info

    result = {"blas": [{k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                       for i in threadpool_info()], "split_min_default": fast.SPLIT_MIN_ELEMENTS, "cases": {}}
    print("BLAS:", result["blas"])
    if args.detr:
        variants = args.variants.split(",") if args.variants else list(VARIANTS)
        rows = summarize(time_variants(detr_runner(args.detr), variants, args.rounds))
        result["cases"]["detr-resnet-50 batch 1 800x1066"] = rows
        report(f"DETR 800x1066, {args.rounds} rounds", rows)
        return dump(result, args.json)
    params = random_params()
    variants = args.variants.split(",") if args.variants else list(RESNET_VARIANTS)
    for batch in (int(b) for b in args.batch.split(",")):
        x = np.random.default_rng(1).standard_normal((batch, 3, 224, 224)).astype(np.float32)
        rows = summarize(time_variants(lambda v: fast.classify(params, x), variants, args.rounds))
        result["cases"][f"resnet-50 batch {batch}"] = rows
        report(f"ResNet-50 batch {batch}, {args.rounds} rounds", rows)
        if args.gemm:
            result.setdefault("gemm", {})[batch] = g = gemm_experiments(batch)
            for r in g:
                print(f"  {r['experiment']:28s} {str(r['stage']):18s} M={r['M']:6d} K={r['K']:5d} N={r['N']:5d}"
                      f"  chosen {r['chosen_ms']:7.3f} ms  alternative {r['alternative_ms']:7.3f} ms")
    dump(result, args.json)


def report(title, rows):
    print("\n" + title)
    for v, r in rows.items():
        print(f"  {v:22s} median {r['median_ms']:8.2f} ms  min {r['min_ms']:8.2f} ms  ratio {r['ratio_to_default']:.3f}")


def dump(result, path):
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
