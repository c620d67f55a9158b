"""refimpl.golden and `refimpl golden`: deterministic export, and our own implementation re-checked
against an exported set through the procedures its README documents."""

import json
import re

import numpy as np
import pytest

from hf_trace import small_checkpoint
from refimpl.models import resnet
from refimpl.api import image_array
from refimpl.cli import main
from refimpl.conformance.golden import check_files, export


@pytest.fixture(scope="module")
def model(resnet50_small):
    return resnet50_small


@pytest.fixture(scope="module")
def golden(tmp_path_factory, resnet50_small_dir):
    """A golden set exported by the command, with the default synthetic images."""
    out = tmp_path_factory.mktemp("golden") / "set"
    assert main(["golden", "--weights", str(resnet50_small_dir), "--out", str(out)]) == 0
    return out


def tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_is_byte_identical_across_runs(golden, resnet50_small_dir, tmp_path, capsys):
    again = tmp_path / "again"
    assert main(["golden", "--weights", str(resnet50_small_dir), "--out", str(again)]) == 0
    assert "2 case(s), 156 tensors" in capsys.readouterr().out
    first, second = tree(golden), tree(again)
    assert list(first) == list(second)
    assert all(first[k] == second[k] for k in first), [k for k in first if first[k] != second[k]]
    assert {"README.md", "manifest.json", "gradient/input.png", "gradient/output.json", "gradient/trace.json",
            "gradient/tensors/pixel_values.npy", "shapes/tensors/classifier.1.npy"} <= set(first)


def test_safetensors_format_is_byte_identical_too(model, tmp_path):
    images = {"cat.png": _photo()}
    a = export(tmp_path / "a", model, images, format="safetensors")
    export(tmp_path / "b", model, images, format="safetensors")
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert set(tree(tmp_path / "a")) == {"README.md", "manifest.json", "cat/input.png", "cat/output.json",
                                         "cat/trace.safetensors", "config.json", "labels.json", "check_golden.py"}
    assert check_files(tmp_path / "a") == []
    # the compare command reads a safetensors golden case folder
    assert main(["compare", str(tmp_path / "a" / "cat"), str(tmp_path / "b" / "cat" / "trace.safetensors")]) == 0
    assert a["tensor_format"] == "safetensors"


def _photo():
    from PIL import Image

    from images import encode, pixels

    return encode(Image.fromarray(pixels(70, 90, seed=2)), "PNG")


def test_manifest_describes_everything(golden, model):
    manifest = json.loads((golden / "manifest.json").read_text())
    assert manifest["format"] == "refimpl-golden/1" and manifest["model"] == "resnet-50"
    assert manifest["weights"]["sha256"] == model.checkpoint.sha256
    assert manifest["tolerances"]["rtol"] == 1e-4 and manifest["tolerances"]["output"]["score_atol"] == 0.01
    assert manifest["preprocessing"]["size"] == {"shortest_edge": 64}
    assert check_files(golden) == []
    for case in manifest["cases"]:
        data = (golden / case["files"]["input"]["file"]).read_bytes()
        expected = model(data)  # refimpl's fast path: equal within float rounding
        assert [x["label"] for x in case["output"]] == [x["label"] for x in expected]
        assert [x["score"] for x in case["output"]] == pytest.approx([x["score"] for x in expected], rel=1e-5)
        assert json.loads((golden / case["files"]["output"]["file"]).read_text()) == case["output"]
        trace_json = json.loads((golden / case["files"]["trace"]["file"]).read_text())
        assert [t["name"] for t in case["tensors"]] == trace_json["tensor_order"]
        assert case["tensors"][0]["name"] == "image" and case["tensors"][-1]["name"] == "classifier.1"
    # a corrupted file is caught by its hash
    victim = golden / manifest["cases"][0]["tensors"][5]["file"]
    original = victim.read_bytes()
    victim.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    try:
        assert check_files(golden) == [f"sha256 mismatch: {manifest['cases'][0]['tensors'][5]['file']}"]
    finally:
        victim.write_bytes(original)


def my_implementation(model, params=None):
    """'Another implementation': refimpl's layer functions called directly (not through trace())."""
    def run(image_bytes):
        pixels = image_array(image_bytes)
        x = model.preprocess([pixels])
        tensors = {"image": pixels}
        resnet.classify(params or model.checkpoint.params, x, tensors)
        return tensors
    return run


