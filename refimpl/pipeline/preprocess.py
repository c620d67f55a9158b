"""Decoded RGB images -> model inputs, exactly as transformers' Pillow-backend processors do it.

`classification_inputs` reproduces `ConvNextImageProcessorPil` (microsoft/resnet-50's processor)
and `detection_inputs` reproduces `DetrImageProcessorPil` (facebook/detr-resnet-50's), both driven
by the values of the checkpoint's `preprocessor_config.json`. The steps and their exact
arithmetic (what the reference does, and so what we do):

* resize: Pillow's `Image.resize` on the **uint8** RGB image (the reference converts its uint8
  array to a PIL image and back, so the result is rounded to uint8 by Pillow). Output sizes use
  Python `int()` truncation, and DETR's `longest_edge` cap uses `round()` (half to even).
* center crop (classification): offsets `(H - crop) // 2`, `(W - crop) // 2`; a side shorter
  than the crop is zero-padded first, `ceil` of half the gap on the top/left.
* rescale: `uint8 -> float64 * rescale_factor -> float32`.
* normalize: `(x - mean) / std` in float32, with mean and std cast to float32 first.
* pad (detection batch): zeros at the bottom/right up to the batch's largest height and width;
  `pixel_mask` is int64, 1 on real pixels.

With `dtype=np.float64` the same steps run in float64 end to end (no float32 rounding at all).
In float32 the result is bit-identical to the reference's.

One deliberate difference: an image so elongated that its resized size would exceed Pillow's
`MAX_IMAGE_PIXELS` (classification of a 1 x 1400 image: 256 x 358400), or round to 0 pixels
(DETR, 1 x 3000: the reference fails with a ValueError), is refused with InvalidInputError.

Config keys (missing optional keys take the transformers class defaults, listed below):
  required: size, image_mean, image_std
  classification (ConvNextImageProcessor): size = {"shortest_edge": S} or S;
      crop_pct (224/256), resample (3 = bicubic), do_resize/do_rescale/do_normalize (true),
      rescale_factor (1/255).
  detection (DetrImageProcessor): size = {"shortest_edge": S, "longest_edge": L}, or the older
      S with "max_size": L (L defaults to 1333); resample (2 = bilinear), do_pad (true), ...
  Every size is an integer 1..MAX_EDGE (4096), checked before anything is allocated;
  `check_classification_config` / `check_detection_config` check a whole config (at load time).
"""

import math
from numbers import Real

import numpy as np
from PIL import Image

from refimpl.errors import InvalidInputError, PreprocessorConfigError, short

# The largest output side a preprocessor_config.json may ask for (shortest_edge, longest_edge,
# classification size, and the classification resize size / crop_pct). The official values are
# 224 (256 before the crop) and 800 / 1333; the bound stops a config from asking for a resize or a
# zero-padded crop that would allocate gigabytes (a (3, 4096, 4096) float32 input is 200 MB).
MAX_EDGE = 4096

# Pillow's resampling filters, by the integer a preprocessor_config.json stores.
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}

_CLASSIFICATION_TYPES = ("ConvNextImageProcessor", "ConvNextFeatureExtractor")
_DETECTION_TYPES = ("DetrImageProcessor", "DetrFeatureExtractor")


# --- config -------------------------------------------------------------------------------------

def _bad(message):
    return PreprocessorConfigError(f"preprocessor config: {message}")


