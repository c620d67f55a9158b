"""Builders of odd test images, each returning the encoded bytes (small, deterministic).

`DECODABLE` names every format/mode combination refimpl must decode exactly like the reference;
`REFUSED` names every kind of bad input with the typed error and a message fragment it must raise.
"""

import io
import struct
import zlib

import numpy as np
from PIL import Image

EXAMPLES = ("cat.png", "coffee.jpg", "astronaut.jpg", "street.jpg")


# --- pixels and encoding ------------------------------------------------------------------------

def pixels(h, w, seed=0):
    """(h, w, 3) uint8: a smooth colour gradient plus noise (photo-like enough for JPEG and resampling)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 128 + 100 * np.sin((x + y) / 5)], axis=-1)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def encode(image, fmt, **params):
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def image_in_mode(mode, h=12, w=17, seed=0):
    """A PIL image of the given mode with varied content (and a transparent colour for P)."""
    rgb = Image.fromarray(pixels(h, w, seed))
    if mode == "I;16":
        return Image.fromarray((pixels(h, w, seed)[..., 0].astype(np.uint16) * 257 + np.arange(w, dtype=np.uint16)))
    if mode == "I":
        return Image.fromarray(pixels(h, w, seed)[..., 1].astype(np.int32) * 300 - 20000)
    if mode == "F":
        return Image.fromarray(pixels(h, w, seed)[..., 2].astype(np.float32) * 1.7 - 40.5)
    if mode == "P":
        image = rgb.quantize(colors=16)
        image.info["transparency"] = 3
        return image
    if mode == "RGBA":
        rgba = np.dstack([pixels(h, w, seed), pixels(h, w, seed + 1)[..., :1]])
        return Image.fromarray(rgba)
    return rgb.convert(mode)


def png_rgb16(h=9, w=13, seed=0):
    """A 48-bit (16 bits per channel) RGB PNG, written by hand (Pillow cannot write one)."""
    values = np.random.default_rng(seed).integers(0, 65536, (h, w, 3)).astype(">u2")
    raw = b"".join(b"\x00" + values[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def with_orientation(orientation, fmt="JPEG", h=14, w=22, seed=0):
    """An image whose EXIF Orientation tag is `orientation` (1..8); non-square so rotations show."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(pixels(h, w, seed)), fmt, exif=exif.tobytes())


def animated(fmt, frames=3, h=10, w=14):
    """A multi-frame GIF / PNG (APNG) / WebP whose frames differ; only the first one must be decoded."""
    images = [Image.fromarray(pixels(h, w, seed)) for seed in range(frames)]
    params = {"lossless": True} if fmt == "WEBP" else {}
    return encode(images[0], fmt, save_all=True, append_images=images[1:], duration=100, **params)


def gif_transparent(h=11, w=9):
    image = Image.fromarray(pixels(h, w)).quantize(colors=8)
    return encode(image, "GIF", transparency=2)


def png_rgb_transparent_colour(h=8, w=8):
    """An RGB PNG with a tRNS colour key."""
    array = pixels(h, w)
    return encode(Image.fromarray(array), "PNG", transparency=tuple(int(v) for v in array[0, 0]))


def _mode(mode, fmt, **params):
    return lambda: encode(image_in_mode(mode), fmt, **params)


