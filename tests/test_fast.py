"""The fast path (refimpl/models/fast.py) against the readable reference (refimpl/models/resnet.py),
tensor by tensor, and against transformers end to end; BN folding as algebra; the explicit path
of loaded models; the fold cache and the reused buffers."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import report
from hf_trace import hf_trace
from refimpl.models import fast, ops, resnet
from refimpl.api import load_resnet50

TOL = {"float32": 1e-5, "float64": 1e-12}

# batch 1 and 3, square and odd sizes (odd sizes exercise the floor rule of every strided layer).
SHAPES = [(1, 224, 224), (3, 67, 91), (1, 33, 47)]


def rel(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def pixels(n, h, w, dtype, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, h, w)).astype(dtype)


@pytest.fixture(scope="module")
def params(resnet50_dir, resnet50):
    return {"float32": resnet50.checkpoint.params,
            "float64": load_resnet50(resnet50_dir, dtype="float64").checkpoint.params}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_every_traced_tensor_equals_the_readable_path(params, dtype, shape):
    p = params[dtype]
    x = pixels(*shape, dtype)
    ref, ours = {}, {}
    expect = resnet.classify(p, x, ref)
    got = fast.classify(p, x, ours)
    assert list(ours) == list(ref)  # the same names, in the same order
    for name in ref:
        assert ours[name].shape == ref[name].shape, name
        assert ours[name].dtype == np.dtype(dtype), name
        r = rel(ours[name], ref[name])
        assert r <= TOL[dtype], f"{name}: fast differs from the readable path by {r:.2e}"
    assert rel(got, expect) <= TOL[dtype]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backbone_stages_equal_the_readable_path_in_both_naming_schemes(params, dtype):
    """resnet.backbone's contract (four NCHW stage outputs), also under timm's names (DETR's)."""
    p = params[dtype]
    timm = resnet.ResNetNames("model.backbone.conv_encoder.model.", "timm")
    renamed = {}
    for (key, _), (new_key, _) in zip(resnet.backbone_shapes(resnet.CLASSIFIER_NAMES).items(),
                                      resnet.backbone_shapes(timm).items()):
        renamed[new_key] = p[key]
    x = pixels(2, 96, 80, dtype, seed=5)
    for names, weights in ((resnet.CLASSIFIER_NAMES, p), (timm, renamed)):
        ref = resnet.backbone(weights, names, x)
        got = fast.backbone(weights, names, x)
        assert [g.shape for g in got] == [r.shape for r in ref]
        for g, r in zip(got, ref):
            assert g.dtype == np.dtype(dtype)
            assert rel(g, r) <= TOL[dtype]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_path_matches_transformers_end_to_end(params, resnet50_hf, dtype):
    import copy

    hf = resnet50_hf if dtype == "float32" else copy.deepcopy(resnet50_hf).double()
    for shape in [(1, 224, 224), (3, 67, 91)]:
        x = pixels(*shape, dtype, seed=2)
        trace = {}
        fast.classify(params[dtype], x, trace)
        names = [n for n in trace if n != "pixel_values"]
        ref = hf_trace(hf, names, x)
        ref["classifier.1"] = hf(pixel_values=__import__("torch").from_numpy(x)).logits.detach().numpy()
        assert set(ref) == set(names)
        for name in names:
            _, r = report.compare("resnet-50 fast", dtype, f"vs transformers {shape}", name, trace[name], ref[name])
            assert r <= TOL[dtype], f"{shape}: {name} differs from transformers by {r:.2e}"


# --- BN folding ---------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(
    o=st.integers(1, 6), c=st.integers(1, 5), k=st.sampled_from([1, 3]), stride=st.sampled_from([1, 2]),
    size=st.integers(3, 9), seed=st.integers(0, 2**32 - 1),
    var_scale=st.floats(1e-3, 1e3), eps=st.sampled_from([1e-5, 1e-3]),
)
def test_folding_bn_into_the_conv_is_exact_algebra(o, c, k, stride, size, seed, var_scale, eps):
    """conv(x, W') + b' == batch_norm(conv(x, W)) for any weights, statistics and input."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, c, size, size))
    w = rng.normal(size=(o, c, k, k))
    gamma, beta, mean = rng.normal(size=o), rng.normal(size=o), rng.normal(size=o)
    var = rng.uniform(0, 1, size=o) * var_scale
    pad = k // 2
    expect = ops.batch_norm(ops.conv2d(x, w, stride=stride, padding=pad), gamma, beta, mean, var, eps)
    w2, b2 = fast.fold_conv_bn(w, gamma, beta, mean, var, eps)
    got = ops.conv2d(x, w2, b2, stride=stride, padding=pad)
    np.testing.assert_allclose(got, expect, rtol=1e-10, atol=1e-10 * np.abs(expect).max())


def test_fold_is_computed_in_float64_and_stored_in_the_compute_dtype(params):
    plan32 = fast.plan(params["float32"], resnet.CLASSIFIER_NAMES, dtype=np.float32)
    plan64 = fast.plan(params["float64"], resnet.CLASSIFIER_NAMES, dtype=np.float64)
    assert plan32.stem.w.dtype == np.float32 and plan64.stem.w.dtype == np.float64
    np.testing.assert_allclose(plan32.stem.w, plan64.stem.w, rtol=1e-6)


# --- dispatch, cache, buffers ---------------------------------------------------------------------

def test_the_path_is_explicit_and_a_trace_changes_no_bit(resnet50):
    """A loaded model computes on the path it was given, traced or not; the module functions
    have no hidden switch (resnet.classify is always the reference, fast.classify always fast)."""
    p = resnet50.checkpoint.params
    x = pixels(1, 64, 64, np.float32, seed=3)
    assert resnet50.path == "fast"
    reference = resnet50.with_path("reference")
    assert reference.checkpoint is resnet50.checkpoint  # the same weights, nothing reloaded
    np.testing.assert_array_equal(resnet50.forward(x), fast.classify(p, x))
    np.testing.assert_array_equal(resnet50.forward(x, {}), resnet50.forward(x))  # traced == untraced
    np.testing.assert_array_equal(reference.forward(x), resnet.classify(p, x))
    np.testing.assert_array_equal(reference.forward(x, {}), reference.forward(x))
    assert rel(resnet50.forward(x), reference.forward(x)) <= TOL["float32"]
    with pytest.raises(ValueError, match="path must be one of"):
        resnet50.with_path("quick")


def test_bn_is_folded_once_at_load_time(resnet50_dir):
    model = load_resnet50(resnet50_dir)
    p = model.checkpoint.params
    before = fast.plan(p, resnet.CLASSIFIER_NAMES, dtype=np.float32)  # folded by load_resnet50
    model.forward(pixels(1, 32, 32, np.float32))
    assert fast.plan(p, resnet.CLASSIFIER_NAMES, dtype=np.float32) is before
    # A params mapping with a replaced array is folded again.
    other = dict(p)
    key = next(k for k in p if k.endswith("convolution.weight"))
    other[key] = p[key] * 2
    assert fast.plan(other, resnet.CLASSIFIER_NAMES, dtype=np.float32) is not before


def test_outputs_never_alias_the_reused_buffers(resnet50):
    p = resnet50.checkpoint.params
    a, b = pixels(2, 64, 64, np.float32, seed=4), pixels(2, 64, 64, np.float32, seed=5)
    stages_a = resnet.backbone(p, resnet.CLASSIFIER_NAMES, a)
    logits_a = fast.classify(p, a)
    kept = [s.copy() for s in stages_a], logits_a.copy()
    resnet.backbone(p, resnet.CLASSIFIER_NAMES, b)
    fast.classify(p, b)
    for s, k in zip(stages_a, kept[0]):
        np.testing.assert_array_equal(s, k)
    np.testing.assert_array_equal(logits_a, kept[1])


def test_reusing_buffers_changes_nothing_and_threads_do_not_share_them(resnet50):
    p = resnet50.checkpoint.params
    xs = [pixels(1, 48 + 16 * i, 64, np.float32, seed=i) for i in range(3)]
    expect = [fast.classify(p, x) for x in xs]
    fast._WORKSPACE.reuse = False
    try:
        for x, e in zip(xs, expect):
            np.testing.assert_array_equal(fast.classify(p, x), e)
    finally:
        fast._WORKSPACE.reuse = True
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(3):
                results[i] = fast.classify(p, xs[i])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, e in enumerate(expect):
        np.testing.assert_allclose(results[i], e, rtol=1e-6, atol=1e-6 * np.abs(e).max())


def test_repeated_and_alternating_shapes_give_the_same_results(resnet50):
    """The reused buffers (and their zero borders) carry nothing from one call to the next."""
    p = resnet50.checkpoint.params
    a, b = pixels(1, 64, 64, np.float32, seed=6), pixels(2, 40, 56, np.float32, seed=7)
    first_a, first_b = fast.classify(p, a), fast.classify(p, b)
    for _ in range(2):
        np.testing.assert_array_equal(fast.classify(p, a), first_a)
        np.testing.assert_array_equal(fast.classify(p, b), first_b)
    fast.release_buffers()
    np.testing.assert_array_equal(fast.classify(p, a), first_a)


# --- DETR's fast transformer (refimpl/models/fast_detr.py) --------------------------------------

def _detr_inputs(dtype, padded):
    """A batch of two 96x128 inputs; `padded`: the second image is 64x80, the rest padding (so
    the key mask is not all true and the masked branch of the attention runs)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 96, 128)).astype(dtype)
    mask = np.ones((2, 96, 128), np.int64)
    if padded:
        mask[1, 64:, :] = 0
        mask[1, :, 80:] = 0
        x[1][:, mask[1] == 0] = 0
    return x, mask


