"""Side-by-side benchmark: refimpl (fast and readable paths) against PyTorch eager, ONNX Runtime
and onnx.reference, on the same weights, in one process, with one thread count for all.

    refimpl bench [--json] [--repeat N] [--models resnet-50,detr-resnet-50] [--batch 1,8] [--profile]

How it measures (everything here is a benchmark, never a pass/fail test):
- Each case (model, batch) builds every peer, runs each `warmup` times, then times them in
  interleaved rounds (peer A, B, C, ..., A, B, C, ...) so that machine noise lands on all of them
  alike; a numpy sgemm (2048^3) is one more "peer" of every round, which gives the same-run peak
  the models' GFLOP/s are compared with. Reported: median and min ms, ratio to PyTorch (medians),
  GFLOP/s (model FLOPs = 2 x MACs of every conv and linear layer, counted from the layer shapes,
  over the median time) and its fraction of the round's sgemm GFLOP/s (median over median).
- Peak resident memory: each (case, peer) again in a fresh subprocess that imports only what that
  peer needs, loads the model and runs it twice; reported as that process's ru_maxrss, next to
  its RSS right after the imports (so the model's own share is the difference).
- The BLAS that numpy runs (threadpoolctl), the OPENBLAS_* variables in effect, the thread count.
- Peers that are not installed, or whose setup fails (an ONNX export, say), are reported as
  "skipped" with the reason. Nothing is faked or estimated.

Weights: `--weights MODEL=DIR` (a checkpoint folder), else a synthesized checkpoint built by
refimpl.synth (needs the `test` extra: torch, transformers, timm); the output says which.
Both refimpl paths run on the same loaded weights: "refimpl" is `path="fast"`, "refimpl-readable"
is `path="reference"` (refimpl/pipeline/loaded.py), chosen per peer, never by a global switch.
"""

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refimpl import registry
from refimpl.models import resnet
from refimpl.viz import summary

PEERS = ("refimpl", "refimpl-readable", "refimpl-gemms", "pytorch", "onnxruntime", "onnx-reference")
MODELS = tuple(spec.name for spec in registry.MODELS)
PEER_DOC = {
    "refimpl": "refimpl, path fast (refimpl/models/fast.py: BN folded, one GEMM per conv)",
    "refimpl-readable": "refimpl, path reference (refimpl/models/resnet.py, one op per line)",
    "refimpl-gemms": "only the fast path's GEMMs (ResNet-50), on its own buffers, in its order: the floor "
                     "of any im2col + this BLAS implementation",
    "pytorch": "PyTorch eager: transformers model on the same weights, torch.no_grad()",
    "onnxruntime": "ONNX Runtime CPU: the transformers model exported with torch.onnx.export",
    "onnx-reference": "onnx.reference.ReferenceEvaluator: ONNX's pure-numpy evaluator, same export",
}
SLOW_PEERS = {"onnx-reference": 3}  # at most this many timed runs (one warm-up)
SGEMM_N = 2048
GAP_S = 0.25  # idle time before each timed run (see measure_case)


class Skip(Exception):
    """A peer that cannot run here; the message says why."""


@dataclass
class Case:
    model: str
    batch: int
    height: int
    width: int

    @property
    def label(self):
        return f"{self.model} batch {self.batch} {self.height}x{self.width}"


@dataclass
class Context:
    weights: dict  # model -> checkpoint folder
    threads: int
    workdir: Path
    exports: dict = field(default_factory=dict)  # (model, batch, h, w) -> onnx path or Skip message


# --- FLOPs ------------------------------------------------------------------------------------

def model_flops(case):
    """2 x the multiply-accumulates refimpl.viz.summary counts (every conv, linear layer and
    attention product; not the element-wise work) for the case's batch and input size."""
    spec = registry.get(case.model)
    return 2 * case.batch * summary.summarize(spec, case.height, case.width).totals()["macs"]


# --- environment --------------------------------------------------------------------------------

