"""Isolate mode: at the first divergence, refimpl's layer re-run on A's input tells "this layer is
wrong" from "inherited from upstream"."""

import numpy as np
import pytest

from refimpl.conformance.compare import compare
from refimpl.conformance.isolate import IsolateError, isolate, layer_units
from refimpl.models import resnet

BLOCK = "resnet.encoder.stages.1.layers.2"


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)


def run(params, x):
    t = {"pixel_values": x}
    resnet.classify(params, x, t)
    return t


@pytest.fixture(scope="module")
def params(resnet50):
    return resnet50.checkpoint.params


def test_a_wrong_layer_is_named(params, x):
    reference = run(params, x)
    broken = dict(params)
    w = broken[f"{BLOCK}.layer.1.convolution.weight"].copy()
    w[3] *= 1.5
    broken[f"{BLOCK}.layer.1.convolution.weight"] = w
    theirs = run(broken, x)
    report = compare(theirs, reference)
    name = report.first["name"]
    assert name == f"{BLOCK}.layer.1"
    v = isolate(theirs, reference, name, params, resnet.CLASSIFIER_NAMES)
    assert v["verdict"] == "layer wrong" and v["input"] == f"{BLOCK}.layer.0", v["message"]
    assert v["input_vs_b"]["ok"] and "this layer is wrong" in v["message"]
    # the whole block, isolated on its own input, is wrong too
    assert isolate(theirs, reference, BLOCK, params, resnet.CLASSIFIER_NAMES)["verdict"] == "layer wrong"


def test_an_inherited_divergence_is_named(params, x):
    """A correct implementation fed a slightly different input: differences within the budget at
    the input grow past it later. Every layer of A is refimpl's, so isolate says inherited."""
    reference = run(params, x)
    theirs = run(params, (x * (1 + 3e-6)).astype(np.float32))
    report = compare(theirs, reference, rtol=1e-5, atol=1e-7)
    name = report.first["name"]
    assert name != "pixel_values" and name in layer_units(resnet.CLASSIFIER_NAMES), name
    v = isolate(theirs, reference, name, params, resnet.CLASSIFIER_NAMES, rtol=1e-5, atol=1e-7)
    assert v["verdict"] == "inherited" and "inherited from upstream" in v["message"], v["message"]


def test_what_cannot_be_isolated(params, x):
    t = run(params, x)
    with pytest.raises(IsolateError, match="cannot isolate 'classifier.1'"):
        isolate(t, t, "classifier.1", params, resnet.CLASSIFIER_NAMES)
    partial = {k: v for k, v in t.items() if k != f"{BLOCK}.layer.0"}
    with pytest.raises(IsolateError, match="A has no"):
        isolate(partial, t, f"{BLOCK}.layer.1", params, resnet.CLASSIFIER_NAMES)
