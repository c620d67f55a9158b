"""A table of every layer of a ResNet or a DETR (any registry entry): checkpoint name, output shape
for a given input size, parameter count and multiply-accumulates (MACs), with totals.

Everything is computed from the architecture's tensor shapes (the same `{key: shape}` the loader
checks checkpoints against) and the input size: no weights are needed, and no forward pass runs.

    >>> from refimpl.viz import summary
    >>> s = summary.resnet50(224, 224)
    >>> s.totals()
    {'params': 25557032, 'buffers': 53120, 'macs': 4089184256}
    >>> print(s.table())

Conventions (the usual ones, so the totals can be compared with published figures):

* params are what training updates; buffers are the other stored tensors: BatchNorm's running
  mean and variance, and in DETR, whose BatchNorms are frozen, their weight and bias too. The
  checkpoint holds params + buffers values (plus BatchNorm's step counters, which are not counted).
* MACs count the multiply-accumulates of convolutions, linear layers and attention's two matrix
  products (Q Kᵀ and weights · V), for one image. Element-wise work (batch norm, ReLU, softmax,
  layer norm, the residual additions) is not counted: it is a few per output value and, at
  inference, batch norm can even be folded into the convolution before it.
  A convolution with output (O, Ho, Wo) and kernel (O, C, kh, kw) makes O·Ho·Wo·C·kh·kw MACs;
  a linear layer from `in` to `out` features makes in·out MACs per token.
* Output shapes leave out the batch axis: (C, H, W) for feature maps, (tokens, features) for
  sequences.
"""

import math
from dataclasses import asdict, dataclass, field

from refimpl.models import detr as detr_module
from refimpl.models import ops
from refimpl.models import resnet as resnet_module

@dataclass
class Layer:
    name: str  # the checkpoint's module path (its tensors are `<name>.weight`, ...)
    kind: str  # what it computes, e.g. "conv 3x3/2", "batch norm", "linear"
    shape: tuple  # output shape of one image
    params: int = 0
    buffers: int = 0
    macs: int = 0


@dataclass
class Summary:
    model: str
    input_shape: tuple  # (3, H, W)
    layers: list = field(default_factory=list)

    def totals(self):
        return {
            "params": sum(l.params for l in self.layers),
            "buffers": sum(l.buffers for l in self.layers),
            "macs": sum(l.macs for l in self.layers),
        }

    def to_json(self):
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "layers": [{**asdict(l), "shape": list(l.shape)} for l in self.layers],
            "totals": self.totals(),
        }

    def table(self):
        """The table as text: one row per layer, then the totals."""
        header = ("layer", "kind", "output", "params", "MACs")
        rows = [(l.name, l.kind, " x ".join(map(str, l.shape)), _count(l.params), _count(l.macs)) for l in self.layers]
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]

        def line(r):
            return "  ".join(
                cell.rjust(w) if i >= 3 else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths))
            ).rstrip()

        t = self.totals()
        out = [line(header), line(tuple("-" * w for w in widths))]
        out += [line(r) for r in rows]
        out.append(line(tuple("-" * w for w in widths)))
        c, h, w = self.input_shape
        out.append(
            f"{self.model} at {h}x{w}: {t['params']:,} parameters ({_human(t['params'])}), "
            f"{t['buffers']:,} buffer values, {t['macs']:,} MACs ({_human(t['macs'])}MAC) per image"
        )
        return "\n".join(out)


def _count(n):
    return f"{n:,}" if n else "-"


