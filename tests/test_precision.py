"""refimpl certify in reduced precision (refimpl/conformance/precision.py): the rounding and the
fake quantization, detection of the port's precision, the structural checks, isolate in the port's
precision, and the ports themselves - ONNX float16 (onnxconverter-common), torch `.half()` and
bfloat16, ONNX Runtime int8 dynamic and static QDQ, on the synthesized ResNet-50 at 64 px: each
correct port certified "within" its precision's rounding; each planted bug (a dropped ReLU, ResNet
v1's stride, BN eps 1e-3, a channel swap) diverges at the right tensor with the bug named."""

import json
from pathlib import Path

import numpy as np
import pytest

import refimpl
from fixtures_precision import BUGS, EXPECTED
from refimpl.cli import main
from refimpl.conformance import precision
from refimpl.conformance.budgets import relative_error
from refimpl.conformance.certify import certify
from refimpl.conformance.trace import trace
from refimpl.diagnoses import bn_eps_in_noise, negatives_after_relu
from refimpl.pipeline.decode import read_image

CAT = Path(__file__).parent.parent / "examples" / "cat.png"


# --- rounding -------------------------------------------------------------------------------------

def test_bf16_rounding_is_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 5000), rng.normal(0, 1e-30, 100), [0.0, -0.0, np.inf, -np.inf, 65504.0,
                                                                               1 + 2 ** -8, 1 + 3 * 2 ** -9]])
    x = x.astype(np.float32)
    expected = x.astype(ml_dtypes.bfloat16).astype(np.float32)
    assert np.array_equal(precision.to_bf16(x), expected)
    assert np.isnan(precision.to_bf16(np.array([np.nan], np.float32))).all()


def test_fp16_rounding_and_fake_quantization():
    x = np.array([1.0, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 70000.0])
    assert precision.to_fp16(x).tolist() == [1.0, 1.0, 1 + 2 ** -9, np.inf]  # nearest even; overflow as the port's
    w = np.random.default_rng(1).normal(0, 1, (8, 4, 3, 3)) * np.arange(1, 9)[:, None, None, None]
    q = precision.fake_quant_weight(w, per_channel=True)
    step = np.abs(w).max(axis=(1, 2, 3)) / 127
    assert np.all(np.abs(q - w).max(axis=(1, 2, 3)) <= step / 2 + 1e-12)
    assert len(np.unique(np.round(q[0] / step[0]))) <= 255
    t = precision.fake_quant_weight(w, per_channel=False)  # one step for all channels: coarser on the small ones
    assert np.abs(t - w)[0].max() > np.abs(q - w)[0].max()
    x = np.linspace(-1, 3, 1001)
    scale, zero = precision.range_scale(x)
    y = precision.fake_quant_activation(x, scale, zero)
    assert scale == pytest.approx(4 / 255) and np.abs(y - x).max() <= scale / 2 + 1e-12 and 0.0 in y


def test_detect():
    f16, f32 = np.zeros(3, np.float16), np.zeros(3, np.float32)
    assert precision.detect({"a": f32, "b": f16})[0] == "fp16"
    assert precision.detect({"a": f32})[0] == "fp32"  # never a wider budget on a guess
    assert precision.detect({"a": f32}, ("int8", "declared"))[0] == "int8"
    with pytest.raises(precision.PrecisionError):
        precision.check_precision("fp8")


def test_snr_cosine_top_k():
    b = np.arange(1.0, 11.0)
    snr, cos = precision.snr_cosine(b * 1.01, b)
    assert snr == pytest.approx(40.0) and cos == pytest.approx(1.0)
    agreement = precision.top_k_agreement(np.array([[5.0, 4, 3, 2, 1, 0]]), np.array([[4.0, 5, 3, 2, 0, 1]]))
    assert agreement == {"top1": False, "top_k": 0.8, "k": 5}


# --- structural checks ----------------------------------------------------------------------------

def test_negatives_after_relu_names_a_missing_relu_inside_the_noise():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1, (1, 8, 16, 16))
    b = np.maximum(z, 0)
    case = {"name": "x", "b": b, "budget": 1.0, "unit_roundoff": 2 ** -11}
    assert negatives_after_relu.check({**case, "a": precision.to_fp16(b)}) is None  # rounded: never negative
    small = np.where(z < 0, z * 1e-2, z)  # a ReLU missing where its input is nearly non-negative: errors of 1%
    found = negatives_after_relu.check({**case, "a": small})
    assert found["kind"] == "negatives after relu" and found["negative_fraction"] > 0.3
    assert negatives_after_relu.check({**case, "a": z, "b": z}) is None  # not a ReLU's output in the reference


