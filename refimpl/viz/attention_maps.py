"""Where each detected object looks: DETR's decoder cross-attention over the image, per object,
next to its box (as in Carion et al., 2020, Fig. 6).

Each of DETR's 100 object queries ends, in every decoder layer, with a cross-attention into the
encoder's memory: one softmax over the h*w image tokens (the layer4 feature grid, one token per
32x32 patch of the resized input), per head. For a detected object, i.e. a query whose best class
scores above the threshold, that row of weights says which parts of the image the query read to
produce its class and box. The maps here are taken straight from the traced weights,

    model.decoder.layers.<last>.encoder_attn.attn_weights     (N, heads, 100, h*w)

averaged over the heads (as PyTorch's MultiheadAttention returns them by default and as the DETR
authors' figures show them) and reshaped to the (h, w) grid.

    >>> from refimpl.viz import attention_maps
    >>> from refimpl.api import load_detr
    >>> result = attention_maps.compute(load_detr(), "examples/street.jpg")
    >>> result.maps.shape                       # (objects, h, w)
    >>> attention_maps.save(result, "street-attention.png")
    >>> attention_maps.read_png_data("street-attention.png", attention_maps.PNG_KEY)["maps"]  # the numbers drawn
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

from refimpl.models import ops
from refimpl.pipeline.loaded import image_array
from refimpl.viz.cam import blend, caption_strip, read_png_data, save_png, scaled  # noqa: F401 (read_png_data: re-export)

PNG_KEY = "refimpl-attention"
STRIDE = 32  # one layer4 token per 32x32 patch of the resized input (16x16 with DC5: model.arch.output_stride)


def cross_attention_name(trace, layer=-1):
    """Trace name of decoder layer `layer`'s cross-attention weights (negative: from the last)."""
    layers = sorted(int(k.split(".")[3]) for k in trace if k.endswith(".encoder_attn.attn_weights"))
    return f"model.decoder.layers.{layers[layer]}.encoder_attn.attn_weights"


def object_maps(trace, queries, layer=-1, head=None, image=0):
    """The decoder cross-attention of `queries` over the feature grid, from a DETR trace.

    trace: the dict `DETR.forward` filled; queries: query indices; layer: decoder layer (negative
    counts from the last); head: one head's weights, or None for the mean over heads.
    -> (len(queries), h, w) array in the trace's dtype.
    """
    weights = trace[cross_attention_name(trace, layer)][image]  # (heads, Q, h*w)
    weights = weights.mean(axis=0) if head is None else weights[head]
    h, w = trace["model.backbone.conv_encoder.mask"].shape[1:]
    return weights[np.asarray(queries, dtype=int)].reshape(len(queries), h, w)


def detected_queries(logits, threshold=0.5):
    """Indices of the queries `postprocess.detections` keeps, in the same (query) order: the best
    real class's probability strictly above `threshold`. logits: (Q, num_labels + 1)."""
    scores = ops.softmax(logits, axis=-1)[:, :-1].max(axis=-1)
    return np.flatnonzero(scores > scores.dtype.type(threshold))


@dataclass
class AttentionResult:
    image: np.ndarray  # the decoded image, (H, W, 3) uint8
    detections: list  # [{"score", "label", "box"}] as `model(image)` returns them (from the traced pass)
    queries: list  # the object query behind each detection
    maps: np.ndarray  # (objects, h, w): head-averaged cross-attention of each detection's query
    layer: str  # trace name the maps come from
    resized: tuple  # (h', w') the image was resized to; the grid cell is `stride` px of it
    threshold: float = 0.5
    stride: int = STRIDE  # input pixels per token: the backbone's output stride (16 with DC5)


def compute(model, image, threshold=0.5, layer=-1, head=None):
    """Run `model` (a refimpl DETR) on one image and return its detections with their decoder
    cross-attention maps (last layer, mean over heads by default)."""
    pixels = image_array(image)
    pixel_values, pixel_mask, sizes = model.preprocess([pixels])
    trace = {}
    outputs = model.forward(pixel_values, pixel_mask, trace)
    detections = model.postprocess(outputs, [pixels.shape[:2]], threshold)[0]
    queries = detected_queries(outputs["logits"][0], threshold)
    assert len(queries) == len(detections)
    return AttentionResult(
        image=pixels,
        detections=detections,
        queries=[int(q) for q in queries],
        maps=object_maps(trace, queries, layer, head),
        layer=cross_attention_name(trace, layer),
        resized=tuple(sizes[0]),
        threshold=threshold,
        stride=model.arch.output_stride,
    )


