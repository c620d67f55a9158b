"""Class activation maps (Zhou et al., 2016, "Learning Deep Features for Discriminative
Localization"): where in the image the evidence for a class is, exactly.

ResNet-50's head is global average pooling followed by one linear layer, so for class k

    logit[k] = b[k] + Σ_c w[k, c] · mean_{y,x} F[c, y, x]        F: the last stage, (2048, 7, 7)
             = b[k] + mean_{y,x} CAM_k[y, x],   with   CAM_k[y, x] = Σ_c w[k, c] · F[c, y, x].

CAM_k is therefore not an approximation or a saliency heuristic: it is the logit, split over the
7x7 positions of the last feature map (each covering a 32x32 patch of the 224x224 input). This
module computes it from the traced features, upsamples it to the region of the image the model
saw (the center crop), and draws it over the photo with Pillow only.

    >>> from refimpl.viz import cam
    >>> from refimpl.api import load_resnet50
    >>> result = cam.compute(load_resnet50(), "examples/cat.png")
    >>> result.cam.shape, result.label
    ((7, 7), 'PERSIAN CAT')
    >>> cam.save(result, "cat-cam.png")        # the PNG also carries the 7x7 numbers: cam.read_png_data

The picture helpers here (`colormap`, `upsample_bilinear`, `heat_overlay`, `save_png`) are shared
with `attention_maps`.
"""

import json
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from refimpl.models import ops
from refimpl.pipeline import postprocess, preprocess
from refimpl.pipeline.loaded import image_array

LAST_STAGE = "resnet.encoder.stages.3"  # trace name of the last feature map, (N, 2048, 7, 7)
CLASSIFIER = "classifier.1"  # the linear layer after global average pooling
PNG_KEY = "refimpl-cam"  # the PNG text chunk that carries the map's numbers


def class_activation_map(features, weight, class_index):
    """features: (C, h, w) last feature map; weight: (num_classes, C) -> (h, w) map of class_index:
    Σ_c weight[class_index, c] · features[c]."""
    return np.tensordot(weight[class_index], features, axes=(0, 0))


@dataclass
class CAMResult:
    image: np.ndarray  # the decoded image, (H, W, 3) uint8
    crop_box: tuple  # (left, top, right, bottom) in image pixels: the part the model saw
    class_index: int
    label: str
    score: float  # softmax probability of the class
    cam: np.ndarray  # (h, w), e.g. (7, 7); mean(cam) + bias = logits[class_index]
    logits: np.ndarray  # (num_labels,)


def crop_box(image_shape, preprocessor):
    """The region of an (H, W) image that classification preprocessing keeps, in image pixels
    (left, top, right, bottom): the short side is resized to size / crop_pct, then the center
    size x size is cropped (for size >= 384 the whole image is warped, so the whole image)."""
    h, w = image_shape[:2]
    size = preprocess.classification_size(preprocessor)
    if size >= 384:
        return (0.0, 0.0, float(w), float(h))
    rh, rw = preprocess._shortest_edge_shape(h, w, int(size / preprocessor.get("crop_pct", 224 / 256)))
    top, left = (rh - size) // 2, (rw - size) // 2
    sy, sx = h / rh, w / rw
    return (left * sx, top * sy, (left + size) * sx, (top + size) * sy)


def compute(model, image, class_index=None, labels="seed"):
    """Run `model` (a refimpl ResNet50) on one image and return the CAM of `class_index` (default:
    the top class). image: a path, encoded bytes or an (H, W, 3) uint8 array."""
    pixels = image_array(image)
    trace = {}
    logits = model.forward(model.preprocess([pixels]), trace)[0]
    if class_index is None:
        class_index = int(np.argmax(logits))
    weight = model.checkpoint.params[CLASSIFIER + ".weight"]
    cam = class_activation_map(trace[LAST_STAGE][0], weight, class_index)
    return CAMResult(
        image=pixels,
        crop_box=crop_box(pixels.shape, model.checkpoint.preprocessor),
        class_index=class_index,
        label=postprocess.format_label(model.checkpoint.id2label.get(class_index, str(class_index)), labels),
        score=float(ops.softmax(logits.astype(np.float64))[class_index]),
        cam=cam,
        logits=logits,
    )


# --- pictures (Pillow only) ---------------------------------------------------------------------

# matplotlib's "inferno" at 9 evenly spaced points; dark = low, bright yellow = high.
INFERNO = np.array([
    (0, 0, 4), (33, 12, 74), (87, 16, 110), (138, 34, 106), (188, 55, 84),
    (228, 90, 49), (249, 142, 9), (249, 203, 53), (252, 255, 164),
], dtype=np.float64)


def colormap(values):
    """values in [0, 1], any shape -> (..., 3) uint8 colours, linearly interpolated on INFERNO."""
    v = np.clip(values, 0.0, 1.0) * (len(INFERNO) - 1)
    i = np.minimum(v.astype(int), len(INFERNO) - 2)
    t = (v - i)[..., None]
    return np.round((1 - t) * INFERNO[i] + t * INFERNO[i + 1]).astype(np.uint8)


def normalize(m):
    """Min-max scale to [0, 1] (a constant map becomes all zeros)."""
    m = np.asarray(m, dtype=np.float64)
    span = m.max() - m.min()
    return (m - m.min()) / span if span > 0 else np.zeros_like(m)


