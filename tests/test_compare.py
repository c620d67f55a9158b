"""refimpl.compare and `refimpl compare`: the first divergence is found and diagnosed.

Each case builds a trace of a deliberately broken "other implementation" (one layer's weights
perturbed, two channels swapped, a tensor transposed, a layer scaled, an offset added, a NaN
injected, ...) and asserts the tensor named as the first divergence AND the diagnosis."""

import json

import numpy as np
import pytest

from refimpl.models import resnet
from refimpl.cli import main
from refimpl.conformance.compare import compare, diagnose, load_tensors, parse_map, save_npy_folder
from refimpl.conformance.trace import save_trace

CONV = "resnet.encoder.stages.1.layers.2.layer.1"  # a 3x3 conv + BN + ReLU
NORM_ONLY = "resnet.encoder.stages.2.layers.1.layer.2"  # a 1x1 conv + BN, no ReLU
BN_KEYS = ("weight", "bias", "running_mean", "running_var")


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)


def run(params, x):
    t = {"pixel_values": x}
    resnet.classify(params, x, t)
    return t


@pytest.fixture(scope="module")
def reference(resnet50, x):
    return run(resnet50.checkpoint.params, x)


def perturbed(resnet50, x, edit):
    params = dict(resnet50.checkpoint.params)
    edit(params)
    return run(params, x)


def noisy_weights(p):
    w = p[CONV + ".convolution.weight"]
    p[CONV + ".convolution.weight"] = w + 0.05 * np.abs(w).max() * np.random.default_rng(1).normal(size=w.shape).astype(w.dtype)


def swapped_channels(p):
    for key in [CONV + ".convolution.weight"] + [f"{CONV}.normalization.{k}" for k in BN_KEYS]:
        w = p[key].copy()
        w[[3, 7]] = w[[7, 3]]
        p[key] = w


def scaled_layer(p):
    for k in ("weight", "bias"):
        p[f"{NORM_ONLY}.normalization.{k}"] = 2 * p[f"{NORM_ONLY}.normalization.{k}"]


def offset_layer(p):
    p[f"{NORM_ONLY}.normalization.bias"] = p[f"{NORM_ONLY}.normalization.bias"] + 0.5


def nan_weight(p):
    w = p[CONV + ".convolution.weight"].copy()
    w[5, 0, 1, 1] = np.nan
    p[CONV + ".convolution.weight"] = w


def one_channel_bias(p):
    b = p[f"{NORM_ONLY}.normalization.bias"].copy()
    b[11] += 0.3
    p[f"{NORM_ONLY}.normalization.bias"] = b


WEIGHT_CASES = {
    # case: (edit, first divergence, diagnosis kind)
    "perturbed weights": (noisy_weights, CONV, "generic drift"),
    "two channels swapped": (swapped_channels, CONV, "channel swap"),
    "layer scaled": (scaled_layer, NORM_ONLY, "scale factor"),
    "offset added": (offset_layer, NORM_ONLY, "constant offset"),
    "NaN injected": (nan_weight, CONV, "NaN/inf"),
    "one channel's bias": (one_channel_bias, NORM_ONLY, "per-channel offset"),
}


@pytest.mark.parametrize("case", list(WEIGHT_CASES))
def test_first_divergence_of_a_broken_layer(resnet50, x, reference, case):
    edit, name, kind = WEIGHT_CASES[case]
    report = compare(perturbed(resnet50, x, edit), reference)
    assert not report.agree
    assert report.first["name"] == name
    assert report.first["diagnosis"]["kind"] == kind, report.first["diagnosis"]["message"]
    names = [r["name"] for r in report.rows]
    assert all(r["status"] == "ok" for r in report.rows[: names.index(name)])  # everything before agrees
    assert report.rows[names.index(name)]["status"] == "fail"


