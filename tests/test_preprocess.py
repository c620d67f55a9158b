"""classification_inputs / detection_inputs against transformers' Pillow-backend processors
(ConvNextImageProcessorPil, DetrImageProcessorPil) built from the same preprocessor_config.json
values, end to end from the encoded bytes (reference: load_image -> processor)."""

import copy
import json
from functools import lru_cache
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import ConvNextImageProcessorPil, DetrImageProcessorPil
from transformers.image_transforms import get_size_with_aspect_ratio
from transformers.image_utils import load_image

import images
from refimpl.synth.resnet import RESNET50_PREPROCESSOR
from refimpl.synth.detr import DETR_PREPROCESSOR
from refimpl import errors
from refimpl.pipeline.decode import decode_image, read_image
from refimpl.pipeline.preprocess import (
    classification_inputs,
    classification_size,
    detection_inputs,
    detection_resize_shape,
)

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
ATOL = 1e-6

# The official preprocessor_config.json values (the synthesized checkpoints use the same).
RESNET50 = RESNET50_PREPROCESSOR
DETR = DETR_PREPROCESSOR
# The same checkpoints' configs in the older feature-extractor form (int size, max_size, fewer keys).
RESNET50_OLD = {
    "crop_pct": 0.875,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "ConvNextFeatureExtractor",
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,
    "size": 224,
}
DETR_OLD = {
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "DetrFeatureExtractor",
    "format": "coco_detection",
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "max_size": 1333,
    "size": 800,
}


@lru_cache(maxsize=None)
def _processor(kind, config_json):
    cls = ConvNextImageProcessorPil if kind == "classification" else DetrImageProcessorPil
    return cls.from_dict(json.loads(config_json))


def processor(kind, config):
    """The reference processor for a preprocessor_config.json dict, built as from_pretrained does."""
    return _processor(kind, json.dumps(config, sort_keys=True))


def reference_image(data):
    return load_image(Image.open(BytesIO(data)))


def check_classification(datas, config=RESNET50, atol=ATOL):
    ours = classification_inputs([decode_image(d) for d in datas], config)
    theirs = processor("classification", config)([reference_image(d) for d in datas], return_tensors="np")
    theirs = theirs["pixel_values"]
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=atol)
    return ours


def check_detection(datas, config=DETR, atol=ATOL):
    arrays = [decode_image(d) for d in datas]
    values, mask, sizes = detection_inputs(arrays, config)
    theirs = processor("detection", config)([reference_image(d) for d in datas], return_tensors="np")
    assert values.dtype == np.float32 and values.shape == theirs["pixel_values"].shape
    np.testing.assert_allclose(values, theirs["pixel_values"], rtol=0, atol=atol)
    assert mask.dtype == np.int64
    np.testing.assert_array_equal(mask, theirs["pixel_mask"])
    for i, (h, w) in enumerate(sizes):  # sizes are the resized, unpadded extents
        assert (h, w) == detection_resize_shape(*arrays[i].shape[:2], config)
        assert mask[i, :h, :w].all() and mask[i].sum() == h * w
    return values, mask, sizes


def png(h, w, seed=0):
    return images.encode(Image.fromarray(images.pixels(h, w, seed)), "PNG")


ODD = {
    "1x1": lambda: png(1, 1),
    "2x3": lambda: png(2, 3),
    "3x2": lambda: png(3, 2),
    "wide-10x900": lambda: png(10, 900),
    "tall-900x10": lambda: png(900, 10),
    "wide-2x300": lambda: png(2, 300),
    "odd-crop-257x301": lambda: png(257, 301),
    "grayscale": images.DECODABLE["png-L"],
    "1-bit": images.DECODABLE["png-1"],
    "rgba": images.DECODABLE["png-RGBA"],
    "cmyk": images.DECODABLE["jpeg-CMYK"],
    "16-bit": images.DECODABLE["png-I;16"],
    "48-bit": images.DECODABLE["png-rgb-16bit"],
    "p-transparency": images.DECODABLE["png-P-transparency"],
    "gif-animated": images.DECODABLE["gif-animated"],
    "webp": images.DECODABLE["webp-lossy"],
    "exif-rotated-6": lambda: images.with_orientation(6, h=40, w=70),
    "exif-rotated-5": lambda: images.with_orientation(5, h=40, w=70),
}


