"""The fast ResNet forward (every family member): the same network as resnet.py, computed with fewer and cheaper passes.

resnet.py is the reference: one op per line, NCHW, batch norm after every conv. This module
computes the same function and is checked against it tensor by tensor (tests/test_fast.py). What
it does differently, each step measured (docs/performance.md, benchmarks/layout_choice.py):

1. **Batch norm folded into the convs, once.** Frozen BN is an affine map per output channel,
   y = (conv(x) - mean) * gamma / sqrt(var + eps) + beta, so it folds into the conv:
   W' = W * scale[o], b' = beta - mean * scale with scale = gamma / sqrt(var + eps).
   `fold_conv_bn` does it (in float64, then cast); `plan()` folds a whole backbone and caches the
   result per loaded params mapping, so it happens once per model.
2. **One GEMM per conv for the whole batch, in the layout picked by measurement** (`LAYOUTS`).
   A 1x1 conv is a plain matmul of the activation matrix (no im2col; a strided 1x1 first takes
   every other pixel, one copy). A 3x3 or 7x7 conv reads its windows through a strided view of
   a zero-bordered buffer and copies them once into a reused column buffer, then one matmul.
3. **No temporaries on the hot path.** Every matmul writes into a reused buffer
   (`np.matmul(out=...)`), bias, ReLU and the residual add are in place, and a layer that feeds a
   padded conv (or the max pool) writes its ReLU straight into the interior of that conv's
   zero-bordered input buffer, so padding costs no extra pass.
4. The max pool follows a ReLU, so its input is >= 0 and zero padding gives the same maximum as
   PyTorch's -inf padding (every 3x3/2 window with padding 1 holds at least one real pixel).
5. **Optionally, both cores for the elementwise passes** (`set_elementwise_threads(2)`): bias+ReLU,
   the residual pass, the im2col copy and the max pool split in two halves by rows, the second on
   one helper thread. Bit-identical to one thread; off by default, because it measured slower
   here (see `split`).
6. **One GEMM for conv3 and the shortcut conv** of a stage's first block:
   conv3(t) + shortcut(x) = [t | x'] @ [W3; Ws], with t written by the 3x3 conv's GEMM straight
   into the left columns of the joint matrix and x' (x subsampled) copied into the right ones.

Tracing (a `trace` dict) records the same names as resnet.py, converted to NCHW copies; it is
slower, and meant for tests. Results equal the reference's within float rounding: folding BN and
summing in another order changes the last bits (about 1e-7 relative in float32, 1e-16 in float64).

    >>> logits = fast.classify(params, pixel_values)                   # = resnet.classify
    >>> stages = fast.backbone(params, names, pixel_values)            # = resnet.backbone
"""

import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from refimpl.models import ops
from refimpl.models.resnet import BN_EPS, CLASSIFIER_NAMES, blocks

# --- layouts ------------------------------------------------------------------------------------
#
# An activation is a 4-D array in the layout; its "matrix" is the free reshape a 1x1 conv
# multiplies: NHWC -> (N*H*W, C), channels contiguous, a whole batch in one GEMM (NCHW would need
# one per image). benchmarks/layout_choice.py measured NHWC against NCHW and CNHW ((C, N*H*W)
# matrices) on these machines; NHWC won, so it is the one layout kept here.