def test_diagnosis_details(resnet50, x, reference):
    d = compare(perturbed(resnet50, x, swapped_channels), reference).first["diagnosis"]
    assert d["swapped"] == [3, 7] and d["axis"] == 1 and "channels 3 and 7" in d["message"]
    d = compare(perturbed(resnet50, x, scaled_layer), reference).first["diagnosis"]
    assert d["scale"] == pytest.approx(2, rel=1e-5)
    d = compare(perturbed(resnet50, x, offset_layer), reference).first["diagnosis"]
    assert d["offset"] == pytest.approx(0.5, rel=1e-4)
    d = compare(perturbed(resnet50, x, one_channel_bias), reference).first["diagnosis"]
    assert d["channels"] == [11]
    d = compare(perturbed(resnet50, x, nan_weight), reference).first["diagnosis"]
    assert d["nan_a"] == 64 and d["nan_b"] == 0  # channel 5, every position of the 8x8 map


def test_layout_transposed_nhwc_dump(reference):
    """Another runtime dumps one feature map channels-last: named, and diagnosed as NHWC vs NCHW."""
    theirs = dict(reference)
    theirs["resnet.encoder.stages.1"] = reference["resnet.encoder.stages.1"].transpose(0, 2, 3, 1)
    report = compare(theirs, reference)
    assert report.first["name"] == "resnet.encoder.stages.1"
    d = report.first["diagnosis"]
    assert d["kind"] == "layout transposed" and d["axes"] == [0, 2, 3, 1] and "NHWC" in d["message"]


def test_layout_transposed_same_shape(resnet50, reference, x):
    """An implementation that transposes the image (H and W swapped, same shape): caught at the input."""
    theirs = run(resnet50.checkpoint.params, np.ascontiguousarray(x.transpose(0, 1, 3, 2)))
    report = compare(theirs, reference)
    assert report.first["name"] == "pixel_values"
    assert report.first["diagnosis"]["kind"] == "layout transposed"
    assert "height and width are swapped" in report.first["diagnosis"]["message"]


def test_rgb_bgr_swap_is_a_channel_swap_at_the_input(resnet50, reference, x):
    theirs = run(resnet50.checkpoint.params, np.ascontiguousarray(x[:, ::-1]))
    report = compare(theirs, reference)
    assert report.first["name"] == "pixel_values"
    assert report.first["diagnosis"]["kind"] == "channel swap" and "RGB vs BGR" in report.first["diagnosis"]["message"]


def test_identical_traces_agree(reference):
    report = compare(dict(reference), reference)
    assert report.agree and report.first is None and len(report.compared) == len(reference)
    assert all(r["max_abs"] == 0 for r in report.rows)


@pytest.mark.parametrize("a, b, kind, words", [
    (np.arange(12.0).reshape(3, 4).T, np.arange(12.0).reshape(3, 4), "layout transposed", "transposed matrix"),
    (np.arange(16.0).reshape(4, 4).T, np.arange(16.0).reshape(4, 4), "layout transposed", "transposed matrix"),
    (np.arange(24.0).reshape(2, 3, 4) * 3 + 1, np.arange(24.0).reshape(2, 3, 4), "scale and offset", "3 * B + 1"),
    (np.arange(24.0).reshape(2, 3, 4) * [[[1]], [[2]]], np.arange(24.0).reshape(2, 3, 4), "generic drift", ""),
    (np.arange(24.0).reshape(1, 2, 3, 4) * np.array([1, 4.0])[None, :, None, None], np.arange(24.0).reshape(1, 2, 3, 4),
     "per-channel scale", "1 of 2 channels"),
    (np.arange(24.0).reshape(4, 6), np.arange(24.0).reshape(2, 3, 4), "shape mismatch", "same number of elements"),
    (-np.arange(1.0, 7.0), np.arange(1.0, 7.0), "scale factor", "sign flipped"),
    (np.arange(6.0) * 255, np.arange(6.0), "scale factor", "0-255"),
    (np.array([1.0, np.inf]), np.array([1.0, 2.0]), "NaN/inf", "inf in A"),
])
def test_diagnose_small_cases(a, b, kind, words):
    d = diagnose(a, b)
    assert d["kind"] == kind and words in d["message"], d["message"]


def test_tolerance_rule_and_nan_in_the_same_places():
    b = np.array([[0.0, 1000.0, np.nan]])
    a = b + np.array([[0.05, 0.0, 0.0]])  # 5e-5 of max|B|
    assert compare({"t": a}, {"t": b}).agree
    assert not compare({"t": a}, {"t": b}, rtol=1e-5).agree
    assert compare({"t": a}, {"t": b}, rtol=0, atol=0.05).agree


