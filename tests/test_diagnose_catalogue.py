"""The diagnosis catalogue: each porting bug is planted in a real implementation (torchvision's
resnet50, loaded with the synthesized DETR checkpoint's timm backbone, whose keys are
torchvision's), the buggy model's tensors are compared with the unmodified model's, and the first
divergence and the diagnosis's kind are asserted."""

import numpy as np
import pytest

from refimpl.conformance.compare import compare
from refimpl.diagnoses.tensor import diagnose

pytestmark = pytest.mark.slow  # each case builds and runs torchvision's resnet50 (about 8 s here)

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

PREFIX = "model.backbone.conv_encoder.model."
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)


@pytest.fixture(scope="module")
def state(detr_timm_dir):
    """torchvision resnet50's state dict: the synthesized backbone, and a seeded classifier."""
    from safetensors.numpy import load_file

    params = load_file(f"{detr_timm_dir}/model.safetensors")
    sd = {k[len(PREFIX):]: torch.from_numpy(v.copy()) for k, v in params.items() if k.startswith(PREFIX)}
    g = torch.Generator().manual_seed(0)
    sd["fc.weight"] = torch.randn(1000, 2048, generator=g) * 0.02
    sd["fc.bias"] = torch.randn(1000, generator=g) * 0.1
    return sd


def build(state):
    model = torchvision.models.resnet50()
    model.load_state_dict(state)
    return model.eval()


@pytest.fixture(scope="module")
def image():
    """A 72x72 RGB image in [0, 1] (smooth, so resizing and shifting act like on a photo)."""
    y, x = np.mgrid[0:72, 0:72] / 72.0
    rng = np.random.default_rng(3)
    img = np.stack([np.sin(3 * x + 1) * np.cos(2 * y), np.cos(4 * x * y + 0.5), np.sin(5 * y - 2 * x)])
    return ((img + 1) / 2 * 0.8 + 0.1 + rng.normal(0, 0.01, img.shape)).astype(np.float32)[None]


def pixel_values(image, crop=(4, 4), mean=MEAN, std=STD):
    """Center-crop 64x64 at (top, left) and normalize."""
    t, left = crop
    return ((image[:, :, t:t + 64, left:left + 64] - mean) / std).astype(np.float32)


TAPS = ["conv1", "bn1", "maxpool", "layer1.0", "layer1.1", "layer1.2", "layer2.0.conv1", "layer2.0",
        "layer2.1", "layer2.2", "layer2.3", "layer3.0.bn1", "layer3.0.bn2", "layer3.0", "layer3.1", "layer4.0", "fc"]


def trace(model, x, taps=TAPS, relu_after=("bn1",)):
    """Run torchvision's model on x -> {"pixel_values", tap: output} in data-flow order. Taps in
    relu_after are recorded after the ReLU (as refimpl's embedder output is)."""
    out = {"pixel_values": x}
    modules = dict(model.named_modules())
    hooks = [modules[t].register_forward_hook(
        lambda m, i, o, t=t: out.__setitem__(t, (torch.relu(o) if t in relu_after else o).detach().numpy().copy()))
        for t in taps]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    return out


@pytest.fixture(scope="module")
def reference(state, image):
    return trace(build(state), pixel_values(image))


def first(a, b):
    report = compare(a, b)
    assert not report.agree and report.first is not None
    return report.first["name"], report.first["diagnosis"]


# --- the planted bugs --------------------------------------------------------------------------


def test_missing_relu_after_one_block(state, image, reference):
    model = build(state)
    block = model.layer2[1]

    def forward(x):  # torchvision's Bottleneck.forward without its last ReLU
        out = block.relu(block.bn1(block.conv1(x)))
        out = block.relu(block.bn2(block.conv2(out)))
        return block.bn3(block.conv3(out)) + x

    block.forward = forward
    name, d = first(trace(model, pixel_values(image)), reference)
    assert name == "layer2.1" and d["kind"] == "missing activation", d["message"]
    assert d["confidence"] == "certain" and "relu(A) == B" in d["message"]


def test_compared_before_the_activation(state, image, reference):
    """A user taps torchvision's bn1 (before the ReLU) against a reference taken after it."""
    theirs = trace(build(state), pixel_values(image), relu_after=())
    name, d = first(theirs, reference)
    assert name == "bn1" and d["kind"] == "missing activation"
    assert "tapped before the activation" in d["message"]
    # given the tensor's name, the diagnosis says where torchvision taps it
    d = diagnose(theirs["bn1"], reference["bn1"], name="bn1")
    assert d["kind"] == "missing activation" and "bn1/bn2 are before the ReLU" in d["message"]
    # the other way round: A after the ReLU, B before it
    d = diagnose(reference["bn1"], theirs["bn1"], name="bn1")
    assert d["kind"] == "extra activation"


