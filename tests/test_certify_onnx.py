"""refimpl certify onnx:FILE: ONNX exports of the synthesized ResNet-50 (legacy and dynamo exporters)
certify with every intermediate named automatically; a graph whose names carry no scope is
certified on its outputs only, its intermediates listed as unmapped, never guessed."""

import warnings
from pathlib import Path

import pytest

from refimpl.conformance.adapters.onnx_runtime import module_path
from refimpl.conformance.certify import certify

CAT = Path(__file__).parent.parent / "examples" / "cat.png"
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exports(resnet50_small_dir, tmp_path_factory):
    import torch
    from transformers import ResNetForImageClassification

    hf = ResNetForImageClassification.from_pretrained(resnet50_small_dir).eval()
    folder = tmp_path_factory.mktemp("onnx")
    x = torch.zeros(1, 3, 64, 64)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for exporter, dynamo in (("legacy", False), ("dynamo", True)):
            out[exporter] = folder / f"resnet50_{exporter}.onnx"
            torch.onnx.export(hf, (x,), str(out[exporter]), dynamo=dynamo, input_names=["pixel_values"],
                              output_names=["logits"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_onnx_exports_certify_layer_by_layer(resnet50_small_dir, exports, exporter):
    report = certify(f"onnx:{exports[exporter]}", "resnet-50", resnet50_small_dir, images=[CAT])
    assert report.verdict == "certified", report.text(tensors=True)
    cov = report.coverage()
    assert cov["scope"] == "layer by layer" and cov["compared"] == 76  # all but the image and pixel_values
    assert exporter in report.description


@pytest.mark.slow
def test_onnx_without_scopes_is_certified_on_outputs_only(resnet50_small_dir, exports, tmp_path):
    model = onnx.load(exports["legacy"])
    for i, node in enumerate(model.graph.node):
        node.name = f"n{i}"
    onnx.save(model, tmp_path / "anonymous.onnx")
    report = certify(f"onnx:{tmp_path / 'anonymous.onnx'}", "resnet-50", resnet50_small_dir, images=[CAT])
    assert report.verdict == "certified" and report.coverage()["scope"] == "on outputs"
    assert len(report.unmapped) == len(model.graph.node) - 1  # every intermediate listed (the Gemm gives logits)
    assert "only the final outputs were compared" in report.text()


def test_module_paths_from_both_exporters():
    legacy = onnx.helper.make_node("Relu", ["x"], ["y"], name="/resnet/encoder/stages.0/layers.0/layer/layer.0/activation/Relu")
    assert module_path(legacy) == "resnet.encoder.stages.0.layers.0.layer.0.activation"
    dynamo = onnx.helper.make_node("Relu", ["x"], ["y"], name="node_relu")
    onnx.helper.set_metadata_props(dynamo, {"pkg.torch.onnx.name_scopes": "['', 'resnet', 'resnet.embedder', 'resnet.embedder.pooler', 'max_pool2d']"})
    assert module_path(dynamo) == "resnet.embedder.pooler"
    assert module_path(onnx.helper.make_node("Relu", ["x"], ["y"], name="n7")) is None
