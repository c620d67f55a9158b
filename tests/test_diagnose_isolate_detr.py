"""Isolate on DETR's transformer and heads, with the porting bugs planted in a real implementation:
transformers' DetrForObjectDetection (eager attention) on the synthesized checkpoint, one layer
edited the way a port gets it wrong (the position embedding not passed, added to the values, the
attention scale 1/sqrt(d_head) left out, a wrong weight). The edited model's tensors (A) are
compared with refimpl's (B); at the first divergence isolate says whether the layer is wrong and
which variant of refimpl's layer reproduces A's output."""

import copy

import numpy as np
import pytest

from fixtures_detr import hf_detr_trace
from refimpl.conformance.compare import compare
from refimpl.conformance.isolate import VARIANTS, IsolateError, detr_units, isolate
from refimpl.models import detr

pytestmark = pytest.mark.slow  # transformers' DETR and refimpl's reference DETR, once per planted bug

torch = pytest.importorskip("torch")

X = np.random.default_rng(0).normal(size=(1, 3, 128, 160)).astype(np.float32)
MASK = np.ones((1, 128, 160), dtype=np.int64)


@pytest.fixture(scope="module")
def ref(detr_models):
    """refimpl's reference trace (B), its params and hparams."""
    model = detr_models["timm"]
    trace = {}
    detr.forward(model.checkpoint.params, model.hparams, X, MASK, trace, "reference")
    return trace, model.checkpoint.params, model.hparams


def transformers_trace(hf, names):
    calls, _ = hf_detr_trace(hf, names, X, MASK)
    return {"pixel_values": X, **{k: out for k, (_, out) in calls.items()}}


def planted(detr_hf, ref, edit):
    """A = transformers' tensors with `edit` applied to a copy of the model -> (A, first divergence,
    isolate's verdict there)."""
    trace, params, hp = ref
    hf = copy.deepcopy(detr_hf["timm"])
    edit(hf)
    a = transformers_trace(hf, [n for n in trace if n not in ("pixel_values", "pixel_mask")])
    report = compare(a, trace)
    assert report.first is not None, "the planted bug must make A diverge"
    return a, report.first["name"], isolate(a, trace, report.first["name"], params, hp.backbone_names, hp=hp)


def no_position_embedding(hf):  # encoder layer 2 does not pass the position embedding to its attention
    layer = hf.model.encoder.layers[2]
    forward = layer.forward
    layer.forward = lambda hidden_states, attention_mask, spatial_position_embeddings=None, **kw: forward(
        hidden_states, attention_mask, None, **kw)


def position_in_values(hf):  # encoder layer 2 adds it to the values too
    attention = hf.model.encoder.layers[2].self_attn
    forward = attention.forward
    attention.forward = lambda hidden_states, attention_mask=None, position_embeddings=None, **kw: forward(
        hidden_states + position_embeddings, attention_mask, None, **kw)


def no_attention_scale(hf):
    hf.model.encoder.layers[2].self_attn.scaling = 1.0


def decoder_no_image_positions(hf):  # decoder layer 3's cross-attention keys without the image positions
    attention = hf.model.decoder.layers[3].encoder_attn
    forward = attention.forward

    def without(*args, **kwargs):
        kwargs["encoder_position_embeddings"] = None
        return forward(*args, **kwargs)
    attention.forward = without


def decoder_no_query_positions(hf):  # decoder layer 3 does not pass the object queries' position embedding
    layer = hf.model.decoder.layers[3]
    forward = layer.forward
    layer.forward = lambda hidden_states, attention_mask, spatial_position_embeddings, object_queries_position_embeddings, \
        *args, **kw: forward(hidden_states, attention_mask, spatial_position_embeddings, None, *args, **kw)


def decoder_positions_in_values(hf):  # decoder layer 3 adds the position embeddings to the values too
    layer = hf.model.decoder.layers[3]
    self_attn, cross_attn = layer.self_attn.forward, layer.encoder_attn.forward
    # self-attention: the queries' positions on queries, keys and values alike
    layer.self_attn.forward = lambda hidden_states, attention_mask=None, position_embeddings=None, **kw: self_attn(
        hidden_states + position_embeddings, attention_mask, None, **kw)

    def cross(hidden_states, key_value_states, attention_mask=None, position_embeddings=None,
              encoder_position_embeddings=None, **kw):  # the image positions on the keys and the values
        return cross_attn(hidden_states, key_value_states + encoder_position_embeddings, attention_mask,
                          position_embeddings, None, **kw)
    layer.encoder_attn.forward = cross


