"""Exercises graded by refimpl: the learner writes one function, refimpl runs it inside the reference
pipeline, compares what it produces with the reference, and names the bug.

Three exercises, one per idea the notebooks teach:

    grade_bottleneck(model, bottleneck)       ResNet-50's bottleneck block (He et al. 2016, eq. 1/2)
        bottleneck(params, block, x) -> y     params: {checkpoint key: array}; block: a
                                              refimpl.models.resnet.Block; x (N, C_in, H, W) ->
                                              y (N, C_out, H/stride, W/stride)
    grade_attention(model, attention)         DETR's scaled dot-product attention (Vaswani et al. 2017)
        attention(q, k, v, key_mask) -> (out, weights)
                                              q (N, heads, L, d), k and v (N, heads, S, d), key_mask
                                              (N, S) bool, True where a key may be attended to, or
                                              None -> out (N, heads, L, d), weights (N, heads, L, S)
    grade_box_decoding(model, to_pixels)      DETR's boxes into the contract's corners
        to_pixels(pred_boxes, size) -> boxes  pred_boxes (Q, 4) (cx, cy, w, h) relative to the image,
                                              size (height, width) of the original image -> (Q, 4)
                                              (xmin, ymin, xmax, ymax) in its pixels

How a grade is made, the same for all three:
1. the learner's function runs where the reference's runs (each bottleneck fed the reference's
   input, and all of them end to end to the logits; every attention of DETR's 6 + 6 layers on a
   padded batch of two images, so the key mask matters; the boxes of all 100 queries of a
   non-square image, so width and height cannot be confused unnoticed);
2. `refimpl.conformance.compare` compares the named tensors with the reference's (its default
   tolerance, rtol 1e-4 / atol 1e-6) and diagnoses the first divergence ("missing activation",
   "softmax axis", "box format", ...);
3. the reference is re-run with each mistake of a catalogue of typical ones (`*_BUGS`) on the
   same input; a mistake that reproduces the learner's tensor within the same tolerance is named.

A `Grade` says what was compared (coverage), the verdict, the first divergence, compare's
diagnosis and the named mistake. A learner's function that raises, or returns something that is
not an array of numbers, is graded too (verdict "raised"), never a traceback; a function still
raising NotImplementedError is "not attempted".
"""

from dataclasses import dataclass, field

import numpy as np

from refimpl.conformance.compare import compare
from refimpl.errors import RefimplError
from refimpl.models import detr, ops, record, resnet
from refimpl.numerics import DEFAULT_ATOL, DEFAULT_RTOL
from refimpl.pipeline import postprocess


class ExerciseError(RefimplError):
    """The grader was called wrongly (not the learner's answer being wrong: that is a Grade)."""


@dataclass
class Grade:
    """The verdict on one answer. verdict: "correct", "wrong", "raised" or "not attempted"."""

    exercise: str
    verdict: str
    coverage: str  # what was compared, in words
    compared: int = 0  # tensors compared
    first: str | None = None  # the first divergent tensor
    diagnosis: dict | None = None  # compare's diagnosis there: {"kind", "message", ...}
    bug: str | None = None  # the catalogue mistake that reproduces the answer, if one does
    bug_error: float | None = None  # max |answer - reference with that mistake|
    error: str | None = None  # what the learner's function raised
    rows: list = field(default_factory=list)  # compare's rows (name, status, max_abs, max_rel)

    @property
    def correct(self):
        return self.verdict == "correct"

    def text(self):
        lines = [f"exercise: {self.exercise}", f"compared: {self.coverage}"]
        if self.verdict == "correct":
            lines.append(f"verdict: CORRECT - all {self.compared} tensors equal the reference within rtol "
                         f"{DEFAULT_RTOL:g} / atol {DEFAULT_ATOL:g}")
        elif self.verdict == "not attempted":
            lines.append("verdict: NOT ATTEMPTED - your function still raises NotImplementedError: write it, "
                         "then run this cell again")
        elif self.verdict == "raised":
            lines.append(f"verdict: YOUR FUNCTION RAISED - {self.error}" + (f" (at {self.first})" if self.first else ""))
            if self.bug:
                lines.append(f"  your bug: {self.bug}")
        else:
            lines.append(f"verdict: WRONG - first divergence at {self.first}")
            if self.diagnosis:
                lines.append(f"  refimpl compare's diagnosis: {self.diagnosis.get('message', self.diagnosis.get('kind'))}")
            if self.bug:
                lines.append(f"  your bug: {self.bug} (the reference with exactly this mistake reproduces your "
                             f"{self.first}: max abs difference {self.bug_error:.2g})")
            else:
                lines.append("  your bug: none of the typical mistakes reproduces your answer; compare your "
                             "function with the equation line by line")
        return "\n".join(lines)

    __str__ = text

    def _repr_pretty_(self, p, cycle):  # IPython shows the text, not the dataclass
        p.text(self.text())


