"""Pictures: the class activation map equals the class-weighted sum of the last feature map,
computed independently (transformers' features, the classifier weight read from the file); the
numbers a saved picture carries are exactly those maps."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refimpl.viz import cam
from refimpl.cli import main

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="module")
def reference_cam(resnet50_dir, resnet50_hf, resnet50):
    """The CAM of the top class of examples/cat.png computed without refimpl's forward:
    transformers' last stage output and the classifier weight straight from model.safetensors."""
    import torch
    from safetensors.numpy import load_file

    pixel_values = resnet50.preprocess([np.asarray(Image.open(EXAMPLES / "cat.png").convert("RGB"))])
    with torch.no_grad():
        out = resnet50_hf(pixel_values=torch.from_numpy(pixel_values), output_hidden_states=True)
    features = out.hidden_states[-1][0].numpy().astype(np.float64)  # (2048, 7, 7)
    logits = out.logits[0].numpy()
    k = int(logits.argmax())
    weights = load_file(str(resnet50_dir / "model.safetensors"))
    w, b = weights["classifier.1.weight"].astype(np.float64), weights["classifier.1.bias"].astype(np.float64)
    expected = np.einsum("c,cyx->yx", w[k], features)
    return {"k": k, "cam": expected, "logits": logits, "bias": b[k], "features": features}


def test_cam_equals_weighted_sum_of_last_features(resnet50, reference_cam):
    result = cam.compute(resnet50, EXAMPLES / "cat.png")
    assert result.class_index == reference_cam["k"]
    assert result.cam.shape == (7, 7)
    scale = np.abs(reference_cam["cam"]).max()
    np.testing.assert_allclose(result.cam, reference_cam["cam"], rtol=0, atol=1e-5 * scale)
    # Exact, not a heuristic: the logit is the map's mean plus the bias.
    np.testing.assert_allclose(reference_cam["cam"].mean() + reference_cam["bias"], reference_cam["logits"][reference_cam["k"]],
                               rtol=1e-5)
    np.testing.assert_allclose(result.cam.mean() + resnet50.checkpoint.params["classifier.1.bias"][result.class_index],
                               result.logits[result.class_index], rtol=1e-5)


