"""ResNet (He et al., 2016) as plain functions over a params mapping: every family member.

One implementation serves every ResNet refimpl reads: the classifiers `microsoft/resnet-18, -34,
-50, -101, -152` (transformers' ResNet layout) and DETR's backbones (timm's layout in the hub's
`main` revisions, transformers' in `no_timm`). What differs between them is data, not code:

* `Arch`, the architecture numbers read from config.json: blocks per stage (`depths`), each
  stage's output channels (`hidden_sizes`), the stem's width (`embedding_size`), the block type
  (`layer_type`: "basic" for ResNet-18/34, "bottleneck" for 50/101/152) and, for DETR's DC5
  variant, `dilation` (the last stage's stride replaced by dilation 2).
* `Backbone`, where the layers live in a checkpoint: a key prefix, a naming scheme
  ("transformers" or "timm") and the Arch, which says which layers exist.

`blocks(backbone)` is the one walk over the architecture: every residual block in data-flow
order with its geometry (stride, dilation, channels) and its checkpoint and trace names. The
reference below, the fast path (fast.py), the layer table (viz/summary.py), isolate, golden sets
and the ONNX aligner all iterate it; nobody else derives block geometry.

    stem:  conv 7x7/2 -> BN -> ReLU -> max pool 3x3/2
    stages of residual blocks; a stage's first block may halve the resolution (stride 2)
      basic:      3x3 (stride) -> BN -> ReLU -> 3x3 -> BN
      bottleneck: 1x1 reduce -> BN -> ReLU -> 3x3 (stride, ResNet v1.5) -> BN -> ReLU -> 1x1 expand -> BN
      + shortcut (1x1/stride conv + BN when the shape changes, identity otherwise) -> ReLU
"""

from dataclasses import dataclass, field

import numpy as np

from refimpl.errors import CheckpointMismatchError, ConfigFileError
from refimpl.models import ops, record

BN_EPS = 1e-5  # nn.BatchNorm2d's default and DETR's frozen BN's constant
BOTTLENECK_REDUCTION = 4  # a bottleneck's inner width is a quarter of its output (transformers' `reduction`)
LAYER_TYPES = ("basic", "bottleneck")


@dataclass(frozen=True)
class Arch:
    """The architecture numbers of a ResNet (the defaults are ResNet-50's, transformers' ResNetConfig defaults)."""

    depths: tuple = (3, 4, 6, 3)  # residual blocks per stage
    hidden_sizes: tuple = (256, 512, 1024, 2048)  # output channels of each stage
    embedding_size: int = 64  # the stem's output channels
    layer_type: str = "bottleneck"  # "basic" (two 3x3 convs) or "bottleneck" (1x1, 3x3, 1x1)
    dilation: bool = False  # DC5: the last stage keeps the resolution, its 3x3 convs dilated by 2

    @property
    def layers(self):
        """The conventional depth in a model's name: stem conv + every conv of every block + the classifier."""
        return 2 + sum(self.depths) * (2 if self.layer_type == "basic" else 3)

    @property
    def name(self):
        """"resnet-50", "resnet-18", ... (with "-dc5" when the last stage is dilated)."""
        return f"resnet-{self.layers}" + ("-dc5" if self.dilation else "")

    @property
    def out_channels(self):
        return self.hidden_sizes[-1]

    @property
    def output_stride(self):
        """Input pixels per feature pixel at the last stage: 32, or 16 with DC5."""
        return 2 ** (len(self.depths) + (0 if self.dilation else 1))


RESNET50 = Arch()
# timm's model names (DETR's `backbone` field) and the architecture each one is.
TIMM_ARCHS = {
    "resnet18": Arch((2, 2, 2, 2), (64, 128, 256, 512), 64, "basic"),
    "resnet34": Arch((3, 4, 6, 3), (64, 128, 256, 512), 64, "basic"),
    "resnet50": RESNET50,
    "resnet101": Arch((3, 4, 23, 3)),
    "resnet152": Arch((3, 8, 36, 3)),
}
# ResNet-50's numbers, under their older names.
DEPTHS, WIDTHS, STEM_WIDTH = RESNET50.depths, RESNET50.hidden_sizes, RESNET50.embedding_size