# --- shared machinery ---------------------------------------------------------------------------

def _call(fn, *args):
    """Run the learner's function -> (result, None) or (None, Grade fields for a raise)."""
    try:
        with np.errstate(all="ignore"):  # a learner's NaN is graded, not warned about
            return fn(*args), None
    except NotImplementedError:
        return None, {"verdict": "not attempted"}
    except Exception as e:  # any mistake in the learner's code is a grade, not a crash
        return None, {"verdict": "raised", "error": f"{type(e).__name__}: {e}"}


def _array(value, what):
    try:
        a = np.asarray(value)
    except Exception as e:
        raise TypeError(f"{what} is not an array ({type(value).__name__}): {e}") from e
    if a.dtype == object or not np.issubdtype(a.dtype, np.number):
        raise TypeError(f"{what} is not an array of numbers (dtype {a.dtype}, type {type(value).__name__})")
    return a


def _close(a, b, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL):
    """Whether `a` reproduces `b` by compare's rule, max|a - b| <= atol + rtol * max|b| -> (ok, max abs)."""
    if a is None or np.shape(a) != np.shape(b):
        return False, float("inf")
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    nan = np.isnan(b)
    if not np.array_equal(np.isnan(a), nan):  # a mistake that makes NaN must make them where the answer has them
        return False, float("inf")
    a, b = a[~nan], b[~nan]
    err = float(np.max(np.abs(a - b))) if b.size else 0.0
    return err <= atol + rtol * float(np.max(np.abs(b), initial=0.0)), err


def _name_bug(answer, candidates):
    """The first candidate (name, thunk -> array) that reproduces `answer` -> (name, max abs) or (None, None)."""
    for name, make in candidates:
        try:
            with np.errstate(all="ignore"):
                value = make()
        except Exception:  # a mistake that does not even fit these shapes cannot be the learner's
            continue
        ok, err = _close(answer, value)
        if ok:
            return name, err
    return None, None


def _grade(exercise, coverage, mine, reference, bugs_at):
    """Compare the learner's tensors with the reference's; bugs_at(first divergent name, answer there)
    -> [(mistake, thunk)] to name the mistake."""
    report = compare(mine, reference)
    rows = [{k: r.get(k) for k in ("name", "status", "max_abs", "max_rel")} for r in report.rows]
    compared = len(report.compared)
    if report.verdict == "agree":
        return Grade(exercise, "correct", coverage, compared, rows=rows)
    if report.first is None:  # nothing failed, yet not every required tensor was compared: never "correct"
        return Grade(exercise, "wrong", coverage, compared, first=", ".join(report.missing_required) or None,
                     diagnosis={"kind": "incomplete", "message": "not every tensor was produced"}, rows=rows)
    first = report.first["name"]
    bug, err = _name_bug(np.asarray(mine[first]), bugs_at(first, np.asarray(mine[first])))
    return Grade(exercise, "wrong", coverage, compared, first, report.first["diagnosis"], bug, err, rows=rows)


