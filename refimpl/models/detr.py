"""DETR (Carion et al., 2020, "End-to-End Object Detection with Transformers") with a ResNet
backbone, as plain functions over a params mapping whose keys are the checkpoint's
(`facebook/detr-resnet-50`, `-101`, `-50-dc5`, `-101-dc5`).

    pixel_values (N, 3, H, W), pixel_mask (N, H, W)
      -> ResNet backbone (frozen BN, resnet.py)       layer4 features (N, 2048, H/32, W/32)
                                                       (H/16, W/16 with DC5: the last stage dilated)
         + the pixel mask, down-sampled to that grid   mask (N, h, w), True on real pixels
      -> input_projection (1x1 conv)                   (N, 256, h, w) -> tokens (N, h*w, 256)
      -> sine position embedding of the mask           (N, h*w, 256)
      -> 6 encoder layers (post-norm)                  memory (N, h*w, 256)
      -> 6 decoder layers over 100 learned queries     (N, 100, 256), then the decoder layer norm
      -> class_labels_classifier                       logits (N, 100, num_labels + 1)
         bbox_predictor (3-layer MLP) + sigmoid        pred_boxes (N, 100, 4): cx, cy, w, h in [0, 1]

Every attention (encoder self-attention, decoder self-attention, decoder cross-attention) is the
one function `attention`. As in DETR, positions are added to queries and keys, never to values,
and padded pixels are never attended to.

Two checkpoint layouts exist and differ only in the backbone's names (`LAYOUTS`): the hub's `main`
revision holds a timm ResNet, the `no_timm` revision a transformers ResNet. The layout and the
backbone's architecture (resnet.Arch: depth, block type, DC5 dilation) are read from config.json
(`hparams`), and the strict key/shape check (`expected_shapes`) does the rest.

This module never imports the fast path: which code computes the backbone is the caller's
choice (`forward(..., backbone=...)`, resnet.backbone by default); a loaded DETR on the fast path
runs fast_detr.forward (refimpl/pipeline/loaded.py decides).

Trace names are the checkpoint's module paths (`model.encoder.layers.3`,
`model.decoder.layers.5.encoder_attn.attn_weights`, `class_labels_classifier`, ...); see `forward`.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from refimpl.models import ops, record, resnet
from refimpl.errors import CheckpointMismatchError, ConfigFileError

BACKBONE_PREFIX = "model.backbone.conv_encoder.model."

# layout -> (how the backbone's names are spelled (ResNet-50's backbone), which hub revision ships it)
LAYOUTS = {
    "timm": (resnet.Backbone(BACKBONE_PREFIX, "timm"), "main"),
    "transformers": (resnet.Backbone(BACKBONE_PREFIX, "transformers"), "no_timm"),
}

LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, which DETR uses everywhere
POSITION_TEMPERATURE = 10000
POSITION_SCALE = 2 * math.pi
POSITION_EPS = 1e-6  # keeps the normalisation finite on an all-padding row (DETR's constant)


@dataclass(frozen=True)
class HParams:
    """The architecture numbers, read from config.json (the defaults are DETR-ResNet-50's)."""

    layout: str
    backbone: resnet.Arch = resnet.RESNET50  # the backbone's architecture (depths, block type, DC5 dilation)
    d_model: int = 256
    encoder_layers: int = 6
    decoder_layers: int = 6
    encoder_heads: int = 8
    decoder_heads: int = 8
    encoder_ffn_dim: int = 2048
    decoder_ffn_dim: int = 2048
    num_queries: int = 100
    num_labels: int = 91  # COCO's 91 category ids, "N/A" gaps included; the classifier adds no-object

    @property
    def backbone_names(self):
        """The backbone as a resnet.Backbone: its architecture and its checkpoint names."""
        return resnet.Backbone(BACKBONE_PREFIX, LAYOUTS[self.layout][0].scheme, self.backbone)

    # The one walk over the transformer's layers: their checkpoint (and trace) names, in order.
    @property
    def encoder_layer_names(self):
        return tuple(f"model.encoder.layers.{i}" for i in range(self.encoder_layers))

    @property
    def decoder_layer_names(self):
        return tuple(f"model.decoder.layers.{i}" for i in range(self.decoder_layers))

    def architecture(self):
        """What makes two DETR checkpoints the same model: everything but the layout and the labels."""
        return dataclasses.replace(self, layout="", num_labels=0)


# --- the backbone -------------------------------------------------------------------------------

def downsample_mask(pixel_mask, size):
    """Nearest-neighbour resize of the pixel mask to the feature grid, as transformers does it
    (`F.interpolate(mask.float(), size)`, mode "nearest").

    pixel_mask: (N, H, W), nonzero on real pixels -> (N, h, w) bool.

    Output row i reads input row floor(i * (H / h)), the scale and the product computed in float32
    exactly as PyTorch's kernel does. (Exact arithmetic gives the same rows for every size a
    ResNet-50 produces, but not for all sizes: resizing 2 rows to 82 differs at row 41.)
    """
    def source_index(n_in, n_out):
        scale = np.float32(n_in) / np.float32(n_out)
        index = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64)
        return np.minimum(index, n_in - 1)

    h, w = size
    rows = source_index(pixel_mask.shape[1], h)
    cols = source_index(pixel_mask.shape[2], w)
    return pixel_mask[:, rows][:, :, cols] != 0