def test_bn_eps(state, image, reference):
    model = build(state)
    bn = model.layer3[0].bn2
    bn.eps = 1e-3
    name, d = first(trace(model, pixel_values(image)), reference)
    assert name == "layer3.0.bn2"
    a = trace(model, pixel_values(image))[name]
    d = diagnose(a, reference[name], name=name, bn={"running_var": bn.running_var.numpy(), "eps": 1e-5})
    assert d["kind"] == "bn eps" and d["eps"] == pytest.approx(1e-3, rel=0.05), d["message"]
    assert "consistent with eps = 0.001" in d["message"]


def test_bn_eps_through_compare_with_the_weights(state, image, reference):
    """compare, given the checkpoint's parameters, finds the BN behind the divergent tensor by its
    name and passes its running_var: the diagnosis says eps, not "a wrong std or gamma"."""
    model = build(state)
    model.layer3[0].bn2.eps = 1e-3
    theirs = trace(model, pixel_values(image))
    without = compare(theirs, reference).first["diagnosis"]
    assert without["kind"] != "bn eps", without["message"]
    report = compare(theirs, reference, params={k: v.numpy() for k, v in state.items()})
    d = report.first["diagnosis"]
    assert report.first["name"] == "layer3.0.bn2" and d["kind"] == "bn eps", d["message"]
    assert "consistent with eps = 0.001" in d["message"] and "(layer3.0.bn2)" in d["message"]


def test_resnet_v1_stride(state, image, reference):
    """ResNet v1 strides the block's first 1x1 conv; torchvision (v1.5) the 3x3."""
    model = build(state)
    block = model.layer2[0]
    block.conv1.stride, block.conv2.stride = (2, 2), (1, 1)
    name, d = first(trace(model, pixel_values(image)), reference)
    assert name == "layer2.0.conv1" and d["kind"] == "stride mismatch", d["message"]
    assert d["downsampled"] == "A" and "v1.5" in d["message"] and d["confidence"] == "likely"


def test_maxpool_padding(state, image, reference):
    model = build(state)
    model.maxpool.padding = 0
    name, d = first(trace(model, pixel_values(image)), reference)
    assert name == "maxpool" and d["kind"] == "padding mismatch", d["message"]


def test_bgr_input(state, image, reference):
    x = pixel_values(image[:, ::-1], mean=MEAN[:, ::-1], std=STD[:, ::-1])
    name, d = first(trace(build(state), np.ascontiguousarray(x)), reference)
    assert name == "pixel_values" and d["kind"] == "channel swap" and "RGB vs BGR" in d["message"]


def test_channels_last_dump(reference):
    theirs = dict(reference, **{"layer1.1": reference["layer1.1"].transpose(0, 2, 3, 1)})
    name, d = first(theirs, reference)
    assert name == "layer1.1" and d["kind"] == "layout transposed" and "NHWC" in d["message"]


def test_normalization_missing_and_wrong_mean(state, image, reference):
    name, d = first(trace(build(state), pixel_values(image, mean=np.zeros_like(MEAN), std=np.ones_like(STD))),
                    reference)
    assert name == "pixel_values" and d["kind"] == "per-channel scale and offset", d["message"]
    assert "normalization mean/std" in d["message"]
    name, d = first(trace(build(state), pixel_values(image, mean=MEAN + 0.05)), reference)
    assert name == "pixel_values" and d["kind"] == "per-channel offset", d["message"]


def test_one_pixel_crop_shift(state, image, reference):
    name, d = first(trace(build(state), pixel_values(image, crop=(5, 4))), reference)
    assert name == "pixel_values" and d["kind"] == "spatial shift" and d["shift"] == [-1, 0], d["message"]
    assert "crop" in d["message"]


# --- vector tensors: logits ---------------------------------------------------------------------


def logits_with(state, image, edit):
    sd = dict(state)
    sd["fc.weight"], sd["fc.bias"] = edit(sd["fc.weight"].clone(), sd["fc.bias"].clone())
    return trace(build(sd), pixel_values(image))


def shifted_labels(w, b):  # class i's row moved to i + 1: a background class inserted
    return torch.cat([w[:1], w[:-1]]), torch.cat([b[:1], b[:-1]])


def permuted_classes(w, b):
    p = torch.arange(1000)
    p[:10] = torch.roll(p[:10], 3)
    return w[p], b[p]


def scaled(w, b):
    return w * 1.5, b * 1.5


def biased_classes(w, b):  # a few classes' biases wrong: no layout, scale or order explains it
    b[[3, 50, 700]] += torch.tensor([0.5, -0.3, 0.2])
    return w, b


@pytest.mark.parametrize("edit,kind", [(shifted_labels, "label-index offset"), (permuted_classes, "class permutation"),
                                       (scaled, "scale factor"), (biased_classes, "generic drift")])
def test_logits_get_vector_diagnoses(state, image, reference, edit, kind):
    name, d = first(logits_with(state, image, edit), reference)
    assert name == "fc" and d["kind"] == kind, d["message"]
    assert "per-channel" not in d["message"]
    if kind == "label-index offset":
        assert d["offset"] == 1