@pytest.fixture(scope="module")
def detr_params(detr_dirs, detr_models):
    from refimpl.api import load_detr

    model = detr_models["timm"]
    return {"float32": (model.checkpoint.params, model.hparams),
            "float64": (load_detr(detr_dirs["timm"], dtype="float64").checkpoint.params, model.hparams)}


@pytest.mark.slow
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_detr_transformer_equals_detr_py_on_every_traced_tensor(detr_params, dtype, padded):
    """fast_detr.forward against detr.forward on the same (fast) backbone: the transformer's
    fewer passes (scale on the queries, in-place softmax and mask, the mask skipped when nothing
    is padded) change no tensor by more than rounding; every name, in the same order."""
    from refimpl.models import detr, fast_detr

    params, hp = detr_params[dtype]
    x, mask = _detr_inputs(dtype, padded)
    ref, ours = {}, {}
    expect = detr.forward(params, hp, x, mask, ref, backbone=fast.backbone)
    got = fast_detr.forward(params, hp, x, mask, ours)
    assert list(ours) == list(ref)
    for name in ref:
        assert ours[name].shape == ref[name].shape and ours[name].dtype == ref[name].dtype, name
        r = rel(ours[name], ref[name])
        assert r <= TOL[dtype], f"{name}: fast_detr differs from detr.py by {r:.2e}"
    for key in ("logits", "pred_boxes"):
        assert rel(got[key], expect[key]) <= TOL[dtype]
    if padded:  # padded keys get weight exactly 0, as in the reference
        w = ours["model.encoder.layers.0.self_attn.attn_weights"]
        keys = detr.downsample_mask(mask, ours["model.backbone.conv_encoder.mask"].shape[1:]).reshape(2, -1)
        assert (w[1][..., ~keys[1]] == 0).all() and (~keys[1]).any()


