"""ResNet-50 (He et al., 2016) as plain functions over a params mapping.

One implementation serves both models: the classifier `microsoft/resnet-50` (transformers' ResNet
layout) and DETR's backbone (timm's layout in the hub's `main` revision, transformers' in
`no_timm`). The two layouts differ only in names, so the forward takes a `ResNetNames` that maps
each layer to its checkpoint key; every traced intermediate is named after its module path.

    stem:  conv 7x7/2 -> BN -> ReLU -> max pool 3x3/2
    4 stages of [3, 4, 6, 3] bottlenecks; each bottleneck:
           1x1 reduce -> BN -> ReLU -> 3x3 (stride here) -> BN -> ReLU -> 1x1 expand -> BN
           + shortcut (1x1/stride conv + BN on a stage's first block, identity otherwise) -> ReLU
"""

from dataclasses import dataclass

import numpy as np

from refimpl.errors import CheckpointMismatchError, ConfigFileError
from refimpl.models import ops, record

DEPTHS = (3, 4, 6, 3)
WIDTHS = (256, 512, 1024, 2048)  # output channels of each stage; the bottleneck is a quarter
STEM_WIDTH = 64
BN_EPS = 1e-5  # nn.BatchNorm2d's default and DETR's frozen BN's constant


@dataclass(frozen=True)
class Block:
    """One bottleneck: where it sits, its geometry, and the checkpoint names of its layers."""

    stage: int
    index: int  # within its stage
    stride: int  # on the 3x3 conv and the shortcut (ResNet v1.5)
    c_in: int
    c_mid: int  # the bottleneck width, a quarter of c_out
    c_out: int
    last_in_stage: bool  # the stage's output is this block's
    name: str  # trace name of the block's output
    convs: tuple  # the three conv names
    norms: tuple  # the three BN names
    shortcut: tuple | None  # (conv, norm), or None for identity
    steps: tuple  # trace names of the three conv-BN(-ReLU) outputs
    shortcut_out: str  # trace name of the projected shortcut


@dataclass(frozen=True)
class ResNetNames:
    """Where each ResNet layer lives in a checkpoint (a prefix plus one of two naming schemes)."""

    prefix: str
    scheme: str  # "transformers" or "timm"

    def stem(self):
        """(conv, norm, stem output name, max pool output name)."""
        p = self.prefix
        if self.scheme == "timm":
            return p + "conv1", p + "bn1", p + "act1", p + "maxpool"
        return p + "embedder.embedder.convolution", p + "embedder.embedder.normalization", p + "embedder.embedder", p + "embedder"

    def stage(self, s):
        return f"{self.prefix}layer{s + 1}" if self.scheme == "timm" else f"{self.prefix}encoder.stages.{s}"

    def block_names(self, s, i):
        """Checkpoint names of block i of stage s: name, convs, norms, shortcut, steps, shortcut_out."""
        if self.scheme == "timm":
            b = f"{self.stage(s)}.{i}"
            convs = tuple(f"{b}.conv{j}" for j in (1, 2, 3))
            norms = tuple(f"{b}.bn{j}" for j in (1, 2, 3))
            shortcut = (f"{b}.downsample.0", f"{b}.downsample.1")
            steps, shortcut_out = (f"{b}.act1", f"{b}.act2", f"{b}.bn3"), f"{b}.downsample"
        else:
            b = f"{self.stage(s)}.layers.{i}"
            convs = tuple(f"{b}.layer.{j}.convolution" for j in range(3))
            norms = tuple(f"{b}.layer.{j}.normalization" for j in range(3))
            shortcut = (f"{b}.shortcut.convolution", f"{b}.shortcut.normalization")
            steps, shortcut_out = tuple(f"{b}.layer.{j}" for j in range(3)), f"{b}.shortcut"
        return dict(name=b, convs=convs, norms=norms, shortcut=shortcut if i == 0 else None, steps=steps,
                    shortcut_out=shortcut_out)


