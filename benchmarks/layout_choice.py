"""Which layout should refimpl.models.fast use? Times ResNet-50's 53 convolutions (im2col + matmul, the
bulk of the work) in NCHW and in NHWC, interleaved in one process so machine noise hits both.

    python benchmarks/layout_choice.py [--batch 1,8] [--size 224] [--repeat 5]

Each layout gets its input already in a zero-bordered buffer (the fast path writes each layer's
output into the interior of one), then: window view, one copy (a 1x1/stride-1 conv's "copy" is a
free reshape), one matmul.
NCHW: W (O, K) @ cols (N, K, Ho*Wo): a batched matmul, one GEMM per image.
NHWC: cols (N*Ho*Wo, K) @ W (K, O): one GEMM for the whole batch, channels contiguous.
CNHW: W (O, K) @ cols (K, N*Ho*Wo): one GEMM for the whole batch, pixels contiguous (NCHW's
      GEMM orientation, which some OpenBLAS kernels prefer, without the per-image loop).
The three GEMM orientations differ only in which operand BLAS sees as the long side, which is
what decides the speed (the copies are a few percent).
"""

import argparse
import time

import numpy as np
from numpy.lib.stride_tricks import as_strided


def resnet50_convs(size):
    """(C_in, C_out, k, stride, pad, H_in) for each of the 53 convs."""
    convs = [(3, 64, 7, 2, 3, size)]
    h = (size + 1) // 2
    h = (h + 1) // 2  # max pool
    c_in = 64
    for s, (depth, c_out) in enumerate(zip((3, 4, 6, 3), (256, 512, 1024, 2048))):
        mid = c_out // 4
        for i in range(depth):
            stride = 2 if (i == 0 and s > 0) else 1
            convs.append((c_in, mid, 1, 1, 0, h))
            convs.append((mid, mid, 3, stride, 1, h))
            h_out = (h - 1) // stride + 1
            convs.append((mid, c_out, 1, 1, 0, h_out))
            if i == 0:
                convs.append((c_in, c_out, 1, stride, 0, h))
            c_in, h = c_out, h_out
    return convs


def conv(layout, xp, w, k, stride, pad, h):
    """One conv: `xp` is the input in `layout` with a zero border of `pad` already in place
    (as the fast path keeps it: the previous layer writes into the interior of a padded buffer);
    `w` is the weight matrix for that layout. Window view + at most one copy + one matmul."""
    ho = (h + 2 * pad - k) // stride + 1
    if layout == "NHWC":  # (N, H, W, C): cols (N*Ho*Wo, k*k*C) @ W (k*k*C, O)
        n, c = xp.shape[0], xp.shape[3]
        s = xp.strides
        v = as_strided(xp, (n, ho, ho, k, k, c), (s[0], s[1] * stride, s[2] * stride, s[1], s[2], s[3]))
        return v.reshape(n * ho * ho, k * k * c) @ w
    if layout == "CNHW":  # (C, N, H, W): W (O, C*k*k) @ cols (C*k*k, N*Ho*Wo), one GEMM per batch
        c, n = xp.shape[:2]
        s = xp.strides
        v = as_strided(xp, (c, k, k, n, ho, ho), (s[0], s[2], s[3], s[1], s[2] * stride, s[3] * stride))
        return w @ v.reshape(c * k * k, n * ho * ho)
    # NCHW: (N, C, H, W): W (O, C*k*k) @ cols (N, C*k*k, Ho*Wo), one GEMM per image
    n, c = xp.shape[:2]
    s = xp.strides
    v = as_strided(xp, (n, c, k, k, ho, ho), (s[0], s[1], s[2], s[3], s[2] * stride, s[3] * stride))
    return np.matmul(w, v.reshape(n, c * k * k, ho * ho))


LAYOUTS = ("NCHW", "NHWC", "CNHW")


def prepare(layout, x, w, pad):
    """x (N, C, H, W), w (O, C, k, k) -> (padded input, weight matrix) for `layout`."""
    p = ((0, 0), (0, 0), (pad, pad), (pad, pad))
    o = w.shape[0]
    if layout == "NHWC":
        return np.ascontiguousarray(np.pad(x, p).transpose(0, 2, 3, 1)), np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, o))
    if layout == "CNHW":
        return np.ascontiguousarray(np.pad(x, p).transpose(1, 0, 2, 3)), w.reshape(o, -1)
    return np.pad(x, p), w.reshape(o, -1)


def as_nchw(layout, y, n, o, ho):
    if layout == "NHWC":
        return y.reshape(n, ho, ho, o).transpose(0, 3, 1, 2)
    if layout == "CNHW":
        return y.reshape(o, n, ho, ho).transpose(1, 0, 2, 3)
    return y.reshape(n, o, ho, ho)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for n in map(int, args.batch.split(",")):
        cases = []
        for c_in, c_out, k, stride, pad, h in resnet50_convs(args.size):
            x = rng.standard_normal((n, c_in, h, h), dtype=np.float32)
            w = rng.standard_normal((c_out, c_in, k, k), dtype=np.float32)
            ho = (h + 2 * pad - k) // stride + 1
            inputs = {lay: prepare(lay, x, w, pad) for lay in LAYOUTS}
            ys = [as_nchw(lay, conv(lay, *inputs[lay], k, stride, pad, h), n, c_out, ho) for lay in LAYOUTS]
            for y in ys[1:]:
                assert np.allclose(y, ys[0], rtol=1e-3, atol=1e-3 * np.abs(ys[0]).max())
            cases.append((inputs, k, stride, pad, h))
        totals = {lay: [] for lay in LAYOUTS}
        for _ in range(args.repeat):
            for lay in LAYOUTS:
                t0 = time.perf_counter()
                for inputs, k, stride, pad, h in cases:
                    conv(lay, *inputs[lay], k, stride, pad, h)
                totals[lay].append(time.perf_counter() - t0)
        line = ", ".join(f"{k} {np.median(v) * 1e3:.1f} ms (min {min(v) * 1e3:.1f})" for k, v in totals.items())
        print(f"batch {n}, {args.size}x{args.size}, 53 convs, median (min): {line}", flush=True)


if __name__ == "__main__":
    main()
