"""DETR on the fast path: fast.py's backbone under detr.py's transformer, with fewer passes over
the attention scores.

detr.py is the reference: every attention builds its (N, heads, L, S) scores, scales them, masks
them and takes a softmax that makes three more arrays of that size. At 800x1066 the encoder's
scores are 8 x 850 x 850 floats (23 MB) and each pass over them is a fresh allocation, page faults
included. This module computes the same function and records the same trace names, in the same
order (tests/test_registry.py and tests/test_fast.py hold it to the reference on every tensor):

1. **The scale on the queries**, not the scores: q_proj(x) * head_dim^-0.5 (what transformers
   does), an (N, L, D) pass instead of an (N, heads, L, S) one.
2. **The key mask only when some key is padding.** A single unpadded image (the usual case)
   masks nothing, so the `np.where` pass over the scores is skipped; when a key is padding, its
   score is set to -inf in place.
3. **The softmax in place** on the scores: max, subtract, exp, sum, divide, the same operations
   on the same numbers as `ops.softmax`, with no temporaries of the scores' size.
4. **Keys transposed in one copy** ((N, S, D) -> (N, heads, head_dim, S)) instead of two.
5. The feed-forward's bias and ReLU in place.
6. **Only layer4 leaves the backbone** (`fast.last_stage`): the other three stage outputs (about
   100 MB of fresh memory per 800x1066 image, every page faulted in on each call) are never
   allocated; layer4 itself stays in fast.py's reused buffer until the input projection reads it.

The difference from the reference is rounding only (the scale multiplies before the matmul
instead of after): about 1e-7 relative in float32, 1e-16 in float64.

    >>> outputs = fast_detr.forward(params, hp, pixel_values, pixel_mask)   # = detr.forward(..., backbone=fast.backbone)
"""

import numpy as np

from refimpl.models import detr, fast, ops, record


def conv_encoder(params, hp, pixel_values, pixel_mask, trace=None):
    """As detr.conv_encoder(..., backbone=fast.backbone) -> (last stage's features (N, C, h, w), mask (N, h, w)
    bool), the features in fast.py's reused buffer (`fast.last_stage`): they are consumed by the
    input projection before anything else runs the backbone on this thread."""
    features = fast.last_stage(params, hp.backbone_names, pixel_values, trace)
    mask = detr.downsample_mask(pixel_mask, features.shape[-2:])
    record(trace, "model.backbone.conv_encoder.mask", mask)
    return features, mask


def linear(params, name, x):
    """x W^T + b, the bias added in place (the matmul's result is a fresh array)."""
    y = x @ params[name + ".weight"].T
    y += params[name + ".bias"]
    return y


def attention(params, name, query, key, value, num_heads, key_mask=None, trace=None):
    """As detr.attention: query (N, L, D); key, value (N, S, D); key_mask (N, S) bool, True where
    a key may be attended to (None: all) -> (N, L, D). Records `<name>.attn_weights`
    (N, heads, L, S) and `<name>`."""
    n, l, d = query.shape
    s = key.shape[1]
    head_dim = d // num_heads

    q = linear(params, name + ".q_proj", query)
    q *= head_dim**-0.5  # (N, L, D): cheaper than scaling the (N, heads, L, S) scores
    # Contiguous head-major copies: numpy's batched matmul is several times faster on them.
    q = np.ascontiguousarray(q.reshape(n, l, num_heads, head_dim).transpose(0, 2, 1, 3))  # (N, h, L, hd)
    k = linear(params, name + ".k_proj", key)
    k_t = np.ascontiguousarray(k.reshape(n, s, num_heads, head_dim).transpose(0, 2, 3, 1))  # (N, h, hd, S)
    v = linear(params, name + ".v_proj", value)
    v = np.ascontiguousarray(v.reshape(n, s, num_heads, head_dim).transpose(0, 2, 1, 3))  # (N, h, S, hd)

    scores = q @ k_t  # (N, heads, L, S), already scaled; a fresh array, so the rest is in place
    if key_mask is not None and not key_mask.all():
        # Padding gets probability exactly 0 (exp(-inf) = 0); every image has a real pixel.
        np.copyto(scores, -np.inf, where=~key_mask[:, None, None, :])
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    weights = scores
    record(trace, name + ".attn_weights", weights)

    out = (weights @ v).transpose(0, 2, 1, 3).reshape(n, l, d)  # concatenate the heads
    out = linear(params, name + ".out_proj", out)
    record(trace, name, out)
    return out