DECODABLE = {
    "jpeg-rgb": lambda: encode(Image.fromarray(pixels(31, 47)), "JPEG", quality=90),
    "jpeg-rgb-progressive-subsampled": lambda: encode(
        Image.fromarray(pixels(33, 45)), "JPEG", quality=75, progressive=True, subsampling=2
    ),
    "jpeg-L": _mode("L", "JPEG"),
    "jpeg-CMYK": _mode("CMYK", "JPEG"),
    "png-rgb": lambda: encode(Image.fromarray(pixels(23, 19)), "PNG"),
    "png-1x1": lambda: encode(Image.fromarray(pixels(1, 1)), "PNG"),
    "jpeg-2x3": lambda: encode(Image.fromarray(pixels(2, 3)), "JPEG"),
    "png-L": _mode("L", "PNG"),
    "png-1": _mode("1", "PNG"),
    "png-LA": _mode("LA", "PNG"),
    "png-RGBA": _mode("RGBA", "PNG"),
    "png-P-transparency": _mode("P", "PNG"),
    "png-rgb-transparent-colour": png_rgb_transparent_colour,
    "png-I;16": _mode("I;16", "PNG"),
    "png-rgb-16bit": png_rgb16,
    "png-animated": lambda: animated("PNG"),
    "webp-lossy": lambda: encode(Image.fromarray(pixels(21, 30)), "WEBP", quality=80),
    "webp-lossless": lambda: encode(Image.fromarray(pixels(21, 30)), "WEBP", lossless=True),
    "webp-RGBA": _mode("RGBA", "WEBP", lossless=True),
    "webp-animated": lambda: animated("WEBP"),
    "gif-P": _mode("P", "GIF"),
    "gif-transparency": gif_transparent,
    "gif-animated": lambda: animated("GIF"),
    "bmp-rgb": _mode("RGB", "BMP"),
    "bmp-L": _mode("L", "BMP"),
    "bmp-1": _mode("1", "BMP"),
    "bmp-P": lambda: encode(Image.fromarray(pixels(12, 17)).quantize(colors=16), "BMP"),
    "bmp-32bit": _mode("RGBA", "BMP"),
    "tiff-rgb": _mode("RGB", "TIFF"),
    "tiff-rgb-lzw": _mode("RGB", "TIFF", compression="tiff_lzw"),
    "tiff-rgb-jpeg": _mode("RGB", "TIFF", compression="jpeg"),
    "tiff-1-group4": _mode("1", "TIFF", compression="group4"),
    "tiff-L": _mode("L", "TIFF"),
    "tiff-RGBA": _mode("RGBA", "TIFF"),
    "tiff-CMYK": _mode("CMYK", "TIFF"),
    "tiff-LAB": _mode("LAB", "TIFF"),
    "tiff-I;16": _mode("I;16", "TIFF"),
    "tiff-I": _mode("I", "TIFF"),
    "tiff-F": _mode("F", "TIFF"),
    "png-exif-rotated": lambda: with_orientation(6, "PNG"),
    "webp-exif-rotated": lambda: with_orientation(8, "WEBP"),
    "tiff-exif-rotated": lambda: with_orientation(3, "TIFF"),
}
DECODABLE.update({f"jpeg-exif-orientation-{o}": (lambda o=o: with_orientation(o)) for o in range(1, 9)})


# --- inputs that must be refused ----------------------------------------------------------------

def truncated(data, keep):
    """The first `keep` bytes (an int) or fraction (a float) of `data`."""
    return data[: keep if isinstance(keep, int) else int(len(data) * keep)]


def corrupt_png():
    """A PNG whose compressed pixel data is overwritten with junk (header intact)."""
    data = bytearray(DECODABLE["png-rgb"]())
    start = data.index(b"IDAT") + 40
    data[start : start + 60] = b"\x00" * 60
    return bytes(data)


def bmp_unsupported_compression():
    """A BMP header declaring compression method 7, which Pillow does not implement."""
    data = bytearray(DECODABLE["bmp-rgb"]())
    struct.pack_into("<I", data, 30, 7)
    return bytes(data)


def eps():
    """A small EPS file: Pillow identifies it, but needs Ghostscript to render it."""
    return (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
        b"newpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n"
    )


def blank_png(h, w):
    """An h x w all-black grayscale PNG: tiny file, many pixels (for decompression-bomb tests)."""
    return encode(Image.new("L", (w, h)), "PNG")


REFUSED = {
    # name: (builder, error class name in refimpl.errors, message fragment)
    "empty": (lambda: b"", "EmptyImageError", "empty"),
    "text": (lambda: b"hello, this is not an image", "NotAnImageError", "not an image"),
    "html": (lambda: b"<!doctype html><html><body>404</body></html>", "NotAnImageError", "not an image"),
    "zeros": (lambda: bytes(4096), "NotAnImageError", "not an image"),
    "random": (lambda: np.random.default_rng(0).bytes(2048), "NotAnImageError", "not an image"),
    "png-signature-only": (lambda: truncated(DECODABLE["png-rgb"](), 8), "NotAnImageError", "not an image"),
    "jpeg-half": (lambda: truncated(DECODABLE["jpeg-rgb"](), 0.5), "TruncatedImageError", "truncated"),
    "jpeg-header-cut": (lambda: truncated(DECODABLE["jpeg-rgb"](), 200), "TruncatedImageError", "truncated"),
    "png-half": (lambda: truncated(DECODABLE["png-rgb"](), 0.5), "TruncatedImageError", "truncated"),
    "png-corrupt-data": (corrupt_png, "TruncatedImageError", "corrupt"),
    "bmp-half": (lambda: truncated(DECODABLE["bmp-rgb"](), 0.5), "TruncatedImageError", "truncated"),
    "tiff-half": (lambda: truncated(DECODABLE["tiff-rgb"](), 0.5), "TruncatedImageError", "truncated"),
    "webp-half": (lambda: truncated(DECODABLE["webp-lossy"](), 0.5), "TruncatedImageError", "truncated"),
    "bmp-compression-7": (bmp_unsupported_compression, "UnsupportedImageError", "Unsupported BMP compression"),
    "eps-needs-ghostscript": (eps, "UnsupportedImageError", "Ghostscript"),
}
