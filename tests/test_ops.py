"""Each op against a slow, obvious loop implementation, over random shapes, strides and paddings
(hypothesis), in float32 and float64."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.models import ops

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-5, np.float64: 1e-12}


# --- slow references: loops over every output element -------------------------------------------

def slow_conv2d(x, w, b, stride, padding, dilation):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * padding, wd + 2 * padding), dtype=np.float64)
    xp[:, :, padding:padding + h, padding:padding + wd] = x
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (wd + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            for di in range(kh):
                for dj in range(kw):
                    patch = xp[:, :, i * stride + di * dilation, j * stride + dj * dilation]  # (n, c)
                    out[:, :, i, j] += patch @ w[:, :, di, dj].T.astype(np.float64)
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def slow_max_pool(x, k, s, p):
    n, c, h, w = x.shape
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.full((n, c, ho, wo), -np.inf)
    for i in range(ho):
        for j in range(wo):
            for di in range(k):
                for dj in range(k):
                    y, xx = i * s + di - p, j * s + dj - p
                    if 0 <= y < h and 0 <= xx < w:
                        out[:, :, i, j] = np.maximum(out[:, :, i, j], x[:, :, y, xx])
    return out


def close(a, b, dtype):
    scale = max(1.0, float(np.abs(b).max()) if b.size else 1.0)
    return float(np.abs(a.astype(np.float64) - b).max()) <= TOL[dtype] * scale


# --- properties -----------------------------------------------------------------------------------

@st.composite
def conv_cases(draw):
    k = draw(st.sampled_from([1, 2, 3, 5, 7]))
    dilation = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, 3))
    span = dilation * (k - 1) + 1
    h = draw(st.integers(max(1, span - 2 * padding), span + 8))
    w = draw(st.integers(max(1, span - 2 * padding), span + 8))
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 5))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**31))
    return n, c, o, h, w, k, stride, padding, dilation, bias, seed


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None)
@given(case=conv_cases())
def test_conv2d_matches_loops(dtype, case):
    n, c, o, h, w, k, stride, padding, dilation, bias, seed = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c, h, w)).astype(dtype)
    wt = rng.normal(size=(o, c, k, k)).astype(dtype)
    b = rng.normal(size=o).astype(dtype) if bias else None
    out = ops.conv2d(x, wt, b, stride=stride, padding=padding, dilation=dilation)
    assert out.dtype == dtype
    assert close(out, slow_conv2d(x, wt, b, stride, padding, dilation), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 2),
    h=st.integers(1, 12), w=st.integers(1, 12), seed=st.integers(0, 2**31),
)
def test_max_pool_matches_loops(dtype, k, s, p, h, w, seed):
    if p > k // 2 or h + 2 * p < k or w + 2 * p < k:  # PyTorch's own preconditions
        return
    x = np.random.default_rng(seed).normal(size=(2, 3, h, w)).astype(dtype)
    out = ops.max_pool2d(x, k, s, p)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, slow_max_pool(x, k, s, p).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(c=st.integers(1, 8), h=st.integers(1, 6), seed=st.integers(0, 2**31))
def test_batch_norm_matches_formula(dtype, c, h, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, c, h, h)).astype(dtype)
    g, b, m = (rng.normal(size=c).astype(dtype) for _ in range(3))
    v = rng.uniform(0.1, 3, size=c).astype(dtype)
    out = ops.batch_norm(x, g, b, m, v, 1e-5)
    expect = np.empty((2, c, h, h))
    for ch in range(c):  # per channel, the textbook formula
        expect[:, ch] = (x[:, ch].astype(np.float64) - m[ch]) / np.sqrt(float(v[ch]) + 1e-5) * g[ch] + b[ch]
    assert out.dtype == dtype and close(out, expect, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), seed=st.integers(0, 2**31),
       scale=st.sampled_from([1.0, 50.0, 1e4]))
def test_softmax_stable_and_normalized(dtype, shape, seed, scale):
    x = (np.random.default_rng(seed).normal(size=shape) * scale).astype(dtype)
    out = ops.softmax(x)
    assert out.dtype == dtype and np.all(np.isfinite(out))
    np.testing.assert_allclose(out.sum(-1), 1, rtol=TOL[dtype] * 10)
    flat = x.reshape(-1, shape[-1]).astype(np.float64)
    for row, got in zip(flat, out.reshape(-1, shape[-1])):
        e = [np.exp(v - row.max()) for v in row]
        assert close(got, np.array(e) / sum(e), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), i=st.integers(1, 7), o=st.integers(1, 7), seed=st.integers(0, 2**31))
def test_linear_matches_loops(dtype, n, i, o, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.normal(size=(n, i)).astype(dtype), rng.normal(size=(o, i)).astype(dtype), rng.normal(size=o).astype(dtype)
    expect = np.array([[sum(float(x[r, k]) * float(w[j, k]) for k in range(i)) + float(b[j]) for j in range(o)] for r in range(n)])
    out = ops.linear(x, w, b)
    assert out.dtype == dtype and close(out, expect, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=30, deadline=None)
@given(c=st.integers(1, 5), h=st.integers(1, 6), w=st.integers(1, 6), seed=st.integers(0, 2**31))
def test_relu_and_global_avg_pool(dtype, c, h, w, seed):
    x = np.random.default_rng(seed).normal(size=(2, c, h, w)).astype(dtype)
    r = ops.relu(x)
    assert r.dtype == dtype
    np.testing.assert_array_equal(r, np.where(x > 0, x, 0))
    g = ops.global_avg_pool(x)
    assert g.shape == (2, c, 1, 1) and g.dtype == dtype
    expect = np.array([[sum(float(v) for v in x[a, ch].ravel()) / (h * w) for ch in range(c)] for a in range(2)])
    assert close(g[:, :, 0, 0], expect, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=30, deadline=None)
@given(d=st.integers(2, 16), seed=st.integers(0, 2**31))
def test_layer_norm_and_sigmoid(dtype, d, seed):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(3, d)) * 5).astype(dtype)
    g, b = rng.normal(size=d).astype(dtype), rng.normal(size=d).astype(dtype)
    out = ops.layer_norm(x, g, b, 1e-5)
    for row, got in zip(x.astype(np.float64), out):
        mu = sum(row) / d
        var = sum((v - mu) ** 2 for v in row) / d
        assert close(got, (row - mu) / np.sqrt(var + 1e-5) * g + b, dtype)
    s = ops.sigmoid((x * 100).astype(dtype))  # large magnitudes: no overflow warnings, exact limits
    assert s.dtype == dtype and np.all((s >= 0) & (s <= 1))
    with np.errstate(over="ignore"):  # the reference may overflow to inf, which gives exactly 0
        expect = 1 / (1 + np.exp(-(x.astype(np.float64) * 100)))
    assert close(s, expect, dtype)


def test_conv2d_refuses_channel_mismatch():
    with pytest.raises(ValueError, match="3 channels, weight expects 4"):
        ops.conv2d(np.zeros((1, 3, 5, 5), np.float32), np.zeros((2, 4, 3, 3), np.float32))


def test_ops_against_torch():
    """The same ops against torch.nn.functional on a ResNet-sized case (the semantics we mirror)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 17, 13)).astype(np.float32)
    w = rng.normal(size=(6, 8, 3, 3)).astype(np.float32)
    ours = ops.conv2d(x, w, stride=2, padding=1)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=2, padding=1).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(ops.max_pool2d(x), F.max_pool2d(torch.from_numpy(x), 3, 2, 1).numpy())