# Bounds on what a config.json may ask for (far above ResNet-152's): a hostile config cannot make
# the strict shape check, or a forward pass, allocate without limit before the weights disagree.
MAX_STAGES, MAX_DEPTH, MAX_WIDTH = 8, 128, 16384


def _int_list(config, key, default, bound):
    value = config.get(key, list(default))
    if (not isinstance(value, list) or not 1 <= len(value) <= MAX_STAGES
            or not all(type(v) is int and 1 <= v <= bound for v in value)):
        raise ConfigFileError(f"config.json: {key!r} must be a list of 1..{MAX_STAGES} integers 1..{bound}, "
                              f"got {str(value)[:60]}")
    return tuple(value)


def arch(config, dilation=False):
    """The Arch a transformers ResNetConfig (config.json of microsoft/resnet-*, or DETR's
    `backbone_config`) describes. Missing fields take transformers' defaults (ResNet-50's).
    A malformed field is a ConfigFileError, one refimpl does not compute a CheckpointMismatchError,
    both naming the field."""
    if not isinstance(config, dict):
        raise ConfigFileError(f"config.json must be a JSON object, got {type(config).__name__}")
    depths = _int_list(config, "depths", RESNET50.depths, MAX_DEPTH)
    hidden_sizes = _int_list(config, "hidden_sizes", RESNET50.hidden_sizes, MAX_WIDTH)
    if len(hidden_sizes) != len(depths):
        raise ConfigFileError(f"config.json: 'hidden_sizes' has {len(hidden_sizes)} entries, 'depths' {len(depths)}")
    embedding_size = config.get("embedding_size", RESNET50.embedding_size)
    if type(embedding_size) is not int or not 1 <= embedding_size <= MAX_WIDTH:
        raise ConfigFileError(f"config.json: 'embedding_size' must be an integer 1..{MAX_WIDTH}, got {str(embedding_size)[:40]}")
    layer_type = config.get("layer_type", "bottleneck")
    if layer_type not in LAYER_TYPES:
        raise CheckpointMismatchError(f"config.json: layer_type={str(layer_type)[:40]}, refimpl implements "
                                      f"{' and '.join(LAYER_TYPES)} blocks")
    if layer_type == "bottleneck" and any(c % BOTTLENECK_REDUCTION for c in hidden_sizes):
        raise CheckpointMismatchError(f"config.json: hidden_sizes={list(hidden_sizes)}: a bottleneck's width must "
                                      f"be divisible by {BOTTLENECK_REDUCTION}")
    # What every official ResNet has and refimpl computes: v1.5 (stride on the 3x3), ReLU, RGB.
    wanted = {"hidden_act": "relu", "downsample_in_first_stage": False, "downsample_in_bottleneck": False,
              "num_channels": 3}
    for key, value in wanted.items():
        if key in config and config[key] != value:
            raise CheckpointMismatchError(f"config.json: {key}={str(config[key])[:60]}, refimpl implements "
                                          f"ResNets with {key}={value!r}")
    return Arch(depths, hidden_sizes, embedding_size, layer_type, bool(dilation))


def arch_config(a):
    """The config.json fields (transformers' ResNetConfig) that describe Arch `a` (not dilation,
    which transformers' ResNet cannot express: DETR's config carries it)."""
    return {"depths": list(a.depths), "hidden_sizes": list(a.hidden_sizes), "embedding_size": a.embedding_size,
            "layer_type": a.layer_type, "hidden_act": "relu", "downsample_in_first_stage": False,
            "downsample_in_bottleneck": False, "num_channels": 3}


# --- where the layers live ------------------------------------------------------------------------

