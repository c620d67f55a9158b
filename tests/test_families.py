"""Model families (issue 20): every registry entry is computed by the same code from its
config.json, layer by layer equal to transformers on synthesized checkpoints of ResNet-18 (basic
blocks), ResNet-101, DETR-ResNet-101 (both layouts) and DETR-ResNet-50-DC5 (dilated last stage);
the fast path equals the reference on them; and a member that is not in the registry is added by
a registry entry alone (a fake ResNet-26, in this test only)."""

import copy
import dataclasses
import json

import numpy as np
import pytest

import report
from hf_trace import hf_trace
from refimpl import registry
from refimpl.errors import CheckpointMismatchError, UnknownModelError
from refimpl.models import detr, resnet

TOL = {"float32": 1e-5, "float64": 1e-12}


def rel(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def pixels(n, h, w, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, h, w)).astype(np.float32)


# --- the walk ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,blocks,params", [
    # published parameter counts (torchvision's model cards: the same architectures, 1000 classes)
    ("resnet-18", 8, 11_689_512), ("resnet-34", 16, 21_797_672), ("resnet-50", 16, 25_557_032),
    ("resnet-101", 33, 44_549_160), ("resnet-152", 50, 60_192_808)])
def test_every_resnet_entry_has_its_published_size(name, blocks, params):
    spec = registry.get(name)
    a = spec.architecture
    assert a.name == name and len(list(resnet.blocks(resnet.classifier_backbone(a)))) == blocks
    assert registry.get(name.replace("-", "")) is spec and registry.get(f"microsoft/{name}") is spec
    from refimpl.viz import summary

    s = summary.summarize(spec, 224, 224)
    assert s.model == name and s.totals()["params"] == params


def test_dc5_geometry_follows_timm_and_torchvision():
    """DC5: the last stage keeps stride 16; its first block's 3x3 keeps dilation 1 (torchvision's
    replace_stride_with_dilation, timm's output_stride=16), the others use 2; the shortcut is 1x1/1."""
    backbone = detr.hparams(registry.get("detr-resnet-101-dc5").config).backbone_names
    last = [b for b in resnet.blocks(backbone) if b.stage == 3]
    assert [b.layers[1].dilation for b in last] == [1, 2, 2] and [b.stride for b in last] == [1, 1, 1]
    assert last[0].projection.stride == 1 and last[0].projection.c_in == 1024
    assert [b.layers[1].padding for b in last] == [1, 2, 2]
    assert backbone.arch.output_stride == 16 and detr.hparams(registry.get("detr-resnet-101").config).backbone.output_stride == 32


def test_registry_entries_and_hosted_names():
    assert {s.hosted_name for s in registry.HOSTED} == {"@cf/microsoft/resnet-50", "@cf/facebook/detr-resnet-50"}
    for old in ("resnet50", "detr", "resnet-50", "detr-resnet-50", "microsoft/resnet-50", "facebook/detr-resnet-50"):
        assert registry.get(old).hosted
    for name in ("resnet-18", "resnet-34", "resnet-101", "resnet-152", "detr-resnet-101", "detr-resnet-50-dc5",
                 "detr-resnet-101-dc5"):
        spec = registry.get(name)
        assert not spec.hosted and spec.hosted_name == name and registry.get(spec.repo_id) is spec
    assert registry.get("detr-resnet-50-dc5").revisions == ("main",)
    assert registry.get("detr-resnet-101").revisions == ("main", "no_timm")


# --- ResNet-18 and ResNet-101 against transformers, and fast vs reference -------------------------

@pytest.fixture(scope="module")
def classifiers(family_dirs):
    from transformers import ResNetForImageClassification

    out = {}
    for name, folder in family_dirs.items():
        hf = ResNetForImageClassification.from_pretrained(folder).eval()
        out[name] = {"float32": (registry.load(name, folder, path="reference"), hf),
                     "float64": (registry.load(name, folder, dtype="float64", path="reference"), copy.deepcopy(hf).double())}
    return out