def example(name):
    return (EXAMPLES_DIR / name).read_bytes()


# --- equality with the reference ----------------------------------------------------------------

@pytest.mark.parametrize("name", images.EXAMPLES)
def test_classification_examples(name):
    ours = check_classification([example(name)])
    assert ours.shape == (1, 3, 224, 224)
    theirs = processor("classification", RESNET50)([reference_image(example(name))], return_tensors="np")
    np.testing.assert_array_equal(ours, theirs["pixel_values"])  # in fact bit-identical


@pytest.mark.parametrize("name", images.EXAMPLES)
def test_detection_examples(name):
    values, mask, sizes = check_detection([example(name)])
    assert min(sizes[0]) == 800 and mask.all()
    theirs = processor("detection", DETR)([reference_image(example(name))], return_tensors="np")
    np.testing.assert_array_equal(values, theirs["pixel_values"])  # in fact bit-identical


@pytest.mark.parametrize("name", sorted(ODD))
def test_classification_odd_images(name):
    check_classification([ODD[name]()])


@pytest.mark.parametrize("name", sorted(ODD))
def test_detection_odd_images(name):
    check_detection([ODD[name]()])


def test_classification_batch():
    datas = [example("cat.png"), ODD["2x3"](), ODD["cmyk"](), example("street.jpg")]
    assert check_classification(datas).shape == (4, 3, 224, 224)


def test_detection_batch_pads_bottom_right():
    datas = [example("coffee.jpg"), ODD["tall-900x10"](), example("astronaut.jpg")]
    values, mask, sizes = check_detection(datas)
    assert sizes == [(800, 1200), (1333, 15), (800, 800)]
    assert values.shape == (3, 3, 1333, 1200) and mask.shape == (3, 1333, 1200)
    assert not values[0, :, 800:].any() and not values[1, :, :, 15:].any()
    assert mask[0, :800].all() and not mask[0, 800:].any()


@pytest.mark.parametrize(
    "config",
    [
        RESNET50_OLD,
        {**RESNET50, "size": {"shortest_edge": 384}},  # >= 384: warp to a square, no crop
        {**RESNET50, "size": {"shortest_edge": 512}, "resample": 2},
        {**RESNET50, "crop_pct": 0.95, "size": {"shortest_edge": 225}},
        {**RESNET50, "crop_pct": 1.5},  # the crop is larger than the resized image: zero padding
        {**RESNET50, "resample": 0},
        {**RESNET50, "resample": 1},
        {**RESNET50, "resample": 4},
        {**RESNET50, "resample": 5},
        {**RESNET50, "do_rescale": False},
        {**RESNET50, "do_normalize": False},
        {**RESNET50, "rescale_factor": 1 / 127.5, "image_mean": 1.0, "image_std": 1.0},
        {k: v for k, v in RESNET50.items() if k not in ("resample", "rescale_factor", "crop_pct", "do_rescale")},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items() if RESNET50.get(k, "-") != v)[:60] or "default",
)
def test_classification_follows_the_config(config):
    datas = [example("coffee.jpg"), ODD["2x3"](), ODD["wide-10x900"](), ODD["odd-crop-257x301"]()]
    check_classification(datas, config, atol=ATOL * (128 if not config.get("do_rescale", True) else 1))


@pytest.mark.parametrize(
    "config",
    [
        DETR_OLD,
        {k: v for k, v in DETR_OLD.items() if k != "max_size"},  # max_size defaults to 1333
        {**DETR_OLD, "size": 600, "max_size": 1000},
        {**DETR, "size": {"shortest_edge": 300, "longest_edge": 500}},
        {**DETR, "resample": 3},
        {**DETR, "resample": 1},
        {**DETR, "resample": 0},
        {**DETR, "do_normalize": False},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items() if DETR.get(k, "-") != v)[:60] or "default",
)
def test_detection_follows_the_config(config):
    check_detection([example("cat.png"), ODD["wide-10x900"]()], config)


