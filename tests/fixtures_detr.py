"""DETR session fixtures (owned by the DETR work): synthesized checkpoints in both official layouts,
refimpl's models on them, transformers' models on the same files, a padded photo batch, and a
helper that traces transformers' DETR under refimpl's trace names (inputs and outputs of every
module, so a layer can be re-run on exactly the reference's input).

Layouts are named as refimpl.detr.LAYOUTS: "timm" (hub revision `main`) and "transformers"
(revision `no_timm`).
"""

import copy
import inspect
from pathlib import Path

import numpy as np
import pytest

from refimpl.synth.detr import DETR_PREPROCESSOR, build_detr, model_properties

EXAMPLES_DIR = Path(__file__).parent.parent / "examples"

# A smaller input than the official 800 x 1333 keeps the layer-by-layer tests fast; one test
# (test_detr_layers.py) runs the official size.
SMALL_PREPROCESSOR = dict(DETR_PREPROCESSOR, size={"shortest_edge": 256, "longest_edge": 384})


# --- checkpoints and models ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def detr_timm_dir(tmp_path_factory):
    """Synthesized facebook/detr-resnet-50 at revision `main`: timm ResNet-50 backbone."""
    return build_detr(tmp_path_factory.mktemp("detr-timm"), "timm", seed=0)


@pytest.fixture(scope="session")
def detr_no_timm_dir(tmp_path_factory):
    """Synthesized facebook/detr-resnet-50 at revision `no_timm`: transformers ResNet backbone."""
    return build_detr(tmp_path_factory.mktemp("detr-no-timm"), "transformers", seed=1)


@pytest.fixture(scope="session")
def detr_dirs(detr_timm_dir, detr_no_timm_dir):
    return {"timm": detr_timm_dir, "transformers": detr_no_timm_dir}


@pytest.fixture(scope="session")
def detr_models(detr_dirs):
    """refimpl's DETR on each layout, float32."""
    from refimpl.api import load_detr

    return {layout: load_detr(folder) for layout, folder in detr_dirs.items()}


@pytest.fixture(scope="session")
def detr_small_dirs(detr_dirs, tmp_path_factory):
    """The same checkpoints (weights linked, not copied) with SMALL_PREPROCESSOR's input size, for
    the tests of the whole path (CLI, pipeline) that need not run at the official size."""
    import json

    small = {}
    for layout, folder in detr_dirs.items():
        target = tmp_path_factory.mktemp(f"detr-{layout}-small")
        (target / "config.json").write_text((folder / "config.json").read_text())
        (target / "preprocessor_config.json").write_text(json.dumps(SMALL_PREPROCESSOR, indent=2))
        (target / "model.safetensors").symlink_to(folder / "model.safetensors")
        small[layout] = target
    return small


@pytest.fixture(scope="session")
def detr_small_models(detr_models):
    """detr_models with SMALL_PREPROCESSOR's input size (the same arrays, no reload)."""
    import dataclasses

    from refimpl.pipeline.loaded import DETR

    return {layout: DETR(dataclasses.replace(model.checkpoint, preprocessor=dict(SMALL_PREPROCESSOR)), model.dtype, model.path)
            for layout, model in detr_models.items()}


@pytest.fixture(scope="session")
def detr_batch():
    """Three photos of different shapes (landscape, portrait, square), preprocessed together at
    SMALL_PREPROCESSOR's size to (256, 379), (384, 256), (256, 256), so each is padded at the
    bottom and/or right to (384, 379). Returns dict(images, pixel_values (3, 3, 384, 379) float32,
    pixel_mask (3, 384, 379) int64, sizes)."""
    from refimpl.pipeline.decode import read_image
    from refimpl.pipeline.preprocess import detection_inputs

    street = read_image(EXAMPLES_DIR / "street.jpg")[1]  # 500 x 741
    cat = read_image(EXAMPLES_DIR / "cat.png")[1][:, 80:280]  # 300 x 200, portrait
    coffee = read_image(EXAMPLES_DIR / "coffee.jpg")[1][:, 100:500]  # 400 x 400
    images = [street, np.ascontiguousarray(cat), np.ascontiguousarray(coffee)]
    pixel_values, pixel_mask, sizes = detection_inputs(images, SMALL_PREPROCESSOR)
    return dict(images=images, pixel_values=pixel_values, pixel_mask=pixel_mask, sizes=sizes)


@pytest.fixture(scope="session")
def detr_hf(detr_dirs):
    """transformers' DetrForObjectDetection on each synthesized checkpoint, float32, with eager
    attention (the only implementation that returns attention weights)."""
    from transformers import DetrForObjectDetection

    return {layout: DetrForObjectDetection.from_pretrained(folder, attn_implementation="eager").eval()
            for layout, folder in detr_dirs.items()}