def _image(image, shape=(120, 176)):
    """The picture graded on: an (H, W, 3) uint8 array, a path, or None for a smooth synthetic one
    (not square, so that height and width cannot be swapped unnoticed)."""
    if image is None:
        h, w = shape
        y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
        rng = np.random.default_rng(0)
        blobs = sum(np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 0.02) * rng.uniform(0.3, 1, 3)[:, None, None]
                    for cy, cx in rng.uniform(0.1, 0.9, (4, 2)))
        rgb = np.stack([x, y, 1 - x]) * 0.5 + blobs
        return np.ascontiguousarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0))
    if isinstance(image, np.ndarray):
        return image
    from refimpl.pipeline.decode import read_image

    return read_image(image)[1]


def _check_model(model, task):
    if getattr(model, "checkpoint", None) is None or not hasattr(model, "preprocess"):
        raise ExerciseError(f"grade: model must be a loaded {task} model (refimpl.load(...)), got {type(model).__name__}")


# --- exercise 1: the bottleneck block -------------------------------------------------------------

def reference_bottleneck(params, block, x, *, relu1=True, relu2=True, bn3=True, shortcut="checkpoint",
                         stride_on="3x3", branch_relu=False, relu_out=True):
    """The bottleneck, eq. (1) y = F(x, {W_i}) + x and eq. (2) y = F(x, {W_i}) + W_s x, with switches
    that plant one typical mistake each (the defaults are the correct block, as resnet.bottleneck).
    shortcut: "checkpoint" (projection where the checkpoint has one), "none" (no shortcut),
    "identity" (x even where a projection is needed), "no bn" (projection conv without its BN)."""
    s1, s2 = (block.stride, 1) if stride_on == "1x1" else (1, block.stride)
    h = resnet.conv_bn(params, block.convs[0], block.norms[0], x, stride=s1)
    h = ops.relu(h) if relu1 else h
    h = resnet.conv_bn(params, block.convs[1], block.norms[1], h, stride=s2, padding=1)
    h = ops.relu(h) if relu2 else h
    if bn3:
        h = resnet.conv_bn(params, block.convs[2], block.norms[2], h)
    else:
        h = ops.conv2d(h, params[block.convs[2] + ".weight"])
    if branch_relu:
        h = ops.relu(h)
    if shortcut == "none":
        sc = 0
    elif block.shortcut is None or shortcut == "identity":
        sc = x
    elif shortcut == "no bn":
        sc = ops.conv2d(x, params[block.shortcut[0] + ".weight"], stride=block.stride)
    else:
        sc = resnet.conv_bn(params, *block.shortcut, x, stride=block.stride)
    return ops.relu(h + sc) if relu_out else h + sc


BOTTLENECK_BUGS = (  # (the mistake in words, reference_bottleneck's switches)
    ("no ReLU after the addition (y = F(x) + x, not ReLU(F(x) + x))", {"relu_out": False}),
    ("ReLU on the residual branch before the addition, none after it", {"branch_relu": True, "relu_out": False}),
    ("no shortcut: y = ReLU(F(x)), a plain network (eq. 1 without its + x)", {"shortcut": "none"}),
    ("identity shortcut where the block needs the projection W_s x (eq. 2)", {"shortcut": "identity"}),
    ("the projection shortcut without its batch norm", {"shortcut": "no bn"}),
    ("the stride on the first 1x1 conv (ResNet v1) instead of the 3x3 conv (v1.5, the checkpoint's)", {"stride_on": "1x1"}),
    ("no ReLU after the first 1x1 conv (reduce)", {"relu1": False}),
    ("no ReLU after the 3x3 conv", {"relu2": False}),
    ("no batch norm after the last 1x1 conv (expand)", {"bn3": False}),
)


