"""The diagnosis catalogue as the extension point (refimpl/diagnoses/): every entry registered
once, every "tensor" and "pixel_values" entry named on a planted example that no earlier entry
claims, the order the one documented in refimpl/diagnoses/tensor.py, property tests against slow
obvious transformations, a fake entry registered here used by compare, the "claim" entries
recognising their signature, and docs/diagnoses.md generated from the catalogue."""

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import refimpl.diagnoses
from refimpl import diagnoses
from refimpl.cli import main
from refimpl.conformance.compare import compare
from refimpl.conformance.isolate import VARIANTS
from refimpl.diagnoses import CATALOGUE, entries, register
from refimpl.diagnoses.case import TensorCase
from refimpl.diagnoses.resize import CANDIDATES, pixel_values_with
from refimpl.diagnoses.tensor import diagnose
from refimpl.synth.resnet import RESNET50_PREPROCESSOR

PACKAGE = Path(refimpl.diagnoses.__file__).parent
DOCS = Path(__file__).resolve().parent.parent / "docs" / "diagnoses.md"


# --- planted examples: one per entry, built from B by the transformation the entry names --------


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def feature(rng, shape=(1, 4, 9, 11)):
    return rng.normal(size=shape)


def bn_eps_case(rng):
    b = feature(rng)
    var = rng.uniform(1e-4, 1e-2, size=4)
    scale = np.sqrt((var + 1e-5) / (var + 1e-3))  # what eps = 1e-3 in A does to B's eps = 1e-5 output
    return b * scale[None, :, None, None] + 0.2, b, {"bn": {"running_var": var, "eps": 1e-5}}


def boxes_case(rng):
    b = rng.uniform(0.2, 0.6, size=(1, 6, 4))  # (cx, cy, w, h)
    cx, cy, w, h = np.moveaxis(b, -1, 0)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1), b, {}


def logits(rng):
    return rng.normal(size=(1, 6, 8)) * 2


# kind -> rng -> (A, B, diagnose's keyword arguments)
PLANTED = {
    "NaN/inf": lambda r: ((lambda b: (np.where(b > 1.5, np.nan, b), b, {}))(feature(r))),
    "layout transposed": lambda r: ((lambda b: (b.transpose(0, 2, 3, 1), b, {}))(feature(r))),
    "stride mismatch": lambda r: ((lambda b: (b[..., ::2, ::2], b, {}))(feature(r, (1, 4, 8, 12)))),
    "padding mismatch": lambda r: ((lambda b: (b[..., :-1, :-1], b, {}))(feature(r))),
    "extra class": lambda r: ((lambda x: (softmax(x), softmax(x[..., :-1]), {}))(logits(r))),
    "missing class": lambda r: ((lambda p: (p[..., :-1], p, {}))(softmax(logits(r)))),
    "shape mismatch": lambda r: ((lambda b: (b.reshape(4, 99), b, {}))(feature(r))),
    "label-index offset": lambda r: ((lambda v: (np.roll(v, 1, -1), v, {}))(r.normal(size=(1, 30)))),
    "missing activation": lambda r: ((lambda x: (x, np.maximum(x, 0), {}))(feature(r))),
    "extra activation": lambda r: ((lambda b: (np.maximum(b, 0), b, {}))(feature(r))),
    "missing sigmoid": lambda r: ((lambda x: (x, sigmoid(x), {}))(logits(r))),
    "extra sigmoid": lambda r: ((lambda x: (sigmoid(x), x, {}))(logits(r))),
    "box format": boxes_case,
    "softmax axis": lambda r: ((lambda x: (softmax(x, 1), softmax(x), {}))(logits(r))),
    "softmax temperature": lambda r: ((lambda x: (softmax(x * np.sqrt(32)), softmax(x), {}))(logits(r))),
    "channel swap": lambda r: ((lambda b: (b[:, [0, 2, 1, 3]], b, {}))(feature(r))),
    "class permutation": lambda r: ((lambda v: (v[:, [3, 0, 1, 2] + list(range(4, 30))], v, {}))(r.normal(size=(1, 30)))),
    "channel permutation": lambda r: ((lambda b: (b[:, [1, 2, 0, 3]], b, {}))(feature(r))),
    "spatial shift": lambda r: ((lambda b: (b[..., 1:, :], b[..., :-1, :], {}))(feature(r))),  # a crop a row lower
    "constant offset": lambda r: ((lambda b: (b + 0.5, b, {}))(feature(r))),
    "scale factor": lambda r: ((lambda b: (b * 255, b, {}))(feature(r))),
    "per-channel offset": lambda r: ((lambda b: (b + np.array([0, 0.5, 0, 0])[None, :, None, None], b, {}))(feature(r))),
    "bn eps": bn_eps_case,
    "per-channel scale": lambda r: ((lambda b: (b * np.array([1, 2, 1, 1])[None, :, None, None], b, {}))(feature(r))),
    # xyxy boxes with x scaled by h/w and y by w/h: target_sizes given as (w, h)
    "box scaling": lambda r: ((lambda b: (b * np.array([0.75, 1 / 0.75, 0.75, 1 / 0.75]), b, {}))(
        r.uniform(1, 500, size=(1, 6, 4)))),
    "scale and offset": lambda r: ((lambda b: (3 * b + 1, b, {}))(feature(r))),
    "per-channel scale and offset": lambda r: ((lambda b: (b * np.array([1, 2, 3, 1])[None, :, None, None]
                                                           + np.array([0, 1, 0, 2])[None, :, None, None], b, {}))(feature(r))),
    "generic drift": lambda r: ((lambda b: (b + r.normal(size=b.shape) * 0.01, b, {}))(feature(r))),
}