def test_official_kwargs_construction_is_the_same_processor():
    """The brief's form `Processor(**official values)` builds the processor from_dict does."""
    image = [reference_image(example("cat.png"))]
    a = ConvNextImageProcessorPil(**RESNET50)(image, return_tensors="np")["pixel_values"]
    b = processor("classification", RESNET50)(image, return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(a, b)
    a = DetrImageProcessorPil(**DETR)(image, return_tensors="np")["pixel_values"]
    b = processor("detection", DETR)(image, return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(a, b)


_sizes = st.one_of(
    st.tuples(st.integers(1, 64), st.integers(1, 64)),
    st.tuples(st.integers(2, 12), st.integers(50, 300)),
    st.tuples(st.integers(50, 300), st.integers(2, 12)),
)


@settings(max_examples=25, deadline=None)
@given(size=_sizes, seed=st.integers(0, 2**16))
def test_classification_property(size, seed):
    check_classification([png(*size, seed)])


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(_sizes, min_size=1, max_size=2), seed=st.integers(0, 2**16))
def test_detection_property(sizes, seed):
    check_detection([png(h, w, seed + i) for i, (h, w) in enumerate(sizes)])


# --- float64 ------------------------------------------------------------------------------------

def test_float64_runs_the_same_math_in_float64():
    data = example("cat.png")
    array = decode_image(data)
    ours64 = classification_inputs([array], RESNET50, dtype=np.float64)
    assert ours64.dtype == np.float64
    # the reference's resized + cropped uint8 pixels, then rescale/normalize done in float64 here
    raw = processor("classification", {**RESNET50, "do_rescale": False, "do_normalize": False})(
        [reference_image(data)], return_tensors="np"
    )["pixel_values"]
    mean, std = (np.array(RESNET50[k]).reshape(1, 3, 1, 1) for k in ("image_mean", "image_std"))
    expected = (raw.astype(np.float64) * RESNET50["rescale_factor"] - mean) / std
    np.testing.assert_allclose(ours64, expected, rtol=0, atol=1e-12)
    ours32 = classification_inputs([array], RESNET50)
    np.testing.assert_allclose(ours64, ours32, rtol=0, atol=ATOL)
    assert not np.array_equal(ours64, ours32.astype(np.float64))  # not a float32 result upcast

    values64, mask, sizes = detection_inputs([array, decode_image(ODD["2x3"]())], DETR, dtype=np.float64)
    values32, mask32, sizes32 = detection_inputs([array, decode_image(ODD["2x3"]())], DETR)
    assert values64.dtype == np.float64 and sizes == sizes32
    np.testing.assert_array_equal(mask, mask32)
    np.testing.assert_allclose(values64, values32, rtol=0, atol=ATOL)


# --- helpers ------------------------------------------------------------------------------------

def test_classification_size():
    with pytest.raises(errors.PreprocessorConfigError, match="must be a dict"):
        classification_size(None)
    with pytest.raises(errors.PreprocessorConfigError, match="'size' is missing"):
        detection_resize_shape(10, 10, {})
    assert classification_size(RESNET50) == 224
    assert classification_size(RESNET50_OLD) == 224
    assert classification_size({**RESNET50, "size": {"shortest_edge": 384}}) == 384


@settings(max_examples=300, deadline=None)
@given(h=st.integers(1, 6000), w=st.integers(1, 6000))
def test_detection_resize_shape_matches_transformers(h, w):
    cases = [(DETR, 800, 1333), (DETR_OLD, 800, 1333), ({**DETR_OLD, "size": 600, "max_size": 1000}, 600, 1000)]
    for config, short, long in cases:
        assert detection_resize_shape(h, w, config) == get_size_with_aspect_ratio((h, w), short, long)


def test_detection_quirks_follow_transformers():
    # so elongated that the short side rounds to 1 == its current size: left unresized (2000 > 1333)
    check_detection([png(1, 2000)])
    assert detection_resize_shape(1, 2000, DETR) == (1, 2000)
    # the short side would round to 0: transformers fails (ValueError), refimpl refuses cleanly
    with pytest.raises(errors.InvalidInputError, match="too elongated.*resize to 0x1333"):
        detection_inputs([np.zeros((1, 3000, 3), np.uint8)], DETR)


def test_absurd_classification_resize_is_refused():
    """A 1 x 1400 image would be resized to 256 x 358400 (more than Pillow's MAX_IMAGE_PIXELS)."""
    with pytest.raises(errors.InvalidInputError, match="too elongated.*256x358400"):
        classification_inputs([np.zeros((1, 1400, 3), np.uint8)], RESNET50)


# --- refusals -----------------------------------------------------------------------------------

def _without(config, key):
    return {k: v for k, v in config.items() if k != key}


BAD_CONFIGS = [
    ("classification", _without(RESNET50, "size"), "'size' is missing"),
    ("classification", _without(RESNET50, "image_mean"), "'image_mean' is missing"),
    ("classification", _without(RESNET50, "image_std"), "'image_std' is missing"),
    ("classification", {**RESNET50, "resample": 7}, "unknown resample 7"),
    ("classification", {**RESNET50, "resample": "bicubic"}, "unknown resample 'bicubic'"),
    ("classification", {**RESNET50, "size": {"height": 224, "width": 224}}, "'shortest_edge'"),
    ("classification", {**RESNET50, "size": -3}, "positive integer"),
    ("classification", {**RESNET50, "crop_pct": 0}, "crop_pct"),
    ("classification", {**RESNET50, "image_std": [0.2, 0, 0.2]}, "zero"),
    ("classification", {**RESNET50, "image_mean": [0.5, 0.5]}, "3 finite numbers"),
    ("classification", {**RESNET50, "do_resize": False}, "do_resize=false"),
    ("classification", {**RESNET50, "do_rescale": "yes"}, "true or false"),
    ("classification", {**RESNET50, "do_center_crop": True}, "do_center_crop"),
    ("classification", {**RESNET50, "image_processor_type": "ViTImageProcessor"}, "ViTImageProcessor"),
    ("classification", DETR, "DetrImageProcessor"),
    ("classification", [1, 2], "must be a dict"),
    ("detection", RESNET50, "ConvNextImageProcessor"),
    ("detection", _without(DETR, "size"), "'size' is missing"),
    ("detection", {**DETR, "size": {"shortest_edge": 800}}, "'longest_edge'"),
    ("detection", {**DETR_OLD, "max_size": None}, "max_size"),
    ("detection", {**DETR, "resample": 9}, "unknown resample 9"),
    ("detection", {**DETR, "do_pad": False}, "do_pad=false"),
    ("detection", {**DETR, "pad_size": {"height": 1333, "width": 1333}}, "pad_size"),
    ("detection", "not a dict", "must be a dict"),
]


@pytest.mark.parametrize("kind,config,fragment", BAD_CONFIGS, ids=[f"{k}-{f}" for k, _, f in BAD_CONFIGS])
def test_bad_configs_are_refused(kind, config, fragment):
    function = classification_inputs if kind == "classification" else detection_inputs
    with pytest.raises(errors.PreprocessorConfigError, match=fragment.replace("(", r"\(")):
        function([np.zeros((4, 5, 3), np.uint8)], copy.deepcopy(config))


@pytest.mark.parametrize(
    "images_arg,fragment",
    [
        ([], "non-empty list"),
        (np.zeros((4, 5, 3), np.uint8), "non-empty list"),
        ([np.zeros((4, 5), np.uint8)], r"images\[0\] must be an \(H, W, 3\) uint8 array, got uint8 array of shape \(4, 5\)"),
        ([np.zeros((4, 5, 3), np.float32)], "got float32 array"),
        ([np.zeros((4, 5, 4), np.uint8)], r"shape \(4, 5, 4\)"),
        ([np.zeros((0, 5, 3), np.uint8)], "no pixels"),
        (["cat.png"], "got str"),
    ],
)
def test_bad_images_are_refused(images_arg, fragment):
    for function, config in ((classification_inputs, RESNET50), (detection_inputs, DETR)):
        with pytest.raises(errors.InvalidInputError, match=fragment):
            function(images_arg, config)


def test_bad_dtype_is_refused():
    with pytest.raises(errors.InvalidInputError, match="float32 or float64, got float16"):
        classification_inputs([np.zeros((4, 5, 3), np.uint8)], RESNET50, dtype=np.float16)


def test_inputs_are_not_modified():
    _, array = read_image(EXAMPLES_DIR / "coffee.jpg")
    before, config = array.copy(), copy.deepcopy(RESNET50)
    classification_inputs([array], config)
    detection_inputs([array], DETR)
    np.testing.assert_array_equal(array, before)
    assert config == RESNET50
