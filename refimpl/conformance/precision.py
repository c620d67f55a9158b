"""Reduced precision: refimpl run with a port's rounding, so that a float16, bfloat16 or int8 port is
certified against budgets measured for that precision, tensor by tensor - not a global factor.

A correct float16 port differs from the float64 truth by its rounding: its weights are stored in
float16, and every tensor it hands from one op to the next is stored in float16 (ONNX fp16 via
onnxconverter-common, torch `.half()`, WebGPU). An int8 port quantizes its weights (per tensor or
per output channel) and the activations it feeds its integer convolutions (per tensor, with a
scale measured at run time - ORT `quantize_dynamic` - or declared in the graph - QDQ). So refimpl
is run the same way:

    rounded run  = refimpl's layers (isolate.layer_units: stem, max pool, each conv-BN(-ReLU) step,
                   the projected shortcut, the block's residual sum and ReLU, pooler, classifier)
                   chained in float64, with the weights rounded to the precision and each layer's
                   output rounded before the next layer reads it
    e_p(t)       = max|rounded run - refimpl float64| / max|refimpl float64|     (tensor t)
    budget_p(t)  = FACTOR[p] * e_p(t) + FLOOR[p]                                (relative, as for fp32)

The layers are computed in float64 between the roundings: a port accumulates in float32 (or
int32), whose error is three orders of magnitude below the storage rounding. A layer here is
coarser than a port's ops (conv+BN+ReLU is one unit; torch `.half()` also rounds the conv's output
before its BN), so FACTOR[p] is a measured safety factor (docs/conformance.md, "Reduced
precision"). FLOOR[p] is the precision's unit roundoff: any tensor stored in it carries that
relative error, even where the rounded run happens to be exact.

int8: the weights are fake-quantized symmetric int8 as the port's graph declares (per output
channel or per tensor) - of the conv weight with its batch norm folded in, as an exporter folds
it before quantizing; the activations are fake-quantized uint8 asymmetric per tensor, with the
scale and zero point the graph declares for that tensor (QDQ) or the tensor's own range (dynamic
quantization measures it at run time). Dynamic graphs quantize only what a Conv or Gemm reads and
expose the float tensor before quantizing; QDQ graphs expose the dequantized tensor.
"""

from dataclasses import dataclass, field

import numpy as np

from refimpl.conformance import budgets
from refimpl.conformance.budgets import relative_error
from refimpl.errors import RefimplError
from refimpl.models import ops, resnet
from refimpl.numerics import as_float64

PRECISIONS = ("fp32", "fp16", "bf16", "int8")

# The unit roundoff of each storage format (relative rounding error of one stored value): the
# floor of its budgets. int8: half a step of 255 levels over a tensor's range.
UNIT_ROUNDOFF = {"fp16": 2.0 ** -11, "bf16": 2.0 ** -8, "int8": 0.5 / 255}

# Measured (docs/conformance.md, "Reduced precision"): over every tensor of the four examples, the
# worst ratio of a correct port's error to refimpl's rounded run's error was 1.00 (ONNX fp16), 2.08
# (torch .half()), 1.66 (bfloat16), 1.29 (ORT dynamic int8), 1.72 (ORT QDQ int8): 4 keeps >= 1.9x
# headroom, and every planted bug of tests/test_precision.py still diverges at its tensor.
FACTOR = {"fp16": 4.0, "bf16": 4.0, "int8": 4.0}
FLOOR = dict(UNIT_ROUNDOFF)


class PrecisionError(RefimplError):
    """A precision refimpl cannot run, or a model it cannot run in that precision."""

    status, code = 400, 5005


def check_precision(precision):
    if precision not in PRECISIONS + ("auto",):
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)} or auto, got {precision!r}")
    return precision


# --- rounding -------------------------------------------------------------------------------------

def to_fp16(x):
    """x rounded to float16 (nearest even), returned in x's float dtype. Overflow gives inf, as in the port."""
    x = np.asarray(x)
    with np.errstate(over="ignore"):
        return x.astype(np.float16).astype(x.dtype if x.dtype.kind == "f" else np.float64)


