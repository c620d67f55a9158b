"""Image bytes -> upright RGB pixels, exactly as the reference stack decodes them.

The reference (`transformers.image_utils.load_image`) opens the bytes with Pillow, applies the
EXIF orientation (`PIL.ImageOps.exif_transpose`) and converts to RGB. `decode_image` does the
same three steps, so `decode_image(b)` equals `np.array(load_image(Image.open(BytesIO(b))))`
byte for byte, for every format and mode Pillow reads (JPEG, PNG, WebP, GIF's first frame, BMP,
TIFF, ...; L, 1, P with transparency, LA, RGBA, CMYK, I;16, I, ...).

What it adds is a clean refusal: every failure is one of the typed errors in `refimpl.errors`,
never a raw Pillow exception or OSError. Pillow's global state is left alone (in particular
`ImageFile.LOAD_TRUNCATED_IMAGES` stays as it is, False by default, and `Image.MAX_IMAGE_PIXELS`
is honoured, not changed).
"""

import os
import warnings
from io import BytesIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from refimpl.errors import (
    DecompressionBombError,
    EmptyImageError,
    InvalidInputError,
    NotAnImageError,
    TruncatedImageError,
    UnsupportedImageError,
)

# Fragments of Pillow's messages for "I know this format but cannot decode this file".
# Everything else that goes wrong after the format was identified is a truncated/corrupt file.
_UNSUPPORTED_HINTS = ("unsupported", "not supported", "not available", "ghostscript", "cannot handle")


def _refusal(exc):
    """Map an exception raised while Pillow opened/loaded/converted an image to a typed error."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return DecompressionBombError(
            f"image is too large to decode safely ({exc}); "
            f"the limit is PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels"
        )
    if isinstance(exc, UnidentifiedImageError):
        return NotAnImageError("bytes are not an image in any format Pillow recognises")
    text = str(exc) or type(exc).__name__
    if isinstance(exc, NotImplementedError) or any(h in text.lower() for h in _UNSUPPORTED_HINTS):
        return UnsupportedImageError(f"image format or variant cannot be decoded: {text}")
    return TruncatedImageError(f"image data is truncated or corrupt: {text}")


def decode_image(data):
    """Decode encoded image bytes to an upright RGB array.

    data: bytes (or bytearray / memoryview) of an encoded image.
    Returns an (H, W, 3) uint8 C-contiguous array, RGB, with the EXIF orientation applied
    (so H, W are the displayed height and width).

    Raises InvalidInputError (not bytes), EmptyImageError, NotAnImageError,
    TruncatedImageError, DecompressionBombError or UnsupportedImageError.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInputError(f"image data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise EmptyImageError("image data is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data)) as image:
                # The same limit again, explicitly: warning filters are process-wide in Python
                # < 3.14, so another thread's catch_warnings() could briefly undo ours.
                limit, pixels = Image.MAX_IMAGE_PIXELS, image.width * image.height
                if limit is not None and pixels > limit:
                    raise Image.DecompressionBombError(
                        f"Image size ({pixels} pixels) exceeds limit of {limit} pixels, "
                        "could be decompression bomb DOS attack."
                    )
                image.load()  # decode every pixel now, so truncation surfaces here
                rgb = ImageOps.exif_transpose(image).convert("RGB")
                return np.array(rgb)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - every Pillow failure becomes a typed error
        raise _refusal(exc) from exc


def read_image(path):
    """Read an image file and decode it.

    path: str or os.PathLike. Returns (data, pixels): the file's bytes and
    `decode_image(data)`, an (H, W, 3) uint8 RGB array.

    Raises InvalidInputError if the file cannot be read, else what `decode_image` raises.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"image path must be a str or os.PathLike, got {type(path).__name__}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as exc:
        raise InvalidInputError(f"image file not found: {os.fspath(path)}") from exc
    except OSError as exc:
        raise InvalidInputError(f"cannot read image file {os.fspath(path)}: {exc.strerror or exc}") from exc
    return data, decode_image(data)