@dataclass(frozen=True)
class Conv:
    """One conv -> BN (-> ReLU) step of a block: its checkpoint names, trace name and geometry."""

    conv: str  # checkpoint name of the conv (its weight is `<conv>.weight`)
    norm: str  # checkpoint name of its batch norm
    out: str  # trace name of the step's output
    c_in: int
    c_out: int
    kernel: int
    stride: int = 1
    dilation: int = 1
    relu: bool = True

    @property
    def padding(self):
        """"Same" padding: the output size depends on the stride only."""
        return self.dilation * (self.kernel // 2)

    @property
    def shape(self):
        """The conv weight's shape (O, C, kh, kw)."""
        return (self.c_out, self.c_in, self.kernel, self.kernel)


@dataclass(frozen=True)
class Block:
    """One residual block: where it sits, its geometry, and its steps with their names."""

    kind: str  # "basic" or "bottleneck"
    stage: int
    index: int  # within its stage
    stride: int  # of the block (on its 3x3 conv, ResNet v1.5, and its shortcut)
    dilation: int  # of the stage's 3x3 convs (2 in a DC5 last stage; the first block's first 3x3 keeps the previous one)
    c_in: int
    c_out: int
    last_in_stage: bool  # the stage's output is this block's
    name: str  # trace name of the block's output
    layers: tuple  # its Conv steps: two (basic) or three (bottleneck); the last has no ReLU
    projection: Conv | None  # the shortcut's 1x1 conv + BN, or None for identity

    # The older, name-only view (the notebooks use it).
    @property
    def convs(self):
        return tuple(l.conv for l in self.layers)

    @property
    def norms(self):
        return tuple(l.norm for l in self.layers)

    @property
    def steps(self):
        """Trace names of the steps' outputs."""
        return tuple(l.out for l in self.layers)

    @property
    def shortcut(self):
        """(conv, norm) checkpoint names of the shortcut projection, or None for identity."""
        return None if self.projection is None else (self.projection.conv, self.projection.norm)

    @property
    def shortcut_out(self):
        return None if self.projection is None else self.projection.out

    @property
    def c_mid(self):
        """The width of the block's inner steps."""
        return self.layers[0].c_out


@dataclass(frozen=True)
class Backbone:
    """A ResNet in a checkpoint: its architecture and where each layer lives (a key prefix plus
    one of two naming schemes). Everything that walks a ResNet takes one of these."""

    prefix: str
    scheme: str  # "transformers" or "timm"
    arch: Arch = field(default=RESNET50)

    def stem(self):
        """(conv, norm, stem output name, max pool output name)."""
        p = self.prefix
        if self.scheme == "timm":
            return p + "conv1", p + "bn1", p + "act1", p + "maxpool"
        return p + "embedder.embedder.convolution", p + "embedder.embedder.normalization", p + "embedder.embedder", p + "embedder"

    def stage(self, s):
        return f"{self.prefix}layer{s + 1}" if self.scheme == "timm" else f"{self.prefix}encoder.stages.{s}"

    def block_name(self, s, i):
        return f"{self.stage(s)}.{i}" if self.scheme == "timm" else f"{self.stage(s)}.layers.{i}"

    def step_names(self, s, i, kind):
        """[(conv, norm, trace name)] of block i of stage s's steps, and its shortcut's."""
        b = self.block_name(s, i)
        n = 2 if kind == "basic" else 3
        if self.scheme == "timm":
            # timm names a step's output by its last module: act1, act2 (ReLU), bn2/bn3 (the last, no ReLU)
            outs = [f"{b}.act{j}" for j in range(1, n)] + [f"{b}.bn{n}"]
            steps = [(f"{b}.conv{j}", f"{b}.bn{j}", outs[j - 1]) for j in range(1, n + 1)]
            return steps, (f"{b}.downsample.0", f"{b}.downsample.1", f"{b}.downsample")
        steps = [(f"{b}.layer.{j}.convolution", f"{b}.layer.{j}.normalization", f"{b}.layer.{j}") for j in range(n)]
        return steps, (f"{b}.shortcut.convolution", f"{b}.shortcut.normalization", f"{b}.shortcut")

    def blocks(self):
        return blocks(self)


ResNetNames = Backbone  # its older name: ResNetNames(prefix, scheme) is ResNet-50's backbone under those names


def classifier_backbone(a=RESNET50):
    """The backbone of ResNetForImageClassification (microsoft/resnet-*) with architecture `a`."""
    return Backbone("resnet.", "transformers", a)


CLASSIFIER_NAMES = classifier_backbone(RESNET50)


def blocks(backbone):
    """Every residual block of `backbone` in data-flow order, as `Block`s: the one walk over the
    architecture that everything uses.

    Strides and dilations follow transformers' ResNet and timm (torchvision's
    replace_stride_with_dilation for DC5): a stage's first block has stride 2, except in the first
    stage (the max pool already halved the resolution) and in a dilated last stage, whose stride
    becomes a dilation of 2 for its 3x3 convs - except the first block's first 3x3, which keeps
    the previous dilation (1). A block has a projection shortcut when its shape changes."""
    a = backbone.arch
    c_in, dilation = a.embedding_size, 1
    for s, (depth, c_out) in enumerate(zip(a.depths, a.hidden_sizes)):
        stride, previous = (1 if s == 0 else 2), dilation
        if a.dilation and s == len(a.depths) - 1:
            dilation, stride = dilation * stride, 1
        for i in range(depth):
            block_stride = stride if i == 0 else 1
            first_dilation = previous if i == 0 else dilation
            steps, (sc_conv, sc_norm, sc_out) = backbone.step_names(s, i, a.layer_type)
            if a.layer_type == "basic":
                geometry = [(c_in, c_out, 3, block_stride, first_dilation, True), (c_out, c_out, 3, 1, dilation, False)]
            else:
                mid = c_out // BOTTLENECK_REDUCTION
                geometry = [(c_in, mid, 1, 1, 1, True), (mid, mid, 3, block_stride, first_dilation, True),
                            (mid, c_out, 1, 1, 1, False)]
            layers = tuple(Conv(conv, norm, out, ci, co, k, st, d, relu)
                           for (conv, norm, out), (ci, co, k, st, d, relu) in zip(steps, geometry))
            projection = None
            if block_stride != 1 or c_in != c_out:
                projection = Conv(sc_conv, sc_norm, sc_out, c_in, c_out, 1, block_stride, 1, False)
            yield Block(a.layer_type, s, i, block_stride, dilation, c_in, c_out, i == depth - 1,
                        backbone.block_name(s, i), layers, projection)
            c_in = c_out


# --- the forward --------------------------------------------------------------------------------

def conv_bn(params, conv, norm, x, stride=1, padding=0, dilation=1):
    """Convolution without bias followed by frozen batch norm. x: (N, C, H, W)."""
    y = ops.conv2d(x, params[conv + ".weight"], stride=stride, padding=padding, dilation=dilation)
    return ops.batch_norm(
        y,
        params[norm + ".weight"],
        params[norm + ".bias"],
        params[norm + ".running_mean"],
        params[norm + ".running_var"],
        BN_EPS,
    )


def step(params, layer, x):
    """One Conv step: conv -> BN (-> ReLU). x: (N, c_in, H, W) -> (N, c_out, H/stride, W/stride)."""
    y = conv_bn(params, layer.conv, layer.norm, x, layer.stride, layer.padding, layer.dilation)
    return ops.relu(y) if layer.relu else y


def stem(params, names, x, trace=None):
    """(N, 3, H, W) -> (N, embedding_size, H/4, W/4)."""
    conv, norm, out_name, pool_name = names.stem()
    x = ops.relu(conv_bn(params, conv, norm, x, stride=2, padding=3))
    record(trace, out_name, x)
    x = ops.max_pool2d(x, kernel=3, stride=2, padding=1)
    record(trace, pool_name, x)
    return x


def residual_block(params, block, x, trace=None):
    """One block, basic or bottleneck: its steps in sequence, plus the shortcut, then ReLU.
    x: (N, C_in, H, W) -> (N, C_out, H/stride, W/stride)."""
    h = x
    for layer in block.layers:
        h = step(params, layer, h)
        record(trace, layer.out, h)
    if block.projection is None:
        shortcut = x
    else:
        shortcut = step(params, block.projection, x)
        record(trace, block.projection.out, shortcut)
    return ops.relu(h + shortcut)


bottleneck = residual_block  # its older name (every block of ResNet-50 is a bottleneck)


def backbone(params, names, x, trace=None):
    """Stem and every stage. x: (N, 3, H, W) -> list of the stage outputs, for ResNet-50
    (N, 256, H/4, W/4), (N, 512, H/8, W/8), (N, 1024, H/16, W/16), (N, 2048, H/32, W/32)."""
    x = stem(params, names, x, trace)
    features = []
    for block in blocks(names):
        x = residual_block(params, block, x, trace)
        record(trace, block.name, x)
        if block.last_in_stage:
            record(trace, names.stage(block.stage), x)
            features.append(x)
    return features


def classify(params, pixel_values, trace=None, names=CLASSIFIER_NAMES):
    """ResNetForImageClassification. pixel_values: (N, 3, H, W) -> logits (N, num_labels).
    names: the classifier's Backbone (`classifier_backbone(arch)`; ResNet-50's by default)."""
    record(trace, "pixel_values", pixel_values)
    features = backbone(params, names, pixel_values, trace)
    pooled = ops.global_avg_pool(features[-1])  # (N, C, 1, 1)
    record(trace, "resnet.pooler", pooled)
    logits = ops.linear(pooled.reshape(pooled.shape[0], -1), params["classifier.1.weight"], params["classifier.1.bias"])
    record(trace, "classifier.1", logits)
    return logits


# --- the checkpoint's expected layout ---------------------------------------------------------

def _bn_shapes(name, c):
    return {f"{name}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")}