def decoder_no_attention_scale(hf):
    layer = hf.model.decoder.layers[3]
    layer.self_attn.scaling = layer.encoder_attn.scaling = 1.0


@pytest.mark.parametrize("edit,layer,variant", [
    (no_position_embedding, "model.encoder.layers.2", "position embedding missing"),
    (position_in_values, "model.encoder.layers.2", "position embedding added to the values too"),
    (no_attention_scale, "model.encoder.layers.2", "attention scale missing"),
    (decoder_no_image_positions, "model.decoder.layers.3", VARIANTS["decoder"][0]),
    (decoder_no_query_positions, "model.decoder.layers.3", "query position embedding missing"),
    (decoder_positions_in_values, "model.decoder.layers.3", VARIANTS["decoder"][2]),
    (decoder_no_attention_scale, "model.decoder.layers.3", "attention scale missing"),
])
def test_the_variant_that_reproduces_a_is_named(detr_hf, ref, edit, layer, variant):
    _, first, v = planted(detr_hf, ref, edit)
    assert first.startswith(layer + "."), first  # an attention inside the layer diverges first
    assert v["layer"] == layer and v["verdict"] == "layer wrong", v["message"]
    assert v["variant"] == variant and f"variant '{variant}' reproduces it" in v["message"]
    assert v["input_vs_b"]["ok"]  # the layer's input agreed: the bug is in this layer
    others = [k for k in v["variants"] if k != variant]
    assert not any(v["variants"][k]["ok"] for k in others)  # one variant, not several, explains A


def test_a_wrong_weight_then_an_inherited_divergence(detr_hf, ref):
    """A wrong fc2 weight in encoder layer 1: the layer is wrong and no variant explains it; the
    next layer, isolated on A's own (diverged) input, computes what refimpl's does: inherited."""
    trace, params, hp = ref

    def wrong_weight(hf):
        with torch.no_grad():
            hf.model.encoder.layers[1].mlp.fc2.weight[:5] *= 1.5
    a, first, v = planted(detr_hf, ref, wrong_weight)
    assert first == "model.encoder.layers.1" and v["verdict"] == "layer wrong" and v["variant"] is None, v["message"]
    assert "none of the variants" in v["message"]
    later = isolate(a, trace, "model.encoder.layers.2", params, hp.backbone_names, hp=hp)
    assert later["verdict"] == "inherited" and not later["input_vs_b"]["ok"], later["message"]
    for head in ("model.decoder.layernorm", "class_labels_classifier", "bbox_predictor", "pred_boxes",
                 "model.decoder.layers.0"):
        if head in a:
            assert isolate(a, trace, head, params, hp.backbone_names, hp=hp)["verdict"] == "inherited", head


def test_the_input_projection(detr_hf, ref):
    def wrong_projection(hf):
        with torch.no_grad():
            hf.model.input_projection.bias[:3] += 0.5
    _, first, v = planted(detr_hf, ref, wrong_projection)
    assert first == "model.input_projection" and v["verdict"] == "layer wrong", v["message"]
    assert v["input"] == "model.backbone.conv_encoder.model.layer4"


def test_units_and_what_cannot_be_isolated(ref):
    trace, params, hp = ref
    units = detr_units(hp)
    assert list(units)[:2] == ["model.input_projection", "model.encoder.layers.0"]
    assert units["model.decoder.layers.0"][0] == f"model.encoder.layers.{hp.encoder_layers - 1}"
    # refimpl's own trace against itself: every layer is "inherited" (it is refimpl's layer)
    for name in ("model.encoder.layers.0", "model.decoder.layers.5", "pred_boxes"):
        assert isolate(trace, trace, name, params, hp.backbone_names, hp=hp)["verdict"] == "inherited"
    with pytest.raises(IsolateError, match="DETR's transformer and heads"):
        isolate(trace, trace, "model.position_embedding", params, hp.backbone_names, hp=hp)
    partial = {k: v for k, v in trace.items() if k not in ("model.position_embedding", "model.input_projection",
                                                           "model.backbone.conv_encoder.mask")}
    with pytest.raises(IsolateError, match="neither side has 'model.input_projection'"):
        isolate(partial, partial, "model.encoder.layers.1", params, hp.backbone_names, hp=hp)