def _human(n):
    """25557032 -> '25.56 M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} "


def _numel(shape):
    return math.prod(shape)


# --- building blocks: each appends its row(s) and returns its output shape -----------------------

class _Builder:
    """Walks an architecture layer by layer, as the forward pass does, and records one row each."""

    def __init__(self, shapes, frozen_bn):
        self.shapes = shapes  # {checkpoint key: tensor shape}
        self.frozen_bn = frozen_bn
        self.layers = []

    def _tensors(self, name, keys):
        return sum(_numel(self.shapes[f"{name}.{k}"]) for k in keys if f"{name}.{k}" in self.shapes)

    def conv(self, name, x, stride=1, padding=0, dilation=1):
        """x: (C, H, W) -> (O, Ho, Wo)."""
        o, c, kh, kw = self.shapes[name + ".weight"]
        assert c == x[0], (name, c, x)
        ho = ops.conv_output_size(x[1], kh, stride, padding, dilation)
        wo = ops.conv_output_size(x[2], kw, stride, padding, dilation)
        kind = f"conv {kh}x{kw}" + (f"/{stride}" if stride > 1 else "") + (f" dilation {dilation}" if dilation > 1 else "")
        self.layers.append(Layer(name, kind, (o, ho, wo), self._tensors(name, ("weight", "bias")), 0, o * ho * wo * c * kh * kw))
        return (o, ho, wo)

    def batch_norm(self, name, x):
        stats = self._tensors(name, ("running_mean", "running_var"))
        affine = self._tensors(name, ("weight", "bias"))
        if self.frozen_bn:
            self.layers.append(Layer(name, "frozen batch norm", x, 0, affine + stats))
        else:
            self.layers.append(Layer(name, "batch norm", x, affine, stats))
        return x

    def row(self, name, kind, shape):
        """A step without parameters or counted MACs (pooling, the residual addition, ...)."""
        self.layers.append(Layer(name, kind, shape))
        return shape

    def linear(self, name, tokens):
        """A linear layer applied to `tokens` vectors -> (tokens, out)."""
        out, n_in = self.shapes[name + ".weight"]
        shape = (tokens, out) if tokens > 1 else (out,)
        self.layers.append(Layer(name, "linear", shape, self._tensors(name, ("weight", "bias")), 0, tokens * n_in * out))
        return shape

    def layer_norm(self, name, shape):
        self.layers.append(Layer(name, "layer norm", shape, self._tensors(name, ("weight", "bias"))))
        return shape

    def attention(self, name, queries, keys, d_model, heads):
        """q/k/v projections, the attention itself (Q Kᵀ then weights · V: 2·L·S·D MACs over all
        heads together), and the output projection."""
        self.linear(name + ".q_proj", queries)
        self.linear(name + ".k_proj", keys)
        self.linear(name + ".v_proj", keys)
        self.layers.append(Layer(name, f"softmax(QKᵀ/√d)·V, {heads} heads", (queries, d_model), macs=2 * queries * keys * d_model))
        return self.linear(name + ".out_proj", queries)


def _resnet_backbone(b, names, x):
    """Rows of the stem and every block, following resnet.blocks (the one walk). x: (3, H, W)."""
    conv, norm, stem_out, pool_out = names.stem()
    x = b.batch_norm(norm, b.conv(conv, x, stride=2, padding=3))
    c, h, w = x
    x = b.row(pool_out, "max pool 3x3/2", (c, ops.conv_output_size(h, 3, 2, 1), ops.conv_output_size(w, 3, 2, 1)))
    for block in resnet_module.blocks(names):
        h = x
        for layer in block.layers:
            h = b.batch_norm(layer.norm, b.conv(layer.conv, h, layer.stride, layer.padding, layer.dilation))
        if block.projection is not None:
            p = block.projection
            b.batch_norm(p.norm, b.conv(p.conv, x, p.stride, p.padding, p.dilation))
        x = b.row(block.name, "residual add + ReLU", h)
    return x


def resnet(height=224, width=224, config=None):
    """Summary of a microsoft/resnet-* (ResNetForImageClassification) for a (3, height, width)
    input. config: its config.json (default {}: transformers' defaults, ResNet-50, 1000 classes)."""
    config = config or {}
    shapes = resnet_module.classifier_shapes(config)
    a = resnet_module.check_config(config)
    b = _Builder(shapes, frozen_bn=False)
    x = _resnet_backbone(b, resnet_module.classifier_backbone(a), (3, height, width))
    b.row("resnet.pooler", "global average pool", (x[0], 1, 1))
    b.linear("classifier.1", 1)
    return _checked(Summary(a.name, (3, height, width), b.layers), shapes)


def resnet50(height=224, width=224, config=None):
    """Summary of microsoft/resnet-50 (the older entry point; `resnet` reads any depth from config)."""
    return resnet(height, width, config)


def detr_resnet50(height=800, width=1066, config=None):
    """Summary of facebook/detr-resnet-50 (the older entry point; `detr` reads any backbone from config)."""
    return detr(height, width, config)


def detr(height=800, width=1066, config=None):
    """Summary of a facebook/detr-resnet-* (DetrForObjectDetection) for a (3, height, width) input
    (the padded batch size). config: its config.json (default {}: the official detr-resnet-50, revision main)."""
    config = config or {}
    hp = detr_module.hparams(config)
    shapes = detr_module.expected_shapes(config)
    d = hp.d_model
    b = _Builder(shapes, frozen_bn=True)
    _, h, w = _resnet_backbone(b, hp.backbone_names, (3, height, width))
    s = h * w  # the image becomes h*w tokens
    b.row("model.position_embedding", "sine position embedding", (d, h, w))
    b.conv("model.input_projection", (hp.backbone.out_channels, h, w))
    for n in hp.encoder_layer_names:
        b.attention(n + ".self_attn", s, s, d, hp.encoder_heads)
        b.layer_norm(n + ".self_attn_layer_norm", (s, d))
        b.linear(n + ".fc1", s)
        b.linear(n + ".fc2", s)
        b.layer_norm(n + ".final_layer_norm", (s, d))
    q = hp.num_queries
    b.layers.append(Layer("model.query_position_embeddings", "object queries", (q, d), _numel(shapes["model.query_position_embeddings.weight"])))
    for n in hp.decoder_layer_names:
        b.attention(n + ".self_attn", q, q, d, hp.decoder_heads)
        b.layer_norm(n + ".self_attn_layer_norm", (q, d))
        b.attention(n + ".encoder_attn", q, s, d, hp.decoder_heads)
        b.layer_norm(n + ".encoder_attn_layer_norm", (q, d))
        b.linear(n + ".fc1", q)
        b.linear(n + ".fc2", q)
        b.layer_norm(n + ".final_layer_norm", (q, d))
    b.layer_norm("model.decoder.layernorm", (q, d))
    b.linear("class_labels_classifier", q)
    for i in range(3):
        b.linear(f"bbox_predictor.layers.{i}", q)
    return _checked(Summary("detr-" + hp.backbone.name, (3, height, width), b.layers), shapes)


def _checked(summary, shapes):
    """Every tensor of the architecture is counted once: rows' params + buffers = all values."""
    t = summary.totals()
    if t["params"] + t["buffers"] != resnet_module.num_params(shapes):
        raise AssertionError(f"summary counts {t['params'] + t['buffers']} values, the checkpoint layout has "
                             f"{resnet_module.num_params(shapes)}")
    return summary


def summarize(spec, height=None, width=None, config=None):
    """Summary of the model a registry entry describes (`spec.summary`, a builder above, on
    `config`, default the entry's own `spec.config`) at the given input size (default:
    `spec.summary_size`), titled with the entry's name."""
    dh, dw = spec.summary_size
    height, width = height or dh, width or dw
    if height < 32 or width < 32:
        raise ValueError(f"input size must be at least 32x32, got {height}x{width}")
    result = spec.summary(height, width, spec.config if config is None else config)
    result.model = spec.name
    return result


# --- with a checkpoint ---------------------------------------------------------------------------

def checkpoint_shapes(path):
    """{key: shape} of a model.safetensors, read from its header only (no tensor is loaded)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def checkpoint_config(weights, revision, expected_shapes):
    """config.json of a checkpoint (folder or repo id), after checking that the tensors in its
    model.safetensors have exactly the shapes the summary counts (CheckpointMismatchError if not).
    expected_shapes: config -> {key: shape}, the loaded-model class's `expected_shapes`."""
    import json

    import numpy as np

    from refimpl.pipeline.weights import CONFIG_FILE, WEIGHTS_FILE, check_params, resolve

    folder, _ = resolve(weights, revision)
    config = json.loads((folder / CONFIG_FILE).read_text())
    expected = expected_shapes(config)

    class Header:  # what check_params looks at: a shape and a float dtype
        dtype = np.dtype(np.float32)

        def __init__(self, shape):
            self.shape = shape

    found = {k: Header(s) for k, s in checkpoint_shapes(folder / WEIGHTS_FILE).items()}
    check_params(found, expected, path=str(folder / WEIGHTS_FILE))
    return config
