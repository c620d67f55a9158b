"""Which resize reproduces A's `pixel_values`? The "pixel_values" entries of the diagnosis catalogue.

A port that resizes with another filter (bilinear where the checkpoint says bicubic), with or
without antialiasing, or that rounds to uint8 at another step, produces `pixel_values` that no
layout, offset or scale change explains: the "tensor" entries call it generic drift. Given the
input image(s) and the checkpoint's preprocessor_config.json (`diagnose(..., resize={"images",
"config", "task"})`), the entries re-run refimpl's own preprocessing (the same geometry: output
size, center crop, rescale, normalize, pad) with each candidate resize (once per case, shared by
both entries): "resize filter" names the one that reproduces A, "preprocessing drift" says none
does and names the closest.

Candidates (`CANDIDATES`), each an (H, W, 3) uint8 image -> (h, w, 3) resized image:
  pillow <filter>             Pillow's Image.resize on the uint8 image (the reference's way; every
                              Pillow filter antialiases when shrinking): nearest, bilinear,
                              bicubic, lanczos, box, hamming
  pillow <filter>, no uint8   the same filter on the float image (Pillow mode "F"): no rounding
                              to uint8 before rescale/normalize
  no antialias <filter>       separable interpolation without antialiasing, as PyTorch's
                              F.interpolate(align_corners=False, antialias=False) and OpenCV do it
                              (bilinear; bicubic with a = -0.75; nearest = floor(i * in / out)),
                              on the float image, then rounded to uint8 (tensor pipelines on uint8
                              images), or not rounded
"""

import numpy as np
from PIL import Image

from refimpl.numerics import measure
from refimpl.pipeline import preprocess

from . import register

_PILLOW = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
           "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
           "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING}


def _pillow(filter_, rounded):
    def resize(image, shape):
        h, w = shape
        if rounded:
            return np.asarray(Image.fromarray(image).resize((w, h), resample=_PILLOW[filter_]))
        channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32), mode="F")
                               .resize((w, h), resample=_PILLOW[filter_])) for c in range(3)]
        return np.stack(channels, -1).astype(np.float64)
    return resize


def _cubic(x, a=-0.75):
    """Keys' cubic convolution kernel (a = -0.75: PyTorch and OpenCV; Pillow uses -0.5)."""
    x = np.abs(x)
    return np.where(x <= 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, ((a * x - 5 * a) * x + 8 * a) * x - 4 * a, 0.0))


def interpolation_matrix(n_in, n_out, filter_):
    """(n_out, n_in) matrix M such that M @ column resizes it without antialiasing (PyTorch's
    align_corners=False: source coordinate (i + 0.5) * n_in / n_out - 0.5, edges clamped)."""
    scale = n_in / n_out
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    if filter_ == "nearest":
        m[rows, np.minimum(np.floor(rows * scale).astype(int), n_in - 1)] = 1
        return m
    src = (rows + 0.5) * scale - 0.5
    if filter_ == "bilinear":
        src = np.maximum(src, 0)  # PyTorch clamps negative source coordinates for linear modes
        taps, kernel = (0, 1), (lambda x: np.maximum(0, 1 - np.abs(x)))
    else:
        taps, kernel = (-1, 0, 1, 2), _cubic
    base = np.floor(src).astype(int)
    for t in taps:
        j = base + t
        np.add.at(m, (rows, np.clip(j, 0, n_in - 1)), kernel(src - j))
    return m


def _no_antialias(filter_, rounded):
    def resize(image, shape):
        h, w = shape
        mh, mw = interpolation_matrix(image.shape[0], h, filter_), interpolation_matrix(image.shape[1], w, filter_)
        rows = np.tensordot(mh, image.astype(np.float64), axes=(1, 0))  # (h, W, 3)
        out = np.tensordot(rows, mw, axes=(1, 1)).transpose(0, 2, 1)  # (h, 3, w) -> (h, w, 3)
        return np.clip(np.round(out), 0, 255).astype(np.uint8) if rounded else out
    return resize


CANDIDATES = {
    **{f"pillow {f}": _pillow(f, True) for f in _PILLOW},
    **{f"pillow {f}, no uint8 rounding": _pillow(f, False) for f in _PILLOW},
    **{f"no antialias {f}, rounded to uint8": _no_antialias(f, True) for f in ("bilinear", "bicubic", "nearest")},
    **{f"no antialias {f}": _no_antialias(f, False) for f in ("bilinear", "bicubic", "nearest")},
}


