"""The hosted API's contract in one call: `run(model, inputs, **options)`.

    >>> import refimpl
    >>> refimpl.run("@cf/microsoft/resnet-50", open("examples/cat.png", "rb").read())
    [{'label': 'PERSIAN CAT', 'score': 0.6...}, ...]                      # five, best first
    >>> refimpl.run("@cf/facebook/detr-resnet-50", {"image": list(data)})
    [{'score': 0.99..., 'label': 'cat', 'box': {'xmin': 12.3, ...}}, ...]

Models (the seeds' names, and the Hugging Face repo ids they are built from):

    @cf/microsoft/resnet-50      or microsoft/resnet-50       image classification
    @cf/facebook/detr-resnet-50  or facebook/detr-resnet-50   object detection

Inputs follow the seeds' input schema (`refimpl.serving.schemas.INPUT_SCHEMA`), one of:

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
    bytes that do not decode    the ImageDecodeError subclasses of refimpl.pipeline.decode
    an output that is NaN/inf   NonFiniteOutputError (code 5007: the weights' fault, never emitted)

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

The outputs follow the seeds' output schemas (`refimpl.serving.schemas`).

Model loading options: `weights=` (a folder or repo id; default: $REFIMPL_RESNET50_WEIGHTS /
$REFIMPL_DETR_WEIGHTS, else the official repo), `revision="main"`, `dtype="float32"`, and
`path="fast"` (or "reference": which code computes the answer, refimpl/pipeline/loaded.py). A
model is loaded once per (model, weights, revision, dtype) and reused; concurrent first calls
from several threads load it exactly once (`get_model`). Model names are resolved by
refimpl/registry.py; the seeds' schemas and the REST envelope live in refimpl/serving/schemas.py.
"""

import math
import numbers
import threading

import numpy as np

from refimpl import registry
from refimpl.errors import short
from refimpl.pipeline import decode, postprocess
from refimpl.errors import (
    BooleanValueError,
    EmptyImageArrayError,
    FractionalValueError,
    ImageArrayTypeError,
    InputTypeError,
    InvalidOptionError,
    MissingImageError,
    NestedArrayError,
    NonFiniteOutputError,
    NonFiniteValueError,
    NonNumericValueError,
    NotAnImageError,
    ValueOutOfRangeError,
)

LOADING_OPTIONS = {"weights": None, "revision": None, "dtype": "float32", "path": "fast"}


def output_options(model, options):
    """Check run()'s output options for `model` (any accepted name) and fill in defaults -> dict."""
    spec = registry.get(model)
    return spec.model_class.output_options(options, spec.hosted_name)


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
        raise NonNumericValueError(f"{where} is {_kind(v)} {short(v)}; values must be integers 0..255")
    if isinstance(v, numbers.Integral):
        n = int(v)
        if not 0 <= n <= 255:
            raise ValueOutOfRangeError(f"{where} is {short(n)}, outside 0..255 (one unsigned byte of the image file)")
        return n
    f = float(v)
    if not math.isfinite(f):
        raise NonFiniteValueError(f"{where} is {f}; values must be finite integers 0..255")
    if not 0 <= f <= 255:
        raise ValueOutOfRangeError(f"{where} is {short(v)}, outside 0..255 (one unsigned byte of the image file)")
    if not f.is_integer():
        raise FractionalValueError(f"{where} is {v!r}, not a whole number; values must be integers 0..255")
    return int(f)


def _kind(v):
    return {dict: "an object", list: "an array", tuple: "an array", str: "a string", type(None): "null",
            bool: "a boolean"}.get(type(v), type(v).__name__)


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


# --- options from text ---------------------------------------------------------------------------

