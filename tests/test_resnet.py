"""ResNet-50 layer by layer against transformers' ResNetForImageClassification on the same
synthesized checkpoint: every traced intermediate (stem, each conv of each of the 16 blocks, each
block, each stage, pooled features, logits), in float32 and float64, batch 1 and several."""

import copy
import re
from pathlib import Path

import numpy as np
import pytest

import report
from hf_trace import hf_trace
from refimpl.models import resnet
from refimpl.api import load_resnet50

EXAMPLES = sorted(Path(__file__).parent.parent.glob("examples/*.[jp][pn]g"))
TOL = {"float32": 1e-5, "float64": 1e-12}


def photo_batch(paths):
    from PIL import Image
    from transformers import ConvNextImageProcessorPil
    from refimpl.synth.resnet import RESNET50_PREPROCESSOR

    processor = ConvNextImageProcessorPil(**{k: v for k, v in RESNET50_PREPROCESSOR.items() if k != "image_processor_type"})
    images = [Image.open(p).convert("RGB") for p in paths]
    return processor(images, return_tensors="np")["pixel_values"].astype(np.float32)


def cases():
    rng = np.random.default_rng(1)
    yield "random 1x224x224", rng.normal(size=(1, 3, 224, 224)).astype(np.float32)
    yield "random 2x160x200", rng.normal(size=(2, 3, 160, 200)).astype(np.float32)
    if EXAMPLES:
        yield f"photo {EXAMPLES[0].name}", photo_batch(EXAMPLES[:1])
        yield f"photos x{len(EXAMPLES)}", photo_batch(EXAMPLES)


@pytest.fixture(scope="module")
def models(resnet50_dir, resnet50, resnet50_hf):
    return {
        "float32": (resnet50, resnet50_hf),
        "float64": (load_resnet50(resnet50_dir, dtype="float64"), copy.deepcopy(resnet50_hf).double()),
    }


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_layer_matches_transformers(models, dtype):
    ours_model, hf = models[dtype]
    for case, pixel_values in cases():
        x = pixel_values.astype(dtype)
        trace = {}
        ours_model.forward(x, trace)
        names = [n for n in trace if n != "pixel_values"]
        ref = hf_trace(hf, names, x)
        assert set(ref) == set(names)
        for name in names:
            _, rel = report.compare("resnet-50", dtype, case, name, trace[name], ref[name])
            assert trace[name].dtype == np.dtype(dtype), name
            assert rel <= TOL[dtype], f"{case}: {name} differs from transformers by {rel:.2e} relative"


def test_trace_covers_every_module_in_checkpoint_order(resnet50):
    """Every block, conv layer and stage is traced, named by its module path, in data-flow order."""
    trace = {}
    resnet50.forward(np.zeros((1, 3, 64, 64), np.float32), trace)
    names = list(trace)
    assert names[:3] == ["pixel_values", "resnet.embedder.embedder", "resnet.embedder"]
    assert names[-2:] == ["resnet.pooler", "classifier.1"]
    blocks = [n for n in names if re.fullmatch(r"resnet\.encoder\.stages\.\d\.layers\.\d+", n)]
    assert blocks == [f"resnet.encoder.stages.{s}.layers.{i}" for s, d in enumerate(resnet.DEPTHS) for i in range(d)]
    assert sum(n.endswith(".shortcut") for n in names) == 4
    assert sum(".layer." in n for n in names) == 3 * 16


def test_activations_are_of_order_one(resnet50):
    """The synthesized checkpoint is realistic: no layer explodes or dies on a real photo, so the
    1e-5 comparisons above test real arithmetic."""
    if not EXAMPLES:
        pytest.skip("no example photos")
    trace = {}
    resnet50.forward(photo_batch(EXAMPLES[:1]), trace)
    for name, value in trace.items():
        if re.fullmatch(r"resnet\.(embedder|encoder\.stages\.\d(\.layers\.\d+)?)", name):
            std = float(value.std())
            assert 0.05 < std < 20, f"{name}: std {std}"
    assert 1 < float(trace["classifier.1"].std()) < 20


def test_bottleneck_by_hand(resnet50):
    """One block computed step by step from the textbook formula matches the traced block."""
    p = resnet50.checkpoint.params
    x = np.random.default_rng(3).normal(size=(1, 256, 8, 8)).astype(np.float32)
    block = next(b for b in resnet.blocks(resnet.CLASSIFIER_NAMES) if (b.stage, b.index) == (0, 1))

    def bn(y, name):
        g, b, m, v = (p[f"{name}.{k}"] for k in ("weight", "bias", "running_mean", "running_var"))
        return (y - m[:, None, None]) / np.sqrt(v[:, None, None] + 1e-5) * g[:, None, None] + b[:, None, None]

    def conv1x1(y, name):
        return np.einsum("oc,chw->ohw", p[name + ".weight"][:, :, 0, 0], y)

    def conv3x3(y, name):
        w = p[name + ".weight"]
        yp = np.pad(y, ((0, 0), (1, 1), (1, 1)))
        return sum(np.einsum("oc,chw->ohw", w[:, :, i, j], yp[:, i:i + 8, j:j + 8]) for i in range(3) for j in range(3))

    h = np.maximum(bn(conv1x1(x[0], block.convs[0]), block.norms[0]), 0)
    h = np.maximum(bn(conv3x3(h, block.convs[1]), block.norms[1]), 0)
    h = bn(conv1x1(h, block.convs[2]), block.norms[2])
    expect = np.maximum(h + x[0], 0)
    got = resnet.bottleneck(p, block, x)[0]
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max())


def test_float64_mode_keeps_float64(resnet50_dir):
    model = load_resnet50(resnet50_dir, dtype="float64")
    assert all(v.dtype == np.float64 for v in model.checkpoint.params.values())
    assert model.forward(np.zeros((1, 3, 32, 32))).dtype == np.float64
