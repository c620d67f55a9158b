"""Family-member session fixtures: synthesized checkpoints of registry entries other than the two
hosted models (ResNet-18, ResNet-101, DETR-ResNet-101 in both layouts, DETR-ResNet-50-DC5 in the
timm layout and, by renaming its keys, in the transformers layout), each built by
refimpl.synth.synthesize from the registry entry alone, and small inputs for them."""

import json
from pathlib import Path

import numpy as np
import pytest

from refimpl import registry
from refimpl.synth import synthesize

# Small inputs keep the deep members' layer-by-layer tests at seconds.
RESNET_SIZE = {"shortest_edge": 64}
DETR_SMALL_PREPROCESSOR = {"shortest_edge": 128, "longest_edge": 200}


def small_preprocessor(folder, size):
    """Point the checkpoint's preprocessor_config.json at a small input size (the model is unchanged)."""
    path = Path(folder) / "preprocessor_config.json"
    config = json.loads(path.read_text())
    config["size"] = size
    path.write_text(json.dumps(config, indent=2))
    return folder


def rename_backbone(source, target, layout):
    """A copy of the DETR checkpoint `source` with its backbone in `layout`'s names ("transformers"
    or "timm"): keys mapped one to one by the walk (resnet.backbone_shapes of both layouts, in the
    same order), config.json's backbone description rewritten, `dilation` kept. The weights are the
    same numbers, so refimpl must give the same outputs on both."""
    from safetensors.numpy import load_file, save_file

    from refimpl.models import detr, resnet

    source, target = Path(source), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    config = json.loads((source / "config.json").read_text())
    hp = detr.hparams(config)
    ours = resnet.Backbone(detr.BACKBONE_PREFIX, "timm" if hp.layout == "timm" else "transformers", hp.backbone)
    theirs = resnet.Backbone(detr.BACKBONE_PREFIX, "timm" if layout == "timm" else "transformers", hp.backbone)
    mapping = dict(zip(resnet.backbone_shapes(ours), resnet.backbone_shapes(theirs)))
    tensors = load_file(str(source / "model.safetensors"))
    renamed = {mapping.get(k, k): v for k, v in tensors.items()
               if k in mapping or not k.startswith(detr.BACKBONE_PREFIX)}
    save_file(renamed, str(target / "model.safetensors"))
    a = hp.backbone
    if layout == "transformers":
        config.update(use_timm_backbone=False, backbone=None, backbone_config={
            "model_type": "resnet", **resnet.arch_config(a), "out_features": [f"stage{len(a.depths)}"]})
    (target / "config.json").write_text(json.dumps(config, indent=2))
    (target / "preprocessor_config.json").write_text((source / "preprocessor_config.json").read_text())
    return target


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory):
    """{entry name: folder} of synthesized classifiers, 64 px inputs (ResNet-18: basic blocks; ResNet-101: 33 bottlenecks)."""
    out = {}
    for name in ("resnet-18", "resnet-101"):
        folder = synthesize(registry.get(name), tmp_path_factory.mktemp(name), seed=3)
        out[name] = small_preprocessor(folder, RESNET_SIZE)
    return out


@pytest.fixture(scope="session")
def detr_family_dirs(tmp_path_factory):
    """{(entry name, layout): folder}: DETR-ResNet-101 in both layouts (built by transformers) and
    DETR-ResNet-50-DC5 in the timm layout (built by transformers) and the transformers layout
    (renamed: transformers' own ResNet cannot dilate)."""
    out = {}
    for layout, seed in (("timm", 4), ("transformers", 5)):
        folder = synthesize(registry.get("detr-resnet-101"), tmp_path_factory.mktemp(f"detr-101-{layout}"), layout, seed)
        out[("detr-resnet-101", layout)] = small_preprocessor(folder, DETR_SMALL_PREPROCESSOR)
    dc5 = synthesize(registry.get("detr-resnet-50-dc5"), tmp_path_factory.mktemp("detr-50-dc5-timm"), "timm", 6)
    out[("detr-resnet-50-dc5", "timm")] = small_preprocessor(dc5, DETR_SMALL_PREPROCESSOR)
    out[("detr-resnet-50-dc5", "transformers")] = rename_backbone(dc5, tmp_path_factory.mktemp("detr-50-dc5-tf"),
                                                                  "transformers")
    return out


@pytest.fixture(scope="session")
def detr_small_batch():
    """Two photos preprocessed together at DETR_SMALL_PREPROCESSOR's size, the smaller one padded:
    dict(pixel_values (2, 3, H, W) float32, pixel_mask (2, H, W) int64, sizes)."""
    from fixtures_detr import EXAMPLES_DIR

    from refimpl.pipeline.decode import read_image
    from refimpl.pipeline.preprocess import detection_inputs
    from refimpl.synth.detr import DETR_PREPROCESSOR

    street = read_image(EXAMPLES_DIR / "street.jpg")[1]
    cat = np.ascontiguousarray(read_image(EXAMPLES_DIR / "cat.png")[1][:, 80:280])
    pixel_values, pixel_mask, sizes = detection_inputs([street, cat], dict(DETR_PREPROCESSOR, size=DETR_SMALL_PREPROCESSOR))
    return dict(pixel_values=pixel_values, pixel_mask=pixel_mask, sizes=sizes)


__all__ = ["RESNET_SIZE", "DETR_SMALL_PREPROCESSOR", "small_preprocessor", "rename_backbone", "family_dirs",
           "detr_family_dirs", "detr_small_batch"]
