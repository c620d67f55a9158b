"""`onnx:FILE.onnx`: ONNX Runtime with every intermediate exposed as a graph output, named in
checkpoint names automatically.

Each node gets the module path it came from:
  - dynamo exporter (`torch.onnx.export(..., dynamo=True)`): the node metadata
    `pkg.torch.onnx.name_scopes`, a list like ['', 'resnet', 'resnet.encoder', ...,
    'resnet.encoder.stages.0.layers.0.layer.0.activation', 'relu'] - the module path is the
    second-to-last entry (the last is the op);
  - legacy exporter (`dynamo=False`): the node name, e.g.
    `/resnet/encoder/stages.0/layers.0/layer/layer.0/activation/Relu` - the scope segments,
    with a container segment dropped when the next one is its child (`layer`, `layer.0` ->
    `layer.0`): `resnet.encoder.stages.0.layers.0.layer.0.activation`.
A checkpoint name T is then the output of the LAST node (in the graph's topological order) whose
module path is T or lies inside T: a module's output is what its last op computes. BatchNorm
folded into the conv by the exporter changes nothing: the conv inside `layer.0` is then the last
op of `layer.0.convolution`, and the ReLU after it the last of `layer.0`.

A `--map-file` renames module paths first (for a model whose module paths are not checkpoint
names); for DETR the shipped maps/transformers_detr.names.json is the default (transformers
exports its backbone as `model.backbone.model.*`, the checkpoint's `model.backbone.conv_encoder.model.*`).
The graph's own outputs are the final outputs, in order (logits; logits, pred_boxes).
A graph without any scope information (another exporter, stripped names) is aligned by its
structure instead (onnx_align.py): the backbone's convolutions, activations, additions and
poolings are matched in data-flow order against refimpl's walk over ResNet-50 and named; what
does not match is listed as unmapped, never guessed.

Reduced precision: a float16 graph (onnxconverter-common) is fed its input in the dtype it
declares; its float16 tensors are returned as they are (certify detects fp16 from them). A
quantized graph (ORT `quantize_dynamic`: DynamicQuantizeLinear + ConvInteger; `quantize_static`
QDQ: QuantizeLinear + DequantizeLinear) is compared on its float tensors only: a node whose
output is integer codes (QuantizeLinear, DynamicQuantizeLinear, ConvInteger, MatMulInteger) never
names a tensor, so a layer's name lands on its DequantizeLinear (QDQ: the dequantized activation
the next layer reads) or on its last float op (dynamic). The adapter declares the precision
"int8" and how the graph quantizes (`quantization`: dynamic or static, weights per channel or per
tensor, the activation scales the graph declares for named tensors), which refimpl's int8 run
uses (refimpl/conformance/precision.py).
"""

import ast

import numpy as np

from refimpl.errors import AdapterError

from .base import Result, to_nchw

SCOPES = "pkg.torch.onnx.name_scopes"
# ops whose outputs are integer codes or accumulators, never a tensor to compare
CODE_OPS = ("QuantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul")
QUANT_OPS = CODE_OPS + ("DequantizeLinear",)


def module_path(node):
    """The module path an exported node belongs to, or None."""
    for prop in node.metadata_props:
        if prop.key == SCOPES:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            return scopes[-2] if len(scopes) >= 2 else None
    if node.name.startswith("/"):
        segments = node.name.strip("/").split("/")[:-1]
        kept = [s for i, s in enumerate(segments) if not (i + 1 < len(segments) and segments[i + 1].startswith(s + "."))]
        return ".".join(kept) or None
    return None


def name_outputs(graph, reference_names, user_map=None, backbone=None, task=None):
    """{value name: [checkpoint names]} for the node outputs that carry a reference tensor, and
    the node outputs left unnamed (unmapped). Without any scope in the graph, and given the
    checkpoint's ResNet names (`backbone`) and the task, the backbone is aligned by structure
    (onnx_align.py); a transformed input in front of the stem is named `pixel_values` either way."""
    from refimpl.conformance.compare import rename_all

    from .onnx_align import align

    final = {o.name for o in graph.output}
    structural = align(graph, backbone, task) if backbone is not None else {}
    structural = {v: [n for n in ns if n in reference_names or n == "pixel_values"] for v, ns in structural.items()}
    if not any(module_path(node) for node in graph.node):
        chosen = {v: ns for v, ns in structural.items() if ns and v not in final}
        unmapped = [o for node in graph.node for o in node.output if o and o not in final and o not in chosen]
        return chosen, unmapped
    inputs = {v: ["pixel_values"] for v, ns in structural.items() if "pixel_values" in ns}

    paths, unmapped = [], []  # the final outputs are named by position, not by scope
    weights = {i.name for i in graph.initializer}
    for node in graph.node:
        path = module_path(node)
        if path is not None and user_map:
            path = rename_all(path, user_map)[0]
        paths.append(path)
        if node.op_type == "DequantizeLinear" and node.input[0] in weights:
            continue  # a quantized weight dequantized: a weight, not a tensor the model computes
        if path is None:
            unmapped += [o for o in node.output if o and o not in final and o not in inputs]
    chosen = dict(inputs)
    for name in reference_names:
        last = None
        for i, path in enumerate(paths):
            if path is not None and (path == name or path.startswith(name + ".")) \
                    and graph.node[i].op_type not in CODE_OPS:
                last = i
        if last is not None and graph.node[last].output:
            chosen.setdefault(graph.node[last].output[0], []).append(name)
    return chosen, unmapped


def backbone_names(spec, checkpoint):
    """The checkpoint's ResNet names (refimpl.models.resnet.ResNetNames) for structural alignment."""
    from refimpl.models import detr, resnet

    if spec.task == "object-detection":
        return detr.hparams(checkpoint.config).backbone_names if checkpoint is not None else None
    return resnet.classifier_backbone(resnet.check_config(checkpoint.config)) if checkpoint is not None else resnet.CLASSIFIER_NAMES


class OnnxAdapter:
    def __init__(self, file, spec, reference_names, user_map=None, layout="nchw", checkpoint=None):
        try:
            import onnx
            import onnxruntime
        except ImportError as e:
            raise AdapterError("onnx: needs onnx and onnxruntime (pip install 'refimpl[onnx]')") from e
        from refimpl.conformance.budgets import final_outputs

        try:
            model = onnx.load(file)
        except (OSError, onnx.onnx_cpp2py_export.checker.ValidationError, Exception) as e:  # noqa: B014
            raise AdapterError(f"onnx:{file}: cannot read the model: {e}") from e
        graph = model.graph
        self.final = list(zip([o.name for o in graph.output], final_outputs(spec)))
        finals = {o for o, _ in self.final}
        has_scopes = any(module_path(node) for node in graph.node)
        if user_map is None and spec.task == "object-detection":  # transformers' module paths, as exported
            from .base import load_map

            user_map = load_map("transformers_detr.names")
        self.names, self.unmapped = name_outputs(graph, [n for n in reference_names if n not in dict(self.final).values()],
                                                 user_map, backbone_names(spec, checkpoint), spec.task)
        quantized = any(n.op_type in QUANT_OPS for n in graph.node)
        if quantized and not any("pixel_values" in ns for ns in self.names.values()):
            source = quantized_input(graph)
            if source is not None:
                self.names.setdefault(source, []).append("pixel_values")
                self.unmapped = [u for u in self.unmapped if u != source]
        for value in list(self.names):
            if value in finals:  # already a graph output
                continue
            graph.output.append(onnx.helper.make_empty_tensor_value_info(value))  # ORT infers the type
        initializers = {i.name for i in graph.initializer}
        self.inputs = [i.name for i in graph.input if i.name not in initializers]
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise AdapterError(f"onnx:{file}: ONNX Runtime cannot run it: {e}") from e
        self.file, self.layout, self.version = file, layout, onnxruntime.__version__
        self.quantization = quantization(graph, self.names)
        self.precision = (("int8", f"declared by the graph: {self.quantization.describe()}")
                          if self.quantization is not None else None)
        self.input_types = {i.name: i.type.tensor_type.elem_type for i in graph.input}
        self.exporter = ("dynamo (name scopes)" if any(p.key == SCOPES for n in graph.node for p in n.metadata_props)
                         else "legacy (node names)" if has_scopes else "structural alignment (no scopes)")

    def describe(self):
        source = (f"names by {self.exporter}" if self.exporter.startswith("structural")
                  else f"names from the {self.exporter} exporter's scopes")
        return f"ONNX Runtime {self.version} on {self.file} ({source}; {sum(map(len, self.names.values()))} intermediates named)"

    def run(self, case):
        from onnx import helper

        dtype = helper.tensor_dtype_to_np_dtype(self.input_types[self.inputs[0]]) if self.input_types.get(self.inputs[0]) \
            else np.float32
        feeds = {self.inputs[0]: case.pixel_values.astype(dtype if dtype in (np.float16, np.float64) else np.float32)}
        if len(self.inputs) > 1 and case.pixel_mask is not None:
            feeds[self.inputs[1]] = case.pixel_mask
        wanted = [o for o, _ in self.final] + [v for v in self.names if v not in dict(self.final)]
        values = dict(zip(wanted, self.session.run(wanted, feeds)))
        tensors = {}
        for value, names in self.names.items():
            for n in names:
                tensors[n] = values[value]
        for value, name in self.final:
            tensors[name] = values[value]
        return Result(to_nchw(tensors, self.layout), list(self.unmapped))


def quantization(graph, named):
    """How a quantized graph quantizes (refimpl.conformance.precision.Quantization), or None for a
    float graph. named: {value: [checkpoint names]} (name_outputs): a named value that a
    DequantizeLinear produces has its scale and zero point read from the graph."""
    from onnx import numpy_helper

    from refimpl.conformance.precision import Quantization

    ops = {n.op_type for n in graph.node}
    if not ops & set(QUANT_OPS):
        return None
    inits = {i.name: i for i in graph.initializer}

    def array(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    dynamic = "DynamicQuantizeLinear" in ops
    per_channel = False
    for node in graph.node:  # a weight's zero point (or scale) with one entry per output channel
        if node.op_type in ("ConvInteger", "MatMulInteger") and len(node.input) > 3:
            zp = array(node.input[3])
            per_channel |= zp is not None and zp.size > 1
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            scale = array(node.input[1])
            per_channel |= scale is not None and scale.size > 1 and array(node.input[0]).dtype == np.int8
    scales = {}
    producers = {o: n for n in graph.node for o in n.output}
    for value, names in named.items():
        node = producers.get(value)
        if node is None or node.op_type != "DequantizeLinear" or len(node.input) < 3:
            continue
        scale, zero = array(node.input[1]), array(node.input[2])
        if scale is None or zero is None or scale.size != 1:
            continue
        bounds = (-128, 127) if zero.dtype == np.int8 else (0, 255)
        for name in names:
            scales[name] = (float(scale.reshape(-1)[0]), float(zero.reshape(-1)[0]), *bounds)
    inputs = ({i.name for i in graph.input} - set(inits)) | {v for v, ns in named.items() if "pixel_values" in ns}
    for node in graph.node:  # the model's input, quantized by the graph's first QuantizeLinear
        if node.op_type == "QuantizeLinear" and node.input[0] in inputs and len(node.input) > 2:
            scale, zero = array(node.input[1]), array(node.input[2])
            if scale is not None and zero is not None and scale.size == 1:
                bounds = (-128, 127) if zero.dtype == np.int8 else (0, 255)
                scales.setdefault("pixel_values", (float(scale.reshape(-1)[0]), float(zero.reshape(-1)[0]), *bounds))
    return Quantization("dynamic" if dynamic else "static", per_channel, scales)


def quantized_input(graph):
    """What a quantized graph's stem really reads, as a float tensor: in a QDQ graph the stem Conv's
    dequantized input; in a dynamic graph the float tensor its DynamicQuantizeLinear quantizes, when
    the graph transforms its input first (a channel swap, a normalization) - None when that is the
    graph's input itself (then refimpl's pixel_values are what it read)."""
    from refimpl.models import resnet

    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}

    def weight_shape(value):
        node = producers.get(value)
        if node is not None and node.op_type == "DequantizeLinear":
            value = node.input[0]
        return tuple(inits[value].dims) if value in inits else None

    stems = [n for n in graph.node if n.op_type in ("Conv", "ConvInteger") and len(n.input) > 1
             and weight_shape(n.input[1]) == (resnet.STEM_WIDTH, 3, 7, 7)]
    if len(stems) != 1:
        return None
    value = stems[0].input[0]
    node = producers.get(value)
    if node is not None and node.op_type == "DequantizeLinear":
        return value  # QDQ: the dequantized input the stem's Conv reads
    if node is not None and node.op_type == "DynamicQuantizeLinear":
        value = node.input[0]  # dynamic: the float tensor quantized at run time
    graph_inputs = {i.name for i in graph.input} - set(inits)
    node = producers.get(value)
    if value in graph_inputs or node is None or node.op_type in QUANT_OPS:
        return None
    return value