class NHWC:
    """(N, H, W, C). conv: cols (N*Ho*Wo, kh*kw*C) @ W (kh*kw*C, O)."""

    name = "NHWC"
    axes = (0, 2, 3, 1)  # NCHW -> this layout
    inverse = (0, 3, 1, 2)  # this layout -> NCHW

    @staticmethod
    def weight_matrix(w):
        """(O, C, kh, kw) -> (kh*kw*C, O), rows in the (i, j, c) order of `windows`."""
        return np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]))

    @staticmethod
    def bias(b):
        return b  # broadcasts over the last (channel) axis

    @staticmethod
    def spatial(a, rows, cols):
        """Index the H and W axes."""
        return a[:, rows, cols, :]

    @staticmethod
    def matrix(a):
        return a.reshape(-1, a.shape[3])

    @staticmethod
    def channel_range(a, start, stop):
        """Channels start:stop of a 4-D array (a view)."""
        return a[..., start:stop]

    @staticmethod
    def channels(a):
        return a.shape[3]

    @staticmethod
    def windows(xp, k, stride, ho, wo, dilation=1):
        """Window view of the padded input (no copy), shaped as the column matrix's rows."""
        n, _, _, c = xp.shape
        s_n, s_h, s_w, s_c = xp.strides
        view = as_strided(xp, (n, ho, wo, k, k, c), (s_n, s_h * stride, s_w * stride, s_h * dilation, s_w * dilation, s_c),
                          writeable=False)
        return view, (n * ho * wo, k * k * c)

    @staticmethod
    def gemm(cols, w, out):
        return np.matmul(cols, w, out=out)

    @staticmethod
    def shape(n, c, h, w):
        return (n, h, w, c)

    @staticmethod
    def global_avg_pool(a):
        """(N, H, W, C) -> (N, C)."""
        n, h, w, c = a.shape
        return a.reshape(n, h * w, c).mean(axis=1, dtype=a.dtype)


LAYOUTS = {"NHWC": NHWC}
DEFAULT_LAYOUT = "NHWC"  # chosen by measurement: see docs/performance.md


# --- folding ------------------------------------------------------------------------------------

def fold_conv_bn(weight, gamma, beta, mean, var, eps=BN_EPS):
    """Fold frozen batch norm into the conv before it: returns (W', b') with
    conv(x, W') + b' == batch_norm(conv(x, W)) for every x. Computed in float64."""
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    w = np.asarray(weight, np.float64) * scale.reshape(-1, 1, 1, 1)
    b = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
    return w, b


@dataclass
class Conv:
    """One conv with its BN folded in, its weight laid out as the layout's GEMM operand."""

    w: np.ndarray
    b: np.ndarray  # shaped to broadcast over the layout's output matrix
    k: int
    stride: int
    pad: int
    c_out: int
    dilation: int = 1


@dataclass
class BlockPlan:
    names: object  # resnet.Block: trace names and geometry
    stride: int
    convs: tuple  # its Conv steps: two (basic block) or three (bottleneck)
    shortcut: Conv | None
    out_bias: np.ndarray  # conv3's bias (+ the shortcut's): added once after the residual sum
    pad_role: str  # the reused zero-bordered buffer of its 3x3 conv
    joint_w: np.ndarray | None = None  # with a shortcut conv: conv3's and its weights stacked, (C_mid + C_in, C_out)


@dataclass
class Plan:
    """A backbone with every BN folded, ready to run in one layout and dtype."""

    layout: type
    dtype: np.dtype
    names: object  # resnet.ResNetNames
    stem: Conv
    stages: list  # of lists of BlockPlan


def _fold(params, conv, norm, layout, dtype, stride=1, pad=0, dilation=1):
    w = params[conv + ".weight"]
    w2, b2 = fold_conv_bn(w, *(params[f"{norm}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")))
    return Conv(layout.weight_matrix(w2.astype(dtype)), layout.bias(b2.astype(dtype)), w.shape[2], stride, pad, w.shape[0],
                dilation)


def _fold_step(params, layer, layout, dtype):
    """A resnet.Conv step, folded."""
    return _fold(params, layer.conv, layer.norm, layout, dtype, layer.stride, layer.padding, layer.dilation)


def build_plan(params, names, dtype=np.float32, layout=DEFAULT_LAYOUT):
    """Fold every BN of the backbone `names` (a resnet.Backbone) into its conv. No caching: see `plan`."""
    lay = LAYOUTS[layout] if isinstance(layout, str) else layout
    dtype = np.dtype(dtype)
    conv, norm, _, _ = names.stem()
    stem = _fold(params, conv, norm, lay, dtype, stride=2, pad=3)
    stages = [[] for _ in names.arch.depths]
    for block in blocks(names):
        convs = tuple(_fold_step(params, layer, lay, dtype) for layer in block.layers)
        sc = None if block.projection is None else _fold_step(params, block.projection, lay, dtype)
        out_bias = convs[-1].b if sc is None else convs[-1].b + sc.b
        # Two padded buffers serve all stages (a stage's first block has its own shape);
        # the border is re-zeroed when the shape changes, which costs little.
        pad_role = "padded first" if block.index == 0 else "padded rest"
        # A bottleneck's conv3(t) + shortcut(x) = [t | x'] @ [W3; Ws] (x' = x subsampled): one GEMM
        # with K = C_mid + C_in instead of two GEMMs and an add (stage 1's two K=64 GEMMs become one K=128).
        joint = None
        if sc is not None and block.kind == "bottleneck":
            joint = np.ascontiguousarray(np.concatenate([convs[-1].w, sc.w], axis=0))
        stages[block.stage].append(BlockPlan(block, block.stride, convs, sc, out_bias, pad_role, joint))
    return Plan(lay, dtype, names, stem, stages)