def test_every_entry_registered_once_with_its_description():
    """Each @register in refimpl/diagnoses/ is one catalogue entry (no kind registered twice or
    overwritten); each says what it recognises and what to look at; orders are distinct."""
    diagnoses.load_all()
    decorators = 0
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                decorators += sum(isinstance(d, ast.Call) and getattr(d.func, "id", "") == "register"
                                  for d in node.decorator_list)
    assert decorators == len(CATALOGUE)
    for d in CATALOGUE.values():
        assert d.check.__module__.startswith("refimpl.diagnoses.") and d.doc and d.look_at, d.kind
    for group in diagnoses.APPLIES_TO:
        orders = [d.order for d in entries(group)]
        assert entries(group) and len(set(orders)) == len(orders), group
    with pytest.raises(ValueError, match="registered twice"):
        register("bn eps")(lambda case: None)
    with pytest.raises(ValueError, match="applies_to"):
        register("new kind", applies_to="weights")


def test_every_tensor_entry_has_a_planted_example():
    assert set(PLANTED) == {d.kind for d in entries("tensor")}


@pytest.mark.parametrize("kind", list(PLANTED))
def test_the_planted_bug_is_named_and_no_earlier_entry_claims_it(kind):
    a, b, kw = PLANTED[kind](np.random.default_rng(0))
    d = diagnose(a, b, **kw)
    assert d["kind"] == kind, d["message"]
    entry = CATALOGUE[kind]
    assert d["look_at"] == entry.look_at and d["confidence"] in (entry.confidence, "likely")
    case = TensorCase(a, b, 1e-4, 1e-6, **kw)
    earlier = [e.kind for e in entries("tensor") if e.order < entry.order and e.check(case) is not None]
    assert earlier == [], f"{earlier} claim the planted {kind}"


def test_the_order_is_the_documented_order():
    """The kinds appear in diagnose's module docstring in the order diagnose tries them."""
    text = " ".join(ast.get_docstring(ast.parse((PACKAGE / "tensor.py").read_text())).split())
    pos = 0
    for kind in [d.kind for d in entries("tensor")] + [d.kind for d in entries("pixel_values")]:
        found = text.find(kind, pos)
        assert found >= 0, f"{kind!r} is not documented after the entry before it"
        pos = found + len(kind)


