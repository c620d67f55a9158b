"""The numpy ops both models are built from. One op, one small function.

Layout is NCHW throughout (the checkpoint's and PyTorch's), so a tensor here can be compared
with the reference's tensor of the same name without a transpose. Every op keeps the dtype of
its input: float32 by default, float64 when the caller asks for it.
"""

import numpy as np
from numpy.lib.stride_tricks import as_strided


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    """Output length of a convolution or pooling along one axis (PyTorch's floor rule)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def im2col(x, kernel, stride=1, padding=0, dilation=1, pad_value=0.0):
    """Unfold the sliding windows of `x` into columns.

    x: (N, C, H, W) -> cols: (N, C*kh*kw, Ho*Wo), rows ordered (c, i, j) like a conv weight's
    (C, kh, kw) flattening, so `weight.reshape(O, -1) @ cols` is the convolution.

    The windows are a strided *view* of the padded input (no copy); the one copy is the
    reshape that lays them out contiguously for the matmul.
    """
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    n, c, h, w = x.shape
    ho = conv_output_size(h, kh, sh, ph, dh)
    wo = conv_output_size(w, kw, sw, pw, dw)
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    x = np.ascontiguousarray(x)
    s_n, s_c, s_h, s_w = x.strides
    windows = as_strided(
        x,
        shape=(n, c, kh, kw, ho, wo),
        strides=(s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw),
        writeable=False,
    )
    return windows.reshape(n, c * kh * kw, ho * wo), (ho, wo)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """2-D convolution (cross-correlation, as PyTorch), groups=1.

    x: (N, C, H, W), weight: (O, C, kh, kw), bias: (O,) or None -> (N, O, Ho, Wo).
    """
    o, c, kh, kw = weight.shape
    if x.shape[1] != c:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels, weight expects {c}")
    n = x.shape[0]
    if (kh, kw) == (1, 1) and _pair(padding) == (0, 0):
        # A 1x1 conv is a matmul over channels: subsample for the stride, no im2col at all.
        sh, sw = _pair(stride)
        x = x[:, :, ::sh, ::sw]
        ho, wo = x.shape[2:]
        cols = x.reshape(n, c, ho * wo)
    else:
        cols, (ho, wo) = im2col(x, (kh, kw), stride, padding, dilation)
    out = np.matmul(weight.reshape(o, -1), cols)  # (N, O, Ho*Wo): one BLAS call per image
    out = out.reshape(n, o, ho, wo)
    if bias is not None:
        out += bias.reshape(1, o, 1, 1)
    return out


def max_pool2d(x, kernel=3, stride=2, padding=1):
    """Max pooling with implicit -inf padding (PyTorch's semantics). (N, C, H, W) -> (N, C, Ho, Wo)."""
    n, c = x.shape[:2]
    cols, (ho, wo) = im2col(
        x.reshape(n * c, 1, *x.shape[2:]), kernel, stride, padding, pad_value=-np.inf
    )
    return cols.max(axis=1).reshape(n, c, ho, wo)


def batch_norm(x, weight, bias, running_mean, running_var, eps=1e-5):
    """Frozen (inference) batch norm over axis 1. x: (N, C, ...) -> same shape.

    Computed as PyTorch does: scale = weight / sqrt(var + eps), shift = bias - mean * scale.
    """
    scale = weight / np.sqrt(running_var + eps)
    shift = bias - running_mean * scale
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return x * scale.reshape(shape) + shift.reshape(shape)


def relu(x):
    return np.maximum(x, 0, dtype=x.dtype)


def global_avg_pool(x):
    """(N, C, H, W) -> (N, C, 1, 1), as nn.AdaptiveAvgPool2d((1, 1))."""
    return x.mean(axis=(2, 3), keepdims=True, dtype=x.dtype)


def linear(x, weight, bias=None):
    """y = x W^T + b over the last axis. x: (..., in), weight: (out, in) -> (..., out)."""
    y = x @ weight.T
    if bias is not None:
        y = y + bias
    return y


def softmax(x, axis=-1):
    """Numerically stable softmax: subtracting the max changes nothing but keeps exp finite."""
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
    # Split by sign so that exp never overflows.
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def layer_norm(x, weight, bias, eps=1e-5):
    """Layer norm over the last axis (biased variance, as PyTorch). (..., D) -> (..., D)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias
