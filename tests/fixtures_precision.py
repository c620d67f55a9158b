"""Reduced-precision ports of the session's synthesized ResNet-50 at 64 px (tests/test_precision*.py):
ONNX float16 by onnxconverter-common, ONNX Runtime int8 (dynamic and static QDQ) by
onnxruntime.quantization, torch `.half()` and bfloat16 through a factory file - each correct, and
with one planted porting bug (a dropped ReLU, ResNet v1's stride, BN eps 1e-3, a channel swap in
front of the stem), planted in the float model before it is converted, as a porter would ship it."""

import textwrap
import warnings

import numpy as np
import pytest

BUGS = ("missing_relu", "v1_stride", "bn_eps", "bgr")

# bug: (first divergence, the diagnosis kinds that name it)
EXPECTED = {
    "missing_relu": ("resnet.encoder.stages.1.layers.1.layer.1", ("negatives after relu", "missing activation")),
    "v1_stride": ("resnet.encoder.stages.1.layers.0.layer.0", ("stride mismatch",)),
    "bn_eps": ("resnet.encoder.stages.0.layers.0.layer.2", ("bn eps", "bn eps in noise")),
    "bgr": ("pixel_values", ("channel swap",)),
}


def _onnx_bug(model, bug, weights_dir):
    """One planted bug in transformers' legacy ONNX export (the edits of tests/test_certify_onnx.py)."""
    from test_certify_onnx import bn_eps, channel_swap, drop_relu, v1_stride

    if bug == "missing_relu":
        return drop_relu(model, "resnet/encoder/stages.1/layers.1/layer/layer.1")
    if bug == "v1_stride":
        return v1_stride(model, "resnet/encoder/stages.1/layers.0")
    if bug == "bn_eps":
        return bn_eps(model, "resnet.encoder.stages.0.layers.0.layer.2", "resnet/encoder/stages.0/layers.0/layer/layer.2",
                      weights_dir)
    if bug == "bgr":
        return channel_swap(model)
    assert bug == "correct", bug
    return model


def _calibration():
    """onnxruntime.quantization's calibration data: four normalized random images."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.items = iter([{"pixel_values": rng.normal(0, 1, (1, 3, 64, 64)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.items, None)

    return Reader()


def make_port(kind, bug, weights_dir, legacy, folder):
    """The ONNX file of port `kind` ("fp16", "int8_dynamic", "int8_qdq") with `bug` ("correct" or one of BUGS)."""
    import onnx

    path = folder / f"{kind}_{bug}.onnx"
    if path.exists():
        return path
    float_path = folder / f"float_{bug}.onnx"
    if not float_path.exists():
        onnx.save(_onnx_bug(onnx.load(legacy), bug, weights_dir), float_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "fp16":
            from onnxconverter_common import float16

            onnx.save(float16.convert_float_to_float16(onnx.load(float_path), keep_io_types=True), path)
        elif kind == "int8_dynamic":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(float_path), str(path), weight_type=QuantType.QInt8)
        elif kind == "int8_qdq":
            from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

            quantize_static(str(float_path), str(path), _calibration(), quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        else:
            raise ValueError(kind)
    return path


@pytest.fixture(scope="session")
def precision_legacy_onnx(resnet50_small_dir, tmp_path_factory):
    """transformers' legacy ONNX export of the 64 px ResNet-50 (float32, scopes in the node names)."""
    import torch
    from transformers import ResNetForImageClassification

    pytest.importorskip("onnx")
    hf = ResNetForImageClassification.from_pretrained(resnet50_small_dir).eval()
    path = tmp_path_factory.mktemp("precision-onnx") / "legacy.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(hf, (torch.zeros(1, 3, 64, 64),), str(path), dynamo=False, input_names=["pixel_values"],
                          output_names=["logits"])
    return path


@pytest.fixture(scope="session")
def precision_port(resnet50_small_dir, precision_legacy_onnx):
    """port(kind, bug) -> the IMPL string: kind "fp16", "int8_dynamic", "int8_qdq" (ONNX files, built
    once per session) or "half", "bf16" (torch factories)."""
    folder = precision_legacy_onnx.parent
    factories = folder / "ports.py"
    factories.write_text(TORCH_PORTS)

    def port(kind, bug="correct"):
        if kind in ("half", "bf16"):
            return f"torch:{factories}:{kind}_{bug}"
        pytest.importorskip("onnxruntime")
        if kind == "fp16":
            pytest.importorskip("onnxconverter_common")
        return f"onnx:{make_port(kind, bug, resnet50_small_dir, precision_legacy_onnx, folder)}"

    return port


TORCH_PORTS = textwrap.dedent('''
    """transformers' ResNet-50 in float16 (.half()) and bfloat16, correct and with one planted bug each."""
    import numpy as np
    import torch
    from transformers import ResNetForImageClassification


    def _model(weights_dir, dtype, bug):
        m = ResNetForImageClassification.from_pretrained(weights_dir).eval()
        stages = m.resnet.encoder.stages
        made = {}
        if bug == "missing_relu":
            stages[1].layers[1].layer[1].activation = torch.nn.Identity()
        elif bug == "v1_stride":
            stages[1].layers[0].layer[0].convolution.stride = (2, 2)
            stages[1].layers[0].layer[1].convolution.stride = (1, 1)
        elif bug == "bn_eps":
            stages[0].layers[0].layer[2].normalization.eps = 1e-3
        elif bug == "bgr":
            import refimpl

            ref = refimpl.load("resnet-50", weights_dir, dtype="float32", path="reference")
            made["preprocess"] = lambda image: torch.from_numpy(
                np.ascontiguousarray(ref.preprocess([np.asarray(image)])[:, ::-1]))
        made["model"] = m.to(dtype)
        return made


    def _factories(dtype, prefix):
        for bug in ("correct", "missing_relu", "v1_stride", "bn_eps", "bgr"):
            globals()[f"{prefix}_{bug}"] = lambda weights_dir, bug=bug: _model(weights_dir, dtype, bug)


    _factories(torch.float16, "half")
    _factories(torch.bfloat16, "bf16")
''')
