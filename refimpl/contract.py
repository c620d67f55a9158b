"""The hosted API's contract in one call: `run(model, inputs, **options)`.

    >>> import refimpl
    >>> refimpl.run("@cf/microsoft/resnet-50", open("examples/cat.png", "rb").read())
    [{'label': 'PERSIAN CAT', 'score': 0.6...}, ...]                      # five, best first
    >>> refimpl.run("@cf/facebook/detr-resnet-50", {"image": list(data)})
    [{'score': 0.99..., 'label': 'cat', 'box': {'xmin': 12.3, ...}}, ...]

Models (the seeds' names, and the Hugging Face repo ids they are built from):

    @cf/microsoft/resnet-50      or microsoft/resnet-50       image classification
    @cf/facebook/detr-resnet-50  or facebook/detr-resnet-50   object detection

Inputs follow the seeds' input schema (`INPUT_SCHEMA`), one of:

    * raw image bytes (`bytes`, `bytearray`, `memoryview`) -- the schema's "binary string", what
      `curl --data-binary @cat.png` sends;
    * an object `{"image": [int, ...]}` whose array holds the bytes of the *encoded image file*
      (the seeds' `[...new Uint8Array(blob)]` of a PNG or JPEG), not decoded pixels. Every
      element must be an integer 0..255; whole floats (`12.0`) are accepted since the schema's
      item type is "number". Other keys are ignored, as the schema allows.

Anything else raises a typed error from `refimpl.errors`, whose message names the problem (and,
for array elements, the first offending index and value):

    wrong top-level type        InputTypeError           {"image": ...} missing   MissingImageError
    `image` not an array        ImageArrayTypeError      empty array              EmptyImageArrayError
    nested array / object       NestedArrayError         true / false             BooleanValueError
    string, null, ...           NonNumericValueError     NaN, +-inf               NonFiniteValueError
    outside 0..255              ValueOutOfRangeError     12.5                     FractionalValueError
    unknown model               UnknownModelError        bad output option        InvalidOptionError
    bytes that do not decode    the ImageDecodeError subclasses of refimpl.decode

An element is checked in that order: array/object, boolean, non-number, non-finite, range,
whole-ness (so -0.5 is out of range, 12.5 is fractional).

Output options (keyword arguments of run()):

    classification  top_k=5, labels="seed" ("raw": config.json's id2label text)
    detection       shape="reference" | "hosted", threshold=<float or None>, wrap_uint16=False

    shape="reference" (default): threshold 0.5 (score > threshold), float pixel boxes of the
        original image, in query order -- transformers' `post_process_object_detection`.
    shape="hosted": what the hosted API was observed to return (../shared/FACTS.md): every query
        (threshold None unless given), sorted by score descending (ties keep query order), box
        corners rounded to the nearest integer (ties to even; the hosted rounding rule is not
        published). `wrap_uint16=True` (hosted only, off by default) also wraps negative
        coordinates to unsigned 16-bit, -2 -> 65534, for byte-level comparisons.

The outputs follow the seeds' output schemas (`OUTPUT_SCHEMAS`).

Model loading options: `weights=` (a folder or repo id; default: $REFIMPL_RESNET50_WEIGHTS /
$REFIMPL_DETR_WEIGHTS, else the official repo), `revision="main"`, `dtype="float32"`. A model is
loaded once per (model, weights, revision, dtype) and reused; concurrent first calls from several
threads load it exactly once (`get_model`).
"""

import math
import numbers
import threading

import numpy as np

from . import api, decode
from .errors import (
    BooleanValueError,
    EmptyImageArrayError,
    FractionalValueError,
    ImageArrayTypeError,
    InputTypeError,
    InvalidOptionError,
    MissingImageError,
    NestedArrayError,
    NonFiniteValueError,
    NonNumericValueError,
    NotAnImageError,
    UnknownModelError,
    ValueOutOfRangeError,
)

# --- models -------------------------------------------------------------------------------------

RESNET50 = "@cf/microsoft/resnet-50"
DETR = "@cf/facebook/detr-resnet-50"

# Every accepted name -> refimpl's model key (the key of api.OFFICIAL_REPO / api.ENV_WEIGHTS).
MODELS = {
    RESNET50: "resnet-50",
    DETR: "detr-resnet-50",
    "microsoft/resnet-50": "resnet-50",
    "facebook/detr-resnet-50": "detr-resnet-50",
}
HOSTED_NAME = {"resnet-50": RESNET50, "detr-resnet-50": DETR}
TASK = {"resnet-50": "image-classification", "detr-resnet-50": "object-detection"}