# --- property tests: a random B, A made from it by a slow obvious transformation ---------------

shapes = st.tuples(st.integers(1, 2), st.integers(3, 6), st.integers(5, 8), st.integers(5, 9))
seeds = st.integers(0, 2 ** 32 - 1)


@settings(max_examples=25, deadline=None)
@given(shapes, seeds, st.data())
def test_a_transposed_tensor_names_its_axes(shape, seed, data):
    b = np.random.default_rng(seed).normal(size=shape)
    perm = tuple(data.draw(st.permutations(range(4))))
    assume(perm != (0, 1, 2, 3))
    assume(len(set(shape)) == 4 or all(shape[p] != shape[i] for i, p in enumerate(perm) if p != i))
    a = np.empty(tuple(shape[p] for p in perm))
    for index in np.ndindex(*a.shape):  # A[i0, i1, ...] = B at the index whose axis perm[k] is ik
        source = [0] * 4
        for k, p in enumerate(perm):
            source[p] = index[k]
        a[index] = b[tuple(source)]
    d = diagnose(a, b)
    assert d["kind"] == "layout transposed" and d["axes"] == list(perm), d["message"]


@settings(max_examples=25, deadline=None)
@given(shapes, seeds, st.data())
def test_permuted_channels_name_the_mapping(shape, seed, data):
    b = np.random.default_rng(seed).normal(size=shape)
    perm = data.draw(st.permutations(range(shape[1])))
    moved = {i: p for i, p in enumerate(perm) if p != i}
    assume(moved)
    a = np.empty_like(b)
    for i, p in enumerate(perm):
        a[:, i] = b[:, p]
    d = diagnose(a, b)
    if len(moved) == 2:
        assert d["kind"] == "channel swap" and d["swapped"] == sorted(moved), d["message"]
    else:
        assert d["kind"] == "channel permutation" and d["mapping"] == {str(i): p for i, p in moved.items()}, d


@settings(max_examples=25, deadline=None)
@given(shapes, seeds)
def test_b_before_its_relu_is_a_missing_activation(shape, seed):
    a = np.random.default_rng(seed).normal(size=shape)
    b = np.array([[max(x, 0.0) for x in row] for row in a.reshape(-1, shape[-1])]).reshape(shape)
    assert diagnose(a, b)["kind"] == "missing activation"
    assert diagnose(b, a)["kind"] == "extra activation"


@settings(max_examples=25, deadline=None)
@given(shapes, seeds, st.floats(-4, 4).filter(lambda k: abs(k) > 0.05 and abs(k - 1) > 0.01))
def test_a_scaled_tensor_names_its_factor(shape, seed, k):
    b = np.random.default_rng(seed).normal(size=shape)
    d = diagnose(k * b, b)
    assert d["kind"] == "scale factor" and d["scale"] == pytest.approx(k, rel=1e-9), d["message"]


@settings(max_examples=25, deadline=None)
@given(shapes, seeds, st.data())
def test_one_channel_scaled_is_a_per_channel_scale(shape, seed, data):
    b = np.random.default_rng(seed).normal(size=shape)
    c = data.draw(st.integers(0, shape[1] - 1))
    s = data.draw(st.floats(0.2, 5).filter(lambda x: abs(x - 1) > 0.01))
    a = b.copy()
    a[:, c] *= s
    d = diagnose(a, b)
    assert d["kind"] == "per-channel scale" and d["channels"] == [c], d["message"]
    assert d["scales"][c] == pytest.approx(s, rel=1e-9)


# --- the pixel_values entries ---------------------------------------------------------------------

CONFIG = dict(RESNET50_PREPROCESSOR, size={"shortest_edge": 24})


@pytest.fixture(scope="module")
def pixel_case():
    image = np.random.default_rng(0).integers(0, 256, size=(40, 52, 3), dtype=np.uint8)
    return [image], pixel_values_with([image], CONFIG, "classification", CANDIDATES["pillow bicubic"])