# --- the picture --------------------------------------------------------------------------------

def heat_on_image(image, attention, resized, alpha=(0.0, 0.95), stride=STRIDE):
    """Draw one (h, w) map over an image shown at any scale, one flat square per token: the map's
    cell (i, j) covers the resized input's pixels [si, si + s) x [sj, sj + s) for the stride s
    (32, or 16 with DC5), and `resized` is that input's (h', w'). Values are divided by the map's maximum (attention weights are
    >= 0), so the token read most is bright yellow. -> (H, W, 3) uint8."""
    H, W = image.shape[:2]
    h, w = attention.shape
    top = attention.max()
    v = attention / top if top > 0 else np.zeros((h, w))
    # Which token each display pixel lies in (pixels past the last token get the last one).
    rows = np.minimum((np.arange(H) + 0.5) * resized[0] / H // stride, h - 1).astype(int)
    cols = np.minimum((np.arange(W) + 0.5) * resized[1] / W // stride, w - 1).astype(int)
    heat = v[rows][:, cols]
    dimmed = 0.4 * image.astype(np.float64) + 0.6 * 20  # the photo, darkened, under the heat
    return np.round(blend(dimmed, heat, alpha)).clip(0, 255).astype(np.uint8)


def render(result, panel_side=400, columns=3, max_objects=8, note=None):
    """A grid of panels: all detections with their boxes first, then for each detected object
    (the `max_objects` best scoring, in query order) its attention over the image with its box;
    a footer line, and `note` (a line of text) if given. -> PIL image."""
    from refimpl.viz.draw import draw_detections

    image, s = scaled(result.image, panel_side)
    shown = sorted(sorted(range(len(result.detections)), key=lambda i: -result.detections[i]["score"])[:max_objects])

    def in_display(det):
        return {**det, "box": {k: v * s for k, v in det["box"].items()}}

    panels = [(draw_detections(image, [in_display(d) for d in result.detections]),
               [f"{len(result.detections)} detections (score > {result.threshold:g})", "boxes from the class and box heads"])]
    for i in shown:
        det, q = result.detections[i], result.queries[i]
        heat = heat_on_image(image, result.maps[i], result.resized, stride=result.stride)
        panel = draw_detections(heat, [in_display(det)])
        panels.append((panel, [f"query {q}: {det['label']} {det['score']:.2f}",
                               f"cross-attention, max weight {result.maps[i].max():.3f}"]))
    more = len(result.detections) - len(shown)

    footer = [f"mean over heads of {result.layer} (N, heads, 100, h*w), grid {result.maps.shape[1]}x{result.maps.shape[2]}"
              + (f"; {more} more detection(s) not shown" if more > 0 else "")] + ([note] if note else [])
    pw, ph = image.shape[1], image.shape[0]
    strip_h = 46
    cols = min(columns, len(panels))
    rows = -(-len(panels) // cols)
    gap = 6
    footer_strip = caption_strip(cols * pw + (cols - 1) * gap, footer)
    footer_h = footer_strip.height
    out = Image.new("RGB", (cols * pw + (cols - 1) * gap, rows * (ph + strip_h) + (rows - 1) * gap + footer_h), (40, 40, 40))
    for n, (panel, lines) in enumerate(panels):
        r, c = divmod(n, cols)
        x, y = c * (pw + gap), r * (ph + strip_h + gap)
        out.paste(panel, (x, y))
        out.paste(caption_strip(pw, lines, height=strip_h, legend=False), (x, y + ph))
    out.paste(footer_strip, (0, out.height - footer_h))
    return out


def save(result, path, **render_options):
    """Write the picture as PNG; the maps, queries and detections go in its text chunk PNG_KEY
    (read them back with `read_png_data(path, PNG_KEY)`)."""
    save_png(render(result, **render_options), path, PNG_KEY, {
        "layer": result.layer,
        "heads": "mean",
        "grid": list(result.maps.shape[1:]),
        "resized": list(result.resized),
        "threshold": result.threshold,
        "queries": result.queries,
        "detections": result.detections,
        "dtype": str(result.maps.dtype),
        "maps": result.maps.astype(np.float64).tolist(),
    })