def test_loaded_detr_dispatches_by_path(detr_small_models, monkeypatch):
    """path "fast" runs fast_detr.forward, path "reference" detr.forward; nothing else decides."""
    from refimpl.models import detr, fast_detr

    calls = []
    monkeypatch.setattr(fast_detr, "forward", lambda *a, **k: calls.append("fast_detr"))
    monkeypatch.setattr(detr, "forward", lambda *a, **k: calls.append("detr"))
    model = detr_small_models["timm"]
    x, mask = _detr_inputs("float32", False)
    model.with_path("fast").forward(x, mask)
    model.with_path("reference").forward(x, mask)
    assert calls == ["fast_detr", "detr"]


@pytest.mark.parametrize("batch", [1, 3])
def test_splitting_elementwise_passes_over_two_threads_changes_no_bit(resnet50, monkeypatch, batch):
    """Every elementwise pass (bias, ReLU, residual, im2col copy, subsample, max pool) split in two
    halves on two threads, down to the smallest pass, equals the one-thread result bit for bit,
    traced tensors included; and the split really ran on the helper thread."""
    p = resnet50.checkpoint.params
    x = pixels(batch, 67, 91, np.float32)
    previous = fast.set_elementwise_threads(1)
    try:
        one = {}
        expect = fast.classify(p, x, one)
        fast.set_elementwise_threads(2)
        monkeypatch.setattr(fast, "SPLIT_MIN_ELEMENTS", 0)
        helper_calls = []
        submit = fast._pool().submit
        monkeypatch.setattr(fast, "_pool", lambda: type("P", (), {"submit": lambda self, *a: helper_calls.append(1) or submit(*a)})())
        two = {}
        got = fast.classify(p, x, two)
    finally:
        fast.set_elementwise_threads(previous)
    assert len(helper_calls) >= 16 * 4  # per block: two bias+ReLU, the residual pass, the im2col copy
    np.testing.assert_array_equal(got, expect)
    assert list(two) == list(one)
    for name in one:
        np.testing.assert_array_equal(two[name], one[name], err_msg=name)