def test_the_pixel_values_entries(pixel_case):
    images, reference = pixel_case
    evidence = {"name": "pixel_values", "resize": {"images": images, "config": CONFIG, "task": "classification"}}
    a = pixel_values_with(images, CONFIG, "classification", CANDIDATES["no antialias bilinear"])
    d = diagnose(a, reference, **evidence)
    assert d["kind"] == "resize filter" and d["filter"] == "no antialias bilinear" and "drift" in d, d["message"]
    blurred = reference + np.random.default_rng(1).normal(size=reference.shape) * 0.05
    d = diagnose(blurred, reference, **evidence)
    assert d["kind"] == "preprocessing drift" and d["confidence"] == "unknown", d["message"]
    assert diagnose(a, reference)["kind"] == "generic drift"  # without the image: no resize re-run


# --- the catalogue is the extension point ---------------------------------------------------------


@pytest.fixture
def fake_entry():
    kind = "answer offset (test only)"

    @register(kind, order=55, confidence="likely", look_at="the test that registered it")
    def answer_offset(case):
        """A == B + 42."""
        if case.same_shape and case.close(case.a - 42, case.b):
            return {"kind": kind, "message": "A is B + 42"}
        return None
    try:
        yield kind
    finally:
        del CATALOGUE[kind]


def test_an_entry_registered_elsewhere_is_used_by_compare(fake_entry):
    b = np.random.default_rng(0).normal(size=(1, 3, 5, 5))
    first = compare({"x": b + 42}, {"x": b}).first
    assert first["diagnosis"]["kind"] == fake_entry and first["diagnosis"]["confidence"] == "likely"
    assert first["diagnosis"]["look_at"] == "the test that registered it"
    assert compare({"x": b + 41}, {"x": b}).first["diagnosis"]["kind"] == "constant offset"


def test_isolate_variants_are_the_layer_entries():
    layer = entries("layer")
    assert VARIANTS["encoder"] == tuple(d.kind for d in layer if "encoder" in d.scope)
    assert VARIANTS["decoder"] == tuple(d.kind for d in layer if "decoder" in d.scope)
    assert "query position embedding missing" in VARIANTS["decoder"]
    assert "query position embedding missing" not in VARIANTS["encoder"]


# --- the layer entries: tiny random DETR layers ---------------------------------------------------

D, HEADS, FFN = 8, 2, 16


def layer_params(rng, name, attentions):
    p = {}
    for a in attentions:
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            p[f"{name}.{a}.{proj}.weight"] = rng.normal(size=(D, D)) / np.sqrt(D)
            p[f"{name}.{a}.{proj}.bias"] = rng.normal(size=D) * 0.1
    for norm in [f"{a}_layer_norm" for a in attentions] + ["final_layer_norm"]:
        p[f"{name}.{norm}.weight"] = 1 + rng.normal(size=D) * 0.1
        p[f"{name}.{norm}.bias"] = rng.normal(size=D) * 0.1
    p[f"{name}.fc1.weight"], p[f"{name}.fc1.bias"] = rng.normal(size=(FFN, D)) / np.sqrt(D), rng.normal(size=FFN) * 0.1
    p[f"{name}.fc2.weight"], p[f"{name}.fc2.bias"] = rng.normal(size=(D, FFN)) / np.sqrt(FFN), rng.normal(size=D) * 0.1
    return p