def grade_bottleneck(model, bottleneck, image=None):
    """Grade a learner's `bottleneck(params, block, x) -> y` on a loaded ResNet-50 (see the module
    docstring). Each of the 16 blocks is fed the reference's input (so a mistake shows at the first
    block that has it), then the learner's blocks run end to end to the logits. -> Grade."""
    _check_model(model, "ResNet-50")
    params = model.checkpoint.params
    names = resnet.CLASSIFIER_NAMES
    pixel_values = model.preprocess([_image(image)])
    reference = {}
    resnet.classify(params, pixel_values, reference)
    blocks = list(resnet.blocks(names))
    stem_out = names.stem()[3]
    coverage = (f"{len(blocks)} block outputs (each block fed the reference's input) and the logits "
                f"(classifier.1, your blocks end to end), on one {pixel_values.shape[2]}x{pixel_values.shape[3]} image")
    mine, inputs = {}, {}
    previous = stem_out
    for block in blocks:
        inputs[block.name] = reference[previous]
        y, failed = _call(bottleneck, params, block, reference[previous])
        if failed:
            if block.shortcut is not None and "broadcast" in str(failed.get("error")):
                # F(x) and x cannot be added: the shapes say which mistake it is
                failed["bug"] = BOTTLENECK_BUGS[3][0]
            return Grade("the bottleneck block", coverage=coverage, first=block.name, **failed)
        try:
            mine[block.name] = _array(y, f"the output of {block.name}")
        except TypeError as e:
            return Grade("the bottleneck block", "raised", coverage, error=str(e))
        previous = block.name
    x = reference[stem_out]
    try:  # end to end: errors compound, and a shape mistake stops here
        for block in blocks:
            x = _array(bottleneck(params, block, x), block.name)
        pooled = ops.global_avg_pool(x).reshape(x.shape[0], -1)
        mine["classifier.1"] = ops.linear(pooled, params["classifier.1.weight"], params["classifier.1.bias"])
    except Exception:  # the teacher-forced outputs already say where; the logits are then not produced
        pass
    by_name = {b.name: b for b in blocks}

    def bugs_at(first, answer):
        block = by_name.get(first)
        if block is None:
            return []
        return [(what, lambda kw=kw: reference_bottleneck(params, block, inputs[first], **kw)) for what, kw in BOTTLENECK_BUGS]

    wanted = {n: reference[n] for n in [b.name for b in blocks] + ["classifier.1"]}
    return _grade("the bottleneck block (He et al. 2016, Fig. 5 right; eq. 1 and 2)", coverage, mine, wanted, bugs_at)


# --- exercise 2: scaled dot-product attention ---------------------------------------------------

def reference_attention(q, k, v, key_mask=None, *, scale="sqrt", axis=-1, use_mask=True, scale_after=False,
                        mask_after=False, values="v", mask_value=-np.inf):
    """softmax(q k^T / sqrt(d) + mask) v over the heads' last axis, with switches that plant one
    typical mistake each (the defaults are DETR's attention, as refimpl.models.detr.attention).
    q (N, heads, L, d), k, v (N, heads, S, d), key_mask (N, S) bool -> (out, weights (N, heads, L, S))."""
    d = q.shape[-1]
    factor = {"sqrt": d ** -0.5, "none": 1.0, "d": 1.0 / d}[scale]
    scores = q @ np.swapaxes(k, -1, -2)
    if not scale_after:
        scores = scores * factor
    masked = key_mask is not None and use_mask
    if masked and not mask_after:
        scores = np.where(key_mask[:, None, None, :], scores, mask_value)
    weights = ops.softmax(scores, axis=axis)
    if masked and mask_after:
        weights = np.where(key_mask[:, None, None, :], weights, 0.0)
    if scale_after:
        weights = weights * factor
    return weights @ (k if values == "k" else v), weights