def upsample_bilinear(m, size):
    """(h, w) -> size (H, W), bilinear with pixel centres aligned as PyTorch's
    `interpolate(mode="bilinear", align_corners=False)`: output pixel i samples input coordinate
    (i + 0.5) * h / H - 0.5, clamped to the edges."""
    m = np.asarray(m, dtype=np.float64)

    def axis(n_in, n_out):
        x = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(x).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, x - lo

    (y0, y1, ty), (x0, x1, tx) = axis(m.shape[0], size[0]), axis(m.shape[1], size[1])
    rows = m[y0] * (1 - ty)[:, None] + m[y1] * ty[:, None]  # (H, w)
    return rows[:, x0] * (1 - tx) + rows[:, x1] * tx


def heat_overlay(image, heat, box=None, dim_outside=True, alpha=(0.15, 0.75)):
    """Draw `heat` ((h, w), values in [0, 1]) over `image` ((H, W, 3) uint8) inside `box`
    (left, top, right, bottom; default the whole image), bilinearly upsampled. The colour's opacity
    grows with the value (alpha[0] at 0, alpha[1] at 1), so the photo stays visible where the map
    is low. Outside the box the image is dimmed (the model never saw it). -> (H, W, 3) uint8."""
    out = image.astype(np.float64)
    H, W = image.shape[:2]
    left, top, right, bottom = (int(round(v)) for v in (box or (0, 0, W, H)))
    left, top, right, bottom = max(left, 0), max(top, 0), min(right, W), min(bottom, H)
    if dim_outside and (left, top, right, bottom) != (0, 0, W, H):
        inside = out[top:bottom, left:right].copy()
        out = 0.35 * out + 0.65 * 40
        out[top:bottom, left:right] = inside
    v = upsample_bilinear(heat, (bottom - top, right - left))
    out[top:bottom, left:right] = blend(out[top:bottom, left:right], v, alpha)
    return np.round(out).clip(0, 255).astype(np.uint8)


def blend(pixels, v, alpha=(0.15, 0.75)):
    """Colour pixels ((H, W, 3), float) by heat values v ((H, W), in [0, 1]): the colour's opacity
    goes from alpha[0] at 0 to alpha[1] at 1. -> (H, W, 3) float."""
    a = (alpha[0] + (alpha[1] - alpha[0]) * v)[..., None]
    return (1 - a) * pixels + a * colormap(v)


def font(size=14):
    return ImageFont.load_default(size=size)


def colorbar(width, height=10):
    """A horizontal INFERNO gradient, (height, width, 3) uint8."""
    return np.repeat(colormap(np.linspace(0, 1, width))[None], height, axis=0)


def _wrap(draw, text, f, width):
    """Split text at spaces into lines no wider than `width` pixels (a long word stays whole)."""
    lines, line = [], ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if line and draw.textlength(candidate, font=f) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line]


def caption_strip(width, lines, height=None, legend=True):
    """A dark strip with text lines, wrapped to the width (and a low -> high colour legend at the
    top right). height: fixed, or None to fit the lines."""
    f = font(14)
    legend = legend and width >= 360
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = []
    for i, text in enumerate(lines):
        room = width - 16 - (190 if legend and i == 0 else 0)
        wrapped += _wrap(measure, text, f, room)
    height = height or 10 + 18 * len(wrapped)
    strip = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(strip)
    for i, text in enumerate(wrapped):
        draw.text((8, 5 + 18 * i), text, fill=(235, 235, 235), font=f)
    if legend:
        x = width - 100 - 40
        strip.paste(Image.fromarray(colorbar(100)), (x, 9))
        draw.text((x - 30, 5), "low", fill=(200, 200, 200), font=f)
        draw.text((x + 104, 5), "high", fill=(200, 200, 200), font=f)
    return strip


def scaled(image, max_side):
    """(H, W, 3) uint8 -> (the image resized so its longer side is max_side, the scale factor)."""
    h, w = image.shape[:2]
    s = max_side / max(h, w)
    if s == 1:
        return image, 1.0
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)), s


def save_png(picture, path, key, data):
    """Write a PIL image as PNG with `data` (JSON-able) in a compressed text chunk named `key`, so a
    picture carries the exact numbers it shows (read them back with read_png_data)."""
    info = PngInfo()
    info.add_text(key, json.dumps(data), zip=True)
    picture.save(path, format="PNG", pnginfo=info)


def read_png_data(path, key=PNG_KEY):
    """The numbers a refimpl picture carries (see save_png), as a dict."""
    with Image.open(path) as im:
        im.load()
        return json.loads(im.text[key])


def render(result, max_side=512, note=None):
    """The CAM over the photo: the model's center crop outlined, the map inside it, the rest of
    the photo dimmed, a caption below (plus `note`, a line of text, if given). -> PIL image."""
    image, s = scaled(result.image, max_side)
    box = tuple(v * s for v in result.crop_box)
    pixels = heat_overlay(image, normalize(result.cam), box)
    picture = Image.fromarray(pixels)
    ImageDraw.Draw(picture).rectangle([round(v) for v in box], outline=(255, 255, 255), width=1)
    h, w = result.cam.shape
    strip = caption_strip(picture.width, [
        f"CAM of class {result.class_index} {result.label!r} (p = {result.score:.3f})",
        f"map = sum_c w[k,c]·F[c] over the last stage's {h}x{w} grid, in the center crop",
    ] + ([note] if note else []))
    out = Image.new("RGB", (picture.width, picture.height + strip.height))
    out.paste(picture, (0, 0))
    out.paste(strip, (0, picture.height))
    return out


def save(result, path, max_side=512, note=None):
    """Write the picture as PNG, with the map and its class in the PNG text chunk PNG_KEY."""
    save_png(render(result, max_side, note), path, PNG_KEY, {
        "layer": LAST_STAGE,
        "class_index": result.class_index,
        "label": result.label,
        "score": result.score,
        "crop_box": list(result.crop_box),
        "dtype": str(result.cam.dtype),
        "cam": result.cam.astype(np.float64).tolist(),
    })