def test_cam_of_any_class_in_float64(resnet50_dir):
    from refimpl.api import load_resnet50

    model = load_resnet50(resnet50_dir, dtype="float64")
    result = cam.compute(model, EXAMPLES / "coffee.jpg", class_index=7)
    trace = {}
    logits = model.forward(model.preprocess([result.image]), trace)[0]
    w = model.checkpoint.params["classifier.1.weight"][7]
    features = trace["resnet.encoder.stages.3"][0]
    expected = sum(w[c] * features[c] for c in range(features.shape[0]))  # the plain loop
    np.testing.assert_allclose(result.cam, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    assert abs(result.cam.mean() + model.checkpoint.params["classifier.1.bias"][7] - logits[7]) < 1e-9


def test_cli_cam_writes_picture_with_the_map(resnet50, reference_cam, resnet50_dir, tmp_path, capsys):
    out = tmp_path / "cam.png"
    image = EXAMPLES / "cat.png"
    assert main(["classify", str(image), "--weights", str(resnet50_dir), "--cam", str(out), "--top-k", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == resnet50(image, top_k=3)  # the JSON is unchanged
    data = cam.read_png_data(out)
    assert data["class_index"] == reference_cam["k"] and data["layer"] == cam.LAST_STAGE
    saved = np.array(data["cam"])
    np.testing.assert_array_equal(saved, cam.compute(resnet50, image).cam.astype(np.float64))  # exact
    np.testing.assert_allclose(saved, reference_cam["cam"], rtol=0, atol=1e-5 * np.abs(saved).max())
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.mode == "RGB"
        assert picture.width == 512 and picture.height > 300


def test_crop_box_is_what_preprocessing_keeps(resnet50):
    """The 224x224 crop of a 256-short-side resize, mapped back to image pixels."""
    config = resnet50.checkpoint.preprocessor
    assert cam.crop_box((512, 512), config) == (16 * 2.0, 16 * 2.0, 240 * 2.0, 240 * 2.0)
    left, top, right, bottom = cam.crop_box((300, 600), config)  # (H, W): resized to 256 x 512
    assert (top, bottom) == (16 * 300 / 256, 240 * 300 / 256) and (left, right) == (144 * 600 / 512, 368 * 600 / 512)


@pytest.mark.parametrize("shape,size", [((7, 7), (224, 224)), ((3, 5), (17, 40)), ((10, 20), (6, 8))])
def test_upsample_bilinear_equals_torch(shape, size):
    import torch

    m = np.random.default_rng(0).normal(size=shape)
    expected = torch.nn.functional.interpolate(torch.from_numpy(m)[None, None], size=size, mode="bilinear",
                                               align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(cam.upsample_bilinear(m, size), expected, rtol=0, atol=1e-12)


def test_colormap_ends_and_monotone_lightness():
    c = cam.colormap(np.linspace(0, 1, 256)).astype(float)
    assert tuple(c[0]) == (0, 0, 4) and tuple(c[-1]) == (252, 255, 164)
    lightness = c @ [0.299, 0.587, 0.114]
    assert np.all(np.diff(lightness) >= -0.6)  # perceptually ordered: low = dark, high = bright


# --- DETR: decoder cross-attention per detected object -------------------------------------------

def same_detections(traced, plain):
    """The traced pass runs the reference backbone, the plain call the BN-folded fast one: the same
    detections, scores and boxes equal to float32 rounding (amplified a little by 12 attention
    layers: ~5e-5 on a score, well under a pixel on a box)."""
    assert [d["label"] for d in traced] == [d["label"] for d in plain]
    np.testing.assert_allclose([d["score"] for d in traced], [d["score"] for d in plain], rtol=0, atol=2e-4)
    np.testing.assert_allclose([list(d["box"].values()) for d in traced], [list(d["box"].values()) for d in plain],
                               rtol=0, atol=0.1)

@pytest.fixture(scope="module")
def small_detr_dir(detr_timm_dir, tmp_path_factory):
    """The synthesized DETR (timm layout) with a smaller resize (320..480 px) to keep this fast."""
    from fixtures_detr import SMALL_PREPROCESSOR

    folder = tmp_path_factory.mktemp("detr-small")
    for name in ("model.safetensors", "config.json"):
        (folder / name).symlink_to(detr_timm_dir / name)
    (folder / "preprocessor_config.json").write_text(json.dumps(SMALL_PREPROCESSOR))
    return folder


@pytest.fixture(scope="module")
def small_detr(small_detr_dir):
    from refimpl.api import load_detr

    return load_detr(small_detr_dir)


@pytest.fixture(scope="module")
def street_attention(small_detr):
    from refimpl.viz import attention_maps

    image = np.asarray(Image.open(EXAMPLES / "street.jpg").convert("RGB"))
    result = attention_maps.compute(small_detr, image, threshold=0.5)
    pixel_values, pixel_mask, _ = small_detr.preprocess([image])
    trace = {}
    outputs = small_detr.forward(pixel_values, pixel_mask, trace)
    return dict(image=image, result=result, trace=trace, outputs=outputs, pixel_values=pixel_values, pixel_mask=pixel_mask)


def test_attention_maps_equal_traced_weights(small_detr, street_attention):
    result, trace = street_attention["result"], street_attention["trace"]
    same_detections(result.detections, small_detr(street_attention["image"], threshold=0.5))  # the API's
    assert len(result.queries) >= 2
    weights = trace["model.decoder.layers.5.encoder_attn.attn_weights"][0]  # (heads, 100, h*w)
    h, w = trace["model.backbone.conv_encoder.mask"].shape[1:]
    assert result.layer == "model.decoder.layers.5.encoder_attn.attn_weights"
    for i, q in enumerate(result.queries):
        np.testing.assert_array_equal(result.maps[i], weights[:, q, :].mean(axis=0).reshape(h, w))
        # ... and each detected query is one whose best real class scores above the threshold
        probs = np.exp(trace["class_labels_classifier"][0, q]) / np.exp(trace["class_labels_classifier"][0, q]).sum()
        assert probs[:-1].max() > 0.5
    # The map of a query is a probability distribution over the image tokens.
    np.testing.assert_allclose(result.maps.sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_attention_maps_equal_transformers_cross_attentions(small_detr_dir, street_attention):
    import torch
    from transformers import DetrForObjectDetection

    hf = DetrForObjectDetection.from_pretrained(small_detr_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        out = hf(pixel_values=torch.from_numpy(street_attention["pixel_values"]),
                 pixel_mask=torch.from_numpy(street_attention["pixel_mask"]), output_attentions=True)
    cross = out.cross_attentions[-1][0].numpy()  # (heads, 100, h*w), the last decoder layer
    result = street_attention["result"]
    expected = cross.mean(axis=0)[result.queries].reshape(result.maps.shape)
    # float32 end to end through the backbone, 6 encoder and 6 decoder layers: agreement to ~1e-5
    # of the largest weight (the layer-by-layer tests hold each layer to tighter bounds).
    np.testing.assert_allclose(result.maps, expected, rtol=0, atol=1e-4 * expected.max())
    from refimpl.viz import attention_maps

    one_head = attention_maps.object_maps(street_attention["trace"], result.queries, layer=2, head=3)
    np.testing.assert_allclose(one_head, out.cross_attentions[2][0, 3].numpy()[result.queries].reshape(result.maps.shape),
                               rtol=0, atol=1e-4)


@pytest.mark.slow
def test_cli_attention_writes_picture_with_the_maps(small_detr, small_detr_dir, street_attention, tmp_path, capsys):
    from refimpl.viz import attention_maps

    out = tmp_path / "attention.png"
    image = EXAMPLES / "street.jpg"
    assert main(["detect", str(image), "--weights", str(small_detr_dir), "--attention", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == small_detr(image)  # the JSON is unchanged
    data = attention_maps.read_png_data(out, attention_maps.PNG_KEY)
    result = street_attention["result"]
    assert data["queries"] == result.queries and data["detections"] == result.detections
    same_detections(data["detections"], printed)
    assert data["layer"] == "model.decoder.layers.5.encoder_attn.attn_weights" and data["heads"] == "mean"
    saved = np.array(data["maps"])
    weights = street_attention["trace"][data["layer"]][0].mean(axis=0)  # (100, h*w)
    np.testing.assert_array_equal(saved, weights[data["queries"]].reshape(saved.shape).astype(np.float64))
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.width > 800


def test_attention_picture_puts_each_token_on_its_patch():
    """One hot token (i, j) lights exactly the display pixels of input pixels [32i, 32i+32) x [32j, 32j+32)."""
    from refimpl.viz import attention_maps

    resized = (320, 448)  # a 10 x 14 grid
    m = np.zeros((10, 14))
    m[3, 5] = 0.7
    photo = np.full((160, 224, 3), 128, np.uint8)  # shown at half the resized size: 16 px per token
    heat = attention_maps.heat_on_image(photo, m, resized).astype(int)
    lit = np.abs(heat - heat[0, 0]).sum(axis=2) > 0
    ys, xs = np.nonzero(lit)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (48, 64, 80, 96)
    top = cam.colormap(np.array(1.0)).astype(float)
    np.testing.assert_allclose(heat[50, 85], 0.05 * (0.4 * 128 + 0.6 * 20) + 0.95 * top, atol=1)


def test_attention_picture_with_the_dc5_stride():
    """DC5's grid is 16 px a token: with stride=16 the same one-hot token (3, 5) lights input pixels
    [48, 64) x [80, 96), i.e. display pixels [24, 32) x [40, 48) at half size; a 32 px stride
    would light twice that."""
    from refimpl.viz import attention_maps

    resized = (160, 224)  # a 10 x 14 grid at stride 16
    m = np.zeros((10, 14))
    m[3, 5] = 0.7
    photo = np.full((80, 112, 3), 128, np.uint8)
    lit = np.abs(attention_maps.heat_on_image(photo, m, resized, stride=16).astype(int) - 128 * 0.4 - 12).sum(axis=2)
    ys, xs = np.nonzero(lit > 3)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (24, 32, 40, 48)