ATTENTION_BUGS = (
    ("no 1/sqrt(d_head) scale: softmax(q k^T) v", {"scale": "none"}),
    ("scaled by 1/d_head instead of 1/sqrt(d_head)", {"scale": "d"}),
    ("the softmax over the queries (axis -2) instead of the keys (the last axis)", {"axis": -2}),
    # the same with padding masked by a large finite number (-1e9, ...), not -inf: no NaN then
    ("the softmax over the queries (axis -2) instead of the keys (the last axis)", {"axis": -2, "mask_value": -1e30}),
    ("the padding mask ignored: padded keys get attention", {"use_mask": False}),
    ("the padding masked after the softmax (weights zeroed, not renormalised)", {"mask_after": True}),
    ("the 1/sqrt(d_head) scale applied after the softmax", {"scale_after": True}),
    ("the weights applied to the keys instead of the values", {"values": "k"}),
)


def _attention_with(learner, calls):
    """detr.attention with the learner's core: the same projections, heads and out_proj; every call's
    inputs kept in `calls` (name -> (q, k, v, key_mask)) so a mistake is named on the exact input."""

    def attention(params, name, query, key, value, num_heads, key_mask=None, trace=None):
        n, l, d = query.shape
        s = key.shape[1]
        head_dim = d // num_heads

        def heads(x, length):  # (N, len, D) -> (N, heads, len, head_dim)
            return np.ascontiguousarray(x.reshape(n, length, num_heads, head_dim).transpose(0, 2, 1, 3))

        q = heads(detr.linear(params, name + ".q_proj", query), l)
        k = heads(detr.linear(params, name + ".k_proj", key), s)
        v = heads(detr.linear(params, name + ".v_proj", value), s)
        calls[name] = (q, k, v, key_mask)
        out, weights = learner(q, k, v, key_mask)
        out, weights = _array(out, f"{name}'s output"), _array(weights, f"{name}'s weights")
        record(trace, name + ".attn_weights", weights)
        out = detr.linear(params, name + ".out_proj", out.transpose(0, 2, 1, 3).reshape(n, l, d))
        record(trace, name, out)
        return out

    return attention


def _transformer_names(trace):
    keep = ("model.encoder.", "model.decoder.", "class_labels_classifier", "pred_boxes")
    return [n for n in trace if n.startswith(keep)]