# The cache: one Plan per (params mapping, backbone, dtype, layout). An entry is valid while
# the params mapping holds the very arrays it was folded from (checked by identity on each call,
# ~30 us); it is dropped when the stem weight array is garbage-collected. Arrays changed in place
# are not detected: call clear_cache() after editing weights in place.
_PLANS = {}
_PLANS_LOCK = threading.Lock()


def _source_keys(names):
    conv, norm, _, _ = names.stem()
    pairs = [(conv, norm)]
    for block in blocks(names):
        pairs += list(zip(block.convs, block.norms))
        if block.shortcut is not None:
            pairs.append(block.shortcut)
    keys = []
    for c, n in pairs:
        keys += [c + ".weight"] + [f"{n}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
    return keys


def plan(params, names, dtype=np.float32, layout=DEFAULT_LAYOUT):
    """The folded backbone `names` (a resnet.Backbone: architecture and checkpoint names) for
    `params`, built on first use and cached (see `_PLANS`)."""
    key = (id(params), names, np.dtype(dtype).str, layout if isinstance(layout, str) else layout.name)
    entry = _PLANS.get(key)
    if entry is not None:
        keys, refs, cached = entry
        if all(params.get(k) is r() for k, r in zip(keys, refs)):
            return cached
    keys = _source_keys(names)
    built = build_plan(params, names, dtype, layout)
    with _PLANS_LOCK:
        _PLANS[key] = (keys, [weakref.ref(params[k]) for k in keys], built)
    weakref.finalize(params[keys[0]], _PLANS.pop, key, None)
    return built


def clear_cache():
    """Forget every folded plan and release this thread's reused buffers."""
    with _PLANS_LOCK:
        _PLANS.clear()
    release_buffers()


def compute_dtype(params, names, x):
    """The dtype the reference would compute in: x's and the weights' common type."""
    return np.result_type(x.dtype, params[names.stem()[0] + ".weight"].dtype)


# --- reused buffers -----------------------------------------------------------------------------

class _Workspace(threading.local):
    """Grow-only flat buffers by role, one set per thread: a forward pass asks for the same
    roles in the same sizes every time, so after the first call it allocates nothing but its
    outputs. `reuse = False` allocates afresh each time (to measure what reuse saves)."""

    reuse = True

    def __init__(self):
        self.buffers = {}
        self.bordered = {}  # role -> (layout, padded shape) whose zero border is in place

    def get(self, role, shape, dtype):
        self.bordered.pop((role, dtype), None)  # the caller may write anywhere in it
        return self._buffer(role, shape, dtype)

    def _buffer(self, role, shape, dtype):
        size = int(np.prod(shape))
        if not self.reuse:
            return np.empty(shape, dtype)
        buf = self.buffers.get((role, dtype))
        if buf is None or buf.size < size:
            buf = self.buffers[(role, dtype)] = np.empty(size, dtype)
        return buf[:size].reshape(shape)

    def padded(self, role, layout, n, c, h, w, pad, dtype):
        """A buffer for an (n, c, h+2pad, w+2pad) input with a zero border; returns (buffer,
        its interior), the interior for the caller to fill."""
        shape = layout.shape(n, c, h + 2 * pad, w + 2 * pad)
        buf = self._buffer(role, shape, dtype)
        # Callers write only the interior, so the border stays zero while the shape stays put.
        if pad and (not self.reuse or self.bordered.get((role, dtype)) != (layout.name, shape)):
            top, bottom = slice(0, pad), slice(h + pad, h + 2 * pad)
            left, right = slice(0, pad), slice(w + pad, w + 2 * pad)
            every = slice(None)
            for rows, cols in ((top, every), (bottom, every), (every, left), (every, right)):
                layout.spatial(buf, rows, cols)[...] = 0
            self.bordered[(role, dtype)] = (layout.name, shape)
        return buf, layout.spatial(buf, slice(pad, pad + h), slice(pad, pad + w))


_WORKSPACE = _Workspace()


_ZEROS = {}


def relu(y, out=None):
    """max(y, 0), in place or into `out`. Taken against a row of zeros broadcast along the last
    axis rather than the scalar 0: numpy's maximum runs about twice as fast that way (measured,
    numpy 2.4; the scalar case misses the vectorized loop)."""
    n = y.shape[-1]
    zeros = _ZEROS.get(y.dtype)
    if zeros is None or zeros.size < n:
        zeros = _ZEROS[y.dtype] = np.zeros(max(n, 4096), y.dtype)
    return np.maximum(y, zeros[:n], out=y if out is None else out)


def release_buffers():
    """Free this thread's reused buffers (they are re-made on the next forward)."""
    _WORKSPACE.buffers = {}
    _WORKSPACE.bordered = {}


# --- the second core: elementwise passes split in two (opt-in) -----------------------------------
#
# BLAS runs the GEMMs on every core, but numpy's elementwise passes (bias, ReLU, residual add, the
# im2col copy, the max pool) run on the calling thread alone. numpy releases the GIL inside its
# loops, so a pass can be split in two halves, the second on one helper thread. The split is by
# rows (batch, else image rows), every half writes only its own rows, and the values are exactly
# those of the unsplit pass (elementwise work has no summation order).
#
# Measured on this project's 2-core machines (benchmarks/fast_ablation.py, results in
# benchmarks/results/ablation-*.json), the split does not pay: ResNet-50 batch 1 is ~6 % slower
# with it, batch 8 the same, DETR 800x1066 ~7 % slower, with any threshold from 2^17 to 2^20
# elements (OpenBLAS's worker keeps spinning on the second core after each GEMM, and the helper
# thread competes with it). So the default is one thread; set_elementwise_threads(2) turns the
# split on where a machine rewards it.

SPLIT_MIN_ELEMENTS = 1 << 17  # with the split on, passes over fewer elements than this are not split
_HELPER = {"threads": 1, "pool": None}
_HELPER_LOCK = threading.Lock()


def set_elementwise_threads(threads):
    """How many threads an elementwise pass may use: 1 (no helper thread, the default) or 2.
    Returns the previous value."""
    if threads not in (1, 2):
        raise ValueError(f"elementwise threads must be 1 or 2, got {threads!r}")
    previous, _HELPER["threads"] = _HELPER["threads"], threads
    return previous


def _pool():
    with _HELPER_LOCK:
        if _HELPER["pool"] is None:
            _HELPER["pool"] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refimpl-fast")
        return _HELPER["pool"]


def _halves(arrays):
    """Each 4-D array (all with the same two leading sizes) cut in two along the batch axis, or
    along the image rows for a single image."""
    n, h = arrays[0].shape[:2]
    if n > 1:
        cut = n // 2
        return [a[:cut] for a in arrays], [a[cut:] for a in arrays]
    cut = h // 2
    return [a[:, :cut] for a in arrays], [a[:, cut:] for a in arrays]


def split(fn, *arrays):
    """fn(*arrays), an elementwise pass over 4-D arrays whose first two axes correspond, run as
    two halves on two threads when it is big enough (see above); otherwise on this thread."""
    if _HELPER["threads"] < 2 or arrays[0].size < SPLIT_MIN_ELEMENTS or arrays[0].shape[0] * arrays[0].shape[1] < 2:
        fn(*arrays)
        return
    first, second = _halves(arrays)
    pending = _pool().submit(fn, *second)
    try:
        fn(*first)
    finally:
        pending.result()


def _bias_relu(y, b, out):
    """out = max(y + b, 0); y is overwritten with y + b."""
    np.add(y, b, out=y)
    relu(y, out=out)


def _residual_bias_relu(y, x, b):
    """y = max(y + x + b, 0) in place (x: the shortcut)."""
    np.add(y, x, out=y)
    np.add(y, b, out=y)
    relu(y)


# --- the forward ------------------------------------------------------------------------------
#
# The three kinds of work, kept in three small functions so that a profiler can time them
# (refimpl/perf/bench.py): `im2col` (the one copy), `gemm` (BLAS), everything else (bias, ReLU,
# residual, pooling, layout changes).

def im2col(layout, xp, k, stride, ho, wo, out):
    """Copy the windows of the padded input `xp` into the column buffer `out` (the one copy)."""
    view, _ = layout.windows(xp, k, stride, ho, wo)
    return window_copy(view, out)


def window_copy(view, out):
    """The im2col copy: a window view (n, ho, wo, k, k, C) into the column matrix `out`, halves by
    batch or output rows on the two threads."""
    split(np.copyto, out.reshape(view.shape), view)
    return out


# A conv whose column matrix would exceed BAND_MIN_BYTES is computed in bands of output rows,
# each band's columns about BAND_BYTES: the copy writes a band that the GEMM then reads while it is
# still in cache, instead of writing the whole matrix to memory and reading it back (at DETR's
# 800x1066 the stem's and stage 1's column matrices are ~120 MB each). Smaller convs (all of
# ResNet-50's at batch 1) run as one GEMM.
BAND_MIN_BYTES = 16 << 20
BAND_BYTES = 4 << 20


def subsample(layout, x, stride, out):
    """Every `stride`-th pixel (a strided 1x1 conv's input): one copy."""
    split(np.copyto, out, layout.spatial(x, slice(None, None, stride), slice(None, None, stride)))
    return out


def gemm(layout, cols, w, out):
    return layout.gemm(cols, w, out)


def conv(layout, ws, c, x, n, h, w, out):
    """Conv `c` (BN folded, no bias added yet) of the activation `x` ((n, C, h, w) in `layout`;
    for a padded conv, `x` is the whole zero-bordered buffer), into `out`: a reused buffer's
    role name, or an array. Returns (output matrix, ho, wo)."""
    ho = ops.conv_output_size(h, c.k, c.stride, c.pad, c.dilation)
    wo = ops.conv_output_size(w, c.k, c.stride, c.pad, c.dilation)
    dtype = x.dtype
    if c.k == 1 and c.stride == 1:
        cols = layout.matrix(x)
    elif c.k == 1:
        sub = subsample(layout, x, c.stride, ws.get("subsample", layout.shape(n, layout.channels(x), ho, wo), dtype))
        cols = layout.matrix(sub)
    else:
        view, shape = layout.windows(x, c.k, c.stride, ho, wo, c.dilation)
        if shape[0] * shape[1] * dtype.itemsize > BAND_MIN_BYTES:
            if isinstance(out, str):
                out = layout.matrix(ws.get(out, layout.shape(n, c.c_out, ho, wo), dtype))
            return _conv_in_bands(layout, ws, c, view, n, ho, wo, shape[1], out), ho, wo
        cols = window_copy(view, ws.get("cols", shape, dtype))
    if isinstance(out, str):
        out = layout.matrix(ws.get(out, layout.shape(n, c.c_out, ho, wo), dtype))
    return gemm(layout, cols, c.w, out), ho, wo


def _conv_in_bands(layout, ws, c, view, n, ho, wo, k_cols, out):
    """A windowed conv, band by band of output rows (see BAND_BYTES): copy the band's windows,
    multiply them into the band's rows of `out` (n*ho*wo, O). Every output row is the same dot
    products as in one big GEMM."""
    band = max(1, BAND_BYTES // (wo * k_cols * out.dtype.itemsize))  # output rows per band
    cols = ws.get("cols", (min(band, ho) * wo, k_cols), out.dtype)
    for i in range(n):
        for r0 in range(0, ho, band):
            r1 = min(ho, r0 + band)
            part = window_copy(view[i:i + 1, r0:r1], cols[:(r1 - r0) * wo])
            gemm(layout, part, c.w, out[(i * ho + r0) * wo:(i * ho + r1) * wo])
    return out


def _as_4d(layout, matrix, n, c, h, w):
    return matrix.reshape(layout.shape(n, c, h, w))


def _record(trace, name, layout, a):
    """Trace entries are NCHW copies, as the reference's (a copy always: `a` may be a reused
    buffer, and ascontiguousarray would return a view when the transpose happens to be C order)."""
    if trace is not None:
        trace[name] = np.array(a.transpose(layout.inverse), order="C", copy=True)


def stem(p, ws, x, trace=None):
    """(N, 3, H, W) NCHW -> the max-pooled stem output (N, 64, H/4, W/4) in the layout."""
    lay, dt = p.layout, p.dtype
    n, c_in, h, w = x.shape
    _, _, out_name, pool_name = p.names.stem()
    xp, inner = ws.padded("stem_in", lay, n, c_in, h, w, p.stem.pad, dt)
    np.copyto(inner, x.transpose(lay.axes))  # NCHW -> layout, and into the zero border: one copy
    # The stem's two big temporaries are dead before the first block runs: they borrow the
    # blocks' ping-pong buffers (fewer buffers kept alive; at 800x1066 each is ~55 MB).
    y, h, w = conv(lay, ws, p.stem, xp, n, h, w, "block_a")
    # bias and ReLU straight into the zero-bordered buffer of the max pool (zero padding is exact
    # after a ReLU).
    c = p.stem.c_out
    pp, inner = ws.padded("block_b", lay, n, c, h, w, 1, dt)
    split(lambda y, out: _bias_relu(y, p.stem.b, out), _as_4d(lay, y, n, c, h, w), inner)
    _record(trace, out_name, lay, inner)
    ho, wo = ops.conv_output_size(h, 3, 2, 1), ops.conv_output_size(w, 3, 2, 1)
    out = ws.get("pool_out", lay.shape(n, c, ho, wo), dt)
    # Output row r reads padded rows 2r..2r+2: the halves are split by output row, each given the
    # padded rows it reads (a view: windows of the two halves overlap by one row, read only).
    windows = as_strided(pp, (n, ho, wo, 3, 3, c), (pp.strides[0], 2 * pp.strides[1], 2 * pp.strides[2],
                                                  pp.strides[1], pp.strides[2], pp.strides[3]), writeable=False)
    split(_max_pool_3x3, out, windows)
    _record(trace, pool_name, lay, out)
    return out, ho, wo


def _max_pool_3x3(out, windows):
    """out (n, ho, wo, C) = the max over each (3, 3) window of `windows` (n, ho, wo, 3, 3, C)."""
    for i in range(3):
        for j in range(3):
            if i == j == 0:
                np.copyto(out, windows[:, :, :, 0, 0])
            else:
                np.maximum(out, windows[:, :, :, i, j], out=out)


def residual_block(p, ws, bp, x, n, h, w, out, trace=None):
    """One block, basic or bottleneck. x: (n, C_in, h, w) in the layout -> (output, ho, wo), the
    output written into `out` (a fresh array, or the role name of a reused buffer that does not hold `x`)."""
    if bp.names.kind == "basic":
        return basic(p, ws, bp, x, n, h, w, out, trace)
    return bottleneck(p, ws, bp, x, n, h, w, out, trace)


def basic(p, ws, bp, x, n, h, w, out, trace=None):
    """A basic block (ResNet-18/34): x copied into a zero-bordered buffer for the first 3x3 conv,
    its bias and ReLU written into the second 3x3 conv's zero-bordered input, then the second
    conv into `out`, the shortcut (identity, or its 1x1 conv), the bias and ReLU in place."""
    lay, dt = p.layout, p.dtype
    c1, c2 = bp.convs
    names = bp.names
    xp, inner = ws.padded("padded in", lay, n, lay.channels(x), h, w, c1.pad, dt)
    split(np.copyto, inner, x)
    t, ho, wo = conv(lay, ws, c1, xp, n, h, w, "t1")
    tp, inner = ws.padded(bp.pad_role, lay, n, c1.c_out, ho, wo, c2.pad, dt)
    split(lambda t, out: _bias_relu(t, c1.b, out), _as_4d(lay, t, n, c1.c_out, ho, wo), inner)
    _record(trace, names.steps[0], lay, inner)
    y, _, _ = conv(lay, ws, c2, tp, n, ho, wo, out if isinstance(out, str) else lay.matrix(out))
    if trace is not None:
        _record(trace, names.steps[1], lay, _as_4d(lay, y + c2.b, n, c2.c_out, ho, wo))
    y = _as_4d(lay, y, n, c2.c_out, ho, wo)
    if bp.shortcut is None:
        shortcut = x
    else:
        s, _, _ = conv(lay, ws, bp.shortcut, x, n, h, w, "shortcut")
        shortcut = _as_4d(lay, s, n, bp.shortcut.c_out, ho, wo)
        if trace is not None:
            _record(trace, names.shortcut_out, lay, shortcut + bp.shortcut.b)
    split(lambda y, s: _residual_bias_relu(y, s, bp.out_bias), y, shortcut)
    return y, ho, wo


def bottleneck(p, ws, bp, x, n, h, w, out, trace=None):
    """A bottleneck block. x: (n, C_in, h, w) in the layout -> (output, ho, wo), the output written
    into `out` (a fresh array, or the role name of a reused buffer that does not hold `x`)."""
    lay, dt = p.layout, p.dtype
    c1, c2, c3 = bp.convs
    names = bp.names
    # 1x1 reduce, bias, ReLU written into the 3x3 conv's zero-bordered input.
    t, _, _ = conv(lay, ws, c1, x, n, h, w, "t1")
    xp, inner = ws.padded(bp.pad_role, lay, n, c1.c_out, h, w, c2.pad, dt)
    split(lambda t, out: _bias_relu(t, c1.b, out), _as_4d(lay, t, n, c1.c_out, h, w), inner)
    _record(trace, names.steps[0], lay, inner)
    if bp.joint_w is not None:
        return _bottleneck_joint(p, ws, bp, x, xp, n, h, w, out, trace)
    # 3x3 (the stride is here), bias, ReLU in place.
    t, ho, wo = conv(lay, ws, c2, xp, n, h, w, "t2")
    t = _as_4d(lay, t, n, c2.c_out, ho, wo)
    split(lambda t: _bias_relu(t, c2.b, t), t)
    _record(trace, names.steps[1], lay, t)
    # 1x1 expand into the block's output, then the identity shortcut, the bias, ReLU, all in place.
    y, _, _ = conv(lay, ws, c3, t, n, ho, wo, out if isinstance(out, str) else lay.matrix(out))
    if trace is not None:
        _record(trace, names.steps[2], lay, _as_4d(lay, y + c3.b, n, c3.c_out, ho, wo))
    y = _as_4d(lay, y, n, c3.c_out, ho, wo)
    split(lambda y, s: _residual_bias_relu(y, s, bp.out_bias), y, x)
    return y, ho, wo


def _bottleneck_joint(p, ws, bp, x, xp, n, h, w, out, trace=None):
    """The rest of a block with a shortcut conv, from its 3x3 conv on: the 3x3 conv writes its
    output t into the left channels of one buffer, the shortcut's input x' (x subsampled by the
    stride) is copied into the right ones, and a single GEMM [t | x'] @ [W3; Ws] computes
    conv3(t) + shortcut(x). Then the two biases and ReLU, in place."""
    lay, dt = p.layout, p.dtype
    _, c2, c3 = bp.convs
    names = bp.names
    c_mid, c_in = c2.c_out, lay.channels(x)
    ho = ops.conv_output_size(h, c2.k, c2.stride, c2.pad, c2.dilation)
    wo = ops.conv_output_size(w, c2.k, c2.stride, c2.pad, c2.dilation)
    joint = ws.get("joint", lay.shape(n, c_mid + c_in, ho, wo), dt)
    t, xs = lay.channel_range(joint, 0, c_mid), lay.channel_range(joint, c_mid, c_mid + c_in)
    conv(lay, ws, c2, xp, n, h, w, lay.matrix(joint)[:, :c_mid])  # BLAS writes the strided columns
    split(lambda t: _bias_relu(t, c2.b, t), t)
    _record(trace, names.steps[1], lay, t)
    subsample(lay, x, bp.stride, xs)
    if isinstance(out, str):
        out = ws.get(out, lay.shape(n, c3.c_out, ho, wo), dt)
    y = gemm(lay, lay.matrix(joint), bp.joint_w, lay.matrix(out))
    if trace is not None:  # the two halves of the sum, for the trace only
        tm, xm = lay.matrix(joint)[:, :c_mid], lay.matrix(joint)[:, c_mid:]
        _record(trace, names.steps[2], lay, _as_4d(lay, tm @ c3.w + c3.b, n, c3.c_out, ho, wo))
        _record(trace, names.shortcut_out, lay, _as_4d(lay, xm @ bp.shortcut.w + bp.shortcut.b, n, c3.c_out, ho, wo))
    y = _as_4d(lay, y, n, c3.c_out, ho, wo)
    split(lambda y: _bias_relu(y, bp.out_bias, y), y)
    return y, ho, wo


def run(p, x, trace=None, keep_stages=True):
    """x: (N, 3, H, W) NCHW. Returns the stage outputs in the layout: fresh arrays if
    `keep_stages`, else the last one only, in a reused buffer (valid until the next call)."""
    ws = _WORKSPACE
    n = x.shape[0]
    a, h, w = stem(p, ws, x, trace)
    role = None  # the reused buffer holding `a`, if any (the pool's is not one of the two below)
    features = []
    for s, stage in enumerate(p.stages):
        for i, bp in enumerate(stage):
            if i == len(stage) - 1 and keep_stages:
                ho, wo = (h - 1) // bp.stride + 1, (w - 1) // bp.stride + 1  # "same" padding: the stride decides
                out, role = np.empty(p.layout.shape(n, bp.convs[-1].c_out, ho, wo), p.dtype), None
            else:  # ping-pong between two reused buffers: a block never writes over its input
                out = role = "block_b" if role == "block_a" else "block_a"
            a, h, w = residual_block(p, ws, bp, a, n, h, w, out, trace)
            _record(trace, bp.names.name, p.layout, a)
        _record(trace, p.names.stage(s), p.layout, a)
        if keep_stages:
            features.append(a)
    return features if keep_stages else [a]


def backbone(params, names, x, trace=None, layout=DEFAULT_LAYOUT):
    """As resnet.backbone: (N, 3, H, W) -> the stage outputs, NCHW-shaped (N, C, h, w).

    They are NCHW *views* (a transpose) of fresh arrays in the fast layout: no copy, nothing
    shared with a later call; np.ascontiguousarray() them if C order matters."""
    p = plan(params, names, compute_dtype(params, names, x), layout)
    return [a.transpose(p.layout.inverse) for a in run(p, x, trace)]


def last_stage(params, names, x, trace=None, layout=DEFAULT_LAYOUT):
    """resnet.backbone(...)[-1], NCHW-shaped (a transposed view), for a caller that consumes it
    at once (DETR's input projection): it lives in a reused buffer, valid until this thread's
    next forward, and the earlier stages' outputs are never allocated (at 800x1066 that is about
    100 MB of fresh, page-faulting memory per image that `backbone` returns). The same values,
    bit for bit, as backbone(...)[-1]; the trace records every stage as `backbone` does."""
    p = plan(params, names, compute_dtype(params, names, x), layout)
    (last,) = run(p, x, trace, keep_stages=False)
    return last.transpose(p.layout.inverse)


def classify(params, pixel_values, trace=None, layout=DEFAULT_LAYOUT, names=CLASSIFIER_NAMES):
    """As resnet.classify: ResNetForImageClassification, (N, 3, H, W) -> logits (N, num_labels).
    names: the classifier's resnet.Backbone (ResNet-50's by default)."""
    p = plan(params, names, compute_dtype(params, names, pixel_values), layout)
    if trace is not None:
        trace["pixel_values"] = pixel_values
    (last,) = run(p, pixel_values, trace, keep_stages=False)
    pooled = p.layout.global_avg_pool(last)  # (N, C)
    if trace is not None:
        trace["resnet.pooler"] = np.array(pooled.reshape(*pooled.shape, 1, 1), order="C", copy=True)
    w, b = params["classifier.1.weight"], params["classifier.1.bias"]
    logits = ops.linear(np.ascontiguousarray(pooled), w.astype(p.dtype, copy=False), b.astype(p.dtype, copy=False))
    if trace is not None:
        trace["classifier.1"] = logits
    return logits
