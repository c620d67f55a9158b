"""Isolate mode: is the layer at the first divergence wrong, or did it inherit an error?

At the first divergence the inputs of the layer agree within the tolerance, but "within" is not
"equal": a small upstream difference can grow past the budget in a later layer. Isolate feeds A's
own input of that layer through refimpl's layer (reference code, the checkpoint's weights) and
compares the result with A's output of the layer:

* refimpl's layer on A's input reproduces A's output: A's layer computes what refimpl's does; the
  divergence was **inherited from upstream** (small differences grown past the budget).
* it does not: **this layer is wrong** in A (its weights or formula), whatever its input.

    >>> from refimpl.conformance.isolate import isolate, layer_units
    >>> verdict = isolate(trace_a, trace_b, "resnet.encoder.stages.1.layers.2", params, names)
    >>> verdict["verdict"], verdict["message"]
    ('layer wrong', 'this layer is wrong: ...')

Layers that can be isolated (`layer_units(names)`): the ResNet backbone of any model, walked by
resnet.blocks over the model's resnet.Backbone (`loaded.backbone_names`: its architecture and
checkpoint names): the stem's conv+BN+ReLU and max pool, each residual block, and each of its steps.
With DETR's hparams (`hp=`, `detr_units(hp)`), also DETR's input projection, every encoder and
decoder layer, the decoder's final layer norm and the heads (`class_labels_classifier`,
`bbox_predictor`, `pred_boxes`). Other tensors raise IsolateError, saying which can.

A DETR layer's other inputs are read from A's dump when it has them, else from B's: the position
embedding (`model.position_embedding`, else recomputed from the mask), the mask
(`model.backbone.conv_encoder.mask`, else no padding), the encoder's output (the decoder's
memory); the query position embeddings come from the weights.

When a DETR transformer layer is wrong, isolate also re-runs it in the variants a port gets wrong
(`VARIANTS`: the diagnosis catalogue's "layer" entries, refimpl/diagnoses/detr_layer.py: the
position embedding missing, added to the values too, the attention scale 1/sqrt(d_head) missing;
for the decoder also the query position embedding missing) and names the variant that reproduces
A's output, or says none does.
"""

import numpy as np

from refimpl import diagnoses
from refimpl.diagnoses import detr_layer
from refimpl.errors import RefimplError
from refimpl.models import detr, ops, resnet
from refimpl.numerics import DEFAULT_ATOL, DEFAULT_RTOL, as_float64, measure


class IsolateError(RefimplError):
    """The tensor cannot be isolated (not a layer refimpl can re-run, or its input is missing)."""

    status, code = 400, 5004


def layer_units(names):
    """{tensor name: (input tensor name, f(params, x) -> output)} for every layer of the ResNet
    backbone `names` (a resnet.Backbone), in data-flow order."""
    conv, norm, stem_out, pool_out = names.stem()
    units = {
        stem_out: ("pixel_values", lambda p, x: ops.relu(resnet.conv_bn(p, conv, norm, x, stride=2, padding=3))),
        pool_out: (stem_out, lambda p, x: ops.max_pool2d(x, kernel=3, stride=2, padding=1)),
    }
    previous = pool_out
    for block in resnet.blocks(names):
        source = previous
        for layer in block.layers:
            units[layer.out] = (source, lambda p, x, layer=layer: resnet.step(p, layer, x))
            source = layer.out
        units[block.name] = (previous, lambda p, x, b=block: resnet.residual_block(p, b, x))
        previous = block.name
    return units


# --- DETR's transformer and heads ----------------------------------------------------------------