def to_bf16(x):
    """x rounded to bfloat16 (nearest even on float32's bits; ml_dtypes.bfloat16 rounds the same way),
    returned in x's float dtype."""
    x = np.asarray(x)
    f = np.ascontiguousarray(x, dtype=np.float32)
    u = f.view(np.uint32)
    rounded = ((u + (((u >> 16) & 1) + np.uint32(0x7FFF))) & np.uint32(0xFFFF0000)).view(np.float32)
    rounded = np.where(np.isnan(f), f, rounded)
    return rounded.astype(x.dtype if x.dtype.kind == "f" else np.float64)


def fake_quant_weight(w, per_channel=True, bits=8):
    """Symmetric signed fake quantization: round(w / s) clipped to [-q, q] times s, s = max|w| / q,
    per output channel (axis 0) or for the whole tensor. q = 2**(bits-1) - 1."""
    w = as_float64(w)
    q = 2 ** (bits - 1) - 1
    axes = tuple(range(1, w.ndim)) if per_channel and w.ndim > 1 else None
    m = np.abs(w).max(axis=axes, keepdims=axes is not None) if w.size else 0.0
    s = np.where(m > 0, m / q, 1.0)
    return np.clip(np.round(w / s), -q, q) * s


def range_scale(x, qmin=0, qmax=255):
    """(scale, zero_point) of asymmetric quantization over x's range, 0 included (as
    DynamicQuantizeLinear computes them)."""
    lo, hi = min(float(np.min(x, initial=0.0)), 0.0), max(float(np.max(x, initial=0.0)), 0.0)
    scale = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
    zero = float(np.clip(np.round(qmin - lo / scale), qmin, qmax))
    return scale, zero