def backbone_shapes(names):
    """{key: shape} of every backbone tensor of the Backbone `names`."""
    conv, norm, _, _ = names.stem()
    c = names.arch.embedding_size
    shapes = {conv + ".weight": (c, 3, 7, 7), **_bn_shapes(norm, c)}
    for block in blocks(names):
        for layer in block.layers + ((block.projection,) if block.projection else ()):
            shapes[layer.conv + ".weight"] = layer.shape
            shapes.update(_bn_shapes(layer.norm, layer.c_out))
    return shapes


MAX_LABELS = 100_000  # bounds the classifier a config.json may ask for (ImageNet has 1000)


def num_labels(config, default):
    """The number of classes config.json describes: len(id2label), else num_labels, else `default`.
    A malformed field is a ConfigFileError naming it."""
    id2label = config.get("id2label")
    if id2label is not None and not isinstance(id2label, dict):
        raise ConfigFileError(f"config.json: 'id2label' must be an object, got {type(id2label).__name__}")
    if id2label:
        if len(id2label) > MAX_LABELS:
            raise ConfigFileError(f"config.json: 'id2label' has {len(id2label)} entries, more than {MAX_LABELS}")
        return len(id2label)
    n = config.get("num_labels", default)
    if type(n) is not int or not 1 <= n <= MAX_LABELS:
        raise ConfigFileError(f"config.json: 'num_labels' must be an integer 1..{MAX_LABELS}, got {str(n)[:40]}")
    return n


def check_config(config):
    """The Arch of a classifier's config.json, after refusing what refimpl does not compute."""
    if not isinstance(config, dict):
        raise ConfigFileError(f"config.json must be a JSON object, got {type(config).__name__}")
    if config.get("model_type", "resnet") != "resnet":
        raise CheckpointMismatchError(f"config.json: model_type={str(config['model_type'])[:40]}, refimpl's "
                                      "classifiers are transformers' ResNet (model_type 'resnet')")
    return arch(config)


def classifier_shapes(config):
    """{key: shape} of a microsoft/resnet-* checkpoint (ResNetForImageClassification) as config.json describes it."""
    a = check_config(config)
    n = num_labels(config, 1000)
    shapes = backbone_shapes(classifier_backbone(a))
    shapes["classifier.1.weight"] = (n, a.out_channels)
    shapes["classifier.1.bias"] = (n,)
    return shapes


def num_params(shapes):
    return int(sum(np.prod(s) for s in shapes.values()))
