"""Synthesized ResNet classifiers (any family member: microsoft/resnet-18 ... -152, or a config of
your own): the official architectures built by transformers itself, with random but *realistic*
weights, saved with `save_pretrained` in the official file layout.

The official weights cannot be downloaded in CI, so these stand in for them. "Realistic" means
activations stay of order 1 through every layer, so that a 1e-5 relative comparison with
transformers actually tests something: BatchNorm statistics are calibrated on real data (each
BN's running mean/var are set to the statistics of its input, layer by layer), affine
parameters are random around 1 and 0, and the last BN of each residual branch is damped so the
residual stream grows gently, as in trained ResNets.
"""

import json
from pathlib import Path

import numpy as np

# The official microsoft/resnet-50 preprocessor_config.json values (the same for every microsoft/resnet-*).
RESNET50_PREPROCESSOR = {
    "crop_pct": 0.875,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "ConvNextImageProcessor",
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 224},
}


# transformers' ResNetConfig values of ResNet-50 v1.5 (microsoft/resnet-50, and DETR's no_timm backbone).
RESNET50_CONFIG = dict(
    num_channels=3,
    embedding_size=64,
    hidden_sizes=[256, 512, 1024, 2048],
    depths=[3, 4, 6, 3],
    layer_type="bottleneck",
    hidden_act="relu",
    downsample_in_first_stage=False,
)


def imagenet_id2label():
    """The 1000 ImageNet-1k class names in index order (WordNet lemmas, as shipped by timm —
    the same strings as the official config's id2label, e.g. 283 'Persian cat')."""
    import timm

    info = Path(timm.__file__).parent / "data" / "_info"
    synsets = (info / "imagenet_synsets.txt").read_text().split()
    lemmas = dict(line.split("\t", 1) for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines())
    return {i: lemmas[s] for i, s in enumerate(synsets)}


def calibration_images(n=4, size=224, seed=0):
    """Smooth random images in normalized units: (n, 3, size, size) float32."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(n, 3, size // 16, size // 16))
    img = np.kron(coarse, np.ones((1, 1, 16, 16)))  # blocky structure, like edges in photos
    img += 0.3 * rng.normal(size=img.shape)
    return img.astype(np.float32)


def randomize_batch_norms(model, rng, damp=lambda name: False):
    """Random affine parameters; damped gamma for the BNs `damp` selects."""
    import torch

    for name, m in model.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d) or type(m).__name__.endswith("FrozenBatchNorm2d"):
            c = m.weight.shape[0]
            lo, hi = (0.1, 0.4) if damp(name) else (0.5, 1.5)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(rng.uniform(lo, hi, c).astype(np.float32)))
                m.bias.copy_(torch.from_numpy(rng.normal(0, 0.1, c).astype(np.float32)))


def calibrate_batch_norms(model, inputs, forward):
    """Set every BN's running statistics to the statistics of its own input on `inputs`.

    One forward pass in train mode with momentum=None (a cumulative average over one batch)
    does exactly that, layer by layer, because each BN then normalizes with the very
    statistics it records, so every later layer sees what it will see in eval mode.
    """
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        forward(inputs)
    model.eval()
    return len(bns)


# The fields of transformers' ResNetConfig that make an architecture (a registry entry's `config`
# may hold more, e.g. model_type, which ResNetConfig sets itself).
ARCH_FIELDS = ("num_channels", "embedding_size", "hidden_sizes", "depths", "layer_type", "hidden_act",
               "downsample_in_first_stage", "downsample_in_bottleneck")


def arch_fields(config):
    """The architecture fields of a config (a registry entry's `config`), over ResNet-50's."""
    return {**RESNET50_CONFIG, **{k: v for k, v in (config or {}).items() if k in ARCH_FIELDS}}


def last_branch_norm(layer_type, scheme="transformers"):
    """The name suffix of the last BN of a residual branch (the one damped, as in trained ResNets)."""
    if scheme == "timm":
        return "bn2" if layer_type == "basic" else "bn3"
    return "layer.1.normalization" if layer_type == "basic" else "layer.2.normalization"


def build_resnet(folder, config=None, layout=None, seed=0):
    """ResNetForImageClassification with the architecture `config` describes (a registry entry's
    `config`: depths, hidden_sizes, layer_type, ...; default ResNet-50's), ImageNet's 1000 labels
    and calibrated random weights, saved to `folder` with save_pretrained. `layout` is for the
    registry's uniform call (classifiers have one). Returns the folder."""
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    if layout not in (None, "transformers"):
        raise ValueError(f"a ResNet classifier has the transformers layout only, got {layout!r}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    id2label = imagenet_id2label()
    fields = arch_fields(config)
    config = ResNetConfig(
        **fields,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        architectures=["ResNetForImageClassification"],
    )
    model = ResNetForImageClassification(config).eval()
    last = last_branch_norm(fields["layer_type"])
    randomize_batch_norms(model, rng, damp=lambda name: name.endswith(last))
    x = torch.from_numpy(calibration_images(seed=seed))
    calibrate_batch_norms(model, x, lambda t: model(pixel_values=t))
    with torch.no_grad():
        fc = model.classifier[1]
        fc.weight.copy_(torch.from_numpy(rng.normal(0, 3 / np.sqrt(fc.in_features), fc.weight.shape).astype(np.float32)))
        fc.bias.copy_(torch.from_numpy(rng.normal(0, 0.5, fc.bias.shape).astype(np.float32)))
    folder = Path(folder)
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(RESNET50_PREPROCESSOR, indent=2))
    return folder


def build_resnet50(folder, seed=0):
    """microsoft/resnet-50's architecture (see build_resnet)."""
    return build_resnet(folder, RESNET50_CONFIG, seed=seed)
