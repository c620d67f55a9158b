"""refimpl/registry.py: one table of models, read by every module and command; and the explicit
path: for a given path, what `refimpl trace` stores is exactly what `classify`/`detect` print."""

import json
from pathlib import Path

import numpy as np
import pytest

from refimpl import cli, registry
from refimpl.conformance.trace import load_trace
from refimpl.errors import UnknownModelError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ALIASES = [(spec, name) for spec in registry.MODELS for name in spec.names]


# --- the table ----------------------------------------------------------------------------------

def test_every_name_belongs_to_one_model():
    names = [n.lower() for spec in registry.MODELS for n in spec.names]
    assert len(names) == len(set(names))
    assert registry.names()[:2] == ["@cf/microsoft/resnet-50", "@cf/facebook/detr-resnet-50"]


@pytest.mark.parametrize("spec,name", ALIASES, ids=[n for _, n in ALIASES])
def test_get_resolves_every_alias(spec, name):
    assert registry.get(name) is spec
    assert registry.get(name.upper()) is spec  # letter case is ignored ...
    with pytest.raises(UnknownModelError, match="known models: @cf/microsoft/resnet-50"):
        registry.get(name + " ")  # ... nothing else


def test_unknown_models_are_typed_errors():
    for bad in ("resnet-26", "", None, 50):
        with pytest.raises(UnknownModelError) as e:
            registry.get(bad)
        assert e.value.status == 404 and e.value.code == 3042


def test_weights_source_order(monkeypatch):
    spec = registry.get("resnet-50")
    monkeypatch.delenv(spec.weights_env, raising=False)
    assert spec.weights_source() == "microsoft/resnet-50"
    monkeypatch.setenv(spec.weights_env, "/somewhere")
    assert spec.weights_source() == "/somewhere"  # read at call time
    assert spec.weights_source("given") == "given"


def test_spec_of_a_loaded_model(resnet50_small, detr_small_models):
    assert registry.spec_of(resnet50_small) is registry.get("resnet-50")
    assert registry.spec_of(detr_small_models["timm"]) is registry.get("detr")
    with pytest.raises(UnknownModelError):
        registry.spec_of(object())


# --- registry x commands: every command that takes a model accepts every alias -------------------

def model_commands(name, tmp):
    """argv of every command that takes a model, with `name` as the model."""
    image, out = str(EXAMPLES / "cat.png"), str(tmp / "out")
    return {
        "run": ["run", name, image],
        "trace": ["trace", image, "--model", name, "--out", out],
        "golden": ["golden", "--model", name, "--out", out],
        "audit": ["audit", image, "--model", name, "--claimed", out],
        "audit-dir": ["audit-dir", str(tmp), "--model", name],
        "summary": ["summary", name],
        "check-endpoint": ["check-endpoint", "http://127.0.0.1:9", image, "--model", name],
        "certify": ["certify", "torchvision:resnet50", image, "--model", name],
        "evaluate": ["evaluate", str(tmp), "--model", name],
    }


@pytest.mark.parametrize("spec,name", ALIASES, ids=[n for _, n in ALIASES])
def test_every_command_parses_every_alias(spec, name, tmp_path):
    parser = cli.build_parser()
    commands = model_commands(name, tmp_path)
    assert set(commands) | {"serve", "bench"} >= {c for c in cli.COMMANDS if c not in ("classify", "detect", "compare", "diagnoses")}
    for command, argv in commands.items():
        args = parser.parse_args(argv)
        assert args.model is spec, command
    # classify and detect take --model too (their task's models); summary also as --model M
    task_command = "classify" if spec.task == "image-classification" else "detect"
    assert parser.parse_args([task_command, str(EXAMPLES / "cat.png"), "--model", name]).model is spec
    assert parser.parse_args(["summary", "--model", name]).model_option is spec


def test_classify_and_detect_refuse_the_other_task(capsys):
    image = str(EXAMPLES / "cat.png")
    assert cli.main(["classify", image, "--model", "detr-resnet-101"]) == 2
    assert "detr-resnet-101 is an object-detection model; classify takes resnet-18" in capsys.readouterr().err
    assert cli.main(["detect", image, "--model", "resnet18"]) == 2
    assert "detect takes detr-resnet-50, detr-resnet-101" in capsys.readouterr().err


