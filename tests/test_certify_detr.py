"""refimpl certify on DETR: transformers' DetrForObjectDetection certifies through the `transformers`
adapter (its backbone wrapper and attention weights renamed by the shipped name map); the same
model with its position embedding left out diverges at the first attention that uses it, and a
port whose post-processing leaves the boxes in (cx, cy, w, h) diverges at `post_process.boxes`
with the box-format diagnosis."""

import textwrap
from pathlib import Path

import numpy as np
import pytest

from refimpl.conformance.certify import certify

STREET = Path(__file__).parent.parent / "examples" / "street.jpg"

NO_POSITION = textwrap.dedent('''
    import torch
    from transformers import DetrForObjectDetection

    from refimpl.conformance.adapters import load_map


    def no_position_embedding(weights_dir):
        model = DetrForObjectDetection.from_pretrained(weights_dir, attn_implementation="eager")
        model.model.position_embedding.register_forward_hook(lambda m, i, out: torch.zeros_like(out))
        return {"model": model, "names": load_map("transformers_detr.names")}
''')

# A port that is right up to pred_boxes and scales the boxes to pixels but forgets the
# (cx, cy, w, h) -> (xmin, ymin, xmax, ymax) conversion in its post-processing.
CXCYWH = textwrap.dedent('''
    import torch
    from transformers import DetrForObjectDetection

    from refimpl.conformance.adapters import load_map


    def post_process(output, size):
        height, width = size
        probs = output.logits.softmax(-1)[0, :, :-1]
        scale = torch.tensor([width, height, width, height], dtype=output.pred_boxes.dtype)
        return {"scores": probs.max(-1).values, "boxes": output.pred_boxes[0] * scale}  # no conversion


    def boxes_left_in_cxcywh(weights_dir):
        model = DetrForObjectDetection.from_pretrained(weights_dir, attn_implementation="eager")
        return {"model": model, "names": load_map("transformers_detr.names"), "postprocess": post_process}
''')


@pytest.mark.slow
def test_transformers_detr_certifies(detr_small_dirs):
    report = certify("transformers", "detr-resnet-50", detr_small_dirs["transformers"], images=[STREET])
    assert report.verdict == "certified", report.text(tensors=True)
    cov = report.coverage()
    assert cov["scope"] == "layer by layer" and cov["compared"] >= 128
    compared = {r["name"] for r in report.cases[0]["report"].compared}
    assert {"class_labels_classifier", "pred_boxes", "post_process.scores", "post_process.boxes",
            "model.decoder.layers.5.encoder_attn.attn_weights", "model.backbone.conv_encoder.model.encoder.stages.3"} <= compared


def certify_port(source, factory, detr_small_dirs, tmp_path):
    """certify a torch: port written from `source` -> the report, asserted to diverge."""
    (tmp_path / "port.py").write_text(source)
    report = certify(f"torch:{tmp_path / 'port.py'}:{factory}", "detr-resnet-50", detr_small_dirs["transformers"],
                     images=[STREET])
    assert report.verdict == "diverges", report.text()
    return report


@pytest.mark.slow
def test_detr_without_position_embedding_diverges(detr_small_dirs, tmp_path):
    report = certify_port(NO_POSITION, "no_position_embedding", detr_small_dirs, tmp_path)
    # the backbone agrees; the first divergence is the (zero) position embedding itself
    assert report.first_divergence["name"] == "model.position_embedding", report.text(tensors=True)
    rows = report.cases[0]["report"].rows
    before = rows[: [r["name"] for r in rows].index("model.position_embedding")]
    assert any(r["name"].endswith("stages.3") for r in before) and all(r["status"] != "fail" for r in before)


@pytest.mark.slow
def test_detr_boxes_left_in_cxcywh_diverge_at_the_post_processed_boxes(detr_small_dirs, tmp_path):
    report = certify_port(CXCYWH, "boxes_left_in_cxcywh", detr_small_dirs, tmp_path)
    first = report.first_divergence
    assert first["name"] == "post_process.boxes", report.text(tensors=True)
    assert first["diagnosis"]["kind"] == "box format", first["diagnosis"]
    assert "cxcywh instead of xyxy" in first["diagnosis"]["message"]
    rows = {r["name"]: r for r in report.cases[0]["report"].rows}
    assert rows["pred_boxes"]["status"] != "fail" and rows["post_process.scores"]["status"] != "fail"


def test_post_processing_supplied_by_a_port():
    """A torch: factory's "postprocess" gives post_process.scores/boxes (batch axis added); a
    transformers-style one-item list works too; anything else is a typed error."""
    import torch

    from refimpl.conformance.adapters.torch_hooks import post_process_tensors
    from refimpl.errors import AdapterError

    boxes, scores = torch.rand(100, 4), torch.rand(100)
    got = post_process_tensors(lambda out, size: {"scores": scores, "boxes": boxes}, None, (480, 640))
    assert got["post_process.boxes"].shape == (1, 100, 4) and got["post_process.scores"].shape == (1, 100)
    listed = post_process_tensors(lambda out, size: [{"scores": scores, "boxes": boxes, "labels": None}], None, (1, 1))
    assert np.array_equal(listed["post_process.boxes"], got["post_process.boxes"])
    with pytest.raises(AdapterError, match="expected a dict"):
        post_process_tensors(lambda out, size: boxes, None, (1, 1))
    with pytest.raises(AdapterError, match="2 results for one image"):
        post_process_tensors(lambda out, size: [{}, {}], None, (1, 1))