def test_elementwise_threads_are_one_or_two():
    with pytest.raises(ValueError, match="1 or 2"):
        fast.set_elementwise_threads(3)
    assert fast._HELPER["threads"] == 1  # the split is opt-in: it measured slower here


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_convs_computed_in_bands_equal_the_readable_path(params, monkeypatch, dtype):
    """Every windowed conv forced into bands (a few output rows each, ragged last band, batch 3):
    every traced tensor still equals the readable path's."""
    monkeypatch.setattr(fast, "BAND_MIN_BYTES", 0)
    monkeypatch.setattr(fast, "BAND_BYTES", 100_000)  # the stem: 3 of its 34 rows a band, the last one alone
    p = params[dtype]
    x = pixels(3, 67, 91, dtype)
    ref, ours = {}, {}
    expect = resnet.classify(p, x, ref)
    got = fast.classify(p, x, ours)
    assert list(ours) == list(ref)
    for name in ref:
        r = rel(ours[name], ref[name])
        assert r <= TOL[dtype], f"{name}: banded fast path differs from the readable path by {r:.2e}"
    assert rel(got, expect) <= TOL[dtype]


def test_last_stage_equals_the_backbones_last_stage_bit_for_bit(params):
    """fast.last_stage (DETR's fast backbone: layer4 in a reused buffer, no other stage kept) gives
    exactly backbone(...)[-1] and records the same trace."""
    timm = resnet.ResNetNames("model.backbone.conv_encoder.model.", "timm")
    p = {new_key: params["float32"][key] for key, new_key in zip(resnet.backbone_shapes(resnet.CLASSIFIER_NAMES),
                                                                 resnet.backbone_shapes(timm))}
    x = pixels(2, 67, 91, np.float32)
    t1, t2 = {}, {}
    expect = fast.backbone(p, timm, x, t1)[-1]
    got = fast.last_stage(p, timm, x, t2)
    assert got.shape == expect.shape
    np.testing.assert_array_equal(got, expect)
    assert list(t2) == list(t1)
    for name in t1:
        np.testing.assert_array_equal(t2[name], t1[name], err_msg=name)