@pytest.fixture(scope="module")
def tiny_layers():
    from refimpl.diagnoses.detr_layer import Layer
    from refimpl.models.detr import HParams

    rng = np.random.default_rng(0)
    hp = HParams(layout="timm", d_model=D, encoder_heads=HEADS, decoder_heads=HEADS, encoder_ffn_dim=FFN,
                 decoder_ffn_dim=FFN, num_queries=5)
    mask = np.ones((1, 12), dtype=bool)
    mask[0, -3:] = False  # padding
    encoder = (Layer("encoder", "enc", hp), layer_params(rng, "enc", ["self_attn"]),
               {"src": rng.normal(size=(1, 12, D)), "pos": rng.normal(size=(1, 12, D)), "mask": mask})
    decoder = (Layer("decoder", "dec", hp), layer_params(rng, "dec", ["self_attn", "encoder_attn"]),
               {"tgt": rng.normal(size=(1, 5, D)), "query_pos": rng.normal(size=(1, 5, D)),
                "memory": rng.normal(size=(1, 12, D)), "pos": rng.normal(size=(1, 12, D)), "mask": mask})
    return {"encoder": encoder, "decoder": decoder}


def slow_encoder_layer(p, name, src, pos, mask, *, with_pos=True, pos_in_values=False, scaled=True):
    """A DETR encoder layer written out head by head and query by query, the bug as a switch."""
    def lin(x, k):
        return x @ p[f"{name}.{k}.weight"].T + p[f"{name}.{k}.bias"]

    def norm(x, k):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * p[f"{name}.{k}.weight"] + p[f"{name}.{k}.bias"]

    x, e = src[0], (pos[0] if with_pos else 0 * pos[0])
    q, k = lin(x + e, "self_attn.q_proj"), lin(x + e, "self_attn.k_proj")
    v = lin(x + e if pos_in_values else x, "self_attn.v_proj")
    hd = D // HEADS
    out = np.zeros_like(x)
    for h in range(HEADS):
        cols = slice(h * hd, (h + 1) * hd)
        for i in range(len(x)):
            scores = [(q[i, cols] @ k[j, cols]) * (hd ** -0.5 if scaled else 1) for j in range(len(x)) if mask[0, j]]
            w = np.exp(np.array(scores) - max(scores))
            w /= w.sum()
            out[i, cols] = sum(wj * v[j, cols] for wj, j in zip(w, np.flatnonzero(mask[0])))
    x = norm(x + lin(out, "self_attn.out_proj"), "self_attn_layer_norm")
    return norm(x + lin(np.maximum(lin(x, "fc1"), 0), "fc2"), "final_layer_norm")[None]


def test_encoder_layer_variants_against_a_slow_obvious_layer(tiny_layers):
    from refimpl.diagnoses.detr_layer import run

    layer, p, x = tiny_layers["encoder"]
    args = (p, "enc", x["src"], x["pos"], x["mask"])
    np.testing.assert_allclose(run(p, layer, x), slow_encoder_layer(*args), rtol=1e-9, atol=1e-9)
    expected = {"position embedding missing": dict(with_pos=False), "attention scale missing": dict(scaled=False),
                "position embedding added to the values too": dict(pos_in_values=True)}
    assert set(expected) == set(VARIANTS["encoder"])
    for kind, bug in expected.items():
        np.testing.assert_allclose(CATALOGUE[kind].check(p, layer, x), slow_encoder_layer(*args, **bug),
                                   rtol=1e-9, atol=1e-9, err_msg=kind)


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_every_layer_variant_changes_the_layer_and_no_two_coincide(tiny_layers, kind):
    from refimpl.diagnoses.detr_layer import run

    layer, p, x = tiny_layers[kind]
    outputs = {"unchanged": run(p, layer, x), **{v: CATALOGUE[v].check(p, layer, x) for v in VARIANTS[kind]}}
    names = list(outputs)
    for i, u in enumerate(names):
        for w in names[i + 1:]:
            assert np.abs(outputs[u] - outputs[w]).max() > 1e-3, (u, w)


# --- the claim entries ----------------------------------------------------------------------------


def score_formula_case():
    L = np.random.default_rng(0).normal(size=(20, 6)) * 3
    q, c = np.arange(10), np.arange(10) % 5
    return (L, q, c, (softmax(L.reshape(-1), 0).reshape(L.shape)[:, :-1])[q, c]), "softmax_joint"