def feed_forward(params, name, x):
    """fc1 -> ReLU -> fc2, the bias and ReLU in place. (..., D) -> (..., D)."""
    h = linear(params, name + ".fc1", x)
    np.maximum(h, 0, out=h)
    return linear(params, name + ".fc2", h)


def encoder_layer(params, name, hp, src, pos, mask, trace=None):
    """As detr.encoder_layer (post-norm). src, pos: (N, S, D); mask: (N, S) bool -> (N, S, D)."""
    q = k = src + pos
    src = detr.layer_norm(params, name + ".self_attn_layer_norm",
                          src + attention(params, name + ".self_attn", q, k, src, hp.encoder_heads, mask, trace))
    src = detr.layer_norm(params, name + ".final_layer_norm", src + feed_forward(params, name, src))
    return src


def decoder_layer(params, name, hp, tgt, query_pos, memory, memory_pos, mask, trace=None):
    """As detr.decoder_layer, with memory + pos computed once for all layers (`memory_pos`)."""
    q = k = tgt + query_pos
    tgt = detr.layer_norm(params, name + ".self_attn_layer_norm",
                          tgt + attention(params, name + ".self_attn", q, k, tgt, hp.decoder_heads, None, trace))
    tgt = detr.layer_norm(params, name + ".encoder_attn_layer_norm",
                          tgt + attention(params, name + ".encoder_attn", tgt + query_pos, memory_pos, memory,
                                          hp.decoder_heads, mask, trace))
    tgt = detr.layer_norm(params, name + ".final_layer_norm", tgt + feed_forward(params, name, tgt))
    return tgt


def encoder(params, hp, src, pos, mask, trace=None):
    for name in hp.encoder_layer_names:
        src = encoder_layer(params, name, hp, src, pos, mask, trace)
        record(trace, name, src)
    return src


def decoder(params, hp, memory, pos, mask, trace=None):
    """As detr.decoder. The cross-attention keys' input, memory + pos, is the same in all six
    layers: added once here (detr.py adds it in every layer; the values are identical)."""
    n = memory.shape[0]
    query_pos = np.broadcast_to(params["model.query_position_embeddings.weight"], (n, hp.num_queries, hp.d_model))
    tgt = np.zeros_like(query_pos)
    memory_pos = memory + pos
    for name in hp.decoder_layer_names:
        tgt = decoder_layer(params, name, hp, tgt, query_pos, memory, memory_pos, mask, trace)
        record(trace, name, tgt)
    out = detr.layer_norm(params, "model.decoder.layernorm", tgt)
    record(trace, "model.decoder.layernorm", out)
    return out


def forward(params, hp, pixel_values, pixel_mask=None, trace=None):
    """As detr.forward(..., backbone=fast.backbone): the same inputs, outputs and trace names, in the same
    order. pixel_values (N, 3, H, W), pixel_mask (N, H, W) or None ->
    {"logits": (N, Q, num_labels + 1), "pred_boxes": (N, Q, 4)}."""
    dtype = pixel_values.dtype.type
    if pixel_mask is None:
        pixel_mask = np.ones((pixel_values.shape[0],) + pixel_values.shape[2:], dtype=np.int64)
    record(trace, "pixel_values", pixel_values)
    record(trace, "pixel_mask", pixel_mask)

    features, mask = conv_encoder(params, hp, pixel_values, pixel_mask, trace)
    pos = detr.sine_position_embedding(mask, hp.d_model // 2, dtype)
    record(trace, "model.position_embedding", pos)
    projected = ops.conv2d(features, params["model.input_projection.weight"], params["model.input_projection.bias"])
    record(trace, "model.input_projection", projected)

    def tokens(x):  # (N, D, h, w) -> (N, h*w, D), row by row
        return x.reshape(x.shape[0], x.shape[1], -1).transpose(0, 2, 1)

    src, pos, mask = tokens(projected), tokens(pos), mask.reshape(mask.shape[0], -1)
    memory = encoder(params, hp, src, pos, mask, trace)
    hs = decoder(params, hp, memory, pos, mask, trace)

    logits = linear(params, "class_labels_classifier", hs)
    record(trace, "class_labels_classifier", logits)
    boxes = detr.bbox_predictor(params, hs)
    record(trace, "bbox_predictor", boxes)
    pred_boxes = ops.sigmoid(boxes)
    record(trace, "pred_boxes", pred_boxes)
    return {"logits": logits, "pred_boxes": pred_boxes}
