"""End to end: image bytes -> top-5 [{"label", "score"}], against transformers'
pipeline("image-classification") (Pillow backend) on the same synthesized checkpoint, and the
`refimpl classify` command line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refimpl.pipeline import postprocess
from refimpl.cli import main

EXAMPLES = sorted(Path(__file__).parent.parent.glob("examples/*.[jp][pn]g"))


@pytest.fixture(scope="module")
def hf_pipeline(resnet50_dir, resnet50_hf):
    from transformers import ConvNextImageProcessorPil, pipeline

    processor = ConvNextImageProcessorPil.from_pretrained(resnet50_dir)
    return pipeline("image-classification", model=resnet50_hf, image_processor=processor)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_top5_equals_transformers_pipeline(resnet50, hf_pipeline, path):
    ours = resnet50(path.read_bytes(), top_k=5, labels="raw")
    ref = hf_pipeline(str(path), top_k=5)
    assert [o["label"] for o in ours] == [r["label"] for r in ref]
    np.testing.assert_allclose([o["score"] for o in ours], [r["score"] for r in ref], atol=1e-5, rtol=0)
    assert [o["score"] for o in ours] == sorted((o["score"] for o in ours), reverse=True)


def test_seed_label_style(resnet50):
    """The hosted API's style: the first comma-separated name, upper-cased."""
    assert postprocess.seed_label("Pekinese, Pekingese, Peke") == "PEKINESE"
    assert postprocess.seed_label("Persian cat") == "PERSIAN CAT"
    assert postprocess.seed_label("feather boa, boa") == "FEATHER BOA"
    out = resnet50(EXAMPLES[0].read_bytes())
    raw = resnet50(EXAMPLES[0].read_bytes(), labels="raw")
    assert [o["label"] for o in out] == [postprocess.seed_label(r["label"]) for r in raw]
    assert all(set(o) == {"label", "score"} for o in out)


def test_top_k_validation_and_ties():
    id2label = {0: "a", 1: "b", 2: "c"}
    assert [o["label"] for o in postprocess.top_k(np.zeros(3, np.float32), id2label, k=3, labels="raw")] == ["a", "b", "c"]
    assert len(postprocess.top_k(np.zeros(3, np.float32), id2label, k=10)) == 3
    with pytest.raises(ValueError, match="top_k must be at least 1"):
        postprocess.top_k(np.zeros(3), id2label, k=0)
    with pytest.raises(ValueError, match="label style"):
        postprocess.top_k(np.zeros(3), id2label, labels="fancy")


def test_python_api_steps_equal_one_call(resnet50):
    """preprocess -> forward -> postprocess gives what the one call gives; batches are per-image equal."""
    from refimpl.pipeline.decode import decode_image

    images = [decode_image(p.read_bytes()) for p in EXAMPLES[:2]]
    pixel_values = resnet50.preprocess(images)
    assert pixel_values.shape == (2, 3, 224, 224) and pixel_values.dtype == np.float32
    logits = resnet50.forward(pixel_values)
    for i, path in enumerate(EXAMPLES[:2]):
        single = resnet50.forward(resnet50.preprocess([images[i]]))[0]
        np.testing.assert_allclose(logits[i], single, rtol=0, atol=1e-5 * np.abs(single).max())
        assert resnet50.postprocess(logits[i], top_k=3)[0]["label"] == resnet50(path)[0]["label"]


def test_cli_classify_prints_json(resnet50_dir, monkeypatch, capsys, resnet50):
    monkeypatch.setenv("REFIMPL_RESNET50_WEIGHTS", str(resnet50_dir))
    assert main(["classify", str(EXAMPLES[0]), "--top-k", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == resnet50(EXAMPLES[0], top_k=3)


def test_cli_errors_go_to_stderr_with_nonzero_exit(resnet50_dir, tmp_path, capsys):
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"this is text, not a PNG")
    assert main(["classify", str(bad), "--weights", str(resnet50_dir)]) == 2
    err = capsys.readouterr()
    assert err.out == "" and "NotAnImageError" in err.err
    assert main(["classify", str(tmp_path / "missing.png"), "--weights", str(resnet50_dir)]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert main(["classify", str(EXAMPLES[0]), "--weights", str(tmp_path / "no-such-dir")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_console_script_runs(resnet50_dir):
    """The installed `python -m refimpl` entry point, as a user runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "refimpl", "classify", str(EXAMPLES[0]), "--weights", str(resnet50_dir), "--labels", "raw"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 5