def blas_info():
    """Which BLAS numpy runs, as threadpoolctl reports it (library, version, kernel, threads)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"error": "threadpoolctl is not installed (pip install threadpoolctl)"}
    np.ones((2, 2)) @ np.ones((2, 2))  # make sure numpy's BLAS is loaded
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    keep = ("internal_api", "prefix", "version", "architecture", "num_threads", "threading_layer", "filepath")
    return {"libraries": [{k: p.get(k) for k in keep} for p in pools]}


def environment(threads):
    import importlib.metadata as md

    versions = {}
    for name in ("numpy", "torch", "transformers", "onnx", "onnxruntime", "threadpoolctl"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "refimpl_elementwise_threads": 1,  # fast.py's default; the profile also times 2 (as_benched_two_threads)
        "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
        "blas": blas_info(),
        "versions": versions,
    }


@contextmanager
def thread_limit(threads):
    """numpy's BLAS (and OpenMP) at `threads` for the duration; torch and ORT are told directly.
    refimpl's elementwise passes stay on one thread (fast.py's default)."""
    from refimpl.models import fast

    previous = fast.set_elementwise_threads(1)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield
            return
        with threadpool_limits(threads):
            yield
    finally:
        fast.set_elementwise_threads(previous)


def peak_rss_mb():
    """This process's peak RSS. Linux: VmHWM (ru_maxrss would include the parent's peak, which a
    fork+exec child inherits)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return r / 1024 if sys.platform != "darwin" else r / 2**20


def current_rss_mb():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return None


# --- inputs and weights -----------------------------------------------------------------------

def inputs(case, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(case.batch, 3, case.height, case.width)).astype(np.float32)
    mask = np.ones((case.batch, case.height, case.width), np.int64)
    return x, mask


def synthesize(model, folder):
    """Build a synthesized checkpoint of `model` with refimpl.synth (needs torch and transformers)."""
    import importlib

    spec = registry.get(model)
    try:
        import transformers  # noqa: F401
    except ImportError as e:
        raise Skip("no --weights given and transformers is not installed to synthesize a checkpoint "
                   "(pip install -e '.[test]')") from e
    # the registry entry says how (its `synthesize` and `config`): any entry, no per-model code here
    return importlib.import_module("refimpl.synth").synthesize(spec, folder)


# --- peers --------------------------------------------------------------------------------------
#
# setup(case, ctx) -> a no-argument callable that runs one forward pass; raises Skip.

def setup_refimpl(case, ctx, path="fast"):
    spec = registry.get(case.model)
    x, mask = inputs(case)
    model = spec.load(ctx.weights[spec.name], path=path)
    if spec.task == "image-classification":
        return lambda: model.forward(x)
    return lambda: model.forward(x, mask)


def setup_gemm_floor(case, ctx):
    """The fast path's GEMMs alone: one forward is run with `fast.gemm` recording each call's
    operands (the very views into fast.py's reused buffers, so strides and cache behaviour are the
    forward's), then each run replays those matmuls in order. What remains of a forward once
    everything but its GEMMs is free: no im2col + numpy-BLAS implementation can be faster."""
    from refimpl.models import fast

    if registry.get(case.model).task != "image-classification":
        raise Skip("ResNet-50 only")
    x, _ = inputs(case)
    model = registry.get(case.model).load(ctx.weights[registry.get(case.model).name], path="fast")
    calls = []
    original = fast.gemm

    def recording(layout, cols, w, out):
        calls.append((cols, w, out))
        return original(layout, cols, w, out)

    fast.gemm = recording
    try:
        model.forward(x)
    finally:
        fast.gemm = original

    def run():
        for cols, w, out in calls:
            np.matmul(cols, w, out=out)

    return run


def setup_pytorch(case, ctx):
    try:
        import torch
        import transformers
    except ImportError as e:
        raise Skip(f"not installed: {e.name}") from e
    torch.set_num_threads(ctx.threads)
    spec = registry.get(case.model)
    x, mask = inputs(case)
    xt, mt = torch.from_numpy(x), torch.from_numpy(mask)
    model = getattr(transformers, spec.hf_class).from_pretrained(ctx.weights[spec.name]).eval()
    if spec.task == "image-classification":
        kwargs = {"pixel_values": xt}
    else:
        kwargs = {"pixel_values": xt, "pixel_mask": mt}

    def run():
        with torch.inference_mode():
            return model(**kwargs)

    return run