def _positive_int(value, what):
    """A size in pixels: an integer 1..MAX_EDGE."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _bad(f"{what} must be a positive integer, got {short(value, 40)}")
    if value > MAX_EDGE:
        raise _bad(f"{what} is {value}, more than refimpl's limit of {MAX_EDGE} pixels")
    return value


def _flag(config, key, default=True):
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise _bad(f"{key!r} must be true or false, got {value!r}")
    return value


def _channels(config, key):
    """image_mean / image_std as 3 Python floats (a single number applies to every channel)."""
    if key not in config:
        raise _bad(f"{key!r} is missing")
    value = config[key]
    if isinstance(value, Real) and not isinstance(value, bool):
        value = [value] * 3
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        raise _bad(f"{key!r} must be 3 finite numbers, got {short(value, 80)}")
    if key == "image_std" and any(v == 0 for v in value):
        raise _bad(f"'image_std' has a zero entry: {value!r}")
    return [float(v) for v in value]


def _require_dict(config):
    if not isinstance(config, dict):
        raise _bad(f"it must be a dict, got {type(config).__name__}")
    if "image_processor_type" in config or "feature_extractor_type" in config:
        declared = config.get("image_processor_type", config.get("feature_extractor_type"))
        if declared is not None and not isinstance(declared, str):
            raise _bad(f"'image_processor_type' must be a string, got {short(declared, 40)}")


def _common(config, kind, known_types, default_resample):
    """Checks shared by both processors -> (resample, rescale_factor or None, (mean, std) or None)."""
    _require_dict(config)
    declared = config.get("image_processor_type", config.get("feature_extractor_type"))
    base = declared.removesuffix("Pil").removesuffix("Fast") if isinstance(declared, str) else declared
    if declared is not None and base not in known_types:
        raise _bad(f"it declares {declared!r}; {kind} inputs follow {known_types[0]} only")
    if "size" not in config:
        raise _bad("'size' is missing")
    if not _flag(config, "do_resize"):
        raise _bad("do_resize=false is not supported")
    resample = config.get("resample", default_resample)
    if isinstance(resample, bool) or not isinstance(resample, int) or resample not in RESAMPLE:
        names = ", ".join(f"{k} {v}" for k, v in RESAMPLE.items())
        raise _bad(f"unknown resample {short(resample, 40)} (Pillow's filters are {names})")
    rescale = None
    if _flag(config, "do_rescale"):
        rescale = config.get("rescale_factor", 1 / 255)
        if isinstance(rescale, bool) or not isinstance(rescale, Real) or not math.isfinite(rescale):
            raise _bad(f"'rescale_factor' must be a number, got {short(rescale, 40)}")
    mean_std = (_channels(config, "image_mean"), _channels(config, "image_std"))
    if not _flag(config, "do_normalize"):
        mean_std = None
    return resample, rescale, mean_std


def classification_size(config):
    """Side of the square classification input (the config's shortest_edge, e.g. 224)."""
    _require_dict(config)
    size = config.get("size")
    if isinstance(size, dict):
        if set(size) != {"shortest_edge"}:
            raise _bad(f"classification 'size' must be {{'shortest_edge': N}} or N, got {short(size, 80)}")
        size = size["shortest_edge"]
    if size is None:
        raise _bad("'size' is missing")
    return _positive_int(size, "size")


def _detection_edges(config):
    """(shortest_edge, longest_edge) of a DETR config, accepting both the current and the older form."""
    _require_dict(config)
    size = config.get("size")
    if isinstance(size, dict):
        if set(size) != {"shortest_edge", "longest_edge"}:
            raise _bad(
                "detection 'size' must be {'shortest_edge': S, 'longest_edge': L} "
                f"(or S with 'max_size': L), got {short(size, 80)}"
            )
        return (
            _positive_int(size["shortest_edge"], "shortest_edge"),
            _positive_int(size["longest_edge"], "longest_edge"),
        )
    if size is None:
        raise _bad("'size' is missing")
    return _positive_int(size, "size"), _positive_int(config.get("max_size", 1333), "max_size")


# --- geometry -----------------------------------------------------------------------------------

def _shortest_edge_shape(h, w, short):
    """transformers' get_resize_output_image_size(default_to_square=False): short side -> `short`."""
    if w <= h:
        return int(short * h / w), short
    return short, int(short * w / h)


def detection_resize_shape(h, w, config):
    """(new_h, new_w) DETR resizes an (h, w) image to: the short side to shortest_edge unless the long
    side would exceed longest_edge (transformers' get_size_with_aspect_ratio, rounding included)."""
    size, max_size = _detection_edges(config)
    raw_size = None
    lo, hi = float(min(h, w)), float(max(h, w))
    if hi / lo * size > max_size:
        raw_size = max_size * lo / hi
        size = int(round(raw_size))
    if (h <= w and h == size) or (w <= h and w == size):
        return h, w
    if w < h:
        return int((raw_size if raw_size is not None else size) * h / w), size
    return size, int((raw_size if raw_size is not None else size) * w / h)


def _resize(image, shape, resample):
    """Pillow resize of an (H, W, 3) uint8 array to shape (h, w), as the reference does it."""
    h, w = shape
    limit = Image.MAX_IMAGE_PIXELS
    if h <= 0 or w <= 0 or (limit is not None and h * w > limit):
        height, width = image.shape[:2]
        raise InvalidInputError(
            f"an image of {height}x{width} pixels is too elongated: it would resize to {h}x{w}"
        )
    return np.asarray(Image.fromarray(image).resize((w, h), resample=resample))


def _center_crop(image, size):
    """(H, W, C) -> the (size, size, C) window at ((H - size) // 2, (W - size) // 2).

    A side shorter than `size` is first zero-padded, ceil(gap / 2) before it (as the reference)."""
    h, w = image.shape[:2]
    if h < size or w < size:
        nh, nw = max(h, size), max(w, size)
        top, left = math.ceil((nh - h) / 2), math.ceil((nw - w) / 2)
        padded = np.zeros((nh, nw) + image.shape[2:], dtype=image.dtype)
        padded[top : top + h, left : left + w] = image
        image, h, w = padded, nh, nw
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


# --- values -------------------------------------------------------------------------------------

def _to_chw(image, rescale, mean_std, dtype):
    """(H, W, 3) uint8 -> (3, H, W) dtype: rescale then normalize, with the reference's casts."""
    x = image.transpose(2, 0, 1)
    if rescale is not None:
        x = (x.astype(np.float64) * rescale).astype(dtype)
    else:
        x = x.astype(dtype)
    if mean_std is not None:
        mean, std = (np.asarray(v, dtype=dtype).reshape(3, 1, 1) for v in mean_std)
        x = (x - mean) / std
    return x


def _check_inputs(images, dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise InvalidInputError(f"dtype must be float32 or float64, got {dtype}")
    if isinstance(images, np.ndarray) or not isinstance(images, (list, tuple)) or not images:
        raise InvalidInputError("images must be a non-empty list of (H, W, 3) uint8 arrays")
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray):
            raise InvalidInputError(f"images[{i}] must be an (H, W, 3) uint8 array, got {type(image).__name__}")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InvalidInputError(
                f"images[{i}] must be an (H, W, 3) uint8 array, got {image.dtype} array of shape {image.shape}"
            )
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise InvalidInputError(f"images[{i}] has no pixels (shape {image.shape})")
    return dtype


def check_classification_config(config):
    """Every field classification_inputs reads, checked -> (resample, rescale, mean_std, size, crop_pct).
    Raises PreprocessorConfigError naming the field (loading a model calls this, so a bad config is
    refused when the checkpoint is loaded, not on the first image)."""
    resample, rescale, mean_std = _common(config, "classification", _CLASSIFICATION_TYPES, 3)
    if _flag(config, "do_center_crop", False):
        raise _bad("do_center_crop=true is not supported (crop_pct does the cropping)")
    size = classification_size(config)
    crop_pct = config.get("crop_pct", 224 / 256)
    if isinstance(crop_pct, bool) or not isinstance(crop_pct, Real) or not 0 < crop_pct < math.inf:
        raise _bad(f"'crop_pct' must be a positive number, got {short(crop_pct, 40)}")
    if size < 384 and not 1 <= int(size / crop_pct) <= MAX_EDGE:
        raise _bad(f"'crop_pct' {crop_pct} resizes to {int(size / crop_pct)} pixels, outside 1..{MAX_EDGE}")
    return resample, rescale, mean_std, size, crop_pct


def check_detection_config(config):
    """Every field detection_inputs reads, checked -> (resample, rescale, mean_std).
    Raises PreprocessorConfigError naming the field."""
    resample, rescale, mean_std = _common(config, "detection", _DETECTION_TYPES, 2)
    if not _flag(config, "do_pad"):
        raise _bad("do_pad=false is not supported")
    if config.get("pad_size") is not None:
        raise _bad("a fixed 'pad_size' is not supported")
    _detection_edges(config)
    return resample, rescale, mean_std


def classification_inputs(images, config, dtype=np.float32):
    """ConvNextImageProcessor (Pillow backend): list of (H, W, 3) uint8 RGB -> (N, 3, S, S) `dtype`.

    S = classification_size(config). For S < 384 the short side is resized to int(S / crop_pct)
    and the center S x S is cropped; for S >= 384 the image is warped to S x S (no crop).
    """
    dtype = _check_inputs(images, dtype)
    resample, rescale, mean_std, size, crop_pct = check_classification_config(config)
    out = np.empty((len(images), 3, size, size), dtype=dtype)
    for i, image in enumerate(images):
        if size < 384:
            shape = _shortest_edge_shape(*image.shape[:2], int(size / crop_pct))
            image = _center_crop(_resize(image, shape, resample), size)
        else:
            image = _resize(image, (size, size), resample)
        out[i] = _to_chw(image, rescale, mean_std, dtype)
    return out


def detection_inputs(images, config, dtype=np.float32):
    """DetrImageProcessor (Pillow backend): list of (H, W, 3) uint8 RGB -> (values, mask, sizes).

    pixel_values: (N, 3, Hmax, Wmax) `dtype`, each image resized (detection_resize_shape),
    rescaled, normalized and zero-padded at the bottom/right to the batch's largest size.
    pixel_mask: (N, Hmax, Wmax) int64, 1 where a pixel is real, 0 where padded.
    sizes: list of N (h, w) sizes after resizing (before padding).
    """
    dtype = _check_inputs(images, dtype)
    resample, rescale, mean_std = check_detection_config(config)
    resized = [_resize(im, detection_resize_shape(*im.shape[:2], config), resample) for im in images]
    sizes = [im.shape[:2] for im in resized]
    hmax, wmax = max(h for h, _ in sizes), max(w for _, w in sizes)
    pixel_values = np.zeros((len(images), 3, hmax, wmax), dtype=dtype)
    pixel_mask = np.zeros((len(images), hmax, wmax), dtype=np.int64)
    for i, (image, (h, w)) in enumerate(zip(resized, sizes)):
        pixel_values[i, :, :h, :w] = _to_chw(image, rescale, mean_std, dtype)
        pixel_mask[i, :h, :w] = 1
    return pixel_values, pixel_mask, [tuple(s) for s in sizes]
