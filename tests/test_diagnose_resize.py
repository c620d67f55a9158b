"""The resize entries of the diagnosis catalogue: a port's preprocessing, planted in torchvision
(transforms on a PIL image, and on tensors with and without antialiasing), is compared at
`pixel_values` with refimpl's; given the image, compare names the resize that reproduces A."""

from pathlib import Path

import numpy as np
import pytest

from refimpl.conformance.compare import compare
from refimpl.diagnoses.resize import interpolation_matrix
from refimpl.pipeline.decode import read_image
from refimpl.pipeline.preprocess import classification_inputs, detection_inputs, detection_resize_shape
from refimpl.synth.detr import DETR_PREPROCESSOR
from refimpl.synth.resnet import RESNET50_PREPROCESSOR

torch = pytest.importorskip("torch")
T = pytest.importorskip("torchvision.transforms")
Image = pytest.importorskip("PIL.Image")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONFIG = dict(RESNET50_PREPROCESSOR, size={"shortest_edge": 64})  # bicubic; resize to 73, crop 64
MODE = T.InterpolationMode


@pytest.fixture(scope="module")
def image():
    return read_image(EXAMPLES / "cat.png")[1]  # 300 x 451 photo


@pytest.fixture(scope="module")
def reference(image):
    return classification_inputs([image], CONFIG)


def torchvision_pixel_values(image, mode, on="pil", antialias=True):
    """torchvision's Resize(73) + CenterCrop(64) + ToTensor + Normalize: on a PIL image, on a
    uint8 tensor, or on a float tensor (no uint8 rounding)."""
    geometry = T.Compose([T.Resize(73, interpolation=mode, antialias=antialias), T.CenterCrop(64)])
    normalize = T.Normalize(CONFIG["image_mean"], CONFIG["image_std"])
    if on == "pil":
        x = T.ToTensor()(geometry(Image.fromarray(image)))
    else:
        chw = torch.from_numpy(image).permute(2, 0, 1).contiguous()
        x = geometry(chw).float() / 255 if on == "uint8" else geometry(chw.float()) / 255
    return normalize(x).numpy()[None]


def diagnosis(a, b, **evidence):
    report = compare({"pixel_values": a}, {"pixel_values": b}, **evidence)
    assert report.first["name"] == "pixel_values"
    return report.first["diagnosis"]


def test_bilinear_instead_of_bicubic(image, reference):
    a = torchvision_pixel_values(image, MODE.BILINEAR)
    assert diagnosis(a, reference)["kind"] == "generic drift"  # without the image: nothing to go on
    d = diagnosis(a, reference, image=image, preprocessor=CONFIG)
    assert d["kind"] == "resize filter" and d["filter"] == "pillow bilinear" and d["confidence"] == "certain", d
    assert d["configured"] == "pillow bicubic" and "'pillow bilinear' reproduces" in d["message"]
    with pytest.raises(ValueError, match="image= needs preprocessor="):
        compare({"pixel_values": a}, {"pixel_values": reference}, image=image)
    # the image may be given as a path, as the CLI does
    assert diagnosis(a, reference, image=EXAMPLES / "cat.png", preprocessor=CONFIG)["filter"] == "pillow bilinear"


@pytest.mark.parametrize("mode,name", [(MODE.BILINEAR, "no antialias bilinear"),
                                       (MODE.BICUBIC, "no antialias bicubic")])
def test_no_antialias_on_a_float_tensor(image, reference, mode, name):
    d = diagnosis(torchvision_pixel_values(image, mode, on="float", antialias=False), reference,
                  image=image, preprocessor=CONFIG)
    assert d["kind"] == "resize filter" and d["filter"] == name and d["confidence"] == "certain", d["message"]


def test_uint8_tensor_rounding_is_named_as_likely(image, reference):
    """PyTorch's uint8 kernel rounds its fixed-point sums its own way: one level off, named as likely."""
    d = diagnosis(torchvision_pixel_values(image, MODE.BILINEAR, on="uint8", antialias=False), reference,
                  image=image, preprocessor=CONFIG)
    assert d["kind"] == "resize filter" and d["filter"].startswith("no antialias bilinear"), d["message"]
    assert d["confidence"] == "likely" and d["max_abs"] <= 1.001 * d["one_level"]


def test_pillow_on_floats_rounds_at_another_step(image, reference):
    d = diagnosis(torchvision_pixel_values(image, MODE.BICUBIC, on="float"), reference, image=image,
                  preprocessor=CONFIG)
    assert d["kind"] == "resize filter" and d["filter"] == "pillow bicubic, no uint8 rounding", d["message"]


def test_detection_bicubic_instead_of_bilinear():
    image = read_image(EXAMPLES / "street.jpg")[1]
    config = dict(DETR_PREPROCESSOR, size={"shortest_edge": 96, "longest_edge": 160})
    b = detection_inputs([image], config)[0]
    h, w = detection_resize_shape(*image.shape[:2], config)
    x = T.ToTensor()(T.Resize((h, w), interpolation=MODE.BICUBIC)(Image.fromarray(image)))
    a = T.Normalize(config["image_mean"], config["image_std"])(x).numpy()[None]
    d = diagnosis(a, b, image=image, preprocessor=config)
    assert d["kind"] == "resize filter" and d["filter"] == "pillow bicubic", d["message"]
    assert d["configured"] == "pillow bilinear"


def test_no_candidate_reproduces_a_blur(image, reference):
    """A resize followed by a blur: no filter explains it, and the diagnosis says so."""
    pil = T.GaussianBlur(3, sigma=0.8)(T.CenterCrop(64)(T.Resize(73, interpolation=MODE.BICUBIC)(Image.fromarray(image))))
    a = T.Normalize(CONFIG["image_mean"], CONFIG["image_std"])(T.ToTensor()(pil)).numpy()[None]
    d = diagnosis(a, reference, image=image, preprocessor=CONFIG)
    assert d["kind"] == "preprocessing drift" and d["confidence"] == "unknown", d["message"]
    assert d["closest"] in d["candidates"] and "none of" in d["message"]


def test_interpolation_matrix_matches_pytorch():
    """The no-antialias candidates are PyTorch's F.interpolate, row for row."""
    x = np.random.default_rng(0).normal(size=(1, 1, 37, 1))
    for mode, name in (("bilinear", "bilinear"), ("bicubic", "bicubic"), ("nearest", "nearest")):
        ours = interpolation_matrix(37, 12, name) @ x[0, 0, :, 0]
        kwargs = {} if mode == "nearest" else {"align_corners": False}
        theirs = torch.nn.functional.interpolate(torch.from_numpy(x), size=(12, 1), mode=mode, **kwargs)
        np.testing.assert_allclose(ours, theirs.numpy()[0, 0, :, 0], rtol=1e-12, atol=1e-12)