# Output options each model accepts, with their defaults (threshold's default depends on shape).
OUTPUT_OPTIONS = {
    "resnet-50": {"top_k": 5, "labels": "seed"},
    "detr-resnet-50": {"shape": "reference", "threshold": "auto", "wrap_uint16": False},
}
LOADING_OPTIONS = {"weights": None, "revision": "main", "dtype": "float32"}
SHAPES = ("reference", "hosted")
REFERENCE_THRESHOLD = 0.5


def model_key(model):
    """`"@cf/microsoft/resnet-50"` or `"microsoft/resnet-50"` -> `"resnet-50"` (likewise DETR).
    Raises UnknownModelError naming the accepted names."""
    if isinstance(model, str) and model in MODELS:
        return MODELS[model]
    known = ", ".join(MODELS)
    if not isinstance(model, str):
        raise UnknownModelError(f"model must be a string, got {type(model).__name__}; known models: {known}")
    raise UnknownModelError(f"unknown model {model!r}; known models: {known}")


def hosted_name(model):
    """The hosted API's name of `model` (any accepted name)."""
    return HOSTED_NAME[model_key(model)]


def task(model):
    """"image-classification" or "object-detection"."""
    return TASK[model_key(model)]


# --- the seeds' JSON schemas, as data -----------------------------------------------------------

# ../shared/seeds/002 (DETR) verbatim; seed 001 (ResNet-50) is the same without descriptions.
INPUT_SCHEMA = {
    "oneOf": [
        {"type": "string", "format": "binary", "description": "The image to use for detection"},
        {
            "type": "object",
            "properties": {
                "image": {
                    "type": "array",
                    "description": "An array of integers that represent the image data constrained to 8-bit "
                    "unsigned integer values",
                    "items": {"type": "number", "description": "A value between 0 and 255 (unsigned 8bit)"},
                }
            },
        },
    ]
}

_BOX_COORD = {
    "xmin": "The x-coordinate of the top-left corner of the bounding box",
    "ymin": "The y-coordinate of the top-left corner of the bounding box",
    "xmax": "The x-coordinate of the bottom-right corner of the bounding box",
    "ymax": "The y-coordinate of the bottom-right corner of the bounding box",
}

OUTPUT_SCHEMAS = {
    # ../shared/seeds/001, "API schema / Output"
    RESNET50: {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"score": {"type": "number"}, "label": {"type": "string"}},
        },
    },
    # ../shared/seeds/002, "API Schemas", the second (output) schema
    DETR: {
        "type": "array",
        "contentType": "application/json",
        "description": "An array of detected objects within the input image",
        "items": {
            "type": "object",
            "properties": {
                "score": {
                    "type": "number",
                    "description": "Confidence score indicating the likelihood that the detection is correct",
                },
                "label": {"type": "string", "description": "The class label or name of the detected object"},
                "box": {
                    "type": "object",
                    "description": "Coordinates defining the bounding box around the detected object",
                    "properties": {k: {"type": "number", "description": d} for k, d in _BOX_COORD.items()},
                },
            },
        },
    },
}
BOX_KEYS = tuple(_BOX_COORD)


def output_schema(model):
    """The seed's output schema for `model` (any accepted name)."""
    return OUTPUT_SCHEMAS[hosted_name(model)]


# --- inputs -------------------------------------------------------------------------------------

_ARRAY_HINT = (
    "the image array must hold the bytes of an encoded image file (PNG, JPEG, ...), e.g. "
    "[...new Uint8Array(await blob.arrayBuffer())] or list(open(path, 'rb').read()), not decoded pixels"
)


def image_bytes(inputs):
    """Validate `inputs` against the input contract and return the encoded image file's bytes.

    Raw bytes are returned as they are (decoding checks them); `{"image": [...]}` is checked
    element by element. Raises the typed errors listed in the module docstring.
    """
    if isinstance(inputs, (bytes, bytearray, memoryview)):
        return bytes(inputs)
    if not isinstance(inputs, dict):
        hint = {
            str: "; a str is not image bytes (pass bytes, e.g. open(path, 'rb').read())",
            list: '; wrap the array in an object: {"image": [...]}',
            tuple: '; wrap the array in an object: {"image": [...]}',
        }.get(type(inputs), "")
        raise InputTypeError(
            "inputs must be raw image bytes or an object {\"image\": [0..255, ...]}, "
            f"got {_kind(inputs)}{hint}"
        )
    if "image" not in inputs:
        keys = ", ".join(repr(k) for k in list(inputs)[:5]) or "none"
        raise MissingImageError(f'inputs object has no "image" key (keys: {keys}); expected {{"image": [0..255, ...]}}')
    return array_bytes(inputs["image"])