def parse_query_options(model, query):
    """Output options from strings (an HTTP query string, parsed to {name: str}) -> typed options.

    top_k=int, labels=seed|raw, shape=reference|hosted, threshold=<float>|none,
    wrap_uint16=1|0|true|false|yes|no. Raises InvalidOptionError.
    """
    out = {}
    for name, text in query.items():
        if name == "top_k":
            try:
                out[name] = int(text)
            except ValueError:
                raise InvalidOptionError(f"top_k must be an integer >= 1, got {text!r}") from None
        elif name == "threshold":
            out[name] = postprocess.parse_threshold(text)
        elif name == "wrap_uint16":
            out[name] = postprocess.parse_flag(name, text)
        else:
            out[name] = text
    return output_options(model, out)


# --- loading, once, thread-safe -----------------------------------------------------------------

_cache = {}  # (key, source, revision, dtype) -> model
_cache_lock = threading.Lock()  # guards _cache and _key_locks (held only briefly)
_key_locks = {}  # (key, source, revision, dtype) -> Lock held while that model loads


def get_model(model, weights=None, revision=None, dtype="float32", path="fast"):
    """The loaded model for `model` (any accepted name) on `path`, loading it on first use.

    Cached per (model, weights source, revision, dtype); the source is resolved by the registry
    (explicit > environment variable > official repo). Several threads asking for the same model
    at once load it once: the others wait for the first. Both paths share the loaded weights.
    """
    spec = registry.get(model)
    revision = revision or spec.default_revision
    cache_key = (spec.name, spec.weights_source(weights), revision, str(dtype))
    with _cache_lock:
        if cache_key in _cache:
            return _on_path(_cache[cache_key], path)
        lock = _key_locks.setdefault(cache_key, threading.Lock())
    with lock:  # one loader per model; different models load in parallel
        with _cache_lock:
            if cache_key in _cache:
                return _on_path(_cache[cache_key], path)
        loaded = _load(spec, cache_key[1], revision, dtype, path)
        with _cache_lock:
            _cache[cache_key] = loaded
        return loaded


def _load(spec, source, revision, dtype, path):
    return spec.model_class.load(source, revision, dtype, path)


def _on_path(model, path):
    """The cached model on `path`: itself, or a view sharing its weights (nothing is reloaded)."""
    return model if model.path == path else model.with_path(path)


def clear_cache():
    """Forget every loaded model (tests; freeing memory)."""
    with _cache_lock:
        _cache.clear()
        _key_locks.clear()


# --- run ----------------------------------------------------------------------------------------

def run(model, inputs, **options):
    """The hosted API's call: `model` name, `inputs` per the input schema -> the output schema's
    JSON-ready list. See the module docstring for the options and the errors."""
    return predict(*prepare(model, inputs, **options))


def prepare(model, inputs, **options):
    """Everything run() checks before it needs the model: the name, the options, the inputs
    (decoded). -> (spec, pixels (H, W, 3) uint8, output options, loading options). Refusals here
    need no weights, so the server runs this outside its one-at-a-time model queue."""
    spec = registry.get(model)
    loading = {k: options.pop(k) for k in list(options) if k in LOADING_OPTIONS}
    opts = output_options(spec, options)
    pixels = decode_inputs(inputs)  # refused before any weights are read
    return spec, pixels, opts, loading


def predict(spec, pixels, opts, loading):
    """The model's answer for prepare()'s result; every number in it finite (else
    NonFiniteOutputError, code 5007: the contract never emits NaN or infinity)."""
    output, _ = get_model(spec, **loading).predict(pixels, **opts)
    bad = _first_non_finite(output)
    if bad is not None:
        raise NonFiniteOutputError(
            f"{spec.hosted_name}: the weights produced a non-finite output ({bad}) for this image; "
            "the contract never emits NaN or infinity"
        )
    return output


def _first_non_finite(value, where="result"):
    """The path of the first NaN / infinite float in a JSON-ready value, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is {value}"
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        bad = _first_non_finite(v, f"{where}[{k!r}]" if isinstance(k, str) else f"{where}[{k}]")
        if bad is not None:
            return bad
    return None