def conv_encoder(params, hp, pixel_values, pixel_mask, trace=None, backbone=resnet.backbone):
    """The ResNet (frozen BN) -> (last stage's features (N, C, h, w), mask (N, h, w) bool).
    backbone: the function computing the stages, resnet.backbone (the reference) unless the
    caller passes another with its signature (fast.backbone: the same function, BN folded)."""
    features = backbone(params, hp.backbone_names, pixel_values, trace)[-1]
    mask = downsample_mask(pixel_mask, features.shape[-2:])
    record(trace, "model.backbone.conv_encoder.mask", mask)
    return features, mask


# --- position embedding -------------------------------------------------------------------------

def sine_position_embedding(mask, num_pos_feats, dtype):
    """DETR's sine embedding of (y, x), normalised to [0, 2pi] over the real (unpadded) pixels.

    mask: (N, h, w) bool, True on real pixels -> (N, 2 * num_pos_feats, h, w): the y channels
    first, then the x channels; within each, sin and cos interleaved over frequencies
    1 / 10000^(2 floor(i/2) / num_pos_feats).
    """
    not_padding = mask.astype(dtype)
    # Cumulative sums count real pixels, so positions restart at 1 in every image of a padded
    # batch and stop growing in the padding: the embedding does not depend on the padding.
    y_embed = np.cumsum(not_padding, axis=1, dtype=dtype)
    x_embed = np.cumsum(not_padding, axis=2, dtype=dtype)
    eps, scale = dtype(POSITION_EPS), dtype(POSITION_SCALE)
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale

    i = np.arange(num_pos_feats).astype(dtype)
    dim_t = dtype(POSITION_TEMPERATURE) ** (dtype(2) * np.floor(i / dtype(2)) / dtype(num_pos_feats))

    def embed(coord):  # (N, h, w) -> (N, h, w, num_pos_feats)
        angles = coord[..., None] / dim_t
        sin_cos = np.stack((np.sin(angles[..., 0::2]), np.cos(angles[..., 1::2])), axis=4)
        return sin_cos.reshape(*coord.shape, num_pos_feats)

    pos = np.concatenate((embed(y_embed), embed(x_embed)), axis=3)
    return pos.transpose(0, 3, 1, 2)


# --- the transformer ----------------------------------------------------------------------------

def layer_norm(params, name, x):
    return ops.layer_norm(x, params[name + ".weight"], params[name + ".bias"], LAYER_NORM_EPS)


def linear(params, name, x):
    return ops.linear(x, params[name + ".weight"], params[name + ".bias"])