def array_bytes(array):
    """The `image` array -> bytes, or the typed error for its first bad element."""
    if not isinstance(array, (list, tuple)):
        hint = "; pass raw bytes as inputs directly, or list(data)" if isinstance(array, (bytes, bytearray)) else ""
        raise ImageArrayTypeError(f'"image" must be an array of integers 0..255, got {_kind(array)}{hint}')
    if not array:
        raise EmptyImageArrayError('"image" is an empty array; it must hold the bytes of an encoded image file')
    # Fast path, the usual case (JSON arrays of ints): bytes() checks 0..255 in C. bytes() also
    # takes bools and other __index__ types, hence the exact type test first.
    types = set(map(type, array))
    if types <= {int}:
        try:
            return bytes(array)
        except ValueError:
            pass  # out of range somewhere: the slow path names it
    elif types <= {int, float}:  # e.g. whole floats from a JSON encoder: check them vectorized
        try:
            values = np.asarray(array, dtype=np.float64)
        except OverflowError:  # an int too large for a float: the slow path names it
            values = None
        if values is not None:
            good = np.isfinite(values) & (values >= 0) & (values <= 255) & (values == np.floor(values))
            if good.all():
                return values.astype(np.uint8).tobytes()
            first = int(np.argmin(good))
            _byte_value(first, array[first])  # raises the typed error for the first bad element
    return bytes(_byte_value(i, v) for i, v in enumerate(array))


def _byte_value(i, v):
    """One element of the `image` array -> int 0..255, or its typed error."""
    where = f"image[{i}]"
    if isinstance(v, (list, tuple, dict)):
        what = "an object" if isinstance(v, dict) else "an array"
        raise NestedArrayError(f"{where} is {what}; \"image\" must be a flat array of integers 0..255")
    if isinstance(v, bool) or type(v).__name__ == "bool_":  # Python and numpy booleans
        raise BooleanValueError(f"{where} is the boolean {v!r}; values must be integers 0..255")
    if not isinstance(v, numbers.Real):
        raise NonNumericValueError(f"{where} is {_kind(v)} {_short(v)}; values must be integers 0..255")
    if isinstance(v, numbers.Integral):
        n = int(v)
        if not 0 <= n <= 255:
            raise ValueOutOfRangeError(f"{where} is {_short(n)}, outside 0..255 (one unsigned byte of the image file)")
        return n
    f = float(v)
    if not math.isfinite(f):
        raise NonFiniteValueError(f"{where} is {f}; values must be finite integers 0..255")
    if not 0 <= f <= 255:
        raise ValueOutOfRangeError(f"{where} is {_short(v)}, outside 0..255 (one unsigned byte of the image file)")
    if not f.is_integer():
        raise FractionalValueError(f"{where} is {v!r}, not a whole number; values must be integers 0..255")
    return int(f)


def _kind(v):
    return {dict: "an object", list: "an array", tuple: "an array", str: "a string", type(None): "null",
            bool: "a boolean"}.get(type(v), type(v).__name__)


def _short(v):
    try:
        text = repr(v)
    except ValueError:  # an int with more digits than Python will print
        return "a very large number"
    return text if len(text) <= 40 else text[:37] + "..."


def decode_inputs(inputs):
    """`inputs` -> (H, W, 3) uint8 pixels. Array inputs that do not decode get a hint that the
    array is the encoded file, not pixels."""
    data = image_bytes(inputs)
    try:
        return decode.decode_image(data)
    except NotAnImageError as e:
        if isinstance(inputs, dict):
            raise NotAnImageError(f"{e}; {_ARRAY_HINT}") from e
        raise


# --- options ------------------------------------------------------------------------------------

def output_options(model, options):
    """Check run()'s output options for `model` and fill in defaults. Returns a dict."""
    key = model_key(model)
    allowed = OUTPUT_OPTIONS[key]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InvalidOptionError(
            f"unknown option(s) {', '.join(unknown)} for {HOSTED_NAME[key]}; allowed: {', '.join(allowed)}"
        )
    out = dict(allowed, **options)
    if key == "resnet-50":
        k = out["top_k"]
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise InvalidOptionError(f"top_k must be an integer >= 1, got {k!r}")
        out["top_k"] = int(k)
        if out["labels"] not in ("seed", "raw"):
            raise InvalidOptionError(f"labels must be 'seed' or 'raw', got {out['labels']!r}")
        return out
    if out["shape"] not in SHAPES:
        raise InvalidOptionError(f"shape must be one of {', '.join(SHAPES)}, got {out['shape']!r}")
    if out["threshold"] == "auto":
        out["threshold"] = REFERENCE_THRESHOLD if out["shape"] == "reference" else None
    t = out["threshold"]
    if t is not None:
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 <= float(t) <= 1:
            raise InvalidOptionError(f"threshold must be a number in [0, 1] or None (every query), got {t!r}")
        out["threshold"] = float(t)
    if not isinstance(out["wrap_uint16"], bool):
        raise InvalidOptionError(f"wrap_uint16 must be True or False, got {out['wrap_uint16']!r}")
    if out["wrap_uint16"] and out["shape"] != "hosted":
        raise InvalidOptionError("wrap_uint16=True only applies to shape='hosted' (integer boxes)")
    return out


