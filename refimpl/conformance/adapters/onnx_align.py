"""Naming an ONNX graph's tensors by its structure, when its node names carry no module scopes.

An exporter that keeps no scopes (or a graph whose names were stripped) still computes a ResNet
as a recognisable sequence of ops. Walking the graph from its input in data-flow order, the
backbone is matched block by block against refimpl's own walk over the architecture
(`refimpl.models.resnet.blocks`, the one walk the reference, the fast path and the summary use),
so every family member (basic or bottleneck blocks, any depth, DC5) aligns the same way:

    stem      Conv 7x7 (embedding_size out) -> [norm] -> [Relu]         `...embedder.embedder` / `act1`
              -> MaxPool                                                `...embedder` / `maxpool`
    block     x -> Conv kxk (c) -> [norm] -> [Relu]                     each step but the last
                -> Conv kxk (c_out) -> [norm]                           the last step
              x -> Conv 1x1 (c_out) -> [norm]  (when the shape changes) shortcut
              Add(last step, shortcut or x) -> [Relu]                   the block (and its stage)
    head      GlobalAveragePool / ReduceMean of the last block          `resnet.pooler` (classifiers)

[norm] is a BatchNormalization, or frozen batch norm as exporters leave it (DETR's: a Mul and an
Add by per-channel constants); with BN folded into the conv by the exporter there is none.
A Conv is recognised by its weight's shape (out channels, kernel), never by its strides or its
values, so a port with the wrong stride or the wrong weights is still aligned - and then found
to diverge at that tensor. The activations and normalizations in brackets are optional in the
match: a step's tensor is the output of its last op, so a missing ReLU is named where it is
missing (and diagnosed there as a missing activation). Where the graph's input is transformed
before the stem's Conv (a channel swap, a normalization inside the graph), the Conv's input is
named `pixel_values`: what the model really sees.

Anything that does not match - no unique Conv with the expected shape, an Add that does not join
the two paths - stops the alignment there: the tensors already matched are named, the rest are
listed as unmapped, never guessed. The graph's outputs are named by position by the adapter.
"""

from refimpl.models import resnet

NORM_OPS = ("BatchNormalization",)
ACT_OPS = ("Relu",)
POOL_OPS = ("GlobalAveragePool", "ReduceMean")


class _Graph:
    def __init__(self, graph):
        from onnx import numpy_helper

        self.nodes = list(graph.node)
        self.consumers = {}
        for node in self.nodes:
            for v in node.input:
                if v:
                    self.consumers.setdefault(v, []).append(node)
        self.shapes = {i.name: tuple(i.dims) for i in graph.initializer}
        for node in self.nodes:  # weights stored as Constant nodes
            if node.op_type == "Constant" and node.output:
                for a in node.attribute:
                    if a.name == "value":
                        self.shapes[node.output[0]] = tuple(numpy_helper.to_array(a.t).shape)
        initializers = {i.name for i in graph.initializer}
        self.inputs = [i.name for i in graph.input if i.name not in initializers]

    def after(self, value, ops, test=lambda node: True):
        """The one node of type `ops` that consumes `value` and passes `test`, else None."""
        found = [n for n in self.consumers.get(value, []) if n.op_type in ops and test(n)]
        return found[0] if len(found) == 1 else None

    def conv(self, value, c_out, kernel):
        """The one Conv reading `value` whose weight is (c_out, *, kernel, kernel)."""
        def fits(node):
            shape = self.shapes.get(node.input[1]) if len(node.input) > 1 else None
            return shape is not None and len(shape) == 4 and shape[0] == c_out and tuple(shape[2:]) == (kernel, kernel)

        return self.after(value, ("Conv",), fits)

    def constant_operand(self, node, value):
        """Whether `node`'s other input (not `value`) is a weight: an initializer or a Constant."""
        others = [v for v in node.input if v != value]
        return len(others) == 1 and others[0] in self.shapes

    def norm(self, value):
        """The normalization after a conv -> its output value, or None: a BatchNormalization, or
        frozen batch norm as the exporter leaves it, a Mul then an Add by per-channel constants."""
        bn = self.after(value, NORM_OPS)
        if bn is not None:
            return bn.output[0]
        mul = self.after(value, ("Mul",), lambda n: self.constant_operand(n, value))
        if mul is None:
            return None
        add = self.after(mul.output[0], ("Add",), lambda n: self.constant_operand(n, mul.output[0]))
        return add.output[0] if add is not None else None

    def step(self, value, c_out, kernel, activation=True):
        """Conv -> [norm] -> [Relu] from `value` -> the step's output value, or None."""
        node = self.conv(value, c_out, kernel)
        if node is None:
            return None
        out = node.output[0]
        out = self.norm(out) or out
        relu = self.after(out, ACT_OPS) if activation else None
        return relu.output[0] if relu is not None else out


def align(graph, names, task):
    """{value name: [checkpoint names]} for the backbone's tensors of an ONNX graph without scopes.

    graph: an onnx GraphProto in topological order (as ONNX requires); names: the model's
    resnet.Backbone (architecture and checkpoint names: `loaded.backbone_names`);
    task: the registry spec's task ("image-classification" also names the pooler)."""
    g = _Graph(graph)
    chosen = {}

    def name(value, *checkpoint_names):
        chosen.setdefault(value, []).extend(checkpoint_names)

    _, _, stem_out, pool_out = names.stem()
    width = names.arch.embedding_size
    stems = [n for n in g.nodes if n.op_type == "Conv" and len(n.input) > 1
             and g.shapes.get(n.input[1]) == (width, 3, 7, 7)]
    if len(stems) != 1:
        return chosen
    source = stems[0].input[0]
    if source not in g.inputs:  # the graph transforms its input first: this is what the model sees
        name(source, "pixel_values")
    x = g.step(source, width, 7)
    if x is None:
        return chosen
    name(x, stem_out)
    pool = g.after(x, ("MaxPool",))
    if pool is None:
        return chosen
    x = pool.output[0]
    name(x, pool_out)
    for block in resnet.blocks(names):
        steps, h = [], x
        for layer in block.layers:
            h = h and g.step(h, layer.c_out, layer.kernel, activation=layer.relu)
            steps.append(h)
        last = steps[-1]
        shortcut = g.step(x, block.c_out, 1, activation=False) if block.projection else x
        if not (last and shortcut):
            return chosen
        add = g.after(last, ("Add",), lambda n: set(n.input) == {last, shortcut})
        if add is None:
            return chosen
        relu = g.after(add.output[0], ACT_OPS)
        out = relu.output[0] if relu is not None else add.output[0]
        for value, layer in zip(steps, block.layers):
            name(value, layer.out)
        if block.projection:
            name(shortcut, block.projection.out)
        name(out, block.name, *([names.stage(block.stage)] if block.last_in_stage else []))
        x = out
    if task == "image-classification":
        pool = g.after(x, POOL_OPS)
        if pool is not None:
            name(pool.output[0], "resnet.pooler")
    return chosen
