"""`refimpl compare --isolate` and `--report`, and `refimpl certify --report`: the diagnosis kit
(refimpl.conformance.isolate, report_html) wired into the commands."""

import json
import re
from pathlib import Path

import numpy as np

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