E2E_FACTOR = 3.0  # as tests/test_detr_layers.py: float32 end to end against the float64 truth


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet-18", "resnet-101"])
def test_every_layer_matches_transformers(classifiers, name):
    """float64: every traced tensor within 1e-12 of transformers' float64 run. float32: 100
    layers of float32 rounding grow past 1e-5 in ResNet-101's last stage for transformers as much
    as for refimpl (FACTS.md), so each float32 tensor is held against the float64 truth: at most
    1e-5 relative, or no more than E2E_FACTOR times transformers' own float32 error there."""
    model64, hf64 = classifiers[name]["float64"]
    model32, hf32 = classifiers[name]["float32"]
    for case, x in (("random 1x64x64", pixels(1, 64, 64)), ("random 2x67x91", pixels(2, 67, 91, 1))):
        trace64, trace32 = {}, {}
        model64.forward(x.astype(np.float64), trace64)
        model32.forward(x, trace32)
        names = [n for n in trace64 if n != "pixel_values"]
        assert list(trace32) == list(trace64)
        truth = hf_trace(hf64, names, x.astype(np.float64))
        theirs = hf_trace(hf32, names, x)
        assert set(truth) == set(names)
        for layer in names:
            assert trace64[layer].dtype == np.float64 and trace32[layer].dtype == np.float32
            _, r = report.compare(name, "float64", case, layer, trace64[layer], truth[layer])
            assert r <= TOL["float64"], f"{name} {case}: {layer} float64 differs from transformers by {r:.2e}"
            report.compare(name, "float32", case, layer, trace32[layer], theirs[layer])
            _, ours = report.compare(name, "f32-e2e", case, layer, trace32[layer], truth[layer])
            _, hf = report.compare(name.replace("resnet", "hf-resnet"), "f32-e2e", case, layer, theirs[layer], truth[layer])
            assert ours <= max(TOL["float32"], E2E_FACTOR * hf), (
                f"{name} {case}: {layer} float32 {ours:.2e} from the float64 truth, transformers' float32 {hf:.2e}")
    blocks = [n for n in names if n.count(".") == 5 and ".layers." in n]
    assert len(blocks) == sum(model64.arch.depths)


def assert_fast_equals_reference(label, case, ref64, fast64, ref32, fast32):
    """The fast path against the reference, every traced tensor, same names in the same order:
    float64 within 1e-12; float32 (its rounding differs from the reference's by the order of
    summation and BN folding) held to the float64 reference: at most 1e-5 relative, or no more
    than E2E_FACTOR times the reference's own float32 error there."""
    assert list(fast64) == list(ref64) == list(ref32) == list(fast32)
    for name, truth in ref64.items():
        if truth.dtype == bool or truth.dtype.kind in "iu":
            assert np.array_equal(fast64[name], truth) and np.array_equal(fast32[name], ref32[name]), name
            continue
        _, r = report.compare(label + " fast", "float64", case, name, fast64[name], truth)
        assert fast64[name].dtype == np.float64 and r <= TOL["float64"], f"{label} float64 {name}: {r:.2e}"
        report.compare(label + " fast", "float32", case, name, fast32[name], ref32[name])
        ours, theirs = rel(fast32[name], truth), rel(ref32[name], truth)
        assert fast32[name].dtype == np.float32 and ours <= max(TOL["float32"], E2E_FACTOR * theirs), (
            f"{label} float32 {name}: fast {ours:.2e} from the float64 reference, the reference's float32 {theirs:.2e}")


@pytest.mark.slow  # the family checkpoints take ~45 s (classifiers) / ~160 s (DETRs) to synthesize
@pytest.mark.parametrize("name", ["resnet-18", "resnet-101"])
def test_fast_equals_the_reference_on_every_traced_tensor(classifiers, name):
    model64, model32 = classifiers[name]["float64"][0], classifiers[name]["float32"][0]
    x = pixels(2, 67, 91, 2)
    runs = []
    for model, x in ((model64, x.astype(np.float64)), (model32, x)):
        ref, ours = {}, {}
        model.forward(x, ref)
        model.with_path("fast").forward(x, ours)
        runs += [ref, ours]
    assert_fast_equals_reference(name, "random 2x67x91", *runs)