class _DetrInputs:
    """A DETR layer's inputs besides its main one: A's dump first, then B's (see the module doc)."""

    def __init__(self, trace_a, trace_b, hp, dtype):
        self.a, self.b, self.hp, self.dtype = trace_a, trace_b, hp, dtype

    def get(self, name, what):
        for t in (self.a, self.b):
            if name in t:
                return np.asarray(t[name])
        raise IsolateError(f"cannot isolate this DETR layer: neither side has {name!r} ({what}); dump it too")

    def has(self, name):
        return name in self.a or name in self.b

    def mask_grid(self):
        """(N, h, w) bool, True on real pixels."""
        if self.has("model.backbone.conv_encoder.mask"):
            return self.get("model.backbone.conv_encoder.mask", "the mask") != 0
        n, _, h, w = self.get("model.input_projection", "to know the feature grid's size").shape
        return np.ones((n, h, w), dtype=bool)

    def mask(self):
        m = self.mask_grid()
        return m.reshape(m.shape[0], -1)

    def pos(self):
        """The image position embedding as tokens (N, h*w, D)."""
        if self.has("model.position_embedding"):
            pos = self.get("model.position_embedding", "the position embedding")
        else:
            pos = detr.sine_position_embedding(self.mask_grid(), self.hp.d_model // 2, self.dtype)
        return tokens(pos).astype(self.dtype, copy=False)

    def memory(self):
        name = self.hp.encoder_layer_names[-1]
        return tokens(self.get(name, "the decoder's memory")).astype(self.dtype, copy=False)

    def query_pos(self, params, n):
        return np.broadcast_to(params["model.query_position_embeddings.weight"], (n, self.hp.num_queries, self.hp.d_model))


def tokens(x):
    """(N, D, h, w) -> (N, h*w, D), as DETR flattens its feature map; 3-D arrays pass through."""
    x = np.asarray(x)
    return x.reshape(x.shape[0], x.shape[1], -1).transpose(0, 2, 1) if x.ndim == 4 else x


def _variants(kind):
    """The catalogue's "layer" entries tried on a DETR `kind` ("encoder" | "decoder") layer, in order."""
    return tuple(e.kind for e in diagnoses.entries("layer", kind))


# The porting-bug variants of each kind of DETR layer: the catalogue's "layer" entries
# (refimpl/diagnoses/detr_layer.py).
VARIANTS = {"encoder": _variants("encoder"), "decoder": _variants("decoder")}


def _run_layer(p, layer, inputs, variant):
    """refimpl's layer on `inputs`, or the catalogue's `variant` of it."""
    if variant is None:
        return detr_layer.run(p, layer, inputs)
    return diagnoses.CATALOGUE[variant].check(p, layer, inputs)


def _encoder_unit(hp, i):
    name = f"model.encoder.layers.{i}"
    source = "model.input_projection" if i == 0 else f"model.encoder.layers.{i - 1}"
    layer = detr_layer.Layer("encoder", name, hp)

    def run(p, x, ctx, variant=None):
        return _run_layer(p, layer, {"src": tokens(x), "pos": ctx.pos(), "mask": ctx.mask()}, variant)
    return name, (source, run, VARIANTS["encoder"])


def _decoder_unit(hp, i):
    name = f"model.decoder.layers.{i}"
    source = f"model.encoder.layers.{hp.encoder_layers - 1}" if i == 0 else f"model.decoder.layers.{i - 1}"
    layer = detr_layer.Layer("decoder", name, hp)

    def run(p, x, ctx, variant=None):
        memory = ctx.memory()
        query_pos = ctx.query_pos(p, memory.shape[0])
        tgt = np.zeros_like(query_pos) if i == 0 else np.asarray(x)  # the queries start as zeros
        inputs = {"tgt": tgt, "query_pos": query_pos, "memory": memory, "pos": ctx.pos(), "mask": ctx.mask()}
        return _run_layer(p, layer, inputs, variant)
    return name, (source, run, VARIANTS["decoder"])


def detr_units(hp):
    """{tensor name: (input tensor name, f(params, x, inputs, variant=None) -> output, variants)} for
    DETR's input projection, transformer layers and heads, in data-flow order."""
    last = hp.decoder_layer_names[-1]
    units = {"model.input_projection": (hp.backbone_names.stage(len(hp.backbone.depths) - 1), lambda p, x, ctx, variant=None: ops.conv2d(
        x, p["model.input_projection.weight"], p["model.input_projection.bias"]), ())}
    units.update(_encoder_unit(hp, i) for i in range(hp.encoder_layers))
    units.update(_decoder_unit(hp, i) for i in range(hp.decoder_layers))
    units["model.decoder.layernorm"] = (last, lambda p, x, ctx, variant=None: detr.layer_norm(
        p, "model.decoder.layernorm", x), ())
    units["class_labels_classifier"] = ("model.decoder.layernorm", lambda p, x, ctx, variant=None: detr.linear(
        p, "class_labels_classifier", x), ())
    units["bbox_predictor"] = ("model.decoder.layernorm", lambda p, x, ctx, variant=None: detr.bbox_predictor(p, x), ())
    units["pred_boxes"] = ("bbox_predictor", lambda p, x, ctx, variant=None: ops.sigmoid(x), ())
    return units


def _all_units(names, hp):
    units = {k: (src, (lambda p, x, ctx, variant=None, f=f: f(p, x)), ())
             for k, (src, f) in layer_units(names).items()}
    if hp is not None:
        units.update(detr_units(hp))
    return units


def _versus(ours, out_a, rtol, atol):
    if ours.shape != out_a.shape:
        return {"ok": False, "shape_ours": list(ours.shape), "shape_a": list(out_a.shape)}
    return measure(out_a, ours, rtol, atol)


def isolate(trace_a, trace_b, name, params, names, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, *, hp=None):
    """Re-run refimpl's layer `name` (or the layer that holds it: `model.encoder.layers.2` for
    `model.encoder.layers.2.self_attn.attn_weights`) on A's input of it -> {"verdict": "layer wrong" |
    "inherited", "layer", "message", "input", "layer_vs_a": measure of refimpl(A's input) against A's output,
    "input_vs_b": measure of A's input against B's}.

    trace_a, trace_b: {tensor name: array} (compare's dumps, names already mapped). params: the
    checkpoint's parameters refimpl loaded (`loaded.checkpoint.params`). names: the model's
    resnet.Backbone (`loaded.backbone_names`). hp: DETR's detr.HParams, to isolate its transformer and heads too. Arrays
    are compared in float64, as compare does.

    When the layer is wrong and has variants (DETR's transformer layers), also "variant": the
    variant that reproduces A's output (None: none does) and "variants": {variant: measure}."""
    units = _all_units(names, hp)
    if name not in units:  # a tensor inside a layer (an attention's output or weights): isolate the layer
        inside = [u for u in units if name.startswith(u + ".")]
        name = max(inside, key=len) if inside else name
    if name not in units:
        known = list(units)
        what = "the ResNet backbone's layers" + (", DETR's transformer and heads" if hp is not None else "")
        raise IsolateError(f"cannot isolate {name!r}: refimpl re-runs only {what} "
                           f"({known[0]}, {known[1]}, ... {known[-1]}; {len(known)} in all)")
    source, layer, variants = units[name]
    for side, t in (("A", trace_a), ("B", trace_b)):
        if source not in t or (side == "A" and name not in t):
            raise IsolateError(f"cannot isolate {name!r}: {side} has no {source if source not in t else name!r} "
                               "(the layer's input must be dumped too)")
    x_a = np.asarray(trace_a[source])
    out_a = as_float64(np.asarray(trace_a[name]))
    dtype = np.asarray(next(iter(params.values()))).dtype
    ctx = _DetrInputs(trace_a, trace_b, hp, dtype.type)
    x = x_a.astype(dtype, copy=False)
    m = _versus(as_float64(layer(params, x, ctx)), out_a, rtol, atol)
    inp = measure(x_a, trace_b[source], rtol, atol) if np.shape(x_a) == np.shape(trace_b[source]) else {"ok": False}
    if m["ok"]:
        verdict = "inherited"
        message = (f"inherited from upstream: refimpl's {name} on A's own input ({source}) reproduces A's output "
                   f"(max abs {m['max_abs']:.3g} <= {m['limit']:.3g}); A's layer computes what refimpl's does, and "
                   f"the divergence grew from differences upstream (A's input vs B's: max abs "
                   f"{inp.get('max_abs', float('nan')):.3g})")
    else:
        what = (f"shape {m['shape_ours']} vs A's {m['shape_a']}" if "shape_a" in m else
                f"max abs {m['max_abs']:.3g} > {m['limit']:.3g}")
        verdict = "layer wrong"
        message = (f"this layer is wrong: refimpl's {name} on A's own input ({source}) does not give A's output "
                   f"({what})")
        tried = {v: _versus(as_float64(layer(params, x, ctx, variant=v)), out_a, rtol, atol) for v in variants}
        found = [v for v, r in tried.items() if r["ok"]]
        variant = min(found, key=lambda k: tried[k]["max_abs"]) if found else None
        if variant is not None:
            message += (f"; refimpl's layer with the variant '{variant}' reproduces it (max abs "
                        f"{tried[variant]['max_abs']:.3g} <= {tried[variant]['limit']:.3g}): A's {name} has that "
                        "porting bug")
        elif tried:
            message += (f"; none of the variants ({', '.join(tried)}) reproduces it either: look at A's weights and "
                        f"formula for {name}")
        else:
            message += f": look at A's weights and formula for {name}"
    result = {"verdict": verdict, "layer": name, "message": message, "input": source, "layer_vs_a": _plain(m), "input_vs_b": _plain(inp)}
    if verdict == "layer wrong" and variants:
        result.update(variant=variant, variants={k: _plain(r) for k, r in tried.items()})
    return result


def _plain(d):
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in d.items()}