def attention(params, name, query, key, value, num_heads, key_mask=None, trace=None):
    """Multi-head scaled dot-product attention (Vaswani et al., 2017), DETR's one attention.

    query: (N, L, D); key, value: (N, S, D); key_mask: (N, S) bool, True where a key may be
    attended to (None: all) -> (N, L, D). The caller adds positions to query and key beforehand.
    Records the softmax weights (N, heads, L, S) as `<name>.attn_weights` and the output as `<name>`.
    """
    n, l, d = query.shape
    s = key.shape[1]
    head_dim = d // num_heads

    def heads(x, length):  # (N, len, D) -> (N, heads, len, head_dim)
        # Contiguous copies: numpy's batched matmul is several times faster on them than on views.
        return np.ascontiguousarray(x.reshape(n, length, num_heads, head_dim).transpose(0, 2, 1, 3))

    q = heads(linear(params, name + ".q_proj", query), l)
    k = heads(linear(params, name + ".k_proj", key), s)
    v = heads(linear(params, name + ".v_proj", value), s)

    k_t = np.ascontiguousarray(k.transpose(0, 1, 3, 2))  # (N, heads, head_dim, S)
    scores = (q @ k_t) * (head_dim**-0.5)  # (N, heads, L, S)
    if key_mask is not None:
        # Padding gets probability exactly 0: exp(-inf) = 0. Every image has at least one real
        # pixel, so no row is all -inf.
        scores = np.where(key_mask[:, None, None, :], scores, -np.inf)
    weights = ops.softmax(scores, axis=-1)
    record(trace, name + ".attn_weights", weights)

    out = (weights @ v).transpose(0, 2, 1, 3).reshape(n, l, d)  # concatenate the heads
    out = linear(params, name + ".out_proj", out)
    record(trace, name, out)
    return out


def feed_forward(params, name, x):
    """fc1 -> ReLU -> fc2, position-wise. (..., D) -> (..., D)."""
    return linear(params, name + ".fc2", ops.relu(linear(params, name + ".fc1", x)))


def encoder_layer(params, name, hp, src, pos, mask, trace=None):
    """Post-norm encoder layer. src, pos: (N, S, D); mask: (N, S) bool -> (N, S, D)."""
    q = k = src + pos
    src = layer_norm(params, name + ".self_attn_layer_norm",
                     src + attention(params, name + ".self_attn", q, k, src, hp.encoder_heads, mask, trace))
    src = layer_norm(params, name + ".final_layer_norm", src + feed_forward(params, name, src))
    return src


def decoder_layer(params, name, hp, tgt, query_pos, memory, pos, mask, trace=None):
    """Post-norm decoder layer. tgt, query_pos: (N, Q, D); memory, pos: (N, S, D); mask: (N, S)
    -> (N, Q, D). Self-attention among the queries, then cross-attention into the image."""
    q = k = tgt + query_pos
    tgt = layer_norm(params, name + ".self_attn_layer_norm",
                     tgt + attention(params, name + ".self_attn", q, k, tgt, hp.decoder_heads, None, trace))
    tgt = layer_norm(params, name + ".encoder_attn_layer_norm",
                     tgt + attention(params, name + ".encoder_attn", tgt + query_pos, memory + pos, memory,
                                     hp.decoder_heads, mask, trace))
    tgt = layer_norm(params, name + ".final_layer_norm", tgt + feed_forward(params, name, tgt))
    return tgt


def encoder(params, hp, src, pos, mask, trace=None):
    for name in hp.encoder_layer_names:
        src = encoder_layer(params, name, hp, src, pos, mask, trace)
        record(trace, name, src)
    return src


def decoder(params, hp, memory, pos, mask, trace=None):
    """The object queries start as zeros; what tells them apart is their learned position
    embedding, added to their queries and keys in every layer. -> (N, Q, D), layer-normed."""
    n = memory.shape[0]
    query_pos = np.broadcast_to(params["model.query_position_embeddings.weight"], (n, hp.num_queries, hp.d_model))
    tgt = np.zeros_like(query_pos)
    for name in hp.decoder_layer_names:
        tgt = decoder_layer(params, name, hp, tgt, query_pos, memory, pos, mask, trace)
        record(trace, name, tgt)
    out = layer_norm(params, "model.decoder.layernorm", tgt)
    record(trace, "model.decoder.layernorm", out)
    return out


# --- the heads ----------------------------------------------------------------------------------

def bbox_predictor(params, x, num_layers=3):
    """Linear -> ReLU -> Linear -> ReLU -> Linear: (..., D) -> (..., 4), before the sigmoid."""
    for i in range(num_layers):
        x = linear(params, f"bbox_predictor.layers.{i}", x)
        if i < num_layers - 1:
            x = ops.relu(x)
    return x


# --- the whole model ----------------------------------------------------------------------------