@pytest.mark.slow  # the family checkpoints take ~45 s (classifiers) / ~160 s (DETRs) to synthesize
def test_an_entry_refuses_another_members_checkpoint(family_dirs):
    with pytest.raises(CheckpointMismatchError, match=r"depths=\[3, 4, 23, 3\] \(the entry has \[2, 2, 2, 2\]\).*"
                                                      r"not resnet-18 but a resnet-101"):
        registry.load("resnet-18", family_dirs["resnet-101"])
    model = registry.load("resnet-101", family_dirs["resnet-101"])
    assert registry.spec_of(model) is registry.get("resnet-101")
    assert registry.spec_of(registry.load("resnet-18", family_dirs["resnet-18"])).name == "resnet-18"


# --- DETR-ResNet-101 (both layouts) and DETR-ResNet-50-DC5 against transformers ----------------------

@pytest.fixture(scope="module")
def detr_runs(detr_family_dirs, detr_small_batch):
    """{(name, layout): (model, run32, hf64)} as test_detr_layers.compare_layers takes them, for the
    members transformers computes (the timm DC5 and both DETR-101 layouts)."""
    from transformers import DetrForObjectDetection

    from fixtures_detr import hf_detr_trace

    runs = {}
    b = detr_small_batch
    for key in (("detr-resnet-101", "timm"), ("detr-resnet-101", "transformers"), ("detr-resnet-50-dc5", "timm")):
        model = registry.load(key[0], detr_family_dirs[key], path="reference")
        hf = DetrForObjectDetection.from_pretrained(detr_family_dirs[key], attn_implementation="eager").eval()
        trace = {}
        model.forward(b["pixel_values"], b["pixel_mask"], trace)
        names = [n for n in trace if n not in ("pixel_values", "pixel_mask", "pred_boxes")]
        calls, hf_outputs = hf_detr_trace(hf, names, b["pixel_values"], b["pixel_mask"])
        runs[key] = (model, dict(trace=trace, calls=calls, names=names, hf_outputs=hf_outputs), copy.deepcopy(hf).double())
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("key", [("detr-resnet-101", "timm"), ("detr-resnet-101", "transformers"),
                                 ("detr-resnet-50-dc5", "timm")], ids=lambda k: "-".join(k))
