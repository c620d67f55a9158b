"""DETR entries of the diagnosis catalogue, on the tensors of a real implementation: transformers'
DetrForObjectDetection (eager attention) on the synthesized checkpoint. Each porting bug is
produced from transformers' own tensors the way a port would get it wrong (the box MLP's output
without its sigmoid, boxes converted to corners, probabilities with the no-object class kept,
attention probabilities softmaxed over the queries or without 1/sqrt(d_head)); compare names the
tensor and the diagnosis's kind is asserted."""

import numpy as np
import pytest

from refimpl.conformance.compare import compare

pytestmark = pytest.mark.slow  # builds transformers' DETR on both synthesized checkpoints

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def hf(detr_hf):
    """transformers' tensors: box MLP output before the sigmoid, pred_boxes, logits, and the first
    decoder layer's self-attention probabilities (N, heads, Q, Q) and its scores."""
    model = detr_hf["timm"]
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, 96, 128)).astype(np.float32))
    seen = {}
    hook = model.bbox_predictor.register_forward_hook(lambda m, i, o: seen.__setitem__("pre", o.detach().numpy()))
    with torch.no_grad():
        out = model(pixel_values=x, output_attentions=True)
    hook.remove()
    return {"bbox_predictor": seen["pre"], "pred_boxes": out.pred_boxes.numpy(), "logits": out.logits.numpy(),
            "attn": out.decoder_attentions[0].numpy().astype(np.float64), "d_head": model.config.d_model //
            model.config.decoder_attention_heads}


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def first(a, b):
    report = compare(a, b)
    assert not report.agree
    return report.first["name"], report.first["diagnosis"]


def test_missing_box_sigmoid(hf):
    name, d = first({"logits": hf["logits"], "pred_boxes": hf["bbox_predictor"]},
                    {"logits": hf["logits"], "pred_boxes": hf["pred_boxes"]})
    assert name == "pred_boxes" and d["kind"] == "missing sigmoid", d["message"]


def test_boxes_in_the_other_format(hf):
    b = hf["pred_boxes"]
    corners = np.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)
    name, d = first({"pred_boxes": b}, {"pred_boxes": corners})
    assert name == "pred_boxes" and d["kind"] == "box format" and "cxcywh instead of xyxy" in d["message"]
    name, d = first({"pred_boxes": corners}, {"pred_boxes": b})
    assert d["kind"] == "box format"


def test_no_object_class_not_dropped(hf):
    p = softmax(hf["logits"].astype(np.float64))
    name, d = first({"probabilities": p}, {"probabilities": p[..., :-1]})
    assert name == "probabilities" and d["kind"] == "extra class" and "no-object" in d["message"]
    assert d["confidence"] == "certain"


def test_softmax_over_the_wrong_axis(hf):
    scores = np.log(hf["attn"])  # the attention scores, up to a constant per row
    name, d = first({"model.decoder.layers.0.self_attn": softmax(scores, axis=-2)},
                    {"model.decoder.layers.0.self_attn": hf["attn"]})
    assert d["kind"] == "softmax axis" and d["axis"] == -2, d["message"]


def test_missing_attention_scale(hf):
    """Without 1/sqrt(d_head) the probabilities are softmax(sqrt(d_head) x scores)."""
    scores = np.log(hf["attn"])
    a = softmax(np.sqrt(hf["d_head"]) * scores)
    name, d = first({"model.decoder.layers.0.self_attn": a}, {"model.decoder.layers.0.self_attn": hf["attn"]})
    assert d["kind"] == "softmax temperature", d["message"]
    assert f"d_head = {hf['d_head']}" in d["message"]
