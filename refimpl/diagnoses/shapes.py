"""Shape diagnoses: A and B have different shapes (after dropping a batch axis only one side has).

Tried after "layout transposed" (a transposition of B of A's shape that equals A), in this order:
a stride mismatch (the spatial size off by a factor of 2 or 4), a padding mismatch (off by one or
two), a class kept or dropped (the last axis off by one), else a plain shape mismatch.
"""

from refimpl.numerics import shape_text

from . import register


def _spatial_sizes(case):
    """NCHW tensors with the same N and C and another height or width -> (ha, wa, hb, wb), or None."""
    a, b = case.a, case.b
    if case.same_shape or a.ndim != 4 or b.ndim != 4 or a.shape[:2] != b.shape[:2]:
        return None
    return (*a.shape[2:], *b.shape[2:])


@register("stride mismatch", order=30, confidence="likely",
          look_at="which conv of the block carries the stride (v1: first 1x1, v1.5: the 3x3), or a missing/extra "
                  "pooling")
def stride_mismatch(case):
    """An NCHW tensor downsampled 2x or 4x more (or less) on one side: a stride on another conv.

    ResNet v1 strides the block's first 1x1 conv, v1.5 (torchvision, transformers, timm) the 3x3;
    both give the same block output size, so the difference shows inside the block."""
    sizes = _spatial_sizes(case)
    if sizes is None:
        return None
    ha, wa, hb, wb = sizes
    text = f"A is {ha}x{wa}, B is {hb}x{wb}"
    for big, small, who in ((hb, ha, "A"), (ha, hb, "B")):
        ratio = big / small if small else 0
        if ratio in (2, 4) and (wb / wa if who == "A" else wa / wb) == ratio:
            return {"kind": "stride mismatch", "factor": int(ratio), "downsampled": who,
                    "message": f"stride mismatch: {text}: {who} is downsampled {int(ratio)}x more at this tensor. A "
                               "stride on a different conv of the block? (ResNet v1 strides the first 1x1, v1.5 - "
                               "torchvision, transformers, timm - the 3x3; both give the same block output size) "
                               "or a missing/extra pooling"}
    return None


@register("padding mismatch", order=31, confidence="likely",
          look_at="this op's padding (off by one?) and its output-size rounding (ceil_mode)")
def padding_mismatch(case):
    """An NCHW tensor whose height and width differ by one or two: padding or output-size rounding."""
    sizes = _spatial_sizes(case)
    if sizes is None:
        return None
    ha, wa, hb, wb = sizes
    if abs(ha - hb) <= 2 and abs(wa - wb) <= 2:
        return {"kind": "padding mismatch", "difference": [ha - hb, wa - wb],
                "message": f"padding mismatch: A is {ha}x{wa}, B is {hb}x{wb}: off by {abs(ha - hb)} / "
                           f"{abs(wa - wb)}: padding off by one, or a different output-size rounding (e.g. max-pool "
                           "padding or ceil_mode)"}
    return None


def _one_class_apart(case, more):
    """The last axis one longer in A (more=True) or in B, every other axis equal."""
    a, b = case.a, case.b
    if case.same_shape or a.ndim != b.ndim or a.shape[:-1] != b.shape[:-1]:
        return False
    return a.shape[-1] - b.shape[-1] == (1 if more else -1)


@register("extra class", order=40,
          look_at="the post-processing: the no-object class must be dropped after the softmax")
def extra_class(case):
    """A has one class more along the last axis (certain when A's first ones equal B): the no-object class kept.

    Confidence "likely" when A's first classes do not equal B (the softmax taken over the extra
    class changes them all)."""
    if not _one_class_apart(case, more=True):
        return None
    a, b = case.a, case.b
    exact = case.close(a[..., :-1], b)
    return {"kind": "extra class", "confidence": "certain" if exact else "likely",
            "message": f"extra class: A has {a.shape[-1]} classes along the last axis, B {b.shape[-1]}"
                       + (" and A's first ones equal B" if exact else "")
                       + ": the no-object class not dropped after the softmax?"}


@register("missing class", order=41,
          look_at="the post-processing: a class dropped that should be kept (or the label table)")
def missing_class(case):
    """A has one class fewer along the last axis (certain when A equals B's first ones): a class dropped."""
    if not _one_class_apart(case, more=False):
        return None
    a, b = case.a, case.b
    exact = case.close(a, b[..., :-1])
    return {"kind": "missing class", "confidence": "certain" if exact else "likely",
            "message": f"missing class: A has {a.shape[-1]} classes along the last axis, B {b.shape[-1]}"
                       + (" and A equals B's first ones" if exact else "") + ": a class dropped that B keeps?"}


@register("shape mismatch", order=49, confidence="likely",
          look_at="the op that produced this tensor: its output size, reshape or flatten order")
def shape_mismatch(case):
    """Any other difference of shape (with a hint when the sizes or the axis sizes agree)."""
    if case.same_shape:
        return None
    sa, sb = case.shape_a, case.shape_b
    hint = ""
    if case.a.size == case.b.size:
        hint = "; same number of elements: a reshape or flatten in a different order?"
    elif sorted(sa) == sorted(sb):
        hint = "; same axis sizes in another order, but no transposition of B equals A"
    return {"kind": "shape mismatch", "message": f"shape mismatch: A is {shape_text(sa)}, B is {shape_text(sb)}{hint}"}