def test_detr_member_every_layer_matches_transformers(detr_runs, detr_small_batch, key):
    from test_detr_layers import compare_layers

    model, run32, hf64 = detr_runs[key]
    b = detr_small_batch
    results = compare_layers(model, run32, hf64, b["pixel_values"], b["pixel_mask"], f"{key[0]}-{key[1]}",
                             "2 photos 128x200 padded", backbone_per_layer=False)
    last = model.backbone_names.stage(len(model.arch.depths) - 1)
    assert last in results["float64"] and last in results["f32-e2e"]
    assert "model.decoder.layers.5.encoder_attn.attn_weights" in results["float32"]
    h, w = b["pixel_values"].shape[2:]
    stride = 16 if model.arch.dilation else 32
    assert run32["trace"][last].shape[2:] == (-(-h // stride), -(-w // stride))  # "same" padding: ceil(H / stride)


@pytest.mark.slow  # the family checkpoints take ~45 s (classifiers) / ~160 s (DETRs) to synthesize
def test_dc5_in_either_layout_is_the_same_model(detr_family_dirs, detr_small_batch):
    """transformers' ResNet cannot dilate, so the transformers-layout DC5 is the timm checkpoint
    with its keys renamed by the walk: refimpl gives it exactly the same outputs, both paths."""
    b = detr_small_batch
    timm = registry.load("detr-resnet-50-dc5", detr_family_dirs[("detr-resnet-50-dc5", "timm")], path="reference")
    renamed = registry.load("detr-resnet-50-dc5", detr_family_dirs[("detr-resnet-50-dc5", "transformers")],
                            revision="no_timm", path="reference")
    assert renamed.layout == "transformers" and renamed.arch.dilation
    for path in ("reference", "fast"):
        a = timm.with_path(path).forward(b["pixel_values"], b["pixel_mask"])
        out = renamed.with_path(path).forward(b["pixel_values"], b["pixel_mask"])
        for k in ("logits", "pred_boxes"):
            assert np.array_equal(out[k], a[k]), (path, k)  # the same numbers through the same code


@pytest.mark.slow  # the family checkpoints take ~45 s (classifiers) / ~160 s (DETRs) to synthesize
@pytest.mark.parametrize("key", [("detr-resnet-101", "transformers"), ("detr-resnet-50-dc5", "timm")],
                         ids=lambda k: "-".join(k))
def test_detr_member_fast_equals_the_reference(detr_family_dirs, detr_small_batch, key):
    b = detr_small_batch
    runs = []
    for dtype in ("float64", "float32"):
        model = registry.load(key[0], detr_family_dirs[key], dtype=dtype, path="reference")
        ref, ours = {}, {}
        model.forward(b["pixel_values"], b["pixel_mask"], ref)
        model.with_path("fast").forward(b["pixel_values"], b["pixel_mask"], ours)
        runs += [ref, ours]
    assert_fast_equals_reference(f"{key[0]}-{key[1]}", "2 photos 128x200 padded", *runs)


# --- adding a member is a registry entry ---------------------------------------------------------

@pytest.mark.slow
def test_a_fake_member_is_one_registry_entry(tmp_path, monkeypatch, capsys):
    """A ResNet-26 (bottleneck, depths [2, 2, 2, 2]) that refimpl has never heard of: one ModelSpec
    added to the registry (here only), then synthesized by transformers, classified, traced,
    summarized and held against transformers with no other code change."""
    from transformers import ResNetForImageClassification

    from refimpl.cli import main
    from refimpl.synth import synthesize

    fake = dataclasses.replace(registry.get("resnet-50"), name="resnet-26", hosted_name="resnet-26", hosted=False,
                               repo_id="example/resnet-26", aliases=("r26",), weights_env="REFIMPL_RESNET26_WEIGHTS",
                               config=dict(registry.get("resnet-50").config, depths=[2, 2, 2, 2]))
    with pytest.raises(UnknownModelError):
        registry.get("resnet-26")
    monkeypatch.setattr(registry, "MODELS", registry.MODELS + (fake,))
    assert registry.get("r26") is fake and fake.architecture.name == "resnet-26"
    folder = synthesize(fake, tmp_path / "resnet-26", seed=7)
    json_path = folder / "preprocessor_config.json"
    json_path.write_text(json.dumps(dict(json.loads(json_path.read_text()), size={"shortest_edge": 64})))

    model = registry.load("resnet-26", folder, path="reference")
    assert registry.spec_of(model) is fake and len(list(resnet.blocks(model.backbone_names))) == 8
    hf = ResNetForImageClassification.from_pretrained(folder).eval()
    x = pixels(1, 64, 64, 3)
    trace = {}
    model.forward(x, trace)
    ref = hf_trace(hf, [n for n in trace if n != "pixel_values"], x)
    for name, value in ref.items():
        assert rel(trace[name], value) <= TOL["float32"], name
    fast_trace = {}
    model.with_path("fast").forward(x, fast_trace)
    assert max(rel(fast_trace[n], trace[n]) for n in trace) <= TOL["float32"]

    from fixtures_detr import EXAMPLES_DIR

    image = str(EXAMPLES_DIR / "cat.png")
    assert main(["classify", image, "--model", "r26", "--weights", str(folder), "--top-k", "3"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer == model.with_path("fast")(image, top_k=3)
    assert main(["trace", image, "--model", "resnet-26", "--weights", str(folder), "--out", str(tmp_path / "t")]) == 0
    capsys.readouterr()
    assert main(["summary", "--model", "resnet-26", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["model"] == "resnet-26" and sum(l["name"].count(".layers.") for l in table["layers"] if
                                                 l["kind"] == "residual add + ReLU") == 8
    assert table["totals"]["params"] + table["totals"]["buffers"] == resnet.num_params(resnet.classifier_shapes(fake.config))


@pytest.mark.slow  # the family checkpoints take ~160 s (DETRs) to synthesize
def test_dc5_attention_maps_use_its_16_px_grid(detr_family_dirs):
    """detect --attention on a DC5 model: the maps are on a grid of 16 px tokens (the backbone's
    output stride), and each map has that grid's shape."""
    from refimpl.viz import attention_maps

    model = registry.load("detr-resnet-50-dc5", detr_family_dirs[("detr-resnet-50-dc5", "timm")])
    image = (np.random.default_rng(0).uniform(0, 255, (96, 128, 3))).astype(np.uint8)
    result = attention_maps.compute(model, image, threshold=0.0)
    assert result.stride == 16
    h, w = result.maps.shape[1:]
    assert (h, w) == (-(-result.resized[0] // 16), -(-result.resized[1] // 16))