def fake_quant_activation(x, scale, zero_point, qmin=0, qmax=255):
    """QuantizeLinear then DequantizeLinear: (clip(round(x / scale) + zp, qmin, qmax) - zp) * scale."""
    x = as_float64(x)
    return (np.clip(np.round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale


@dataclass
class Quantization:
    """How an int8 port quantizes, as its graph declares it (refimpl.conformance.adapters.onnx_runtime
    reads it): "dynamic" (activations quantized at run time, before each Conv/Gemm) or "static" (QDQ);
    weights per output channel or per tensor; declared activation scales by checkpoint name:
    {name: (scale, zero_point, qmin, qmax)}."""

    mode: str = "dynamic"
    per_channel: bool = True
    scales: dict = field(default_factory=dict)

    def describe(self):
        w = "per channel" if self.per_channel else "per tensor"
        if self.mode == "dynamic":
            return f"int8 dynamic quantization (weights {w}; activations per tensor, ranges measured at run time)"
        return (f"int8 static quantization, QDQ (weights {w}; activations per tensor, "
                f"{len(self.scales)} scales read from the graph, others measured)")


# --- the rounded run ------------------------------------------------------------------------------

def _fold_quantize(params, conv, norm, per_channel):
    """The conv weight as an int8 port holds it: BN folded in (W * g / sqrt(var + eps)), fake-quantized,
    unfolded again so that refimpl's conv_bn computes conv(Q(W_folded)) + the folded bias."""
    w = as_float64(params[conv + ".weight"])
    s = as_float64(params[norm + ".weight"]) / np.sqrt(as_float64(params[norm + ".running_var"]) + resnet.BN_EPS)
    safe = np.where(s != 0, s, 1.0)[:, None, None, None]
    return fake_quant_weight(w * safe, per_channel) / safe


def rounded_params(params, precision, quantization=None, names=resnet.CLASSIFIER_NAMES):
    """The checkpoint's parameters as the port stores them, in float64."""
    out = {k: as_float64(v) for k, v in params.items()}
    if precision == "fp16":
        return {k: to_fp16(v) for k, v in out.items()}
    if precision == "bf16":
        return {k: to_bf16(v) for k, v in out.items()}
    if precision != "int8":
        return out
    per_channel = quantization.per_channel if quantization else True
    conv, norm, _, _ = names.stem()
    pairs = [(conv, norm)]
    for block in resnet.blocks(names):
        pairs += list(zip(block.convs, block.norms)) + ([block.shortcut] if block.shortcut else [])
    for c, n in pairs:
        out[c + ".weight"] = _fold_quantize(out, c, n, per_channel)
    if "classifier.1.weight" in out:
        out["classifier.1.weight"] = fake_quant_weight(out["classifier.1.weight"], per_channel)
    return out


class _Storage:
    """What the port stores between its layers: `exposed` (the tensor it gives under a checkpoint
    name) and `fed` (what the next layer reads)."""

    def __init__(self, precision, quantization, conv_inputs):
        self.precision, self.q, self.conv_inputs = precision, quantization or Quantization(), conv_inputs

    def __call__(self, name, x):
        if self.precision == "fp16":
            x = to_fp16(x)
            return x, x
        if self.precision == "bf16":
            x = to_bf16(x)
            return x, x
        if self.precision != "int8":
            return x, x
        if name in self.q.scales:
            scale, zero, qmin, qmax = self.q.scales[name]
            y = fake_quant_activation(x, scale, zero, qmin, qmax)
            return y, y
        if name in self.conv_inputs:
            y = fake_quant_activation(x, *range_scale(x))
            return (x, y) if self.q.mode == "dynamic" else (y, y)
        return x, x


def conv_inputs(names=resnet.CLASSIFIER_NAMES):
    """The tensors a Conv or the classifier reads: dynamic quantization quantizes exactly these."""
    blocks = list(resnet.blocks(names))
    return ({"pixel_values", names.stem()[3], "resnet.pooler"} | {b.name for b in blocks}
            | {s for b in blocks for s in b.steps[:-1]})  # every step a conv reads


def rounded_trace(params, pixel_values, precision, quantization=None, names=resnet.CLASSIFIER_NAMES):
    """refimpl's ResNet classifier (any family member: `names`) run in a port's precision -> {trace name: float64 array} with the
    reference trace's names (pixel_values ... classifier.1). params: the checkpoint ({key: array});
    pixel_values: (N, 3, H, W), refimpl's preprocessing."""
    from refimpl.conformance.isolate import layer_units

    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    p = rounded_params(params, precision, quantization, names)
    units = layer_units(names)
    _, _, stem_out, pool_out = names.stem()
    blocks = list(resnet.blocks(names))
    store = _Storage(precision, quantization, conv_inputs(names))
    exposed, fed = {}, {}

    def keep(name, x):
        exposed[name], fed[name] = store(name, x)
        return fed[name]

    keep("pixel_values", as_float64(pixel_values))
    for name in (stem_out, pool_out):
        source, f = units[name]
        keep(name, f(p, fed[source]))
    previous = pool_out
    for block in blocks:
        for step in block.steps:
            source, f = units[step]
            keep(step, f(p, fed[source]))
        if block.shortcut is not None:
            shortcut = keep(block.shortcut_out, resnet.conv_bn(p, *block.shortcut, fed[previous], stride=block.stride))
        else:
            shortcut = exposed[previous]  # an Add reads the stored tensor (dynamic int8: not quantized)
        # the block's output from the stored step and shortcut, as a port adds its stored tensors
        keep(block.name, ops.relu(fed[block.steps[-1]] + shortcut))
        if block.last_in_stage:
            exposed[names.stage(block.stage)], fed[names.stage(block.stage)] = exposed[block.name], fed[block.name]
        previous = block.name
    pooled = keep("resnet.pooler", ops.global_avg_pool(exposed[previous]))  # the pool reads it unquantized too
    keep("classifier.1", ops.linear(pooled.reshape(pooled.shape[0], -1), p["classifier.1.weight"],
                                    p["classifier.1.bias"]))
    return exposed


def measure_budgets(rounded, trace64, precision, factor=None, floor=None):
    """{name: {"rounding_error": e_p, "budget": factor * e_p + floor}} for every tensor both have
    (budgets.measure_budgets with this precision's factor and floor)."""
    factor = FACTOR[precision] if factor is None else factor
    floor = FLOOR[precision] if floor is None else floor
    return budgets.measure_budgets(rounded, trace64, factor, floor, key="rounding_error")


# --- detection and the metrics of a quantized comparison ---------------------------------------------

def detect(tensors, declared=None):
    """The precision a port ran in -> (precision, why). declared: what the adapter read from the
    port itself (an int8 graph), else the dtypes of the tensors it returned: any float16 -> fp16, any
    bfloat16 -> bf16, else fp32 (a port that computes in reduced precision but hands back float32
    is certified as float32: never a wider budget on a guess)."""
    if declared:
        return declared
    kinds = {}
    for name, v in tensors.items():
        kinds.setdefault(str(np.asarray(v).dtype), name)
    for dtype, precision in (("float16", "fp16"), ("bfloat16", "bf16")):
        if dtype in kinds:
            return precision, f"detected: the port's tensors are {dtype} (e.g. {kinds[dtype]})"
    return "fp32", f"detected: the port's tensors are {', '.join(sorted(kinds)) or 'none'}"


def snr_cosine(a, b):
    """(SNR in dB of A against the reference B, cosine similarity of A and B)."""
    a, b = as_float64(a).ravel(), as_float64(b).ravel()
    noise = float(np.sum((a - b) ** 2))
    signal = float(np.sum(b ** 2))
    snr = float("inf") if noise == 0 else (10 * np.log10(signal / noise) if signal > 0 else float("-inf"))
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    cos = float(a @ b / (na * nb)) if na > 0 and nb > 0 else (1.0 if na == nb else 0.0)
    return snr, cos


def top_k_agreement(logits_a, logits_b, k=5):
    """{"top1": A's best class is B's, "top_k": |A's top k & B's top k| / k} of (1, C) logits."""
    a, b = as_float64(logits_a).reshape(-1), as_float64(logits_b).reshape(-1)
    k = min(k, a.size)
    ta, tb = np.argsort(-a, kind="stable")[:k], np.argsort(-b, kind="stable")[:k]
    return {"top1": bool(ta[0] == tb[0]), "top_k": len(set(ta.tolist()) & set(tb.tolist())) / k, "k": k}


# --- structural checks, before the size check ------------------------------------------------------

STRUCTURAL = ("negatives after relu", "bn eps in noise")  # refimpl/diagnoses/, tried in this order


def structural_check(precision, rounded=None):
    """compare's `structural` hook for a port in `precision`: f(name, A, B, budget, context) -> the
    first structural diagnosis that explains A (refimpl.diagnoses: STRUCTURAL), or None. rounded:
    refimpl's trace run in that precision (`rounded_trace`), the control of the statistical checks."""
    from refimpl import diagnoses

    diagnoses.load_all()
    checks = [diagnoses.CATALOGUE[k] for k in STRUCTURAL]

    def run(name, a, b, budget, context):
        case = {"name": name, "a": as_float64(a), "b": as_float64(b), "budget": budget, "precision": precision,
                "unit_roundoff": UNIT_ROUNDOFF.get(precision, 0.0), "bn": context.get("bn"),
                "rounded": context.get("rounded", (rounded or {}).get(name))}
        for d in checks:
            found = d.check(case)
            if found is not None:
                found.setdefault("confidence", d.confidence)
                found.setdefault("look_at", d.look_at)
                return found
        return None

    return run


# --- isolate in the port's precision ---------------------------------------------------------------

def _units(names):
    """{tensor: (inputs, f(params, *inputs))} of the classifier in data-flow order: isolate's layer
    units, with a block's output from its stored third step and shortcut (as a port adds them)."""
    from refimpl.conformance.isolate import layer_units

    units = {k: ((src,), f) for k, (src, f) in layer_units(names).items()}
    previous = names.stem()[3]
    for block in resnet.blocks(names):
        if block.shortcut is not None:
            units[block.shortcut_out] = ((previous,), lambda p, x, b=block: resnet.conv_bn(p, *b.shortcut, x, stride=b.stride))
            units[block.name] = ((block.steps[-1], block.shortcut_out), lambda p, h, s: ops.relu(h + s))
        else:
            units[block.name] = ((block.steps[-1], previous), lambda p, h, s: ops.relu(h + s))
        previous = block.name
    return units


def isolate(trace_a, name, params, precision, quantization=None, factor=None, floor=None,
            names=resnet.CLASSIFIER_NAMES, structural=None):
    """Is the divergence at `name` introduced here or inherited? refimpl's layer is run on A's own
    input(s) twice: in float64, and in the port's precision (weights, quantized inputs and output
    rounded); the budget for the layer alone is FACTOR * |rounded - f64| + FLOOR (relative), and A's
    output is measured against refimpl's float64 output on A's input. structural: compare's hook
    (`structural_check`): a structural diagnosis of A's output against refimpl's layer on A's input
    (the rounded layer as its control) also says "introduced here", whatever the size.

    -> {"verdict": "introduced here" | "inherited", "layer", "inputs", "max_rel", "budget", "message"};
    None when refimpl cannot re-run that tensor (its input is not in A's dump, or it is not a layer)."""
    units = _units(names)
    if name not in units or name not in trace_a or not all(s in trace_a for s in units[name][0]):
        return None
    sources, f = units[name]
    xs = [as_float64(trace_a[s]) for s in sources]
    p64 = {k: as_float64(v) for k, v in params.items()}
    ours = f(p64, *xs)
    store = _Storage(precision, quantization, conv_inputs(names))
    fed = [store(s, x)[1] for s, x in zip(sources, xs)]  # what the port's layer reads (int8: quantized)
    rounded = store(name, f(rounded_params(params, precision, quantization, names), *fed))[0]
    factor = FACTOR[precision] if factor is None else factor
    floor = FLOOR[precision] if floor is None else floor
    out_a = as_float64(trace_a[name])
    if out_a.shape != ours.shape:
        return {"verdict": "introduced here", "layer": name, "inputs": list(sources), "max_rel": None, "budget": None,
                "message": f"introduced here: refimpl's {name} on A's own input gives {list(ours.shape)}, A gives "
                           f"{list(out_a.shape)}"}
    budget = factor * relative_error(rounded, ours) + floor
    err = relative_error(out_a, ours)
    found = None
    if structural is not None:
        from refimpl.conformance.compare import feeding_bn

        norm = feeding_bn(name, params)
        context = {"rounded": rounded}
        if norm is not None:
            context["bn"] = {"running_var": as_float64(params[f"{norm}.running_var"]), "eps": resnet.BN_EPS,
                             "module": norm}
        found = structural(name, out_a, ours, budget, context)
    inherited = err <= budget and found is None
    verdict = "inherited" if inherited else "introduced here"
    what = ("A's layer computes what refimpl's does in " + precision + "; the difference grew upstream" if inherited
            else f"A's layer itself differs ({found['kind']}, on its own input)" if found is not None
            else "A's layer itself differs (its weights or formula)")
    return {"verdict": verdict, "layer": name, "inputs": list(sources), "max_rel": err, "budget": budget,
            "structural": found["kind"] if found else None,
            "message": f"{verdict}: refimpl's {name} run on A's own input ({', '.join(sources)}) is {err:.3g} from A's "
                       f"output (relative), {'within' if err <= budget else 'beyond'} the layer's {precision} budget "
                       f"{budget:.3g}: {what}"}


def annotate(case, tensors_a, trace64, precision, params, quantization, budgets, structural=None,
             names=resnet.CLASSIFIER_NAMES):
    """Add what a reduced-precision comparison reports besides max errors to one certify case: each
    compared row's SNR (dB) and cosine similarity against the float64 truth, top-k agreement of the
    logits, and at the first divergence the isolate verdict in the port's precision."""
    report = case["report"]
    for row in report.compared:
        a, b = tensors_a.get(row["name"]), trace64.get(row["name"])
        if a is not None and b is not None and np.size(a) == np.size(b):
            snr, cos = snr_cosine(np.reshape(a, np.shape(b)), b)
            row["snr_db"], row["cosine"] = float(round(snr, 2)) if np.isfinite(snr) else str(snr), float(round(cos, 6))
    if "classifier.1" in tensors_a and "classifier.1" in trace64:
        case["top_k"] = top_k_agreement(tensors_a["classifier.1"], trace64["classifier.1"])
    if report.first is not None:
        found = isolate(tensors_a, report.first["name"], params, precision, quantization, structural=structural,
                        names=names)
        if found is not None:
            case["isolate"] = found
            report.first["isolate"] = found["verdict"]
    return case
