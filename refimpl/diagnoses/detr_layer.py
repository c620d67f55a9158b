"""The "layer" entries: DETR transformer layers re-run with one porting bug each.

When isolate finds a DETR encoder or decoder layer wrong (refimpl's layer on A's own input does
not give A's output), it re-runs refimpl's layer in each variant of the catalogue that applies to
the layer (`entries("layer", "encoder")`) and names the one that reproduces A's output.

A layer entry's check: `check(params, layer, inputs) -> the layer's output (N, tokens, D)`.
layer: a `Layer` (kind "encoder" | "decoder", name, hp). inputs: {"src", "pos", "mask"} for an
encoder layer; {"tgt", "query_pos", "memory", "pos", "mask"} for a decoder layer (tokens (N, L,
D); pos: the image position embedding, query_pos: the object queries'; mask (N, h*w), True on
real pixels). `run(params, layer, inputs)` is refimpl's own layer, unchanged.
"""

from dataclasses import dataclass

import numpy as np

from refimpl.models import detr

from . import register


@dataclass(frozen=True)
class Layer:
    """A DETR transformer layer: kind "encoder" or "decoder", its name in the checkpoint, the hparams."""

    kind: str
    name: str
    hp: object

    @property
    def heads(self):
        return self.hp.encoder_heads if self.kind == "encoder" else self.hp.decoder_heads

    @property
    def attentions(self):
        """The layer's attentions' names."""
        if self.kind == "encoder":
            return [self.name + ".self_attn"]
        return [self.name + ".self_attn", self.name + ".encoder_attn"]


def run(p, layer, inputs):
    """refimpl's layer (detr.encoder_layer / detr.decoder_layer) on `inputs`."""
    if layer.kind == "encoder":
        return detr.encoder_layer(p, layer.name, layer.hp, inputs["src"], inputs["pos"], inputs["mask"])
    return detr.decoder_layer(p, layer.name, layer.hp, inputs["tgt"], inputs["query_pos"], inputs["memory"],
                              inputs["pos"], inputs["mask"])


@register("position embedding missing", "layer", order=10, scope=("encoder", "decoder"),
          look_at="where the layer adds the image position embedding (encoder: to the self-attention's queries and "
                  "keys; decoder: to the cross-attention's keys): is it passed?")
def position_embedding_missing(p, layer, inputs):
    """The image position embedding not passed: the encoder's self-attention, the decoder's
    cross-attention keys without it."""
    return run(p, layer, dict(inputs, pos=np.zeros_like(inputs["pos"])))


@register("query position embedding missing", "layer", order=20, scope=("decoder",),
          look_at="where the decoder adds the object queries' position embedding (query_position_embeddings) to "
                  "its queries and keys")
def query_position_embedding_missing(p, layer, inputs):
    """The object queries' position embedding not passed to a decoder layer."""
    return run(p, layer, dict(inputs, query_pos=np.zeros_like(inputs["query_pos"])))


@register("position embedding added to the values too", "layer", order=30, scope=("encoder", "decoder"),
          look_at="the attention's value input: DETR adds the position embeddings to the queries and keys only")
def position_embedding_in_values(p, layer, inputs):
    """The position embeddings added to the attention's values as well as its queries and keys."""
    hp = layer.hp
    name = layer.name
    if layer.kind == "encoder":
        src, pos, mask = inputs["src"], inputs["pos"], inputs["mask"]
        q = src + pos
        src = detr.layer_norm(p, name + ".self_attn_layer_norm",
                              src + detr.attention(p, name + ".self_attn", q, q, q, hp.encoder_heads, mask))
        return detr.layer_norm(p, name + ".final_layer_norm", src + detr.feed_forward(p, name, src))
    tgt, query_pos, memory, pos, mask = (inputs[k] for k in ("tgt", "query_pos", "memory", "pos", "mask"))
    q = tgt + query_pos  # self-attention: the queries' positions on queries, keys and values
    tgt = detr.layer_norm(p, name + ".self_attn_layer_norm",
                          tgt + detr.attention(p, name + ".self_attn", q, q, q, hp.decoder_heads, None))
    keys = memory + pos  # cross-attention: the image positions on the keys and the values
    tgt = detr.layer_norm(p, name + ".encoder_attn_layer_norm",
                          tgt + detr.attention(p, name + ".encoder_attn", tgt + query_pos, keys, keys,
                                               hp.decoder_heads, mask))
    return detr.layer_norm(p, name + ".final_layer_norm", tgt + detr.feed_forward(p, name, tgt))


@register("attention scale missing", "layer", order=40, scope=("encoder", "decoder"),
          look_at="the attention's scores: QK^T must be scaled by 1/sqrt(d_head) before the softmax")
def attention_scale_missing(p, layer, inputs):
    """The attention scale 1/sqrt(d_head) left out: softmax(QK^T) in every attention of the layer."""
    # each q_proj multiplied by sqrt(d_head): refimpl's attention then computes softmax(QK^T)
    head_dim = layer.hp.d_model // layer.heads
    unscaled = dict(p)
    for a in layer.attentions:
        for k in (f"{a}.q_proj.weight", f"{a}.q_proj.bias"):
            unscaled[k] = (p[k] * np.sqrt(head_dim)).astype(p[k].dtype)
    return run(unscaled, layer, inputs)