def test_bn_eps_in_noise(resnet50_small):
    """An eps change that moves each channel by less than the fp16 budget is still named; fp16
    rounding alone, and random per-channel scales of the same size (either sign), are not."""
    var = resnet50_small.checkpoint.params["resnet.encoder.stages.1.layers.1.layer.1.normalization.running_var"]
    var = np.asarray(var, np.float64)
    rng = np.random.default_rng(3)
    b = rng.normal(0, 1, (1, var.size, 16, 16)) + 0.1
    bn = {"running_var": var, "eps": 1e-5, "module": "m"}
    s = np.sqrt((var + 1e-5) / (var + 1e-3)).reshape(1, -1, 1, 1)
    case = {"name": "m", "b": b, "bn": bn, "unit_roundoff": 2 ** -11, "precision": "fp16"}
    a = precision.to_fp16(s * b)
    assert np.abs(a - b).max() / np.abs(b).max() < 6 * 2 ** -11  # inside the budget
    found = bn_eps_in_noise.check({**case, "a": a})
    assert found is not None and found["kind"] == "bn eps in noise" and 5e-4 <= found["eps"] <= 2e-3
    assert bn_eps_in_noise.check({**case, "a": precision.to_fp16(b)}) is None
    signs = rng.choice([-1.0, 1.0], s.size).reshape(s.shape)
    random = 1 + signs * rng.permutation((s - 1).ravel()).reshape(s.shape)  # scales of that size, not following var
    assert bn_eps_in_noise.check({**case, "a": precision.to_fp16(random * b)}) is None


# --- the rounded run and isolate --------------------------------------------------------------------

@pytest.fixture(scope="module")
def model64(resnet50_small_dir):
    """refimpl's reference path in float64 on the 64 px checkpoint (the truth)."""
    return refimpl.load("resnet-50", resnet50_small_dir, dtype="float64", path="reference")


def test_rounded_run_has_the_reference_names_and_grows_with_depth(model64):
    t64, _ = trace(CAT.read_bytes(), model64)
    params = model64.checkpoint.params
    for p in ("fp16", "bf16", "int8"):
        r = precision.rounded_trace(params, t64["pixel_values"], p)
        assert set(r) == set(t64) - {"image"}, set(t64) ^ set(r)
        errors = [relative_error(r[n], t64[n]) for n in ("resnet.embedder", "resnet.encoder.stages.3", "classifier.1")]
        assert precision.UNIT_ROUNDOFF[p] / 4 < errors[0] < errors[1], (p, errors)
    same = precision.rounded_trace(params, t64["pixel_values"], "fp32")
    assert all(np.array_equal(same[n], t64[n]) for n in same)  # float64 throughout: the truth itself


def test_isolate_in_precision_introduced_or_inherited(model64):
    params = model64.checkpoint.params
    pv = model64.preprocess([read_image(CAT)[1]])
    noisy = precision.rounded_trace(params, pv * 1.02, "fp16")  # a port fed a different input: inherited everywhere
    found = precision.isolate(noisy, "resnet.encoder.stages.1.layers.1.layer.1", params, "fp16")
    assert found["verdict"] == "inherited", found["message"]
    name = "resnet.encoder.stages.1.layers.1.layer.1"
    wrong = dict(noisy)
    wrong[name] = noisy[name] * 1.01  # the layer's own output off by 1%: inside a deep budget, not the layer's
    found = precision.isolate(wrong, name, params, "fp16")
    assert found["verdict"] == "introduced here", found["message"]
    block = "resnet.encoder.stages.1.layers.1"
    assert precision.isolate(noisy, block, params, "fp16")["inputs"] == [name[:-8] + ".layer.2", "resnet.encoder.stages.1.layers.0"]


# --- ports -----------------------------------------------------------------------------------------

def check_certified_within(report, words):
    assert report.verdict == "certified", report.text(tensors=True)
    text = report.text()
    assert f"within {words}" in text and report.coverage()["scope"] == "layer by layer"
    assert report.coverage()["compared"] >= 76
    rows = report.cases[0]["report"].compared
    assert all(isinstance(r.get("snr_db"), (float, str)) and -1 <= r["cosine"] <= 1 for r in rows)
    top = report.cases[0]["top_k"]
    # the synthesized model's top logits are close together: bf16 and int8 may swap its two best classes
    assert top["top1"] or (not words.startswith("fp16") and top["top_k"] >= 0.6), top


