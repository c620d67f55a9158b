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
