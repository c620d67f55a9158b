"""Per-tensor error budgets: how far a correct float32 implementation may be from the truth, tensor by tensor.

One tolerance for every tensor is wrong in both directions: refimpl's own float32 error against
float64 is near 1e-7 relative at the stem and reaches ~5e-5 at ResNet-50's last stage on harsh
weights (docs/conformance.md, "Budgets"). So each tensor gets its own budget, measured in the
same run on the same input:

    e32(t)    = max|refimpl float32 - refimpl float64| / max|refimpl float64|      (tensor t)
    budget(t) = FACTOR * e32(t) + FLOOR                                          (relative)
    pass(t)   : max|theirs - refimpl float64| <= budget(t) * max|refimpl float64|

The truth is refimpl's float64 run; a correct float32 implementation (another BLAS, another
summation order, fused kernels) lands about as far from it as refimpl's own float32 run does.
FACTOR and FLOOR were chosen by measurement (docs/conformance.md): torchvision, timm and
transformers certify with >= 4.5x headroom on the synthesized ResNet-50 and on harsh variants of
it, ONNX Runtime and transformers' DETR with >= 5.8x, and every planted porting bug in
tests/test_certify*.py still fails.
`headroom(t) = budget(t) / their relative error` is reported for every tensor.
"""

import numpy as np

from refimpl.numerics import as_float64

# Measured (docs/conformance.md, "How the budget constants were chosen"): over every tensor of
# four images, the worst ratio of a correct peer's error to refimpl's own float32 error was 2.17
# (torchvision, timm and transformers alike, on a harsh variant of the synthesized ResNet-50), so
# 10 leaves >= 4.5x headroom; the floor covers tensors where refimpl's float32 run is exact or
# nearly so by luck (pixel_values) while another implementation rounds once more.
FACTOR = 10.0
FLOOR = 1e-6

# The tensors that are the model's answer, by task (registry spec `.task`): certification
# requires all of them to be compared.
FINAL_OUTPUTS = {
    "image-classification": ("classifier.1",),
    "object-detection": ("class_labels_classifier", "pred_boxes"),  # logits, boxes
}


def final_outputs(spec):
    """The trace names of a model's final outputs (spec: a registry.ModelSpec)."""
    return FINAL_OUTPUTS[spec.task]


def relative_error(a, b):
    """max|A - B| / max|B| (same shape; 0 when both are all zero, inf when only B is)."""
    a, b = as_float64(a), as_float64(b)
    a, b = a.reshape(b.shape) if a.size == b.size else a, b
    diff = float(np.abs(a - b).max(initial=0.0))
    scale = float(np.abs(b).max(initial=0.0))
    if scale == 0:
        return 0.0 if diff == 0 else float("inf")
    return diff / scale


def measure_budgets(trace32, trace64, factor=FACTOR, floor=FLOOR, key="f32_error"):
    """{name: {key: e32, "budget": factor * e32 + floor}} for every tensor both traces have.

    trace32, trace64: refimpl traces of the same input in float32 (or another precision's rounded
    run: key "rounding_error") and float64 (dicts name -> array). Integer tensors (the decoded
    image, a mask) must match exactly: budget 0."""
    out = {}
    for name, t64 in trace64.items():
        t32 = trace32.get(name)
        if t32 is None or np.shape(t32) != np.shape(t64):
            continue
        if not np.issubdtype(np.asarray(t64).dtype, np.floating):
            out[name] = {key: 0.0, "budget": 0.0}
            continue
        e = relative_error(t32, t64)
        out[name] = {key: e, "budget": factor * e + floor}
    return out

