"""refimpl certify onnx:FILE: ONNX exports of the synthesized ResNet-50 (legacy and dynamo exporters)
certify with every intermediate named automatically; a graph whose names were all stripped is
aligned by its structure and certifies layer by layer with the same coverage; a graph neither
names nor structure identify is certified on its outputs only, its intermediates listed as
unmapped, never guessed. Porting bugs planted in the exported graph with the `onnx` package (a
dropped ReLU, a v1 stride, a channel swap in front of the stem, BN eps 1e-3 folded into one
conv) diverge at the right tensor with the right diagnosis, through names and through structure."""

import warnings
from pathlib import Path

import numpy as np
import pytest

from refimpl.conformance.adapters.onnx_runtime import module_path
from refimpl.conformance.certify import certify

CAT = Path(__file__).parent.parent / "examples" / "cat.png"
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exports(resnet50_small_dir, tmp_path_factory):
    import torch
    from transformers import ResNetForImageClassification

    hf = ResNetForImageClassification.from_pretrained(resnet50_small_dir).eval()
    folder = tmp_path_factory.mktemp("onnx")
    x = torch.zeros(1, 3, 64, 64)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for exporter, dynamo in (("legacy", False), ("dynamo", True)):
            out[exporter] = folder / f"resnet50_{exporter}.onnx"
            torch.onnx.export(hf, (x,), str(out[exporter]), dynamo=dynamo, input_names=["pixel_values"],
                              output_names=["logits"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_onnx_exports_certify_layer_by_layer(resnet50_small_dir, exports, exporter):
    report = certify(f"onnx:{exports[exporter]}", "resnet-50", resnet50_small_dir, images=[CAT])
    assert report.verdict == "certified", report.text(tensors=True)
    cov = report.coverage()
    assert cov["scope"] == "layer by layer" and cov["compared"] == 76  # all but the image and pixel_values
    assert exporter in report.description


def strip_names(model):
    """Every node and value renamed to an opaque one (n0, t0, ...), scopes metadata dropped."""
    renamed = {}

    def opaque(value):
        if value and value not in renamed:
            renamed[value] = f"t{len(renamed)}"
        return renamed.get(value, value)

    g = model.graph
    for item in list(g.initializer) + list(g.input) + list(g.output) + list(g.value_info):
        item.name = opaque(item.name)
    for i, node in enumerate(g.node):
        node.name = f"n{i}"
        del node.metadata_props[:]
        node.input[:] = [opaque(v) for v in node.input]
        node.output[:] = [opaque(v) for v in node.output]
    return model


def _node(model, name):
    return next(n for n in model.graph.node if n.name == name)


def _attr(node, key, value):
    for a in node.attribute:
        if a.name == key:
            a.ints[:] = value
            return
    node.attribute.append(onnx.helper.make_attribute(key, value))


def drop_relu(model, scope):
    """Remove the Relu of `scope` (a legacy node-name scope) and feed its input to its consumers."""
    relu = _node(model, f"/{scope}/activation/Relu")
    for node in model.graph.node:
        node.input[:] = [relu.input[0] if v == relu.output[0] else v for v in node.input]
    model.graph.node.remove(relu)
    return model


def v1_stride(model, block):
    """ResNet v1's stride placement in one block: on the first 1x1 conv instead of the 3x3."""
    _attr(_node(model, f"/{block}/layer/layer.0/convolution/Conv"), "strides", [2, 2])
    _attr(_node(model, f"/{block}/layer/layer.1/convolution/Conv"), "strides", [1, 1])
    return model


def channel_swap(model):
    """A Gather in front of the stem's conv: the model sees BGR."""
    stem = _node(model, "/resnet/embedder/embedder/convolution/Conv")
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr_order"))
    gather = onnx.helper.make_node("Gather", [stem.input[0], "bgr_order"], ["bgr_pixels"], axis=1)
    stem.input[0] = "bgr_pixels"
    model.graph.node.insert(list(model.graph.node).index(stem), gather)
    return model


def bn_eps(model, step, scope, weights_dir, eps=1e-3):
    """BN eps 1e-3 (TensorFlow's default) in the layer `step` (legacy scope `scope`), as the
    exporter folds BN into the conv: weight and bias rescaled by sqrt(var + 1e-5) / sqrt(var + eps)."""
    from safetensors.numpy import load_file

    params = load_file(str(Path(weights_dir) / "model.safetensors"))
    var, beta = params[f"{step}.normalization.running_var"], params[f"{step}.normalization.bias"]
    scale = np.sqrt(var + 1e-5) / np.sqrt(var + eps)
    conv = _node(model, f"/{scope}/convolution/Conv")
    inits = {i.name: i for i in model.graph.initializer}
    w, b = (onnx.numpy_helper.to_array(inits[v]) for v in conv.input[1:3])
    inits[conv.input[1]].CopyFrom(onnx.numpy_helper.from_array((w * scale[:, None, None, None]).astype(np.float32), conv.input[1]))
    inits[conv.input[2]].CopyFrom(onnx.numpy_helper.from_array(((b - beta) * scale + beta).astype(np.float32), conv.input[2]))
    return model


@pytest.fixture(scope="module")
def stripped(exports, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx-stripped") / "stripped.onnx"
    onnx.save(strip_names(onnx.load(exports["legacy"])), path)
    return path


@pytest.mark.slow
def test_stripped_graph_is_aligned_by_structure(resnet50_small_dir, exports, stripped):
    """No node or value name left: the backbone is aligned by its ops and shapes and certifies
    layer by layer with the coverage of the named export (the Add outputs and the Flatten are the
    only tensors left unmapped: refimpl traces no tensor there)."""
    model = onnx.load(stripped)
    assert not any(n.name.startswith("/") or n.metadata_props for n in model.graph.node)
    report = certify(f"onnx:{stripped}", "resnet-50", resnet50_small_dir, images=[CAT])
    assert report.verdict == "certified", report.text(tensors=True)
    assert "structural alignment" in report.description
    named = certify(f"onnx:{exports['legacy']}", "resnet-50", resnet50_small_dir, images=[CAT])
    assert report.coverage() == named.coverage() and report.coverage()["scope"] == "layer by layer"
    compared = [r["name"] for r in report.cases[0]["report"].compared]
    assert compared == [r["name"] for r in named.cases[0]["report"].compared]
    # unmapped: only what refimpl does not trace - a conv's output before its ReLU (BN folded),
    # a residual sum before its ReLU, the Flatten in front of the Gemm
    ops = {o: n.op_type for n in model.graph.node for o in n.output}
    kinds = [ops[u] for u in report.unmapped]
    assert {k: kinds.count(k) for k in set(kinds)} == {"Conv": 1 + 2 * 16, "Add": 16, "Flatten": 1}
    consumers = {v: n.op_type for n in model.graph.node for v in n.input}
    assert all(consumers[u] == "Relu" for u in report.unmapped if ops[u] != "Flatten")


@pytest.mark.slow
def test_unrecognised_graph_is_certified_on_outputs_only(resnet50_small_dir, stripped, tmp_path):
    """The stem's weights computed at run time (an Identity in front): its shape is unknown, so
    nothing can be matched safely - every intermediate is listed, none guessed."""
    model = onnx.load(stripped)
    stem = next(n for n in model.graph.node if n.op_type == "Conv")
    model.graph.node.insert(0, onnx.helper.make_node("Identity", [stem.input[1]], ["stem_weight"]))
    stem.input[1] = "stem_weight"
    onnx.save(model, tmp_path / "unrecognised.onnx")
    report = certify(f"onnx:{tmp_path / 'unrecognised.onnx'}", "resnet-50", resnet50_small_dir, images=[CAT])
    assert report.verdict == "certified" and report.coverage()["scope"] == "on outputs"
    assert len(report.unmapped) == len(model.graph.node) - 1  # every intermediate listed (the Gemm gives logits)
    assert "only the final outputs were compared" in report.text()


# planted bug: (edit of the legacy export, first divergence, diagnosis kind). BN eps folded into a
# conv is a per-channel scale and offset of its output; certify gives the diagnosis the
# checkpoint's BN statistics, so it is recognised as another eps.
ONNX_BUGS = {
    "missing_relu": (lambda m, w: drop_relu(m, "resnet/encoder/stages.1/layers.1/layer/layer.1"),
                     "resnet.encoder.stages.1.layers.1.layer.1", "missing activation"),
    "v1_stride": (lambda m, w: v1_stride(m, "resnet/encoder/stages.1/layers.0"),
                  "resnet.encoder.stages.1.layers.0.layer.0", "stride mismatch"),
    "bgr": (lambda m, w: channel_swap(m), "pixel_values", "channel swap"),
    "bn_eps": (lambda m, w: bn_eps(m, "resnet.encoder.stages.0.layers.0.layer.2",
                                                  "resnet/encoder/stages.0/layers.0/layer/layer.2", w),
               "resnet.encoder.stages.0.layers.0.layer.2", "bn eps"),
}


@pytest.mark.slow
@pytest.mark.parametrize("names", ["legacy", "stripped"])
@pytest.mark.parametrize("bug", sorted(ONNX_BUGS))
def test_planted_bugs_in_the_graph_diverge_at_the_right_tensor(resnet50_small_dir, exports, tmp_path, bug, names):
    edit, name, kind = ONNX_BUGS[bug]
    model = edit(onnx.load(exports["legacy"]), resnet50_small_dir)
    if names == "stripped":
        model = strip_names(model)
    onnx.save(model, tmp_path / f"{bug}.onnx")
    report = certify(f"onnx:{tmp_path / f'{bug}.onnx'}", "resnet-50", resnet50_small_dir, images=[CAT])
    assert report.verdict == "diverges", report.text()
    first = report.first_divergence
    assert first["name"] == name, report.text(tensors=True)
    assert first["diagnosis"]["kind"] == kind, first["diagnosis"]["message"]


def test_module_paths_from_both_exporters():
    legacy = onnx.helper.make_node("Relu", ["x"], ["y"], name="/resnet/encoder/stages.0/layers.0/layer/layer.0/activation/Relu")
    assert module_path(legacy) == "resnet.encoder.stages.0.layers.0.layer.0.activation"
    dynamo = onnx.helper.make_node("Relu", ["x"], ["y"], name="node_relu")
    onnx.helper.set_metadata_props(dynamo, {"pkg.torch.onnx.name_scopes": "['', 'resnet', 'resnet.embedder', 'resnet.embedder.pooler', 'max_pool2d']"})
    assert module_path(dynamo) == "resnet.embedder.pooler"
    assert module_path(onnx.helper.make_node("Relu", ["x"], ["y"], name="n7")) is None


@pytest.mark.slow
def test_ambiguous_structure_stops_the_alignment(stripped):
    """A second Conv of the same shape reading a block's input (stage 1, block 2): which one is
    the block's is ambiguous, so the alignment names everything before that block and nothing
    from it on - never a guess."""
    from refimpl.conformance.adapters.onnx_align import align
    from refimpl.models import resnet

    model = onnx.load(stripped)
    everything = {n for names in align(model.graph, resnet.CLASSIFIER_NAMES, "image-classification").values()
                  for n in names}
    assert len(everything) == 2 + 16 * 4 + 4 + 4 + 1  # stem, max pool, blocks, shortcuts, stages, pooler
    block_input = "resnet.encoder.stages.1.layers.1"
    value = next(v for v, names in align(model.graph, resnet.CLASSIFIER_NAMES, "image-classification").items()
                 if block_input in names)
    first_conv = next(n for n in model.graph.node if n.op_type == "Conv" and n.input[0] == value)
    model.graph.node.append(onnx.helper.make_node("Conv", [value, first_conv.input[1]], ["twin"]))
    named = {n for names in align(model.graph, resnet.CLASSIFIER_NAMES, "image-classification").values()
             for n in names}
    assert block_input in named and "resnet.encoder.stages.1.layers.2" not in named
    assert not any(n.startswith(("resnet.encoder.stages.2", "resnet.encoder.stages.3", "resnet.pooler")) for n in named)
    assert named < everything