def grade_attention(model, attention, image=None):
    """Grade a learner's `attention(q, k, v, key_mask) -> (out, weights)` on a loaded DETR: it replaces
    the core of every attention (encoder self-attention, decoder self- and cross-attention) in the
    reference forward, on a padded batch of two images (the image and a narrow crop of it, so the key
    mask matters). -> Grade."""
    _check_model(model, "DETR")
    picture = _image(image)
    crop = np.ascontiguousarray(picture[:, : max(32, picture.shape[1] // 2)])
    pixel_values, pixel_mask, _ = model.preprocess([picture, crop])
    params, hp = model.checkpoint.params, model.hparams
    reference = {}
    detr.forward(params, hp, pixel_values, pixel_mask, reference)
    names = _transformer_names(reference)
    n_attn = sum(n.endswith(".attn_weights") for n in names)
    coverage = (f"{len(names)} tensors of DETR's transformer and heads ({n_attn} attention weight maps, every "
                f"layer's output, logits, pred_boxes) on a padded batch of 2 images {pixel_values.shape[2]}x"
                f"{pixel_values.shape[3]} (the key mask hides {int((pixel_mask == 0).sum())} padded pixels)")
    calls, mine = {}, {}
    original = detr.attention
    detr.attention = _attention_with(attention, calls)  # the reference pipeline, the learner's attention
    try:
        _, failed = _call(detr.forward, params, hp, pixel_values, pixel_mask, mine)
    finally:
        detr.attention = original
    if failed:
        return Grade("scaled dot-product attention", coverage=coverage, **failed)
    mine = {n: mine[n] for n in names if n in mine}

    def bugs_at(first, answer):
        name = first[: -len(".attn_weights")] if first.endswith(".attn_weights") else first
        if name not in calls:
            return []
        q, k, v, mask = calls[name]
        pick = 1 if first.endswith(".attn_weights") else 0  # the weights, or the heads' output before out_proj
        if pick == 0:  # the attention's output is compared after out_proj: re-project the variants
            def project(o):
                n_, h_, l_, d_ = o.shape
                return detr.linear(params, name + ".out_proj", o.transpose(0, 2, 1, 3).reshape(n_, l_, h_ * d_))
        else:
            def project(o):
                return o
        return [(what, lambda kw=kw: project(reference_attention(q, k, v, mask, **kw)[pick])) for what, kw in ATTENTION_BUGS]

    return _grade("scaled dot-product attention (Vaswani et al. 2017, eq. 1; DETR's every attention)",
                  coverage, mine, {n: reference[n] for n in names}, bugs_at)


# --- exercise 3: box decoding ---------------------------------------------------------------------

def reference_to_pixels(pred_boxes, size, *, convert=True, scale=True, swap_hw=False, half=True, y_first=False):
    """(cx, cy, w, h) relative -> (xmin, ymin, xmax, ymax) pixels, with switches that plant one typical
    mistake each (the defaults are the contract's conversion, as postprocess.per_query)."""
    cx, cy, w, h = np.moveaxis(pred_boxes, -1, 0)
    f = 0.5 if half else 1.0
    boxes = np.stack([cx - f * w, cy - f * h, cx + f * w, cy + f * h], -1) if convert else pred_boxes
    height, width = size
    if swap_hw:
        height, width = width, height
    if scale:
        boxes = boxes * np.array([width, height, width, height], dtype=boxes.dtype)
    if y_first:
        boxes = boxes[..., [1, 0, 3, 2]]
    return boxes


BOX_BUGS = (
    ("left in (cx, cy, w, h): not converted to corners", {"convert": False}),
    ("not scaled to pixels: corners still relative to the image (0..1)", {"scale": False}),
    ("width and height swapped: x scaled by the height, y by the width", {"swap_hw": True}),
    ("cx - w instead of cx - w / 2: the full width and height subtracted and added", {"half": False}),
    ("(ymin, xmin, ymax, xmax): y before x", {"y_first": True}),
)


def grade_box_decoding(model, to_pixels, image=None):
    """Grade a learner's `to_pixels(pred_boxes, size) -> (Q, 4)` on a loaded DETR: every query's box of
    one non-square image, against the contract's corners (postprocess.per_query). -> Grade."""
    _check_model(model, "DETR")
    picture = _image(image)
    pixel_values, pixel_mask, _ = model.preprocess([picture])
    outputs = model.forward(pixel_values, pixel_mask)
    pred_boxes = outputs["pred_boxes"][0]
    size = picture.shape[:2]
    _, _, boxes = postprocess.per_query(outputs["logits"][0], pred_boxes, size)
    coverage = (f"post_process.boxes: the {len(boxes)} queries' boxes of one {size[0]}x{size[1]} image "
                "(height x width) in its pixels")
    answer, failed = _call(to_pixels, pred_boxes.copy(), tuple(size))
    if failed:
        return Grade("DETR's box decoding", coverage=coverage, **failed)
    try:
        answer = _array(answer, "the boxes")
    except TypeError as e:
        return Grade("DETR's box decoding", "raised", coverage, error=str(e))

    def bugs_at(first, got):
        return [(what, lambda kw=kw: reference_to_pixels(pred_boxes, size, **kw)[None]) for what, kw in BOX_BUGS]

    return _grade("DETR's box decoding: (cx, cy, w, h) relative -> corners in pixels", coverage,
                  {"post_process.boxes": answer[None] if answer.ndim == 2 else answer},
                  {"post_process.boxes": boxes[None]}, bugs_at)