def parse_query_options(model, query):
    """Output options from strings (an HTTP query string, parsed to {name: str}) -> typed options.

    top_k=int, labels=seed|raw, shape=reference|hosted, threshold=<float>|none,
    wrap_uint16=1|0|true|false|yes|no. Raises InvalidOptionError.
    """
    key = model_key(model)
    out = {}
    for name, text in query.items():
        if name not in OUTPUT_OPTIONS[key]:
            output_options(model, {name: text})  # raises the "unknown option" error
        if name == "top_k":
            try:
                out[name] = int(text)
            except ValueError:
                raise InvalidOptionError(f"top_k must be an integer >= 1, got {text!r}") from None
        elif name == "threshold":
            if text.lower() in ("none", "null", ""):
                out[name] = None
            else:
                try:
                    out[name] = float(text)
                except ValueError:
                    raise InvalidOptionError(f"threshold must be a number in [0, 1] or 'none', got {text!r}") from None
        elif name == "wrap_uint16":
            flags = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
            if text.lower() not in flags:
                raise InvalidOptionError(f"wrap_uint16 must be 1/0/true/false, got {text!r}")
            out[name] = flags[text.lower()]
        else:
            out[name] = text
    return output_options(model, out)


# --- loading, once, thread-safe -----------------------------------------------------------------

_cache = {}  # (key, source, revision, dtype) -> model
_cache_lock = threading.Lock()  # guards _cache and _key_locks (held only briefly)
_key_locks = {}  # (key, source, revision, dtype) -> Lock held while that model loads


def _loader(key):
    if key == "resnet-50":
        return api.load_resnet50
    load = getattr(api, "load_detr", None)
    if load is None:  # pragma: no cover - only while DETR is not part of the package
        raise UnknownModelError(f"{DETR} is not available in this version of refimpl")
    return load


def get_model(model, weights=None, revision="main", dtype="float32"):
    """The loaded model for `model` (any accepted name), loading it on first use.

    Cached per (model, weights source, revision, dtype); the source is resolved as
    `api.weights_source` does (explicit > environment variable > official repo). Several threads
    asking for the same model at once load it once: the others wait for the first.
    """
    key = model_key(model)
    cache_key = (key, str(api.weights_source(key, weights)), revision, str(dtype))
    with _cache_lock:
        if cache_key in _cache:
            return _cache[cache_key]
        lock = _key_locks.setdefault(cache_key, threading.Lock())
    with lock:  # one loader per model; different models load in parallel
        with _cache_lock:
            if cache_key in _cache:
                return _cache[cache_key]
        loaded = _loader(key)(weights=cache_key[1], revision=revision, dtype=dtype)
        with _cache_lock:
            _cache[cache_key] = loaded
        return loaded


def clear_cache():
    """Forget every loaded model (tests; freeing memory)."""
    with _cache_lock:
        _cache.clear()
        _key_locks.clear()


# --- detection output shapes --------------------------------------------------------------------

def hosted_shape(detections, wrap_uint16=False):
    """Reference-style detections (query order, float boxes) -> the hosted API's shape: sorted by
    score descending (a stable sort: ties keep query order), corners rounded to the nearest
    integer (ties to even), optionally wrapped to unsigned 16-bit (-2 -> 65534)."""
    ordered = sorted(detections, key=lambda d: -d["score"])
    out = []
    for d in ordered:
        box = {}
        for k in BOX_KEYS:
            v = int(round(d["box"][k]))
            box[k] = v % 65536 if wrap_uint16 else v
        out.append({"score": d["score"], "label": d["label"], "box": box})
    return out


def detect(model_obj, pixels, shape="reference", threshold="auto", wrap_uint16=False):
    """Run a loaded DETR on pixels and shape its output (see the module docstring)."""
    opts = output_options(DETR, {"shape": shape, "threshold": threshold, "wrap_uint16": wrap_uint16})
    detections = model_obj(pixels, threshold=opts["threshold"])
    if opts["shape"] == "hosted":
        return hosted_shape(detections, opts["wrap_uint16"])
    return detections


# --- run ----------------------------------------------------------------------------------------

def run(model, inputs, **options):
    """The hosted API's call: `model` name, `inputs` per the input schema -> the output schema's
    JSON-ready list. See the module docstring for the options and the errors."""
    key = model_key(model)
    loading = {k: options.pop(k) for k in list(options) if k in LOADING_OPTIONS}
    opts = output_options(model, options)
    pixels = decode_inputs(inputs)
    loaded = get_model(model, **loading)
    if key == "resnet-50":
        return loaded(pixels, top_k=opts["top_k"], labels=opts["labels"])
    return detect(loaded, pixels, **opts)