def test_recheck_with_refimpl_compare_as_the_readme_says(golden, model, tmp_path, capsys):
    """README step 1-2: dump <name>.npy files, `refimpl compare mine/ <case>/` exits 0."""
    readme = (golden / "README.md").read_text()
    assert "refimpl compare mine/ gradient/ --rtol 0.0001 --atol 1e-06" in readme
    manifest = json.loads((golden / "manifest.json").read_text())
    for case in manifest["cases"]:
        mine = tmp_path / case["name"]
        mine.mkdir()
        for name, value in my_implementation(model)((golden / case["files"]["input"]["file"]).read_bytes()).items():
            np.save(mine / f"{name}.npy", value)
        assert main(["compare", str(mine), str(golden / case["name"]), "--rtol", "0.0001", "--atol", "1e-06"]) == 0
        assert f"all {len(case['tensors'])} compared tensors within tolerance" in capsys.readouterr().out


def readme_snippet(golden, implementation):
    code = re.search(r"```python\n(.*?)```", (golden / "README.md").read_text(), re.S).group(1)
    marker = '    raise NotImplementedError("return {tensor name: np.ndarray} from your implementation")'
    assert marker in code
    return code.replace(marker, "    return IMPLEMENTATION(image_bytes)"), {"IMPLEMENTATION": implementation}


def test_recheck_by_hand_with_the_readme_numpy_snippet(golden, model, monkeypatch, capsys):
    """README 'by hand': its numpy snippet, run as written, passes for us and catches a broken layer."""
    monkeypatch.chdir(golden)
    code, namespace = readme_snippet(golden, my_implementation(model))
    with pytest.raises(SystemExit) as exit_:
        exec(compile(code, "README.md", "exec"), namespace)
    assert exit_.value.code == 0
    assert capsys.readouterr().out.count("all checked tensors agree") == 2

    broken = dict(model.checkpoint.params)
    layer = "resnet.encoder.stages.2.layers.3.layer.0.normalization.weight"
    broken[layer] = broken[layer] * 1.01
    code, namespace = readme_snippet(golden, my_implementation(model, broken))
    with pytest.raises(SystemExit) as exit_:
        exec(compile(code, "README.md", "exec"), namespace)
    assert exit_.value.code == 1
    assert "first divergence at resnet.encoder.stages.2.layers.3.layer.0:" in capsys.readouterr().out


