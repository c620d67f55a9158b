"""`refimpl detect`: JSON on stdout equal to the Python API, --threshold, --draw, the weights
environment variable, and the drawing itself."""

import json

import numpy as np
import pytest
from PIL import Image

from fixtures_detr import EXAMPLES_DIR
from refimpl import cli
from refimpl.viz import draw

STREET = EXAMPLES_DIR / "street.jpg"


def detect(capsys, *args):
    rc = cli.main(["detect", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


# The CLI reads the input size from the folder's preprocessor_config.json: the small-size folders
# keep these tests fast (the official size is tested in test_detr_layers.py).


def test_detect_prints_the_api_answer_and_draws(capsys, tmp_path, detr_small_dirs, detr_small_models):
    street_detections = detr_small_models["timm"](STREET, threshold=0.3)
    out_png = tmp_path / "boxes.png"
    rc, out, err = detect(capsys, STREET, "--weights", detr_small_dirs["timm"], "--threshold", "0.3", "--draw", out_png)
    assert rc == 0, err
    result = json.loads(out)
    assert result == street_detections and len(result) >= 2
    for d in result:
        assert set(d) == {"score", "label", "box"} and set(d["box"]) == {"xmin", "ymin", "xmax", "ymax"}
        assert d["score"] > 0.3
    picture = Image.open(out_png)
    assert picture.format == "PNG" and picture.size == Image.open(STREET).size and picture.mode == "RGB"
    # the most confident box (drawn last, on top) is outlined in its label's color
    pixels = np.asarray(picture).astype(int)
    best = max(result, key=lambda d: d["score"])
    b = best["box"]
    y = int(np.clip((b["ymin"] + b["ymax"]) / 2, 0, pixels.shape[0] - 1))
    edges = [x for x in (b["xmin"], b["xmax"]) if 0 <= x < pixels.shape[1]]
    assert edges, best
    x = int(edges[0])
    band = pixels[max(y - 3, 0):y + 4, max(x - 3, 0):x + 4]
    assert (band == draw.color_for(best["label"])).all(axis=-1).any(), best


def test_environment_variable_names_the_weights(capsys, monkeypatch, detr_small_dirs, detr_small_models):
    monkeypatch.setenv("REFIMPL_DETR_WEIGHTS", str(detr_small_dirs["transformers"]))
    rc, out, err = detect(capsys, EXAMPLES_DIR / "cat.png", "--dtype", "float32")
    assert rc == 0, err
    assert json.loads(out) == detr_small_models["transformers"](EXAMPLES_DIR / "cat.png")


def test_detect_hosted_shape(capsys, detr_small_dirs, detr_small_models):
    """--shape hosted: all queries, sorted by score, integer corners; --wrap-uint16 wraps negatives."""
    every = detr_small_models["timm"](STREET, threshold=None)
    rc, out, err = detect(capsys, STREET, "--weights", detr_small_dirs["timm"], "--shape", "hosted")
    assert rc == 0, err
    hosted = json.loads(out)
    assert len(hosted) == len(every) == 100
    assert [d["score"] for d in hosted] == sorted((d["score"] for d in every), reverse=True)
    assert all(isinstance(v, int) for d in hosted for v in d["box"].values())
    rc, out, _ = detect(capsys, STREET, "--weights", detr_small_dirs["timm"], "--shape", "hosted", "--wrap-uint16")
    wrapped = json.loads(out)
    assert all(0 <= v < 65536 for d in wrapped for v in d["box"].values())
    assert [[v % 65536 for v in d["box"].values()] for d in hosted] == [list(d["box"].values()) for d in wrapped]
    rc, _, err = detect(capsys, STREET, "--weights", detr_small_dirs["timm"], "--wrap-uint16")
    assert rc == 2 and "wrap_uint16" in err


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "half"])
def test_bad_threshold_is_refused(capsys, value):
    with pytest.raises(SystemExit) as exc:
        cli.main(["detect", str(STREET), "--weights", "unused", "--threshold", value])
    assert exc.value.code == 2
    assert "--threshold" in capsys.readouterr().err


def test_unreadable_image_and_missing_weights_fail_cleanly(capsys, tmp_path):
    bad = tmp_path / "not-an-image.jpg"
    bad.write_bytes(b"hello")
    rc, out, err = detect(capsys, bad, "--weights", tmp_path / "nowhere")  # the image is read first
    assert rc == 2 and out == "" and "NotAnImageError" in err
    rc, out, err = detect(capsys, STREET, "--weights", tmp_path / "nowhere")
    assert rc == 2 and "WeightsNotFoundError" in err


def test_drawing_labels_and_colors(tmp_path):
    image = np.full((120, 200, 3), 255, np.uint8)
    dets = [
        {"score": 0.91, "label": "person", "box": {"xmin": 10.0, "ymin": 30.0, "xmax": 90.0, "ymax": 110.0}},
        {"score": 0.55, "label": "dog", "box": {"xmin": -20.0, "ymin": -5.0, "xmax": 250.0, "ymax": 60.0}},
    ]
    picture = draw.draw_detections(image, dets)
    assert picture.size == (200, 120) and not np.shares_memory(np.asarray(picture), image)
    pixels = np.asarray(picture)
    assert (pixels[80, 10] == draw.color_for("person")).all()  # left edge of the person box
    assert (pixels == draw.color_for("dog")).all(axis=2).any()  # the clipped box still shows
    assert draw.color_for("person") == draw.color_for("person") != draw.color_for("dog")
    assert (image == 255).all()  # the input is left alone
    draw.save_detections(tmp_path / "x.png", image, [])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png")), image)
