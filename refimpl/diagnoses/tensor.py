"""Why two tensors differ: the diagnosis of the first divergence `refimpl compare` finds.

`diagnose(a, b, rtol, atol, *, name=None, bn=None, resize=None)` walks the catalogue's "tensor"
entries in their order (`entries("tensor")`) and returns the first that explains A; the last,
generic drift, explains anything. The order (tests/test_diagnoses_catalogue.py checks that the
kinds below appear in it): NaN/inf; layout transposed (NHWC vs NCHW, H and W swapped, a
transposed matrix); for different shapes stride mismatch, padding mismatch, extra class, missing
class, else shape mismatch; for the same shape label-index offset (vectors such as logits),
missing activation and extra activation (relu(A) == B: also "tapped before the activation"),
DETR's heads and attention: missing sigmoid, extra sigmoid, box format, softmax axis, softmax
temperature (a missing attention scale); channel swap (with an RGB/BGR hint), class
permutation, channel permutation, spatial shift (a crop offset), constant offset, scale factor,
per-channel offset, bn eps (given the BN's running_var), per-channel scale, box scaling (x and y
of boxes scaled apart: swapped image sizes), scale and offset,
per-channel scale and offset (normalization), else generic drift. At `pixel_values`, given the
image and the preprocessor config, generic drift is then checked against the "pixel_values"
entries (resize.py): resize filter, else preprocessing drift.
Every diagnosis says how sure it is (`confidence`) and what to look at (`look_at`): the entry's,
unless the check's dict says otherwise. `refimpl diagnoses` lists the catalogue.
"""

from refimpl.numerics import DEFAULT_ATOL, DEFAULT_RTOL

from . import entries
from .case import TensorCase


def diagnose(a, b, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, *, name=None, bn=None, resize=None):
    """Why does A differ from the reference B? -> {"kind", "message", "confidence", "look_at",
    ...details}.

    name: the tensor's name (optional): hints for the input (`pixel_values`: preprocessing) and
    for normalization outputs (tapped before the activation?). bn: optional {"running_var": (C,),
    "eps": B's eps} of the batch norm that produced this tensor: a per-channel scale is then
    checked against a different eps ("consistent with eps = 1e-3"). resize: optional {"images":
    [(H, W, 3) uint8], "config": preprocessor_config.json, "task": "classification" | "detection"}
    for `pixel_values`: what would be generic drift is then checked against candidate resizes
    (refimpl.diagnoses.resize): "resize filter" names the one that reproduces A.

    kinds: the catalogue's "tensor" and "pixel_values" entries (`refimpl diagnoses`). Vector
    tensors (one element per index, such as logits (1, 1000)) never get a per-channel diagnosis:
    with one element per channel it always fits. confidence: "certain" (the named transformation
    reproduces A from B within the tolerance), "likely" (a pattern such as a size ratio points at
    it) or "unknown" (generic drift)."""
    case = TensorCase(a, b, rtol, atol, name=name, bn=bn, resize=resize)
    d, entry = _first(case, "tensor")
    if d["kind"] == "generic drift" and name == "pixel_values" and resize:
        found = _first(case, "pixel_values")
        if found is not None:
            found[0]["drift"] = d["message"]
            d, entry = found
    d.setdefault("confidence", entry.confidence)
    d.setdefault("look_at", entry.look_at)
    return d


def _first(case, applies_to):
    """The first entry of `applies_to` that explains the case -> (its dict, the entry), or None."""
    for entry in entries(applies_to):
        d = entry.check(case)
        if d is not None:
            return d, entry
    return None
