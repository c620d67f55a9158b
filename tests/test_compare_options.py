"""`refimpl compare --isolate` and `--report`, and `refimpl certify --report`: the diagnosis kit
(refimpl.conformance.isolate, report_html) wired into the commands."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from refimpl.cli import main
from refimpl.conformance.trace import save_trace, trace

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LAYER = "resnet.encoder.stages.1.layers.0.layer.1"


def traces(tmp_path, weights):
    """B: refimpl's reference trace; A: the same, with one layer's output wrong (x 1.01)."""
    tensors, metadata = trace(str(EXAMPLES / "cat.png"), "resnet-50", str(weights), path="reference")
    b = save_trace(tmp_path / "b.safetensors", tensors, metadata)
    wrong = dict(tensors)
    wrong[LAYER] = tensors[LAYER] * np.float32(1.01)
    a = save_trace(tmp_path / "a.safetensors", wrong, metadata)
    return str(a), str(b)


def test_isolate_says_the_layer_itself_is_wrong(resnet50_small_dir, tmp_path, capsys):
    a, b = traces(tmp_path, resnet50_small_dir)
    code = main(["compare", a, b, "--isolate", "--model", "@cf/microsoft/resnet-50", "--weights",
                 str(resnet50_small_dir), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["first_divergence"]["name"] == LAYER
    assert out["isolate"]["verdict"] == "layer wrong", out["isolate"]


def test_compare_report_is_a_self_contained_page(resnet50_small_dir, tmp_path, capsys):
    a, b = traces(tmp_path, resnet50_small_dir)
    page = tmp_path / "compare.html"
    assert main(["compare", a, b, "--report", str(page)]) == 1
    html = page.read_text()
    assert "<html" in html.lower() and LAYER in html and "<svg" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html)  # nothing fetched at view time
    assert f"report: {page}" in capsys.readouterr().err


def test_image_and_weights_name_the_resize_filter(resnet50_small_dir, tmp_path, capsys):
    """`--image` with `--weights`: a pixel_values made with Pillow's bilinear filter where the
    checkpoint asks for bicubic (refimpl's own preprocessing run with resample=2) is named."""
    from refimpl.conformance.compare import save_npy_folder
    from refimpl.pipeline.decode import read_image
    from refimpl.pipeline.preprocess import classification_inputs

    config = json.loads((Path(resnet50_small_dir) / "preprocessor_config.json").read_text())
    image = read_image(EXAMPLES / "cat.png")[1]
    a = save_npy_folder(tmp_path / "a", {"pixel_values": classification_inputs([image], dict(config, resample=2))})
    b = save_npy_folder(tmp_path / "b", {"pixel_values": classification_inputs([image], config)})
    assert main(["compare", str(a), str(b), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["first_divergence"]["diagnosis"]["kind"] == "generic drift"
    code = main(["compare", str(a), str(b), "--image", str(EXAMPLES / "cat.png"), "--weights", str(resnet50_small_dir)])
    out = capsys.readouterr().out
    assert code == 1 and "diagnosis: resize filter: refimpl's preprocessing of the image with 'pillow bilinear'" in out


@pytest.mark.slow
def test_isolate_reaches_detr_transformer_layers(detr_small_dirs, tmp_path, capsys):
    """`--isolate` with a DETR model: the CLI passes DETR's hparams, so a transformer layer can be
    isolated (here one encoder layer's output scaled: wrong, and no variant explains it)."""
    weights = str(detr_small_dirs["timm"])
    tensors, metadata = trace(str(EXAMPLES / "street.jpg"), "detr-resnet-50", weights, path="reference")
    layer = "model.encoder.layers.2"
    b = save_trace(tmp_path / "b.safetensors", tensors, metadata)
    a = save_trace(tmp_path / "a.safetensors", dict(tensors, **{layer: tensors[layer] * np.float32(1.01)}), metadata)
    code = main(["compare", str(a), str(b), "--isolate", "--model", "detr-resnet-50", "--weights", weights, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["first_divergence"]["name"] == layer
    v = out["isolate"]
    assert v["layer"] == layer and v["verdict"] == "layer wrong" and v["variant"] is None, v["message"]
    assert set(v["variants"]) == {"position embedding missing", "position embedding added to the values too",
                                  "attention scale missing"}


@pytest.mark.parametrize("argv, option", [(["compare", "a.npz", "b.npz", "--rtol=-1e-4"], "--rtol"),
                                          (["compare", "a.npz", "b.npz", "--atol", "nan"], "--atol"),
                                          (["certify", "dump:x.npz", "--floor=-1"], "--floor"),
                                          (["certify", "dump:x.npz", "--factor", "inf"], "--factor")])
def test_negative_or_non_finite_tolerances_are_refused(argv, option, capsys):
    """Before anything is read: argparse's usage error (exit 2) naming the option."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be a finite number >= 0" in err
