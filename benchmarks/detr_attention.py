"""DETR's encoder self-attention at 800x1066 (850 tokens, 8 heads): refimpl/models/detr.py's `attention`
against a variant with the same math and fewer passes over the (heads, S, S) scores, to back the
recommendations in docs/performance.md. Both are checked equal first.

    python benchmarks/detr_attention.py [--tokens 850] [--repeat 10]

The variant: the 1/sqrt(head_dim) scale folded into the query projection (no pass over the
scores), the key mask applied only when some key is padding (as an additive -inf row, in place),
and the softmax in place (max, subtract, exp, sum, divide: no temporaries of the scores' size).
"""

import argparse
import time

import numpy as np

from refimpl.models import detr, ops


def attention_fewer_passes(params, name, query, key, value, num_heads, key_mask=None):
    n, l, d = query.shape
    s = key.shape[1]
    hd = d // num_heads
    scale = hd**-0.5

    def heads(x, length):
        return x.reshape(n, length, num_heads, hd).transpose(0, 2, 1, 3)

    wq, bq = params[name + ".q_proj.weight"] * scale, params[name + ".q_proj.bias"] * scale
    q = heads(ops.linear(query, wq, bq), l)
    k = heads(ops.linear(key, params[name + ".k_proj.weight"], params[name + ".k_proj.bias"]), s)
    v = heads(ops.linear(value, params[name + ".v_proj.weight"], params[name + ".v_proj.bias"]), s)
    scores = q @ k.transpose(0, 1, 3, 2)  # (N, heads, L, S), already scaled
    if key_mask is not None and not key_mask.all():
        scores += np.where(key_mask, 0, -np.inf).astype(scores.dtype)[:, None, None, :]
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    out = (scores @ v).transpose(0, 2, 1, 3).reshape(n, l, d)
    return ops.linear(out, params[name + ".out_proj.weight"], params[name + ".out_proj.bias"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=850)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    d, h, name = 256, 8, "enc.self_attn"
    params = {}
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
        params[f"{name}.{proj}.weight"] = (rng.normal(size=(d, d)) / 16).astype(np.float32)
        params[f"{name}.{proj}.bias"] = rng.normal(size=d).astype(np.float32) * 0.1
    x = rng.normal(size=(1, args.tokens, d)).astype(np.float32)
    mask = np.ones((1, args.tokens), bool)
    a = detr.attention(params, name, x, x, x, h, mask)
    b = attention_fewer_passes(params, name, x, x, x, h, mask)
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()
    times = {"detr.attention": [], "fewer passes": []}
    for _ in range(args.repeat):
        for label, fn in (("detr.attention", detr.attention), ("fewer passes", attention_fewer_passes)):
            t0 = time.perf_counter()
            fn(params, name, x, x, x, h, mask)
            times[label].append((time.perf_counter() - t0) * 1e3)
    for label, t in times.items():
        print(f"{label:>15}: median {np.median(t):.1f} ms, min {min(t):.1f} ms (one layer, {args.tokens} tokens)")


if __name__ == "__main__":
    main()
