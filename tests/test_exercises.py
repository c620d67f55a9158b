"""The notebooks' exercises (refimpl/teaching/exercises.py): each grader passes a correct answer and,
for each typical mistake, fails the answer that makes it and names that mistake. The answers here are
written independently of the graders' own reference_* functions (a grader checked against itself
could not fail)."""

import numpy as np
import pytest

from refimpl.models import ops, resnet
from refimpl.teaching import exercises as ex


# --- answers a learner might write ----------------------------------------------------------------

def _conv_bn(params, conv, norm, x, stride=1, padding=0, bn=True):
    y = ops.conv2d(x, params[conv + ".weight"], stride=stride, padding=padding)
    if not bn:
        return y
    g, b, m, v = (params[f"{norm}.{k}"] for k in ("weight", "bias", "running_mean", "running_var"))
    return (y - m[:, None, None]) / np.sqrt(v[:, None, None] + 1e-5) * g[:, None, None] + b[:, None, None]


def bottleneck_answer(bug=None):
    def bottleneck(params, block, x):
        s1, s2 = (block.stride, 1) if bug == "v1" else (1, block.stride)
        h = np.maximum(_conv_bn(params, block.convs[0], block.norms[0], x, stride=s1), 0)
        h = _conv_bn(params, block.convs[1], block.norms[1], h, stride=s2, padding=1)
        if bug != "relu2":
            h = np.maximum(h, 0)
        h = _conv_bn(params, block.convs[2], block.norms[2], h)
        if block.shortcut is None or bug == "identity":
            shortcut = x
        else:
            shortcut = _conv_bn(params, *block.shortcut, x, stride=block.stride)
        if bug == "no shortcut":
            return np.maximum(h, 0)
        if bug == "relu out":
            return h + shortcut
        return np.maximum(h + shortcut, 0)
    return bottleneck


def attention_answer(bug=None):
    def attention(q, k, v, key_mask=None):
        scores = np.einsum("nhld,nhsd->nhls", q, k)
        if bug != "no scale":
            scores = scores / np.sqrt(q.shape[-1])
        if key_mask is not None and bug != "no mask":
            scores = np.where(key_mask[:, None, None, :], scores, -1e30)
        axis = -2 if bug == "axis" else -1
        e = np.exp(scores - scores.max(axis=axis, keepdims=True))
        weights = e / e.sum(axis=axis, keepdims=True)
        return np.einsum("nhls,nhsd->nhld", weights, v), weights
    return attention


def boxes_answer(bug=None):
    def to_pixels(pred_boxes, size):
        height, width = size
        cx, cy, w, h = pred_boxes.T
        if bug == "cxcywh":
            boxes = np.stack([cx, cy, w, h], 1)
        else:
            boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        if bug == "swap":
            width, height = height, width
        return boxes * [width, height, width, height]
    return to_pixels


# --- the graders ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def detr_small(detr_small_models):
    return detr_small_models["timm"]


def test_bottleneck_correct(resnet50_small):
    g = ex.grade_bottleneck(resnet50_small, bottleneck_answer())
    assert g.correct, g.text()
    assert g.compared == 17 and "16 block outputs" in g.coverage and "CORRECT" in g.text()


@pytest.mark.parametrize("bug, diagnosis, named", [
    ("relu out", "missing activation", "no ReLU after the addition"),
    ("no shortcut", None, "no shortcut"),
    ("identity", None, "identity shortcut where the block needs the projection"),  # F(x) + x cannot even be added
    ("v1", None, "stride on the first 1x1 conv"),
    ("relu2", None, "no ReLU after the 3x3 conv"),
])
def test_bottleneck_bug_named(resnet50_small, bug, diagnosis, named):
    g = ex.grade_bottleneck(resnet50_small, bottleneck_answer(bug))
    assert g.verdict == ("raised" if bug == "identity" else "wrong"), g.text()
    assert g.first.startswith("resnet.encoder.stages.")
    if diagnosis:
        assert g.diagnosis["kind"] == diagnosis, g.text()
    if named:
        assert g.bug is not None and named in g.bug, g.text()
        assert named in g.text()


def test_attention_correct(detr_small):
    g = ex.grade_attention(detr_small, attention_answer())
    assert g.correct, g.text()
    assert "padded batch of 2" in g.coverage and g.compared > 40


@pytest.mark.parametrize("bug, diagnosis, named", [
    ("no scale", "softmax temperature", "no 1/sqrt(d_head) scale"),
    ("axis", None, "softmax over the queries"),
    ("no mask", None, "padding mask ignored"),
])
def test_attention_bug_named(detr_small, bug, diagnosis, named):
    g = ex.grade_attention(detr_small, attention_answer(bug))
    assert g.verdict == "wrong", g.text()
    assert g.first == "model.encoder.layers.0.self_attn.attn_weights"
    if diagnosis:
        assert g.diagnosis["kind"] == diagnosis, g.text()
    assert g.bug is not None and named in g.bug, g.text()


def test_boxes_correct(detr_small):
    g = ex.grade_box_decoding(detr_small, boxes_answer())
    assert g.correct, g.text()


@pytest.mark.parametrize("bug, diagnosis, named", [
    ("cxcywh", "box format", "left in (cx, cy, w, h)"),
    ("swap", None, "width and height swapped"),
])
def test_boxes_bug_named(detr_small, bug, diagnosis, named):
    g = ex.grade_box_decoding(detr_small, boxes_answer(bug))
    assert g.verdict == "wrong" and g.first == "post_process.boxes", g.text()
    if diagnosis:
        assert g.diagnosis["kind"] == diagnosis
    assert g.bug is not None and named in g.bug, g.text()


def test_unknown_mistake_is_wrong_without_a_name(detr_small):
    g = ex.grade_box_decoding(detr_small, lambda b, size: boxes_answer()(b, size) + 0.5)
    assert g.verdict == "wrong" and g.bug is None
    assert "none of the typical mistakes" in g.text()


def test_not_attempted_raised_and_not_an_array(detr_small, resnet50_small):
    def todo(*args):
        raise NotImplementedError

    assert ex.grade_box_decoding(detr_small, todo).verdict == "not attempted"
    g = ex.grade_bottleneck(resnet50_small, lambda params, block, x: x + params["resnet.no.such.weight"])
    assert g.verdict == "raised" and "KeyError" in g.error and "RAISED" in g.text()
    g = ex.grade_box_decoding(detr_small, lambda b, size: "boxes")
    assert g.verdict == "raised" and "not an array of numbers" in g.error


def test_a_model_that_is_not_loaded_is_refused():
    with pytest.raises(ex.ExerciseError, match="loaded"):
        ex.grade_box_decoding("facebook/detr-resnet-50", boxes_answer())