def forward(params, hp, pixel_values, pixel_mask=None, trace=None, backbone=resnet.backbone):
    """DetrForObjectDetection.

    pixel_values: (N, 3, H, W); pixel_mask: (N, H, W), 1 on real pixels, 0 on padding (None: no
    padding) -> {"logits": (N, Q, num_labels + 1), "pred_boxes": (N, Q, 4)}, the boxes as
    (cx, cy, w, h) relative to each image's own unpadded size.

    `trace`, a dict, receives (all arrays, N first):
      pixel_values, pixel_mask; the backbone's blocks and stages (resnet.py), e.g.
      `model.backbone.conv_encoder.model.layer4` (N, 2048, h, w);
      `model.backbone.conv_encoder.mask` (N, h, w) bool; `model.position_embedding` (N, D, h, w);
      `model.input_projection` (N, D, h, w);
      `model.encoder.layers.{i}` (N, h*w, D), `….self_attn` (N, h*w, D), `….self_attn.attn_weights`
      (N, heads, h*w, h*w);
      `model.decoder.layers.{i}` (N, Q, D) (before the final layer norm), `….self_attn`,
      `….self_attn.attn_weights` (N, heads, Q, Q), `….encoder_attn`, `….encoder_attn.attn_weights`
      (N, heads, Q, h*w); `model.decoder.layernorm` (N, Q, D);
      `class_labels_classifier` (= logits), `bbox_predictor` (before the sigmoid), `pred_boxes`.

    backbone: which code computes the backbone's stages: resnet.backbone (the reference, default)
    or a function with its signature; the transformer and the heads are this module's code either
    way. A loaded DETR on the fast path runs fast_detr.forward instead; passing fast.backbone here
    holds fast_detr's transformer against this one on the same backbone (tests/test_fast.py).
    ("reference", the older spelling, means resnet.backbone.)
    """
    if isinstance(backbone, str):
        if backbone != "reference":
            raise ValueError(f"detr.forward computes the reference; for path {backbone!r} pass its backbone "
                             "function (fast.backbone) or run fast_detr.forward")
        backbone = resnet.backbone
    dtype = pixel_values.dtype.type
    if pixel_mask is None:
        pixel_mask = np.ones((pixel_values.shape[0],) + pixel_values.shape[2:], dtype=np.int64)
    record(trace, "pixel_values", pixel_values)
    record(trace, "pixel_mask", pixel_mask)

    features, mask = conv_encoder(params, hp, pixel_values, pixel_mask, trace, backbone)
    pos = sine_position_embedding(mask, hp.d_model // 2, dtype)
    record(trace, "model.position_embedding", pos)
    projected = ops.conv2d(features, params["model.input_projection.weight"], params["model.input_projection.bias"])
    record(trace, "model.input_projection", projected)

    # (N, D, h, w) -> (N, h*w, D): the image becomes a sequence of h*w tokens, row by row.
    def tokens(x):
        return x.reshape(x.shape[0], x.shape[1], -1).transpose(0, 2, 1)

    src, pos, mask = tokens(projected), tokens(pos), mask.reshape(mask.shape[0], -1)
    memory = encoder(params, hp, src, pos, mask, trace)
    hs = decoder(params, hp, memory, pos, mask, trace)

    logits = linear(params, "class_labels_classifier", hs)
    record(trace, "class_labels_classifier", logits)
    boxes = bbox_predictor(params, hs)
    record(trace, "bbox_predictor", boxes)
    pred_boxes = ops.sigmoid(boxes)
    record(trace, "pred_boxes", pred_boxes)
    return {"logits": logits, "pred_boxes": pred_boxes}


# --- config and the checkpoint's expected layout ------------------------------------------------

def _refuse(why):
    raise CheckpointMismatchError(f"config.json: {why}; refimpl implements DETR with a ResNet backbone (timm "
                                  f"{'/'.join(resnet.TIMM_ARCHS)}, or transformers' ResNet), DC5 or not")


def _dilation(config):
    dilation = config.get("dilation", False)
    if not isinstance(dilation, bool):
        raise ConfigFileError(f"config.json: 'dilation' must be true or false, got {str(dilation)[:40]}")
    return dilation


def _timm_arch(name, output_stride, dilation, where):
    """The Arch of a timm backbone named `name` with `output_stride` (None: the model's own)."""
    if not isinstance(name, str) or name not in resnet.TIMM_ARCHS:
        _refuse(f"{where}backbone is {str(name)[:40]!r}")
    if output_stride not in (None, 16 if dilation else 32):
        _refuse(f"{where}output_stride is {str(output_stride)[:20]} but dilation is {str(dilation).lower()} "
                f"(DC5 is output_stride 16, the plain backbone 32)")
    if dilation and output_stride is None and where:
        # transformers 5 builds the timm backbone from backbone_config alone: without output_stride 16
        # it is not dilated, whatever `dilation` says.
        _refuse("dilation is true but backbone_config.output_stride is missing (transformers would build the "
                "backbone undilated)")
    return dataclasses.replace(resnet.TIMM_ARCHS[name], dilation=dilation)


def read_backbone(config):
    """(layout, resnet.Arch) of a DETR config.json: the layout is "timm" (hub revision `main`) or
    "transformers" (revision `no_timm`); the Arch has the backbone's depths, widths, block type and
    DC5 dilation (`dilation: true`: the last stage's stride replaced by dilation 2, as timm's
    output_stride=16). Anything else is refused with CheckpointMismatchError naming the field."""
    if not isinstance(config, dict):
        raise ConfigFileError(f"config.json must be a JSON object, got {type(config).__name__}")
    if config.get("model_type", "detr") != "detr":
        _refuse(f"model_type is {config.get('model_type')!r}, not 'detr'")
    dilation = _dilation(config)
    use_timm = config.get("use_timm_backbone")
    backbone_config = config.get("backbone_config")
    if backbone_config is None:
        # The official `main` configs: no backbone_config, use_timm_backbone (default true) and
        # the timm model name in `backbone`; older files may carry timm's arguments in backbone_kwargs.
        if use_timm is False:
            _refuse("use_timm_backbone=false but no backbone_config")
        kwargs = config.get("backbone_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise ConfigFileError("config.json: 'backbone_kwargs' must be an object")
        return "timm", _timm_arch(config.get("backbone", "resnet50"), kwargs.get("output_stride"), dilation, "")
    if not isinstance(backbone_config, dict):
        _refuse("backbone_config is not an object")
    kind = backbone_config.get("model_type")
    if kind == "timm_backbone":  # what transformers 5 writes for the timm backbone
        if use_timm is False:
            _refuse("use_timm_backbone=false contradicts a timm backbone_config")
        return "timm", _timm_arch(backbone_config.get("backbone", "resnet50"), backbone_config.get("output_stride"),
                                  dilation, "backbone_config.")
    if kind == "resnet":  # the `no_timm` revisions: transformers' own ResNet
        if use_timm is True:
            _refuse("use_timm_backbone=true contradicts a transformers ResNet backbone_config")
        # transformers' ResNet has no dilation of its own; refimpl follows `dilation` (DC5) as timm
        # does (docs/models.md: transformers ignores it for this layout).
        a = resnet.arch(backbone_config, dilation)
        out_features = backbone_config.get("out_features")
        if out_features is not None and not (isinstance(out_features, list)
                                             and all(isinstance(f, str) for f in out_features)):
            raise ConfigFileError("config.json: 'backbone_config.out_features' must be a list of stage names")
        last = f"stage{len(a.depths)}"
        if out_features and out_features[-1] != last:
            _refuse(f"the backbone's last output is {out_features[-1]!r}, DETR reads its last stage {last!r}")
        return "transformers", a
    _refuse(f"backbone_config.model_type is {kind!r}")


def layout(config):
    """Which backbone layout a DETR config.json describes: "timm" (hub revision `main`) or
    "transformers" (revision `no_timm`). Anything refimpl does not compute is refused with
    CheckpointMismatchError."""
    return read_backbone(config)[0]


# Bounds on config.json's sizes (far above DETR-ResNet-50's): a hostile config cannot make the
# strict shape check, or a forward pass, allocate without limit before the weights disagree.
INT_FIELDS = {  # key: (default, largest accepted)
    "d_model": (256, 4096), "encoder_layers": (6, 64), "decoder_layers": (6, 64),
    "encoder_attention_heads": (8, 256), "decoder_attention_heads": (8, 256),
    "encoder_ffn_dim": (2048, 65536), "decoder_ffn_dim": (2048, 65536), "num_queries": (100, 10000),
}


def _int_field(config, key):
    """config[key] (or its default) as an integer 1..bound, else ConfigFileError naming it."""
    default, bound = INT_FIELDS[key]
    value = config.get(key, default)
    if type(value) is not int or not 1 <= value <= bound:
        raise ConfigFileError(f"config.json: {key!r} must be an integer 1..{bound}, got {str(value)[:40]}")
    return value


def hparams(config):
    """HParams of a DETR config.json, after checking it describes what `forward` computes.
    Every field read is checked (ConfigFileError / CheckpointMismatchError naming it)."""
    if not isinstance(config, dict):
        raise ConfigFileError(f"config.json must be a JSON object, got {type(config).__name__}")
    wanted = {"position_embedding_type": "sine", "activation_function": "relu", "num_channels": 3}
    for key, value in wanted.items():
        if config.get(key, value) != value:
            raise CheckpointMismatchError(f"config.json: {key}={config[key]!r}, refimpl's DETR implements {key}={value!r}")
    layout_, arch = read_backbone(config)
    hp = HParams(
        layout=layout_,
        backbone=arch,
        d_model=_int_field(config, "d_model"),
        encoder_layers=_int_field(config, "encoder_layers"),
        decoder_layers=_int_field(config, "decoder_layers"),
        encoder_heads=_int_field(config, "encoder_attention_heads"),
        decoder_heads=_int_field(config, "decoder_attention_heads"),
        encoder_ffn_dim=_int_field(config, "encoder_ffn_dim"),
        decoder_ffn_dim=_int_field(config, "decoder_ffn_dim"),
        num_queries=_int_field(config, "num_queries"),
        num_labels=resnet.num_labels(config, 91),
    )
    for heads in (hp.encoder_heads, hp.decoder_heads):
        if hp.d_model % heads:
            raise CheckpointMismatchError(f"config.json: d_model={hp.d_model} is not divisible by {heads} heads")
    return hp


def _linear_shapes(name, n_in, n_out):
    return {f"{name}.weight": (n_out, n_in), f"{name}.bias": (n_out,)}


def _attention_shapes(name, d):
    shapes = {}
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
        shapes.update(_linear_shapes(f"{name}.{proj}", d, d))
    return shapes


def _layer_norm_shapes(name, d):
    return {f"{name}.weight": (d,), f"{name}.bias": (d,)}


def expected_shapes(config):
    """{key: shape} of the checkpoint config.json describes (either layout); refuses other configs."""
    hp = hparams(config)
    d = hp.d_model
    shapes = resnet.backbone_shapes(hp.backbone_names)
    shapes["model.input_projection.weight"] = (d, hp.backbone.out_channels, 1, 1)
    shapes["model.input_projection.bias"] = (d,)
    shapes["model.query_position_embeddings.weight"] = (hp.num_queries, d)
    for name in hp.encoder_layer_names:
        shapes.update(_attention_shapes(name + ".self_attn", d))
        shapes.update(_layer_norm_shapes(name + ".self_attn_layer_norm", d))
        shapes.update(_linear_shapes(name + ".fc1", d, hp.encoder_ffn_dim))
        shapes.update(_linear_shapes(name + ".fc2", hp.encoder_ffn_dim, d))
        shapes.update(_layer_norm_shapes(name + ".final_layer_norm", d))
    for name in hp.decoder_layer_names:
        shapes.update(_attention_shapes(name + ".self_attn", d))
        shapes.update(_layer_norm_shapes(name + ".self_attn_layer_norm", d))
        shapes.update(_attention_shapes(name + ".encoder_attn", d))
        shapes.update(_layer_norm_shapes(name + ".encoder_attn_layer_norm", d))
        shapes.update(_linear_shapes(name + ".fc1", d, hp.decoder_ffn_dim))
        shapes.update(_linear_shapes(name + ".fc2", hp.decoder_ffn_dim, d))
        shapes.update(_layer_norm_shapes(name + ".final_layer_norm", d))
    shapes.update(_layer_norm_shapes("model.decoder.layernorm", d))
    shapes.update(_linear_shapes("class_labels_classifier", d, hp.num_labels + 1))  # + no-object
    shapes.update(_linear_shapes("bbox_predictor.layers.0", d, d))
    shapes.update(_linear_shapes("bbox_predictor.layers.1", d, d))
    shapes.update(_linear_shapes("bbox_predictor.layers.2", d, 4))
    return shapes


def layout_of_keys(keys):
    """Which layout a set of checkpoint keys follows ("timm", "transformers"), or None."""
    keys = set(keys)
    for name, (names, _) in LAYOUTS.items():
        if names.stem()[0] + ".weight" in keys:
            return name
    return None