def export_onnx(case, ctx):
    """Export the transformers model for this input shape once per run (static shapes, as ORT
    runs best). Returns the .onnx path; raises Skip with the exporter's error."""
    key = (case.model, case.batch, case.height, case.width)
    if key in ctx.exports:
        if isinstance(ctx.exports[key], Skip):
            raise ctx.exports[key]
        return ctx.exports[key]
    try:
        import onnx  # noqa: F401
        import torch
        import transformers
    except ImportError as e:
        ctx.exports[key] = Skip(f"not installed: {e.name}")
        raise ctx.exports[key] from e
    x, mask = inputs(case)
    path = ctx.workdir / f"{case.model}-b{case.batch}-{case.height}x{case.width}.onnx"
    spec = registry.get(case.model)
    hf = getattr(transformers, spec.hf_class).from_pretrained(ctx.weights[spec.name]).eval()
    if spec.task == "image-classification":
        args, names, outs = (torch.from_numpy(x),), ["pixel_values"], ["logits"]

        class Wrapped(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, pixel_values):
                return self.m(pixel_values=pixel_values).logits
    else:
        args, names, outs = (torch.from_numpy(x), torch.from_numpy(mask)), ["pixel_values", "pixel_mask"], ["logits", "pred_boxes"]

        class Wrapped(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, pixel_values, pixel_mask):
                out = self.m(pixel_values=pixel_values, pixel_mask=pixel_mask)
                return out.logits, out.pred_boxes

    errors = []
    import warnings

    for dynamo in (False, True):  # the TorchScript exporter writes one file; the dynamo one is the fallback
        try:
            with warnings.catch_warnings(), _quiet():
                warnings.simplefilter("ignore")
                torch.onnx.export(Wrapped(hf).eval(), args, str(path), input_names=names, output_names=outs,
                                  opset_version=18, dynamo=dynamo)
            ctx.exports[key] = path
            return path
        except Exception as e:  # the exporters raise many types
            errors.append(f"torch.onnx.export(dynamo={dynamo}): {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
    ctx.exports[key] = Skip("ONNX export failed: " + " | ".join(errors))
    raise ctx.exports[key]


@contextmanager
def _quiet():
    """Silence the exporters' progress prints on stdout (the JSON goes there)."""
    import io
    from contextlib import redirect_stdout

    with redirect_stdout(io.StringIO()):
        yield


def _feeds(case, session_inputs):
    x, mask = inputs(case)
    values = {"pixel_values": x, "pixel_mask": mask}
    return {name: values[name] for name in session_inputs}


def setup_onnxruntime(case, ctx):
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise Skip("not installed: onnxruntime") from e
    path = export_onnx(case, ctx)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = ctx.threads
    opts.inter_op_num_threads = 1
    # ORT's threads otherwise spin after each run and take the cores from the next peer's run.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = _feeds(case, [i.name for i in sess.get_inputs()])
    return lambda: sess.run(None, feeds)


def setup_onnx_reference(case, ctx):
    if registry.get(case.model).task != "image-classification":
        raise Skip("ResNet-50 only (the pure-numpy evaluator would take minutes per DETR image)")
    try:
        import onnx
        from onnx.reference import ReferenceEvaluator
    except ImportError as e:
        raise Skip("not installed: onnx") from e
    path = export_onnx(case, ctx)
    sess = ReferenceEvaluator(onnx.load(str(path)))
    feeds = _feeds(case, sess.input_names)
    return lambda: sess.run(None, feeds)


SETUPS = {
    "refimpl": lambda case, ctx: setup_refimpl(case, ctx, path="fast"),
    "refimpl-readable": lambda case, ctx: setup_refimpl(case, ctx, path="reference"),
    "refimpl-gemms": setup_gemm_floor,
    "pytorch": setup_pytorch,
    "onnxruntime": setup_onnxruntime,
    "onnx-reference": setup_onnx_reference,
}


def sgemm_runner(n=SGEMM_N):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    return lambda: np.matmul(a, b, out=out)


# --- timing -------------------------------------------------------------------------------------

def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def measure_case(case, peers, ctx, repeat, warmup=2, gap=GAP_S, log=print):
    """Time every peer (and the sgemm) on `case` in interleaved rounds, with a `gap` of idle time
    before each timed run: BLAS and OpenMP worker threads spin for a while after their last
    task (OpenBLAS about 0.1 s), and would otherwise take a core from the next peer's run.
    Returns (rows, sgemm)."""
    runners, rows = {}, {}
    for peer in peers:
        try:
            runners[peer] = SETUPS[peer](case, ctx)
            rows[peer] = {"peer": peer, "status": "ok", "times_ms": []}
        except Skip as e:
            rows[peer] = {"peer": peer, "status": "skipped", "reason": str(e)}
        except Exception as e:  # a peer that breaks is reported, not hidden
            rows[peer] = {"peer": peer, "status": "skipped", "reason": f"setup failed: {type(e).__name__}: {e}"}
        log(f"  {case.label}: {peer}: {rows[peer]['status']}{' (' + rows[peer].get('reason', '') + ')' if rows[peer]['status'] != 'ok' else ''}")
    sgemm = sgemm_runner()
    for peer, fn in list(runners.items()):
        try:
            for _ in range(1 if peer in SLOW_PEERS else warmup):
                fn()
        except Exception as e:
            rows[peer] = {"peer": peer, "status": "skipped", "reason": f"run failed: {type(e).__name__}: {e}"}
            del runners[peer]
    sgemm()
    sgemm_ms = []
    for r in range(repeat):
        time.sleep(gap)
        sgemm_ms.append(_timed(sgemm))
        for peer, fn in runners.items():
            if r < SLOW_PEERS.get(peer, repeat):
                time.sleep(gap)
                rows[peer]["times_ms"].append(_timed(fn))
    return rows, summarize_sgemm(sgemm_ms)


def summarize_sgemm(times_ms, n=SGEMM_N):
    flop = 2 * n**3
    return {"n": n, "times_ms": times_ms, "median_gflops": flop / statistics.median(times_ms) / 1e6,
            "best_gflops": flop / min(times_ms) / 1e6}


def summarize(rows, case, sgemm):
    flops = model_flops(case)
    for row in rows.values():
        if row["status"] != "ok":
            continue
        t = row["times_ms"]
        row["runs"] = len(t)
        row["median_ms"] = statistics.median(t)
        row["min_ms"] = min(t)
    torch_med = rows.get("pytorch", {}).get("median_ms")
    for row in rows.values():
        if row["status"] != "ok":
            continue
        row["ratio_to_pytorch"] = row["median_ms"] / torch_med if torch_med else None
        row["gflops"] = flops / row["median_ms"] / 1e6
        row["fraction_of_sgemm_peak"] = row["gflops"] / sgemm["median_gflops"]
    return flops


# --- peak memory, in a subprocess per peer -------------------------------------------------------

def rss_child(spec):
    """Run in a fresh interpreter: set up one peer, run it twice, report memory (JSON on stdout)."""
    case = Case(**spec["case"])
    ctx = Context(spec["weights"], spec["threads"], Path(spec["workdir"]),
                  {tuple(k): Path(v) for k, v in spec["exports"]})
    with thread_limit(ctx.threads):
        base = current_rss_mb()
        try:
            fn = SETUPS[spec["peer"]](case, ctx)
            fn()
            fn()
            result = {"rss_after_imports_mb": base, "peak_rss_mb": peak_rss_mb()}
        except Skip as e:
            result = {"skipped": str(e)}
    print(json.dumps(result))


def measure_rss(case, peer, ctx, timeout=1800):
    exports = [[list(k), str(v)] for k, v in ctx.exports.items() if not isinstance(v, Skip)]
    spec = {"case": case.__dict__, "peer": peer, "weights": ctx.weights, "threads": ctx.threads,
            "workdir": str(ctx.workdir), "exports": exports}
    cmd = [sys.executable, "-c", "import json, sys; from refimpl.perf.bench import rss_child; rss_child(json.loads(sys.argv[1]))", json.dumps(spec)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


# --- profile --------------------------------------------------------------------------------------

PROFILE_CONDITIONS = {
    "back_to_back": "each run right after the previous one (a plain profiler loop)",
    "after_gap": "an idle `gap` before each run (BLAS worker threads asleep when it starts)",
    "as_benched": "a 2048^3 sgemm (another peer's work: caches and TLB evicted), then the idle `gap`, "
                  "then the run: what `refimpl bench` times",
    "as_benched_two_threads": "as as_benched, with the elementwise passes split over two threads "
                              "(fast.set_elementwise_threads(2), opt-in): what the helper thread would save",
}


def profile_resnet50(weights, batch=1, size=224, repeat=10, threads=None, gap=GAP_S):
    """Where refimpl's fast ResNet-50 spends its time: the im2col copies (windows and strided 1x1
    subsampling), the GEMMs, and the rest (bias, ReLU, residual adds, max pool, layout change,
    Python), timed by wrapping fast.window_copy / fast.subsample / fast.gemm. Also the readable path's
    split between im2col (ops.im2col), matmul and the rest (BN, ReLU, pad, adds).

    The fast path is profiled under each of `PROFILE_CONDITIONS`, rounds interleaved, so that the
    difference between a profiler's back-to-back total and the bench's median is measured and
    split into its parts (im2col, GEMM, rest, and the first GEMM of the pass alone, which pays for
    waking BLAS's worker threads) instead of guessed."""
    from refimpl.models import fast, ops

    model = registry.load("resnet-50", weights, path="fast")
    params = model.checkpoint.params
    x, _ = inputs(Case("resnet-50", batch, size, size))
    acc = {}
    gemm_calls = []

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                acc[name] = acc.get(name, 0.0) + dt
                if name == "gemm":
                    gemm_calls.append(dt)

        return wrapper

    @contextmanager
    def patched(patches):
        originals = {(mod, name): getattr(mod, name) for mod, name, _ in patches}
        for mod, name, label in patches:
            setattr(mod, name, timed(label, originals[(mod, name)]))
        try:
            yield
        finally:
            for (mod, name), fn in originals.items():
                setattr(mod, name, fn)

    def one_run(call):
        acc.clear()
        gemm_calls.clear()
        t = _timed(call)
        return {"total_ms": t, **{k: v * 1e3 for k, v in acc.items()},
                "first gemm": gemm_calls[0] * 1e3 if gemm_calls else 0.0}

    def split(runs, parts):
        # the run with the median total, so the parts add up
        run = sorted(runs, key=lambda r: r["total_ms"])[len(runs) // 2]
        out = {"total_ms": run["total_ms"], "median_total_ms": statistics.median(r["total_ms"] for r in runs),
               "min_total_ms": min(r["total_ms"] for r in runs)}
        for p in parts:
            out[p] = run.get(p, 0.0)
        out["rest"] = run["total_ms"] - sum(out[p] for p in parts)
        out["fractions"] = {p: out[p] / run["total_ms"] for p in (*parts, "rest")}
        return out

    fast_call = lambda: fast.classify(params, x)  # noqa: E731
    evict = sgemm_runner()
    before = {"back_to_back": lambda: None, "after_gap": lambda: time.sleep(gap),
              "as_benched": lambda: (evict(), time.sleep(gap)),
              "as_benched_two_threads": lambda: (evict(), time.sleep(gap))}
    fast_patches = [(fast, "window_copy", "im2col copy"), (fast, "subsample", "im2col copy"), (fast, "gemm", "gemm")]
    with thread_limit(threads or os.cpu_count()):
        elementwise = 1  # fast.py's default (see thread_limit)
        two = 2 if (threads or os.cpu_count() or 1) >= 2 else 1
        with patched(fast_patches):
            fast_call()  # warm-up
            runs = {c: [] for c in PROFILE_CONDITIONS}
            for _ in range(repeat):  # interleaved, so machine noise lands on every condition alike
                for condition in PROFILE_CONDITIONS:
                    if condition == "back_to_back":
                        fast_call()  # the run before, with nothing in between
                    before[condition]()
                    fast.set_elementwise_threads(two if condition == "as_benched_two_threads" else elementwise)
                    try:
                        runs[condition].append(one_run(fast_call))
                    finally:
                        fast.set_elementwise_threads(elementwise)
        with patched([(ops, "im2col", "im2col"), (np, "matmul", "matmul")]):
            resnet.classify(params, x)  # warm-up
            readable_runs = [one_run(lambda: resnet.classify(params, x)) for _ in range(repeat)]
    flops = model_flops(Case("resnet-50", batch, size, size))
    conditions = {}
    for condition, condition_runs in runs.items():
        s = split(condition_runs, ("im2col copy", "gemm"))
        s["gemm_gflops"] = flops / s["gemm"] / 1e6
        s["first_gemm_ms"] = statistics.median(r["first gemm"] for r in condition_runs)
        conditions[condition] = s
    base = conditions["back_to_back"]
    gap_split = {c: {"total_ms": conditions[c]["median_total_ms"] - base["median_total_ms"],
                     **{p: conditions[c][p] - base[p] for p in ("im2col copy", "gemm", "rest")},
                     "first_gemm_ms": conditions[c]["first_gemm_ms"] - base["first_gemm_ms"]}
                 for c in PROFILE_CONDITIONS if c != "back_to_back"}
    readable_split = split(readable_runs, ("im2col", "matmul"))
    return {"model": "resnet-50", "batch": batch, "size": size, "repeat": repeat, "gap_s": gap,
            "fast": conditions["back_to_back"], "fast_conditions": conditions, "conditions": PROFILE_CONDITIONS,
            "gap_vs_back_to_back": gap_split, "readable": readable_split, "notes": (
                "fast: 'im2col copy' = the window copies of the 3x3/7x7 convs plus the strided 1x1 "
                "subsampling; 'gemm' = the 53 conv matmuls; 'rest' = bias, ReLU, residual adds, max pool, "
                "layout change and Python. readable: 'im2col' = ops.im2col (np.pad + the window copy, the "
                "max pool's too), 'matmul' = every np.matmul, 'rest' = BN, ReLU, adds, the pool's max, Python. "
                "gap_vs_back_to_back: each condition's median total minus back_to_back's, and the same for "
                "each part (of the median-total run).")}


# --- the whole run ----------------------------------------------------------------------------

def parse_size(text):
    h, _, w = text.lower().partition("x")
    return int(h), int(w or h)


def run(models=("resnet-50",), batches=(1, 8), peers=PEERS, repeat=10, threads=None, weights=None,
        size=224, detr_size=(800, 1066), rss=True, profile=False, gap=GAP_S, log=None):
    """Run the benchmark; returns the JSON-able report (see `REPORT_KEYS`)."""
    log = log or (lambda *a: print(*a, file=sys.stderr, flush=True))
    threads = threads or os.cpu_count()
    weights = dict(weights or {})
    report = {"environment": environment(threads), "settings": {
        "models": list(models), "batches": list(batches), "peers": list(peers), "repeat": repeat,
        "threads": threads, "size": size, "detr_size": list(detr_size), "gap_s": gap}, "weights": {}, "cases": []}
    with tempfile.TemporaryDirectory(prefix="refimpl-bench-") as tmp, thread_limit(threads):
        ctx = Context({}, threads, Path(tmp))
        for model in models:
            if model in weights:
                ctx.weights[model] = str(weights[model])
                report["weights"][model] = {"source": str(weights[model]), "synthesized": False}
                continue
            try:
                log(f"synthesizing a {model} checkpoint with the tests' builders (no --weights {model}=DIR given)...")
                with _quiet():
                    folder = synthesize(model, Path(tmp) / model)
                ctx.weights[model] = str(folder)
                report["weights"][model] = {"source": "synthesized (refimpl.synth builders, random calibrated weights)",
                                            "synthesized": True}
            except Skip as e:
                report["weights"][model] = {"source": None, "skipped": str(e)}
        for model in models:
            if model not in ctx.weights:
                report["cases"].append({"model": model, "status": "skipped", "reason": report["weights"][model]["skipped"]})
                continue
            classification = registry.get(model).task == "image-classification"
            for batch in (batches if classification else (1,)):
                h, w = (size, size) if classification else detr_size
                case = Case(model, batch, h, w)
                log(f"{case.label}: timing {', '.join(peers)} ({repeat} interleaved rounds)")
                rows, sgemm = measure_case(case, peers, ctx, repeat, gap=gap, log=log)
                flops = summarize(rows, case, sgemm)
                if rss:
                    for peer, row in rows.items():
                        if row["status"] == "ok":
                            log(f"  {case.label}: {peer}: peak RSS in a subprocess")
                            row["memory"] = measure_rss(case, peer, ctx)
                report["cases"].append({"model": model, "status": "ok", "batch": batch, "input": [batch, 3, h, w],
                                        "gflop": flops / 1e9, "sgemm": sgemm, "peers": list(rows.values())})
        if profile and "resnet-50" in ctx.weights:
            log("profiling refimpl's ResNet-50 (batch 1)")
            report["profile"] = profile_resnet50(ctx.weights["resnet-50"], 1, size, max(3, repeat), threads, gap)
    return report


# Documented JSON keys (tests/test_bench.py checks them).
REPORT_KEYS = ("environment", "settings", "weights", "cases")
CASE_KEYS = ("model", "status", "batch", "input", "gflop", "sgemm", "peers")
PEER_KEYS = ("peer", "status", "median_ms", "min_ms", "runs", "ratio_to_pytorch", "gflops", "fraction_of_sgemm_peak")


def format_report(report):
    env = report["environment"]
    lines = []
    blas = env["blas"].get("libraries") or [env["blas"]]
    kernel = ", ".join(f"{b.get('internal_api')} {b.get('version')} kernel {b.get('architecture')} ({b.get('num_threads')} threads)" for b in blas)
    lines.append(f"threads: {env['threads']} for every peer; numpy BLAS: {kernel}")
    lines.append("OPENBLAS env: " + (", ".join(f"{k}={v}" for k, v in env["openblas_env"].items() if v is not None) or "(none set)"))
    for model, w in report["weights"].items():
        lines.append(f"weights {model}: {w.get('source') or 'none: ' + w.get('skipped', '')}")
    for case in report["cases"]:
        if case["status"] != "ok":
            lines.append(f"\n{case['model']}: skipped ({case['reason']})")
            continue
        n, c, h, w = case["input"]
        sg = case["sgemm"]
        lines.append(f"\n{case['model']} batch {n} {h}x{w}: {case['gflop']:.1f} GFLOP; sgemm {sg['n']}^3 in the same rounds: "
                     f"{sg['median_gflops']:.0f} GFLOP/s median, {sg['best_gflops']:.0f} best")
        lines.append(f"  {'peer':<17} {'median ms':>10} {'min ms':>9} {'runs':>4} {'x PyTorch':>9} {'GFLOP/s':>8} {'of sgemm':>8} {'peak RSS MB':>11}")
        for row in case["peers"]:
            if row["status"] != "ok":
                lines.append(f"  {row['peer']:<17} skipped: {row['reason']}")
                continue
            mem = row.get("memory", {})
            rss = f"{mem['peak_rss_mb']:.0f}" if "peak_rss_mb" in mem else ("-" if not mem else "error")
            ratio = f"{row['ratio_to_pytorch']:.2f}" if row.get("ratio_to_pytorch") else "-"
            lines.append(f"  {row['peer']:<17} {row['median_ms']:>10.1f} {row['min_ms']:>9.1f} {row['runs']:>4} {ratio:>9} "
                         f"{row['gflops']:>8.1f} {row['fraction_of_sgemm_peak']:>8.0%} {rss:>11}")
    if "profile" in report:
        p = report["profile"]
        lines.append(f"\nprofile, refimpl ResNet-50 batch {p['batch']} {p['size']}x{p['size']} (median run of {p['repeat']}):")
        for path in ("fast", "readable"):
            s = p[path]
            parts = ", ".join(f"{k} {s[k]:.1f} ms ({s['fractions'][k]:.0%})" for k in s["fractions"])
            lines.append(f"  {path}: total {s['total_ms']:.1f} ms = {parts}")
        lines.append(f"  fast GEMMs alone run at {p['fast']['gemm_gflops']:.0f} GFLOP/s")
        for condition, s in p.get("fast_conditions", {}).items():
            parts = ", ".join(f"{k} {s[k]:.1f}" for k in ("im2col copy", "gemm", "rest"))
            lines.append(f"  fast, {condition}: median {s['median_total_ms']:.1f} ms (min {s['min_total_ms']:.1f}); "
                         f"median run: {parts} ms; first GEMM {s['first_gemm_ms']:.2f} ms")
        for condition, d in p.get("gap_vs_back_to_back", {}).items():
            lines.append(f"  {condition} - back_to_back: {d['total_ms']:+.1f} ms (im2col {d['im2col copy']:+.1f}, "
                         f"GEMM {d['gemm']:+.1f}, rest {d['rest']:+.1f}; first GEMM {d['first_gemm_ms']:+.2f})")
    return "\n".join(lines)
