"""Typed errors. Every refusal refimpl makes is one of these, with a message that names the problem.

Each error carries the hosted API's error `code` and HTTP `status` it maps to (see the REST
envelope in the README), so the CLI, `run()` and the server report the same thing.
"""


class RefimplError(Exception):
    """Base class of every error refimpl raises on purpose."""

    code = 5004  # "Invalid data" in the hosted API's published codes
    status = 400


# --- input images -------------------------------------------------------------------------------

class ImageDecodeError(RefimplError):
    """The bytes could not be turned into an RGB image."""


class EmptyImageError(ImageDecodeError):
    """Zero bytes were given."""


class NotAnImageError(ImageDecodeError):
    """The bytes are not in any image format Pillow recognises."""


class TruncatedImageError(ImageDecodeError):
    """The image header was read but the pixel data ends early or is corrupt."""


class DecompressionBombError(ImageDecodeError):
    """The image declares more pixels than Pillow's safety limit allows."""

    status = 413
    code = 3006  # "Request too large"


class UnsupportedImageError(ImageDecodeError):
    """Pillow recognises the format but cannot decode this file."""


# --- the hosted-API input contract --------------------------------------------------------------

class InvalidInputError(RefimplError):
    """`inputs` does not follow the seeds' input schema (raw bytes, or {"image": [0..255 ints]})."""


class UnknownModelError(RefimplError):
    """The model name is neither a hosted name nor a Hugging Face repo id refimpl knows."""

    code = 3042  # "Invalid model ID"
    status = 404


# --- preprocessing ------------------------------------------------------------------------------

class PreprocessorConfigError(RefimplError):
    """A preprocessor_config.json refimpl cannot follow exactly (missing key, unknown resample, ...)."""


# --- weights ------------------------------------------------------------------------------------

class WeightsError(RefimplError):
    """The weights could not be found, fetched, or they do not match the architecture."""

    code = 5007
    status = 500


class WeightsNotFoundError(WeightsError):
    """No weights at the given folder, or the hub could not be reached."""


class CheckpointMismatchError(WeightsError):
    """A key is missing or unexpected, or a tensor has the wrong shape or dtype."""


class BadWeightsFileError(WeightsError):
    """The file is not a valid safetensors file (truncated, pickle, garbage)."""


# --- run() and the REST contract (refimpl/serving/contract.py, server.py) ------------------------
# One class per way a `{"image": [...]}` payload can be wrong, so callers can tell them apart
# without parsing messages. All are InvalidInputError: HTTP 400, code 5004 ("Invalid data").

class InputTypeError(InvalidInputError):
    """`inputs` is neither raw image bytes nor an object (dict) with an `image` array."""


class MissingImageError(InvalidInputError):
    """`inputs` is an object without an `image` key."""


class ImageArrayTypeError(InvalidInputError):
    """`inputs["image"]` is not an array (list/tuple)."""


class EmptyImageArrayError(InvalidInputError):
    """`inputs["image"]` is an empty array."""


class NestedArrayError(InvalidInputError):
    """An element of the `image` array is itself an array (or an object)."""


class BooleanValueError(InvalidInputError):
    """An element of the `image` array is a boolean (true/false are not numbers in the schema)."""


class NonNumericValueError(InvalidInputError):
    """An element of the `image` array is not a number at all (a string, null, ...)."""


class NonFiniteValueError(InvalidInputError):
    """An element of the `image` array is NaN or +-infinity."""


class FractionalValueError(InvalidInputError):
    """An element of the `image` array is a float that is not a whole number (12.5)."""


class ValueOutOfRangeError(InvalidInputError):
    """An element of the `image` array is outside 0..255 (it must be one unsigned byte)."""


class InvalidOptionError(InvalidInputError):
    """An output option of run() (top_k, shape, threshold, ...) is unknown or has a bad value."""


class InvalidJSONError(InvalidInputError):
    """A request body that is JSON by its content type (or looks like JSON) does not parse."""


class IncompleteRequestError(InvalidInputError):
    """The request has no body, or a malformed Content-Length / chunked encoding."""

    code = 3003  # "Incomplete request (missing headers or body)"


class RequestTooLargeError(RefimplError):
    """The request body is larger than the server's limit (--max-body)."""

    code = 3006  # "Request too large"
    status = 413


class AuthenticationError(RefimplError):
    """The server was started with --token and the request's Authorization: Bearer is missing or wrong."""

    code = 10000  # the Cloudflare v4 API's "Authentication error" (not a Workers AI code)
    status = 401


class RouteNotFoundError(RefimplError):
    """No route for that URI (the server answers only POST .../accounts/{id}/ai/run/{model})."""

    code = 7000  # the Cloudflare v4 API's "No route for that URI"
    status = 404


class MethodNotAllowedError(RefimplError):
    """The route exists but only answers POST."""

    code = 7001  # the Cloudflare v4 API's "Method not allowed"
    status = 405



class AdapterError(RefimplError):
    """`refimpl certify` could not run the other implementation: its library is not installed, the
    program failed, its output could not be read, or a key/name map does not fit it."""


def short(value, n=40):
    """repr(value), cut to `n` characters: how messages quote a bad value."""
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python will print
        return "a very large number"
    return text if len(text) <= n else text[: n - 3] + "..."


# --- hardening (issue 14): configs, poisoned weights, slow clients -------------------------------

class ConfigFileError(WeightsError):
    """A checkpoint's config.json is not what refimpl can read: not an object, or a field (id2label,
    num_labels, a layer count, ...) of the wrong type or out of range. The message names the file
    and the field. Code 5007 / 500 like every weights problem: the client's request was fine."""


class NonFiniteWeightsError(BadWeightsFileError):
    """A tensor of the checkpoint holds NaN or +-infinity (the message names the tensor)."""


class NonFiniteOutputError(WeightsError):
    """The model produced NaN or +-infinity for this input (finite but extreme weights overflow):
    the contract never emits a non-finite number, so the request gets this error instead."""


class RequestTimeoutError(RefimplError):
    """The client did not send the whole request (headers and body) within the server's
    per-request deadline (--request-timeout). The connection is closed after the answer."""

    code = 3007  # "Timeout"
    status = 408


class RequestAbortedError(RefimplError):
    """The server shut down while the client was still sending its request."""

    code = 3008  # "Aborted"
    status = 408


# --- datasets and results files (issue 15) ------------------------------------------------------

class ResultsFileError(RefimplError):
    """A results file (audit-dir, evaluate) that is not recognisably this run's own: another
    model's or another tool's results, something else entirely, or a corrupt line. The file is
    left untouched."""


class DatasetError(RefimplError):
    """A dataset refimpl cannot evaluate on: no images, an unknown label, a class folder name that
    is not a WordNet id, class index or label, annotations that do not name the images, ..."""