def pixel_values_with(images, config, task, resize, dtype=np.float32):
    """refimpl's preprocessing of `images` ((H, W, 3) uint8) under `config`, with `resize(image,
    (h, w))` in place of the config's Pillow resize -> (N, 3, h, w) `dtype` pixel_values.
    task: "classification" (resize, center crop) or "detection" (resize, pad)."""
    if task == "classification":
        _, rescale, mean_std, size, crop_pct = preprocess.check_classification_config(config)
        out = []
        for image in images:
            if size < 384:
                shape = preprocess._shortest_edge_shape(*image.shape[:2], int(size / crop_pct))
                image = preprocess._center_crop(resize(image, shape), size)
            else:
                image = resize(image, (size, size))
            out.append(preprocess._to_chw(image, rescale, mean_std, dtype))
        return np.stack(out)
    _, rescale, mean_std = preprocess.check_detection_config(config)
    resized = [resize(im, preprocess.detection_resize_shape(*im.shape[:2], config)) for im in images]
    hmax, wmax = max(r.shape[0] for r in resized), max(r.shape[1] for r in resized)
    out = np.zeros((len(images), 3, hmax, wmax), dtype=dtype)
    for i, r in enumerate(resized):
        out[i, :, :r.shape[0], :r.shape[1]] = preprocess._to_chw(r, rescale, mean_std, dtype)
    return out


def _checked(config, task):
    """The config's fields, checked as refimpl's preprocessing checks them: (resample, rescale, mean_std, ...)."""
    if task == "classification":
        return preprocess.check_classification_config(config)
    return preprocess.check_detection_config(config)


def one_level(config, task):
    """One uint8 step of the input image, in pixel_values units (rescale / the smallest std)."""
    _, rescale, mean_std = _checked(config, task)[:3]
    step = rescale if rescale is not None else 1.0
    return step / min(mean_std[1]) if mean_std is not None else step


LOOK_AT = "the resize step of the preprocessing: its filter, antialiasing and when it rounds to uint8"


def candidates(case):
    """Every candidate's pixel_values against A's -> (the configured filter's label, [(label,
    measure)]), or None when A's shape is not what the preprocessing of these images gives
    (another size: not a filter issue)."""
    images, config, task = case.resize["images"], case.resize["config"], case.resize["task"]
    a = case.a.reshape(case.shape_a)  # as given: the batch axis, if A has it
    expected = f"pillow {preprocess.RESAMPLE[_checked(config, task)[0]]}"
    results = []
    for label, resize in CANDIDATES.items():
        x = pixel_values_with(images, config, task, resize)
        if x.shape != a.shape and x.shape[1:] == a.shape and len(x) == 1:
            x = x[0]
        if x.shape != a.shape:
            return None
        results.append((label, measure(a, x, case.rtol, case.atol)))
    return expected, results


def _run(case):
    """The candidates' results, once per case; None when there is no image to re-run."""
    if case.resize is None or case.name != "pixel_values":
        return None
    return case.memo(candidates)


@register("resize filter", "pixel_values", order=10, look_at=LOOK_AT)
def resize_filter(case):
    """A candidate resize reproduces A's pixel_values (certain within the tolerance, likely within one uint8 level).

    "likely": the candidate comes within one uint8 level of A - the same filter, rounded another
    way (PyTorch's uint8 kernels use fixed-point weights)."""
    run = _run(case)
    if run is None:
        return None
    expected, results = run
    table = {lbl: float(r["max_abs"]) for lbl, r in results}
    matches = [(label, m) for label, m in results if m["ok"]]
    if matches:
        label, m = min(matches, key=lambda r: r[1]["max_abs"])
        same = label == expected
        return {"kind": "resize filter", "filter": label, "configured": expected, "max_abs": float(m["max_abs"]),
                "candidates": table, "confidence": "certain",
                "message": f"resize filter: refimpl's preprocessing of the image with '{label}' reproduces A's "
                           f"pixel_values (max abs {m['max_abs']:.3g}); the checkpoint's config asks for '{expected}'"
                           + (" (the same filter: the difference is elsewhere in the preprocessing)" if same else "")}
    label, m = min(results, key=lambda r: r[1]["max_abs"])
    level = one_level(case.resize["config"], case.resize["task"])
    if m["max_abs"] <= 1.001 * level and label != expected:
        return {"kind": "resize filter", "filter": label, "configured": expected, "max_abs": float(m["max_abs"]),
                "one_level": level, "candidates": table, "confidence": "likely",
                "message": f"resize filter: refimpl's preprocessing of the image with '{label}' reproduces A's "
                           f"pixel_values to within one uint8 level (max abs {m['max_abs']:.3g}, one level = "
                           f"{level:.3g}): that filter with another integer rounding; the checkpoint's config asks "
                           f"for '{expected}'"}
    return None


@register("preprocessing drift", "pixel_values", order=20, confidence="unknown",
          look_at="the preprocessing (resize, crop, rescale, normalize) of the image")
def preprocessing_drift(case):
    """No candidate resize reproduces A's pixel_values (the closest is named): the preprocessing differs elsewhere."""
    run = _run(case)
    if run is None:
        return None
    _, results = run
    label, m = min(results, key=lambda r: r[1]["max_abs"])
    return {"kind": "preprocessing drift", "closest": label, "max_abs": float(m["max_abs"]),
            "candidates": {lbl: float(r["max_abs"]) for lbl, r in results},
            "message": f"preprocessing drift: none of {len(results)} resize candidates (Pillow's six filters with and "
                       "without uint8 rounding, bilinear/bicubic/nearest without antialiasing) reproduces A's "
                       f"pixel_values; the closest is '{label}' (max abs {m['max_abs']:.3g})"}