@pytest.mark.parametrize("spec", registry.MODELS, ids=[s.name for s in registry.MODELS])
def test_summary_of_every_entry_without_weights(spec, capsys):
    assert cli.main(["summary", "--model", spec.name, "--json", "--size", "64", "96"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["model"] == spec.name and table["input_shape"] == [3, 64, 96]


@pytest.mark.parametrize("spec,name", ALIASES, ids=[n for _, n in ALIASES])
def test_serve_and_bench_resolve_every_alias(spec, name, monkeypatch):
    """serve --preload/--weights and bench --models/--weights take model names as values."""
    import refimpl.perf.bench as bench
    import refimpl.serving.server as server

    seen = {}
    monkeypatch.setattr(server, "serve", lambda *a, **kw: seen.update(serve=kw) or 0)
    monkeypatch.setattr(bench, "run", lambda models, *a, **kw: seen.update(bench=(models, a[4])) or {})
    monkeypatch.setattr(bench, "format_report", lambda report: "")
    assert cli.main(["serve", "--preload", name, "--weights", f"{name}=/w"]) == 0
    assert seen["serve"]["preload"] == [spec.hosted_name] and seen["serve"]["weights"] == {spec.name: "/w"}
    assert cli.main(["bench", "--models", name, "--weights", f"{name}=/w"]) == 0
    assert seen["bench"] == ([spec.name], {spec.name: "/w"})
    seen.clear()
    assert cli.main(["bench", "--model", name]) == 0  # --model: --models' other spelling
    assert seen["bench"] == ([spec.name], {})


def test_summary_takes_the_hosted_name(capsys):
    """The symptom the registry fixed: `refimpl summary @cf/microsoft/resnet-50` was refused."""
    assert cli.main(["summary", "@cf/microsoft/resnet-50"]) == 0
    assert "25,557,032 parameters" in capsys.readouterr().out
    assert cli.main(["summary", "facebook/detr-resnet-50", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "detr-resnet-50"


# --- the explicit path: trace == CLI output, for each path and both models -------------------------

def cli_json(capsys, argv):
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("path", ["reference", "fast"])
def test_trace_stores_exactly_what_classify_prints(path, resnet50_small_dir, tmp_path, capsys):
    image = str(EXAMPLES / "cat.png")
    printed = cli_json(capsys, ["classify", image, "--weights", str(resnet50_small_dir), "--path", path])
    out = tmp_path / "t.safetensors"
    assert cli.main(["trace", image, "--model", "@cf/microsoft/resnet-50", "--weights", str(resnet50_small_dir),
                     "--path", path, "--out", str(out)]) == 0
    tensors, metadata = load_trace(out)
    assert metadata["path"] == path
    assert metadata["output"] == printed  # bit-identical: the same floats, not merely close
    assert "resnet.encoder.stages.3.layers.2" in tensors and "classifier.1" in tensors


@pytest.mark.parametrize("path", ["reference", "fast"])
def test_trace_stores_exactly_what_detect_prints(path, detr_small_dirs, tmp_path, capsys):
    from refimpl.conformance.trace import trace

    image, weights = str(EXAMPLES / "street.jpg"), str(detr_small_dirs["timm"])
    printed = cli_json(capsys, ["detect", image, "--weights", weights, "--path", path])
    out = tmp_path / "t.safetensors"
    assert cli.main(["trace", image, "--model", "detr", "--weights", weights, "--path", path, "--out", str(out)]) == 0
    capsys.readouterr()
    _, metadata = load_trace(out)
    assert metadata["path"] == path and metadata["output"] == printed
    # the hosted shape too (the Python API takes the output options)
    printed = cli_json(capsys, ["detect", image, "--weights", weights, "--path", path, "--shape", "hosted"])
    _, metadata = trace(image, "detr", weights, path=path, shape="hosted")
    assert metadata["output"] == printed and len(printed) == 100


@pytest.fixture(scope="module")
def detr_traces(detr_small_dirs):
    from refimpl.conformance.trace import trace

    image, weights = str(EXAMPLES / "street.jpg"), str(detr_small_dirs["timm"])
    return {(dtype, path): trace(image, "detr", weights, dtype=dtype, path=path)[0]
            for dtype in ("float32", "float64") for path in ("reference", "fast")}


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / (np.abs(b).max() or 1.0))


def test_detr_fast_path_agrees_with_the_reference_on_every_traced_tensor(detr_traces):
    """DETR's fast path is fast.py's backbone under fast_detr.py's transformer. The backbone's
    tensors are within 1e-5 of the reference in float32; downstream, peaked
    attention amplifies the backbone's last-bit differences (README, "Detection": transformers'
    own float32 run is as far from float64), so there each tensor is held to 1e-5 or to 3x the
    reference's own float32-vs-float64 error on it, whichever is larger. float64: 1e-12 everywhere."""
    ref32, fast32 = detr_traces["float32", "reference"], detr_traces["float32", "fast"]
    ref64, fast64 = detr_traces["float64", "reference"], detr_traces["float64", "fast"]
    assert list(fast32) == list(ref32) and list(fast64) == list(ref64)  # every name, same order
    for name in ref64:
        assert fast64[name].shape == ref64[name].shape, name
        assert rel(fast64[name], ref64[name]) <= 1e-12, name
    for name in ref32:
        err = rel(fast32[name], ref32[name])
        if name.startswith("model.backbone.conv_encoder.model.") or name in ("pixel_values", "image", "pixel_mask"):
            assert err <= 1e-5, f"{name}: {err:.2e}"
        else:
            own = rel(ref32[name], ref64[name])
            assert err <= max(1e-5, 3 * own), f"{name}: {err:.2e} (reference's own float32 error {own:.2e})"