@pytest.mark.parametrize("kind, words, detected", [
    ("fp16", "fp16 rounding", "float16"),
    ("int8_dynamic", "int8 quantization", "dynamic"),
    ("int8_qdq", "int8 quantization", "QDQ"),
    pytest.param("half", "fp16 rounding", "float16", marks=pytest.mark.slow),
    pytest.param("bf16", "bf16 rounding", "bfloat16", marks=pytest.mark.slow),
])
def test_correct_ports_certify_within_their_precision(resnet50_small_dir, precision_port, kind, words, detected):
    if kind == "bf16":
        pytest.importorskip("ml_dtypes")
    report = certify(precision_port(kind), "resnet-50", resnet50_small_dir, images=[CAT])
    check_certified_within(report, words)
    assert detected in report.precision_why
    data = report.to_json()
    assert data["precision"]["precision"] == report.precision and json.loads(json.dumps(data)) == data
    if kind.startswith("int8"):  # compared on float tensors only, never on integer codes
        assert all(r["dtype_a"].startswith("float") for r in report.cases[0]["report"].compared)
    # the HTML report says the same: the precision, and what explains the differences
    from refimpl.reports.html import render_certify

    page = render_certify(data)
    assert f"<b id=precision>{report.precision}</b>" in page and f"within {words}" in page and "CERTIFIED" in page


def test_fp16_port_told_fp32_diverges_and_auto_certifies(resnet50_small_dir, precision_port, capsys):
    impl = precision_port("fp16")
    code = main(["certify", impl, str(CAT), "--weights", str(resnet50_small_dir), "--precision", "fp32"])
    out = capsys.readouterr().out
    assert code == 1 and "verdict: DIVERGES at pixel_values" in out and "precision: fp32 (given" in out
    code = main(["certify", impl, str(CAT), "--weights", str(resnet50_small_dir), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["precision"]["precision"] == "fp16" and "detected" in data["precision"]["why"]


FAST = {("fp16", bug) for bug in BUGS} | {("int8_dynamic", "missing_relu"), ("int8_qdq", "missing_relu")}
PORT_BUGS = [pytest.param(kind, bug, marks=() if (kind, bug) in FAST else pytest.mark.slow)
             for kind in ("fp16", "half", "int8_dynamic", "int8_qdq") for bug in BUGS]


@pytest.mark.parametrize("kind, bug", PORT_BUGS)
def test_planted_bugs_diverge_at_the_right_tensor(resnet50_small_dir, precision_port, kind, bug):
    name, kinds = EXPECTED[bug]
    report = certify(precision_port(kind, bug), "resnet-50", resnet50_small_dir, images=[CAT])
    assert report.verdict == "diverges", report.text(tensors=True)
    first = report.first_divergence
    assert first["name"] == name, report.text(tensors=True)
    assert first["diagnosis"]["kind"] in kinds, first["diagnosis"]["message"]
    if bug in ("missing_relu", "bn_eps"):  # the layer's own bug: isolate in the port's precision says so
        assert first.get("isolate") == "introduced here", report.cases[0].get("isolate")


@pytest.mark.slow
def test_reduced_precision_detr_is_refused_by_name(detr_small_dirs, capsys):
    """refimpl runs reduced precision for the ResNet classifiers only: a DETR port in fp16 is refused (exit 2),
    never certified against float32 budgets."""
    street = Path(__file__).parent.parent / "examples" / "street.jpg"
    code = main(["certify", "transformers", str(street), "--model", "detr-resnet-50", "--weights",
                 str(detr_small_dirs["transformers"]), "--precision", "fp16"])
    err = capsys.readouterr().err
    assert code == 2 and "PrecisionError" in err and "ResNet classifiers only, not detr-resnet-50" in err


@pytest.mark.slow  # the family checkpoints take ~45 s to synthesize
@pytest.mark.parametrize("name", ["resnet-18", "resnet-101"])
def test_the_rounded_run_walks_any_family_member(family_dirs, name):
    """Basic blocks (2 steps) and a 33-block ResNet: in fp32 the rounded run is refimpl's float64
    trace itself; in fp16 every tensor is there and its error is of fp16's size."""
    model = refimpl.load(name, family_dirs[name], dtype="float64", path="reference")
    t64, _ = trace(CAT.read_bytes(), model)
    params, names = model.checkpoint.params, model.backbone_names
    same = precision.rounded_trace(params, t64["pixel_values"], "fp32", names=names)
    assert set(same) == set(t64) - {"image"} and all(np.array_equal(same[n], t64[n]) for n in same)
    r = precision.rounded_trace(params, t64["pixel_values"], "fp16", names=names)
    assert set(r) == set(t64) - {"image"}
    assert precision.UNIT_ROUNDOFF["fp16"] / 4 < relative_error(r["classifier.1"], t64["classifier.1"]) < 0.1