def test_batch_axis_squeezed_and_missing_tensors_reported(reference):
    theirs = {k: v[0] for k, v in reference.items() if k != "resnet.pooler"}  # no batch axis, one tensor missing
    report = compare(theirs, reference)
    assert report.agree
    assert [r["name"] for r in report.rows if r["status"] == "only in B"] == ["resnet.pooler"]
    assert all(r.get("note") == "A lacks B's leading axis of size 1 (ignored)" for r in report.compared)


def test_cli_on_npy_folders_with_name_maps(reference, resnet50, x, tmp_path, capsys):
    """Another implementation's dump with its own names (in sub-folders), mapped onto ours."""
    ours = tmp_path / "ours.safetensors"
    save_trace(ours, reference, {"model": "resnet-50", "dtype": "float32"})
    theirs = perturbed(resnet50, x, scaled_layer)
    dump = tmp_path / "dump"
    for name, value in theirs.items():
        other = name.replace("resnet.encoder.stages.", "body/stage").replace("classifier.1", "head/fc")
        (dump / other).parent.mkdir(parents=True, exist_ok=True)
        np.save(dump / f"{other}.npy", value)
    # without a map only 4 names match, and the divergence shows up late, at the pooled features
    assert main(["compare", str(dump), str(ours), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["compared"] == 4 and report["first_divergence"]["name"] == "resnet.pooler"
    # prefix and exact maps, from options and from a file
    (tmp_path / "map.json").write_text(json.dumps({"head.fc": "classifier.1"}))
    code = main(["compare", str(dump), str(ours), "--map", "body.stage*=resnet.encoder.stages.*",
                 "--map-file", str(tmp_path / "map.json"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and not report["agree"]
    assert report["summary"]["compared"] == len(reference)
    assert report["first_divergence"]["name"] == NORM_ONLY
    assert report["first_divergence"]["diagnosis"]["kind"] == "scale factor"
    # the text report points at it
    assert main(["compare", str(dump), str(ours), "--map", "body.stage*=resnet.encoder.stages.*",
                 "--map-file", str(tmp_path / "map.json"), "--failures-only"]) == 1
    text = capsys.readouterr().out
    assert f"first divergence: {NORM_ONLY}" in text and "scale factor: A == 2 * B" in text
    assert "verdict: DISAGREE" in text and "<- first divergence" in text


def test_cli_exit_codes(reference, tmp_path, capsys):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.npz"
    save_trace(a, reference)
    np.savez(b, **reference)
    assert main(["compare", str(a), str(b)]) == 0
    assert "verdict: AGREE" in capsys.readouterr().out
    np.savez(tmp_path / "other.npz", something=np.zeros(3))
    assert main(["compare", str(a), str(tmp_path / "other.npz")]) == 2  # nothing in common: an error
    assert "no tensor names in common" in capsys.readouterr().err
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2


def test_order_comes_from_the_side_that_records_it(reference, tmp_path):
    folder = save_npy_folder(tmp_path / "with-order", reference)
    loaded = load_tensors(folder)
    assert loaded.ordered and list(loaded.tensors) == list(reference)
    (folder / "trace.json").unlink()
    loaded = load_tensors(folder)
    assert not loaded.ordered and list(loaded.tensors)[0] == "classifier.1"  # natural sort only
    assert [r["name"] for r in compare(folder, reference).rows] == list(reference)


def test_parse_map_refuses_malformed_rules():
    with pytest.raises(ValueError):
        parse_map(["no-equals-sign"])
    with pytest.raises(ValueError):
        parse_map(["prefix*=exact"])
    assert parse_map(["a=b", "c*=d*"]) == {"a": "b", "c*": "d*"}


# --- no false pass: AGREE needs the final outputs ----------------------------------------------

def test_the_1_of_78_false_agree_is_incomplete(reference, tmp_path, capsys):
    """Regression (issue 12): an ONNX legacy-exporter dump whose names match refimpl's only at the
    input used to give "AGREE - all 1 compared tensors" and exit 0. It must not certify."""
    ref = tmp_path / "ref.safetensors"
    save_trace(ref, reference, {"model": "resnet-50", "dtype": "float32"})
    raw = {"pixel_values": reference["pixel_values"]}
    for i, (name, value) in enumerate(list(reference.items())[1:]):  # the rest under legacy node names
        raw[f"/resnet/encoder/node_{i}/Relu_output_0"] = value
    np.savez(tmp_path / "onnx_legacy_raw.npz", **raw)
    assert main(["compare", str(tmp_path / "onnx_legacy_raw.npz"), str(ref)]) == 3
    text = capsys.readouterr().out
    assert "verdict: INCOMPLETE" in text and "AGREE" not in text
    assert "not compared: classifier.1 (required)" in text
    assert f"coverage: 1 of the reference's {len(reference)} tensors compared" in text
    report = compare(tmp_path / "onnx_legacy_raw.npz", ref)
    assert report.verdict == "incomplete" and not report.agree and report.missing_required == ["classifier.1"]
    assert report.to_json()["required_why"] == "the final outputs of resnet-50"


def test_without_metadata_the_references_last_tensor_is_required(reference):
    partial = {k: v for k, v in reference.items() if k != "classifier.1"}
    report = compare(partial, reference)
    assert report.verdict == "incomplete" and report.required == ["classifier.1"]
    assert report.required_why == "the reference's last tensor in data-flow order"
    assert compare(dict(reference), reference).verdict == "agree"


def test_require_more_tensors(reference, tmp_path, capsys):
    ref = tmp_path / "ref.safetensors"
    save_trace(ref, reference, {"model": "resnet-50"})
    np.savez(tmp_path / "outputs.npz", **{"classifier.1": reference["classifier.1"]})
    assert main(["compare", str(tmp_path / "outputs.npz"), str(ref)]) == 0  # black box: outputs only
    assert main(["compare", str(tmp_path / "outputs.npz"), str(ref), "--require", "resnet.pooler"]) == 3
    assert "not compared: resnet.pooler (required)" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "outputs.npz"), str(ref), "--require", "no.such.tensor"]) == 2


def test_a_divergence_is_disagree_even_when_outputs_are_missing(reference):
    theirs = {"pixel_values": reference["pixel_values"][:, ::-1]}
    report = compare(theirs, reference)
    assert report.verdict == "disagree" and report.exit_code == 1


def test_map_patterns_with_captures_regexes_and_several_names(reference):
    theirs = {}
    for name, value in reference.items():
        m = __import__("re").fullmatch(r"resnet\.encoder\.stages\.(\d)\.layers\.(\d)", name)
        if m:
            theirs[f"layer{int(m.group(1)) + 1}.{m.group(2)}.relu#2"] = value
        elif name == "classifier.1":
            theirs["head/fc"] = value
    mapping = parse_map(["layer{S}.{B}.relu#2=resnet.encoder.stages.{S-1}.layers.{B}", "re:head/(fc)=classifier.1"])
    report = compare(theirs, reference, name_map=mapping)
    assert report.agree and len(report.compared) == 17
    # one tensor, two names: the last block's output is also the stage's output
    stage_end = {"layer4.2.relu#2": ["resnet.encoder.stages.3.layers.2", "resnet.encoder.stages.3"],
                 "layer{S}.{B}.relu#2": "resnet.encoder.stages.{S-1}.layers.{B}", "head/fc": "classifier.1"}
    report = compare(theirs, reference, name_map=stage_end)
    assert {"resnet.encoder.stages.3", "resnet.encoder.stages.3.layers.2"} <= {r["name"] for r in report.compared}
    with pytest.raises(ValueError, match="not captured"):
        parse_map(["layer{S}=stages.{T}"])


def test_nhwc_layout_dump(reference):
    theirs = {k: (np.ascontiguousarray(v.transpose(0, 2, 3, 1)) if v.ndim == 4 else v) for k, v in reference.items()}
    assert compare(theirs, reference).verdict == "disagree"
    assert compare(theirs, reference, layout="nhwc").agree