def blocks(names, depths=DEPTHS, widths=WIDTHS, stem_width=STEM_WIDTH):
    """Every bottleneck of the backbone in data-flow order, as `Block`s: the one walk over the
    architecture that the reference, the fast path, the shape table and the summary all use."""
    c_in = stem_width
    for s, (depth, c_out) in enumerate(zip(depths, widths)):
        for i in range(depth):
            # The first stage keeps the resolution (the max pool already halved it).
            stride = 2 if (i == 0 and s > 0) else 1
            yield Block(s, i, stride, c_in, c_out // 4, c_out, i == depth - 1, **names.block_names(s, i))
            c_in = c_out


CLASSIFIER_NAMES = ResNetNames("resnet.", "transformers")


def conv_bn(params, conv, norm, x, stride=1, padding=0):
    """Convolution without bias followed by frozen batch norm. x: (N, C, H, W)."""
    y = ops.conv2d(x, params[conv + ".weight"], stride=stride, padding=padding)
    return ops.batch_norm(
        y,
        params[norm + ".weight"],
        params[norm + ".bias"],
        params[norm + ".running_mean"],
        params[norm + ".running_var"],
        BN_EPS,
    )


def stem(params, names, x, trace=None):
    """(N, 3, H, W) -> (N, 64, H/4, W/4)."""
    conv, norm, out_name, pool_name = names.stem()
    x = ops.relu(conv_bn(params, conv, norm, x, stride=2, padding=3))
    record(trace, out_name, x)
    x = ops.max_pool2d(x, kernel=3, stride=2, padding=1)
    record(trace, pool_name, x)
    return x


def bottleneck(params, block, x, trace=None):
    """One bottleneck block; the stride sits on the 3x3 conv (ResNet v1.5, as both checkpoints).
    x: (N, C_in, H, W) -> (N, C_out, H/stride, W/stride)."""
    h = ops.relu(conv_bn(params, block.convs[0], block.norms[0], x))
    record(trace, block.steps[0], h)
    h = ops.relu(conv_bn(params, block.convs[1], block.norms[1], h, stride=block.stride, padding=1))
    record(trace, block.steps[1], h)
    h = conv_bn(params, block.convs[2], block.norms[2], h)
    record(trace, block.steps[2], h)
    if block.shortcut is None:
        shortcut = x
    else:
        shortcut = conv_bn(params, *block.shortcut, x, stride=block.stride)
        record(trace, block.shortcut_out, shortcut)
    return ops.relu(h + shortcut)


def backbone(params, names, x, trace=None, depths=DEPTHS):
    """Stem and four stages. x: (N, 3, H, W) -> list of the four stage outputs,
    (N, 256, H/4, W/4), (N, 512, H/8, W/8), (N, 1024, H/16, W/16), (N, 2048, H/32, W/32)."""
    x = stem(params, names, x, trace)
    features = []
    for block in blocks(names, depths):
        x = bottleneck(params, block, x, trace)
        record(trace, block.name, x)
        if block.last_in_stage:
            record(trace, names.stage(block.stage), x)
            features.append(x)
    return features


def classify(params, pixel_values, trace=None):
    """ResNetForImageClassification. pixel_values: (N, 3, H, W) -> logits (N, num_labels)."""
    record(trace, "pixel_values", pixel_values)
    features = backbone(params, CLASSIFIER_NAMES, pixel_values, trace)
    pooled = ops.global_avg_pool(features[-1])  # (N, 2048, 1, 1)
    record(trace, "resnet.pooler", pooled)
    logits = ops.linear(pooled.reshape(pooled.shape[0], -1), params["classifier.1.weight"], params["classifier.1.bias"])
    record(trace, "classifier.1", logits)
    return logits


# --- the checkpoint's expected layout ---------------------------------------------------------

def _bn_shapes(name, c):
    return {f"{name}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")}


def backbone_shapes(names, depths=DEPTHS, widths=WIDTHS, stem_width=STEM_WIDTH):
    """{key: shape} of every backbone tensor under `names`."""
    conv, norm, _, _ = names.stem()
    shapes = {conv + ".weight": (stem_width, 3, 7, 7), **_bn_shapes(norm, stem_width)}
    for block in blocks(names, depths, widths, stem_width):
        mid, c_out = block.c_mid, block.c_out
        kernels = [(mid, block.c_in, 1, 1), (mid, mid, 3, 3), (c_out, mid, 1, 1)]
        for conv, norm, k in zip(block.convs, block.norms, kernels):
            shapes[conv + ".weight"] = k
            shapes.update(_bn_shapes(norm, k[0]))
        if block.shortcut is not None:
            shapes[block.shortcut[0] + ".weight"] = (c_out, block.c_in, 1, 1)
            shapes.update(_bn_shapes(block.shortcut[1], c_out))
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
    """Refuse configs this implementation does not compute (it is ResNet-50 v1.5, nothing else)."""
    if not isinstance(config, dict):
        raise ConfigFileError(f"config.json must be a JSON object, got {type(config).__name__}")
    wanted = {
        "depths": list(DEPTHS),
        "hidden_sizes": list(WIDTHS),
        "embedding_size": STEM_WIDTH,
        "layer_type": "bottleneck",
        "hidden_act": "relu",
        "downsample_in_first_stage": False,
        "downsample_in_bottleneck": False,
    }
    for key, value in wanted.items():
        if key in config and config[key] != value:
            raise CheckpointMismatchError(f"config.json: {key}={str(config[key])[:60]}, refimpl implements "
                                          f"ResNet-50 with {key}={value!r}")


def classifier_shapes(config):
    """{key: shape} of microsoft/resnet-50's checkpoint (ResNetForImageClassification)."""
    check_config(config)
    n = num_labels(config, 1000)
    shapes = backbone_shapes(CLASSIFIER_NAMES)
    shapes["classifier.1.weight"] = (n, WIDTHS[-1])
    shapes["classifier.1.bias"] = (n,)
    return shapes


def num_params(shapes):
    return int(sum(np.prod(s) for s in shapes.values()))
