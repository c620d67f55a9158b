"""refimpl certify onnx:FILE on DETR: the synthesized DETR checkpoint exported through transformers'
DetrForObjectDetection with torch's legacy and dynamo ONNX exporters certifies layer by layer
(its module paths named through the shipped transformers map), and with every name stripped its backbone is
still aligned by structure (frozen batch norm as Mul + Add) and certified stage by stage."""

import warnings
from pathlib import Path

import pytest

from refimpl.conformance.certify import certify
from refimpl.conformance.trace import trace

STREET = Path(__file__).parent.parent / "examples" / "street.jpg"
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def detr_exports(detr_small_dirs, tmp_path_factory):
    """{"legacy", "dynamo": the named exports, "stripped": the legacy graph with opaque names}, at the
    input size refimpl's preprocessing gives street.jpg (the graph's shapes are fixed)."""
    import torch
    from test_certify_onnx import strip_names
    from transformers import DetrForObjectDetection

    weights = detr_small_dirs["transformers"]
    tensors, _ = trace(STREET, "detr-resnet-50", weights=str(weights))
    hf = DetrForObjectDetection.from_pretrained(str(weights), attn_implementation="eager").eval()
    folder = tmp_path_factory.mktemp("onnx-detr")
    out = {name: folder / f"detr_{name}.onnx" for name in ("legacy", "dynamo", "stripped")}
    inputs = (torch.from_numpy(tensors["pixel_values"]), torch.from_numpy(tensors["pixel_mask"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for exporter in ("legacy", "dynamo"):
            torch.onnx.export(hf, inputs, str(out[exporter]), dynamo=exporter == "dynamo",
                              input_names=["pixel_values", "pixel_mask"], output_names=["logits", "pred_boxes"])
    onnx.save(strip_names(onnx.load(out["legacy"])), out["stripped"])
    return out


def _compared(report):
    return {r["name"] for r in report.cases[0]["report"].compared}


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_detr_exports_certify_layer_by_layer(detr_small_dirs, detr_exports, exporter):
    report = certify(f"onnx:{detr_exports[exporter]}", "detr-resnet-50", detr_small_dirs["transformers"], images=[STREET])
    assert report.verdict == "certified", report.text(tensors=True)
    cov = report.coverage()
    assert cov["scope"] == "layer by layer" and cov["compared"] == 110, report.text()
    assert exporter in report.description
    assert {"model.backbone.conv_encoder.model.encoder.stages.3", "model.input_projection", "model.encoder.layers.5",
            "model.decoder.layers.5", "class_labels_classifier", "pred_boxes"} <= _compared(report)
    # the graph stops at the model's outputs: no post-processing to compare
    assert cov["parts_missing"] == ["image", "pixel_values", "pixel_mask", "post_process.scores", "post_process.boxes"]


@pytest.mark.slow
def test_detr_stripped_export_backbone_aligned_by_structure(detr_small_dirs, detr_exports):
    report = certify(f"onnx:{detr_exports['stripped']}", "detr-resnet-50", detr_small_dirs["transformers"],
                     images=[STREET])
    assert report.verdict == "certified", report.text(tensors=True)
    assert "structural alignment" in report.description
    compared = _compared(report)
    backbone = {n for n in compared if n.startswith("model.backbone.conv_encoder.model.")}
    # the stem, its max pool, 16 blocks x (3 steps + output), 4 shortcuts, 4 stage outputs
    assert len(backbone) == 2 + 16 * 4 + 4 + 4
    assert compared == backbone | {"class_labels_classifier", "pred_boxes"}  # the transformer is not aligned
    assert report.coverage()["scope"] == "layer by layer"