def assert_useful_test_subject(hf_outputs):
    """The synthesized model is not degenerate on the photo batch: peaked attention, queries that
    differ, scores on both sides of 0.5, boxes inside the image (see synth_detr's docstring)."""
    p = model_properties(hf_outputs)
    uniform = p["uniform_weight"]
    # transformers' default init gives max weights within a few % of uniform (1/S)
    assert p["encoder_max_weight"] > 30 * uniform, p
    assert p["cross_max_weight"] > 30 * uniform, p
    assert p["decoder_max_weight"] > 0.2, p  # over 100 queries: uniform is 0.01
    assert p["distinct_labels"] >= 10, p  # queries differ...
    assert p["box_std"] > 0.05, p  # ...in class and in box
    assert p["scores_above_half"] >= 5 and p["scores_below_half"] >= 50, p
    assert 0.02 < p["box_range"][0] and p["box_range"][1] < 0.98, p  # sigmoid not saturated
    return p


@pytest.fixture(scope="session")
def detr_batch_runs(detr_models, detr_hf, detr_batch):
    """One float32 forward pass of refimpl and one of transformers (traced) per layout on
    detr_batch, shared by the tests that read them:
    {layout: dict(trace, outputs, names, calls, hf_outputs, properties)}.
    Asserts that each synthesized model is a useful test subject on this batch."""
    runs = {}
    for layout, model in detr_models.items():
        trace = {}
        outputs = model.forward(detr_batch["pixel_values"], detr_batch["pixel_mask"], trace)
        names = [n for n in trace if n not in ("pixel_values", "pixel_mask", "pred_boxes")]
        calls, hf_outputs = hf_detr_trace(detr_hf[layout], names, detr_batch["pixel_values"], detr_batch["pixel_mask"])
        properties = assert_useful_test_subject(hf_outputs)
        runs[layout] = dict(trace=trace, outputs=outputs, names=names, calls=calls, hf_outputs=hf_outputs,
                            properties=properties)
    return runs


@pytest.fixture(scope="session")
def detr_hf64(detr_hf):
    """The same transformers models in float64 (for the 1e-12 comparisons)."""
    return {layout: copy.deepcopy(hf).double() for layout, hf in detr_hf.items()}


# --- tracing transformers' DETR under refimpl's names --------------------------------------------

def hf_module_name(name):
    """refimpl trace name (checkpoint path) -> transformers 5 module path (same except the backbone
    wrapper, which save_pretrained writes as the legacy `backbone.conv_encoder`)."""
    return name.replace("model.backbone.conv_encoder.model.", "model.backbone.model.")


def hf_detr_trace(hf, names, pixel_values, pixel_mask):
    """Run transformers' DETR once with hooks on the modules behind refimpl's trace `names`.

    Returns (calls, outputs): calls[name] = (bound arguments as a dict of numpy/None/other, output)
    for every name that is a module (the output cloned: timm adds the residual in place), with
    `<attention>.attn_weights` split off as its own entry; outputs = the model's output.
    The downsampled mask is captured from the backbone wrapper (`model.backbone`) output.
    """
    import torch

    def to_numpy(v):
        if isinstance(v, torch.Tensor):
            return v.detach().clone().numpy()
        if isinstance(v, (tuple, list)):
            return type(v)(to_numpy(x) for x in v)
        return v

    calls, hooks = {}, []
    wanted = {hf_module_name(n): n for n in names if not n.endswith(".attn_weights")}
    wanted["model.backbone"] = "model.backbone"
    for module_name, module in hf.named_modules():
        if module_name not in wanted:
            continue
        signature = inspect.signature(module.forward)

        def hook(mod, args, kwargs, out, name=wanted[module_name], signature=signature):
            bound = signature.bind(*args, **kwargs).arguments
            bound.update(bound.pop("kwargs", {}))
            calls[name] = ({k: to_numpy(v) for k, v in bound.items()}, to_numpy(out))

        hooks.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            outputs = hf(pixel_values=torch.from_numpy(pixel_values), pixel_mask=torch.from_numpy(pixel_mask),
                         output_hidden_states=True, output_attentions=True)
    finally:
        for h in hooks:
            h.remove()
    for name in list(calls):
        args, out = calls[name]
        if name.endswith(("self_attn", "encoder_attn")):  # (attention output, attention weights)
            calls[name] = (args, out[0])
            calls[name + ".attn_weights"] = (args, out[1])
    backbone_args, backbone_out = calls.pop("model.backbone")
    calls["model.backbone.conv_encoder.mask"] = (backbone_args, backbone_out[-1][1])
    return calls, outputs


__all__ = [
    "EXAMPLES_DIR",
    "SMALL_PREPROCESSOR",
    "detr_timm_dir",
    "detr_no_timm_dir",
    "detr_dirs",
    "detr_models",
    "detr_batch",
    "detr_small_dirs",
    "detr_small_models",
    "detr_hf",
    "detr_hf64",
    "detr_batch_runs",
    "hf_module_name",
    "hf_detr_trace",
]