# kind -> (the check's arguments with the signature planted, the same without it)
CLAIMS = {
    "uint16_wraparound": ((np.array([[65534.0, 10, 50, 60]]), (640, 480)), (np.array([[-2.0, 10, 50, 60]]), (640, 480))),
    "integer_rounding": ((np.array([[12.0, 4, 80, 120]]), np.array([[12.3, 4.4, 80.2, 119.6]])),
                         (np.array([[12.3, 4.4, 80.2, 119.6]]), np.array([[12.3, 4.4, 80.2, 119.6]]))),
    "normalized_boxes": ((np.array([[0.1, 0.1, 0.5, 0.6]]), np.array([[64.0, 48, 320, 288]]), (640, 480)),
                         (np.array([[64.0, 48, 320, 288]]), np.array([[64.0, 48, 320, 288]]), (640, 480))),
    "no_threshold": ((np.linspace(0.01, 0.99, 100), np.linspace(0.01, 0.99, 100) ** 4, 0.5, 10),
                     (np.array([0.9, 0.8]), np.array([0.9, 0.8, 0.1]), 0.5, 10)),
    "monotonic_score_transform": ((0.3, 0.98, 10, 0.01, 0.9), (0.3, 0.5, 10, 0.01, 0.9)),
    "label_style": ((["Persian cat", "tabby, tabby cat"], ["PERSIAN CAT", "TABBY"]), (["A", "B"], ["B", "A"])),
}


@pytest.mark.parametrize("kind", [d.kind for d in entries("claim")])
def test_every_claim_entry_recognises_its_signature(kind):
    if kind == "score_formula":
        args, formula = score_formula_case()
        assert CATALOGUE[kind].check(*args)["formula"] == formula
        L, q, c, _ = args
        assert CATALOGUE[kind].check(L, q, c, softmax(L)[:, :-1][q, c])["formula"] == "softmax_per_query"
        return
    planted, clean = CLAIMS[kind]
    found = CATALOGUE[kind].check(*planted)
    assert found is not None and found["detail"]
    assert CATALOGUE[kind].check(*clean) is None


def test_uint16_and_normalized_boxes_are_undone():
    assert CATALOGUE["uint16_wraparound"].check(*CLAIMS["uint16_wraparound"][0])["boxes"].tolist() == [[-2, 10, 50, 60]]
    scaled = CATALOGUE["normalized_boxes"].check(*CLAIMS["normalized_boxes"][0])["boxes"]
    assert scaled[0].tolist() == pytest.approx([64, 48, 320, 288])


def test_the_judge_reads_its_signatures_from_the_catalogue():
    from refimpl.audit.judge import ACCEPT_PRESETS, SIGNATURES

    assert SIGNATURES == {d.kind: d.doc for d in entries("claim")}
    assert set(ACCEPT_PRESETS["all"]) == set(SIGNATURES) and set(ACCEPT_PRESETS["hosted"]) <= set(SIGNATURES)


# --- the listing ---------------------------------------------------------------------------------


def test_refimpl_diagnoses_lists_the_catalogue(capsys):
    assert main(["diagnoses", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["kind"], r["applies_to"]) for r in rows] == [(d.kind, d.applies_to) for g in diagnoses.APPLIES_TO
                                                             for d in entries(g)]
    assert main(["diagnoses", "--applies-to", "layer"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("layer: ") and all(kind in text for kind in VARIANTS["decoder"])
    assert main(["diagnoses"]) == 0
    assert re.search(r"^\s+1000  generic drift  \(unknown\)$", capsys.readouterr().out, re.M)


def test_docs_diagnoses_md_is_generated_from_the_catalogue(capsys):
    """docs/diagnoses.md is `refimpl diagnoses --markdown`: regenerate it when an entry changes."""
    assert main(["diagnoses", "--markdown"]) == 0
    assert DOCS.read_text() == capsys.readouterr().out, \
        "docs/diagnoses.md is stale: run `refimpl diagnoses --markdown > docs/diagnoses.md`"
