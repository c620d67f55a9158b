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

Layers that can be isolated (`layer_units(names)`): the ResNet backbone of either model, by the
checkpoint's names (`resnet.CLASSIFIER_NAMES` for ResNet-50, `loaded.hparams.backbone_names` for
DETR): the stem's conv+BN+ReLU and max pool, each bottleneck block, and each of its three steps.
Other tensors (DETR's transformer, the classifier) raise IsolateError, saying which can.
"""

import numpy as np

from refimpl.conformance.numerics import DEFAULT_ATOL, DEFAULT_RTOL, as_float64, measure
from refimpl.errors import RefimplError
from refimpl.models import ops, resnet


class IsolateError(RefimplError):
    """The tensor cannot be isolated (not a layer refimpl can re-run, or its input is missing)."""

    status, code = 400, 5004


def layer_units(names, depths=resnet.DEPTHS):
    """{tensor name: (input tensor name, f(params, x) -> output)} for every layer of a ResNet
    backbone named by `names` (a resnet.ResNetNames), in data-flow order."""
    conv, norm, stem_out, pool_out = names.stem()
    units = {
        stem_out: ("pixel_values", lambda p, x: ops.relu(resnet.conv_bn(p, conv, norm, x, stride=2, padding=3))),
        pool_out: (stem_out, lambda p, x: ops.max_pool2d(x, kernel=3, stride=2, padding=1)),
    }
    previous = pool_out
    for block in resnet.blocks(names, depths):
        units[block.steps[0]] = (previous, lambda p, x, b=block: ops.relu(resnet.conv_bn(p, b.convs[0], b.norms[0], x)))
        units[block.steps[1]] = (block.steps[0], lambda p, x, b=block: ops.relu(
            resnet.conv_bn(p, b.convs[1], b.norms[1], x, stride=b.stride, padding=1)))
        units[block.steps[2]] = (block.steps[1], lambda p, x, b=block: resnet.conv_bn(p, b.convs[2], b.norms[2], x))
        units[block.name] = (previous, lambda p, x, b=block: resnet.bottleneck(p, b, x))
        previous = block.name
    return units


def isolate(trace_a, trace_b, name, params, names, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL):
    """Re-run refimpl's layer `name` on A's input of it -> {"verdict": "layer wrong" | "inherited",
    "message", "input", "layer_vs_a": measure of refimpl(A's input) against A's output,
    "input_vs_b": measure of A's input against B's}.

    trace_a, trace_b: {tensor name: array} (compare's dumps, names already mapped). params: the
    checkpoint's parameters refimpl loaded (`loaded.checkpoint.params`). names: the backbone's
    resnet.ResNetNames. Arrays are compared in float64, as compare does."""
    units = layer_units(names)
    if name not in units:
        known = list(units)
        raise IsolateError(f"cannot isolate {name!r}: refimpl re-runs only the ResNet backbone's layers "
                           f"({known[0]}, {known[1]}, ... {known[-1]}; {len(known)} in all)")
    source, layer = units[name]
    for side, t in (("A", trace_a), ("B", trace_b)):
        if source not in t or (side == "A" and name not in t):
            raise IsolateError(f"cannot isolate {name!r}: {side} has no {source if source not in t else name!r} "
                               "(the layer's input must be dumped too)")
    x_a = np.asarray(trace_a[source])
    out_a = as_float64(np.asarray(trace_a[name]))
    dtype = np.asarray(next(iter(params.values()))).dtype
    ours = as_float64(layer(params, x_a.astype(dtype, copy=False)))
    if ours.shape != out_a.shape:
        m = {"ok": False, "shape_ours": list(ours.shape), "shape_a": list(out_a.shape)}
    else:
        m = measure(out_a, ours, rtol, atol)
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
                   f"({what}): look at A's weights and formula for {name}")
    return {"verdict": verdict, "message": message, "input": source, "layer_vs_a": _plain(m), "input_vs_b": _plain(inp)}


def _plain(d):
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in d.items()}
