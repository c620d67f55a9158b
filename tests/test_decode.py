"""decode_image against the reference decode (transformers' load_image: exif_transpose + convert("RGB")),
and every refusal: its typed error and the message fragment that names the problem."""

import warnings
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile
from transformers.image_utils import load_image

import images
from refimpl import errors
from refimpl.pipeline.decode import decode_image, read_image

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def reference(data):
    """What transformers feeds its image processors for these bytes, as an array."""
    return np.array(load_image(Image.open(BytesIO(data))))


def assert_decodes_like_reference(data):
    ours = decode_image(data)
    theirs = reference(data)
    assert ours.dtype == np.uint8 and ours.ndim == 3 and ours.shape[2] == 3
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)
    return ours


@pytest.mark.parametrize("name", sorted(images.DECODABLE))
def test_decodes_like_reference(name):
    assert_decodes_like_reference(images.DECODABLE[name]())


@pytest.mark.parametrize("name", images.EXAMPLES)
def test_example_photos(name):
    data, pixels = read_image(EXAMPLES_DIR / name)
    assert data == (EXAMPLES_DIR / name).read_bytes()
    np.testing.assert_array_equal(pixels, reference(data))


def test_exif_orientations_are_applied():
    """All 8 orientations give the upright image: the stored pixels with the EXIF transform applied."""
    stored = decode_image(images.DECODABLE["jpeg-exif-orientation-1"]())
    expected = {
        1: stored,
        2: stored[:, ::-1],
        3: stored[::-1, ::-1],
        4: stored[::-1],
        5: stored.transpose(1, 0, 2),
        6: np.rot90(stored, -1),
        7: np.rot90(stored, 2).transpose(1, 0, 2),
        8: np.rot90(stored, 1),
    }
    for orientation, upright in expected.items():
        got = decode_image(images.with_orientation(orientation))
        np.testing.assert_array_equal(got, upright, err_msg=f"orientation {orientation}")


def test_animated_takes_first_frame():
    for fmt in ("GIF", "PNG", "WEBP"):
        data = images.animated(fmt)
        with Image.open(BytesIO(data)) as im:
            assert im.n_frames == 3
        np.testing.assert_array_equal(decode_image(data), reference(data))


def test_accepts_bytearray_and_memoryview():
    data = images.DECODABLE["png-rgb"]()
    expected = decode_image(data)
    np.testing.assert_array_equal(decode_image(bytearray(data)), expected)
    np.testing.assert_array_equal(decode_image(memoryview(data)), expected)


# --- refusals -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(images.REFUSED))
def test_refusals(name):
    build, error_name, fragment = images.REFUSED[name]
    if name == "eps-needs-ghostscript":
        import shutil

        if shutil.which("gs"):
            pytest.skip("Ghostscript is installed, so Pillow can render EPS")
    error = getattr(errors, error_name)
    with pytest.raises(error, match=fragment) as info:
        decode_image(build())
    assert isinstance(info.value, errors.ImageDecodeError)
    # the reference fails on the same bytes too (it just raises Pillow's untyped errors)
    with pytest.raises(Exception):
        reference(build())


@pytest.mark.parametrize("value", ["cat.png", None, 123, [1, 2, 3], np.zeros((2, 2, 3), np.uint8)])
def test_non_bytes_are_refused_naming_the_type(value):
    with pytest.raises(errors.InvalidInputError, match=f"must be bytes, got {type(value).__name__}"):
        decode_image(value)


def test_decompression_bomb_both_levels(monkeypatch):
    """Pillow warns above MAX_IMAGE_PIXELS and raises above twice that: both are refused."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert decode_image(images.blank_png(25, 40)).shape == (25, 40, 3)  # 1000 pixels: at the limit
    for h, w in [(30, 40), (50, 50)]:  # 1200 pixels (warning level), 2500 (error level)
        with pytest.raises(errors.DecompressionBombError, match="MAX_IMAGE_PIXELS = 1000") as info:
            decode_image(images.blank_png(h, w))
        assert "could be decompression bomb" in str(info.value)
        assert info.value.status == 413
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's "no limit" is honoured
    assert decode_image(images.blank_png(50, 50)).shape == (50, 50, 3)


def test_bomb_warning_filter_stays_local(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    before = list(warnings.filters)
    with pytest.raises(errors.DecompressionBombError):
        decode_image(images.blank_png(30, 40))
    assert warnings.filters == before
    with pytest.warns(Image.DecompressionBombWarning):  # outside decode_image Pillow only warns
        Image.open(BytesIO(images.blank_png(30, 40)))


def test_pillow_global_state_untouched():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(errors.TruncatedImageError):
        decode_image(images.REFUSED["png-half"][0]())
    decode_image(images.DECODABLE["jpeg-rgb"]())
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert Image.MAX_IMAGE_PIXELS == limit


_SEEDS = [images.DECODABLE[n]() for n in ("jpeg-rgb", "png-rgb", "gif-P", "webp-lossy", "bmp-rgb", "tiff-rgb")]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(range(len(_SEEDS))),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 10_000)),
)
def test_damaged_files_decode_or_raise_typed_errors(seed, edits, cut):
    """Random byte edits and truncations never let a raw Pillow error (or OSError) escape."""
    data = bytearray(_SEEDS[seed])
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    # edited headers can claim huge sizes: keep the allowed decode small
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, 100_000
    try:
        pixels = decode_image(bytes(data))
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    except errors.ImageDecodeError:
        pass
    finally:
        Image.MAX_IMAGE_PIXELS = limit


# --- read_image ---------------------------------------------------------------------------------

def test_read_image_missing_file(tmp_path):
    with pytest.raises(errors.InvalidInputError, match="image file not found: .*nope.jpg"):
        read_image(tmp_path / "nope.jpg")


def test_read_image_directory(tmp_path):
    with pytest.raises(errors.InvalidInputError, match="cannot read image file"):
        read_image(tmp_path)


def test_read_image_wrong_type():
    with pytest.raises(errors.InvalidInputError, match="got bytes"):
        read_image(b"examples/cat.png")


def test_read_image_decodes(tmp_path):
    data = images.DECODABLE["jpeg-exif-orientation-6"]()
    path = tmp_path / "rotated.jpg"
    path.write_bytes(data)
    got_bytes, pixels = read_image(str(path))
    assert got_bytes == data
    np.testing.assert_array_equal(pixels, reference(data))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(errors.EmptyImageError):
        read_image(tmp_path / "empty.png")