def test_refuses_to_overwrite_unless_asked(golden, model, tmp_path):
    with pytest.raises(FileExistsError, match="not empty"):
        export(golden, model)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a golden set"):
        export(other, model, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"
    copy = tmp_path / "copy"
    export(copy, model, {"one.png": _photo()})
    export(copy, model, overwrite=True)  # replaces a golden set
    assert sorted(p.name for p in copy.iterdir()) == ["README.md", "check_golden.py", "config.json", "gradient",
                                                      "labels.json", "manifest.json", "shapes"]


def test_detr_golden_set(tmp_path, detr_timm_dir):
    """DETR exports the same way (attention weights and boxes included) and re-checks clean."""
    from refimpl.api import load_detr

    weights = small_checkpoint(tmp_path / "w", detr_timm_dir, size={"shortest_edge": 96, "longest_edge": 144})
    detr = load_detr(weights)
    manifest = export(tmp_path / "golden", detr, {"scene.png": _photo()})
    assert manifest["model"] == "detr-resnet-50" and manifest["tolerances"]["rtol"] == 1e-3
    names = [t["name"] for t in manifest["cases"][0]["tensors"]]
    assert names[:3] == ["image", "pixel_values", "pixel_mask"] and names[-1] == "post_process.boxes"
    relu = {t["name"] for t in manifest["cases"][0]["tensors"] if t.get("activation") == "relu"}
    assert {"model.backbone.conv_encoder.model.act1", "model.backbone.conv_encoder.model.layer4"} <= relu
    assert len(relu) == 1 + 16 * 3 + 4  # the stem, each block's two inner ReLUs and output, the stages
    assert "model.decoder.layers.5.encoder_attn.attn_weights" in names
    assert check_files(tmp_path / "golden") == []
    expected = detr(_photo())  # refimpl's fast backbone: equal within float rounding
    output = manifest["cases"][0]["output"]
    assert [d["label"] for d in output] == [d["label"] for d in expected]
    for d, e in zip(output, expected):
        assert d["score"] == pytest.approx(e["score"], abs=1e-4)
        assert list(d["box"].values()) == pytest.approx(list(e["box"].values()), abs=0.05)
    assert main(["compare", str(tmp_path / "golden" / "scene"), str(tmp_path / "golden" / "scene" / "tensors")]) == 0


# --- a golden set that stands alone ----------------------------------------------------------------

def test_the_set_stands_alone(golden, model, resnet50_small_dir):
    manifest = json.loads((golden / "manifest.json").read_text())
    # provenance: repo id / revision / commit / sha256, never the exporting machine's path
    assert str(resnet50_small_dir) not in (golden / "manifest.json").read_text()
    assert str(resnet50_small_dir) not in (golden / "gradient" / "trace.json").read_text()
    assert manifest["weights"]["sha256"] == model.checkpoint.sha256 and manifest["weights"]["repo_id"] is None
    assert json.loads((golden / "config.json").read_text())["depths"] == [3, 4, 6, 3]
    assert len(json.loads((golden / "labels.json").read_text())) == 1000
    assert manifest["final_outputs"] == ["classifier.1"]
    tensors = {t["name"]: t for t in manifest["cases"][0]["tensors"]}
    # each tensor's op and parameters
    assert tensors["resnet.embedder.embedder"]["ops"][0] == "conv 7x7 stride 2 pad 3"
    assert tensors["resnet.encoder.stages.1.layers.0.layer.1"]["ops"] == [
        "conv 3x3 stride 2 pad 1", "batch norm (frozen statistics, eps 1e-05)"]
    # which tensors are ReLU outputs (exact zeros expected), and refimpl's own values agree
    relu = [n for n, t in tensors.items() if t.get("activation") == "relu"]
    assert len(relu) == 1 + 16 * 3 + 4 and "resnet.encoder.stages.3" in relu
    assert tensors["resnet.encoder.stages.0.layers.0.layer.1"]["activation"] == "relu"
    assert "activation" not in tensors["resnet.encoder.stages.0.layers.0.layer.2"]  # BN before the add
    assert tensors["resnet.embedder"] == dict(tensors["resnet.embedder"], nonnegative=True)  # the max pool
    assert "activation" not in tensors["resnet.embedder"] and "nonnegative" not in tensors["classifier.1"]
    for name, t in tensors.items():
        if t.get("nonnegative"):
            values = np.load(golden / t["file"])
            assert values.min() >= 0, name
            if t.get("activation") == "relu":
                assert (values == 0).any(), name  # a ReLU output has exact zeros
    # per-tensor budgets from refimpl's own float32 error, growing with depth
    early, late = tensors["resnet.embedder.embedder"], tensors["resnet.encoder.stages.3.layers.2.layer.1"]
    assert 0 < early["f32_error"] < late["f32_error"] and late["budget"] == pytest.approx(10 * late["f32_error"] + 1e-6)
    readme = (golden / "README.md").read_text()
    assert "Model alone" in readme and "Preprocessing alone" in readme and "python check_golden.py gradient mine/" in readme


def test_numpy_checker_reports_layout_changes_and_missing_outputs(golden, model, tmp_path):
    import subprocess
    import sys

    manifest = json.loads((golden / "manifest.json").read_text())
    case = manifest["cases"][0]
    mine = my_implementation(model)((golden / case["files"]["input"]["file"]).read_bytes())

    def check(tensors):
        folder = tmp_path / f"mine{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        for name, value in tensors.items():
            np.save(folder / f"{name}.npy", value)
        done = subprocess.run([sys.executable, str(golden / "check_golden.py"), case["name"], str(folder)],
                              capture_output=True, text=True)
        return done.returncode, done.stdout

    code, out = check(mine)
    assert code == 0 and "including the final outputs" in out
    nhwc = dict(mine, **{"resnet.embedder": mine["resnet.embedder"].transpose(0, 2, 3, 1)})
    code, out = check(nhwc)
    assert code == 1 and "first divergence at resnet.embedder: layout change (axes permuted)" in out
    # a missing ReLU: negative values in a ReLU output are named as such, even when tiny
    relu_name = "resnet.encoder.stages.1.layers.2.layer.0"
    leaky = mine[relu_name].copy()
    leaky.flat[np.flatnonzero(leaky == 0)[:3]] = -1e-7
    code, out = check(dict(mine, **{relu_name: leaky}))
    assert code == 1 and f"first divergence at {relu_name}: negative values in a ReLU output: 3 of" in out, out
    code, out = check({"pixel_values": mine["pixel_values"]})
    assert code == 3 and "INCOMPLETE" in out
