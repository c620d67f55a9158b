"""`refimpl summary`: totals against the checkpoint's own tensors, transformers' parameter count
and the published figures; MACs against hand counts; output shapes against a traced forward."""

import json
import shutil

import numpy as np

from refimpl.viz import summary
from refimpl.cli import main

BUFFER_SUFFIXES = ("running_mean", "running_var")


def checkpoint_tensors(folder):
    from safetensors.numpy import load_file

    return {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if not k.endswith("num_batches_tracked")}


def test_resnet50_totals_match_checkpoint_transformers_and_published(resnet50_dir, resnet50_hf):
    config = json.loads((resnet50_dir / "config.json").read_text())
    t = summary.resnet50(224, 224, config).totals()
    tensors = checkpoint_tensors(resnet50_dir)
    assert t["params"] == sum(v.size for k, v in tensors.items() if not k.endswith(BUFFER_SUFFIXES))
    assert t["buffers"] == sum(v.size for k, v in tensors.items() if k.endswith(BUFFER_SUFFIXES))
    assert t["params"] == sum(p.numel() for p in resnet50_hf.parameters())
    assert t["buffers"] == sum(b.numel() for b in resnet50_hf.buffers() if b.is_floating_point())
    # The published figures: 25.6 M parameters, 4.1 GMAC at 224x224 (ResNet-50 v1.5).
    assert t["params"] == 25_557_032
    assert round(t["macs"] / 1e9, 1) == 4.1
    assert summary.resnet50().totals() == t  # the official config needs no checkpoint


def test_resnet50_macs_hand_count():
    rows = {l.name: l for l in summary.resnet50(224, 224).layers}
    # Stem: 64 filters of 3x7x7 at each of 112x112 output positions.
    assert rows["resnet.embedder.embedder.convolution"].macs == 64 * 3 * 7 * 7 * 112 * 112 == 118_013_952
    assert rows["resnet.embedder.embedder.convolution"].shape == (64, 112, 112)
    assert rows["resnet.embedder"].shape == (64, 56, 56)
    # The first bottleneck of stage 2: 256x56x56 in, 512x28x28 out, the stride on the 3x3.
    block = "resnet.encoder.stages.1.layers.0"
    hand = (
        256 * 128 * 56 * 56  # 1x1 reduce, at full resolution
        + 128 * 128 * 3 * 3 * 28 * 28  # 3x3, stride 2
        + 128 * 512 * 28 * 28  # 1x1 expand
        + 256 * 512 * 28 * 28  # projection shortcut, 1x1 stride 2
    )
    assert sum(l.macs for n, l in rows.items() if n.startswith(block + ".")) == hand
    assert rows[block].shape == (512, 28, 28)
    assert rows["classifier.1"].macs == 2048 * 1000


def test_resnet50_shapes_equal_traced_forward(resnet50):
    """At an odd input size every row's output shape is the traced tensor's (conv rows are compared
    with their conv-BN(-ReLU) step)."""
    h, w = 200, 168
    trace = {}
    resnet50.forward(np.zeros((1, 3, h, w), np.float32), trace)
    compared = 0
    for layer in summary.resnet50(h, w).layers:
        name = layer.name.removesuffix(".convolution").removesuffix(".normalization")
        if name in trace:
            assert trace[name].shape[1:] == layer.shape, layer.name
            compared += 1
    assert compared > 100


def test_detr_totals_match_transformers_and_published():
    from refimpl.synth.detr import _offline, detr_config
    from transformers import DetrForObjectDetection

    s = summary.detr_resnet50(800, 1066)
    t = s.totals()
    with _offline():
        model = DetrForObjectDetection(detr_config("timm"))
    assert t["params"] == sum(p.numel() for p in model.parameters()) == 41_524_768  # the paper: 41 M
    # Frozen batch norm: all four tensors are buffers.
    assert t["buffers"] == sum(b.numel() for b in model.buffers() if b.is_floating_point())
    assert t["params"] + t["buffers"] == sum(v.numel() for v in model.state_dict().values() if v.is_floating_point())
    assert 41e6 < t["params"] < 42e6  # "41 M" in the paper (Carion et al., 2020, Table 1)
    # The backbone is ResNet-50 without its classifier.
    backbone = sum(l.params + l.buffers for l in s.layers if l.name.startswith("model.backbone"))
    r = summary.resnet50().totals()
    assert backbone == r["params"] + r["buffers"] - (2048 * 1000 + 1000)


def test_detr_macs_hand_count():
    """320x320 -> a 10x10 grid: 100 image tokens, 100 queries, d=256, ffn 2048."""
    rows = summary.detr_resnet50(320, 320).layers
    by = {l.name: l for l in rows}
    S, Q, D, F = 100, 100, 256, 2048
    enc = "model.encoder.layers.0."
    assert sum(l.macs for l in rows if l.name.startswith(enc)) == 4 * S * D * D + 2 * S * S * D + 2 * S * D * F
    dec = "model.decoder.layers.0."
    cross = Q * D * D + 2 * S * D * D + 2 * Q * S * D + Q * D * D
    assert sum(l.macs for l in rows if l.name.startswith(dec)) == (4 * Q * D * D + 2 * Q * Q * D) + cross + 2 * Q * D * F
    assert by["model.input_projection"].macs == S * 2048 * D
    assert by["model.encoder.layers.0.self_attn"].shape == (S, D)
    assert by["class_labels_classifier"].shape == (Q, 92)


def test_cli_table_and_json(capsys, resnet50_dir):
    assert main(["summary", "resnet-50"]) == 0
    out = capsys.readouterr().out
    assert "resnet.encoder.stages.3.layers.2.layer.2.convolution" in out
    assert "25,557,032 parameters" in out and "4,089,184,256 MACs" in out
    assert main(["summary", "resnet-50", "--json", "--weights", str(resnet50_dir), "--size", "256", "320"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_shape"] == [3, 256, 320] and data["totals"]["params"] == 25_557_032
    assert data["layers"][-1] == {"name": "classifier.1", "kind": "linear", "shape": [1000], "params": 2_049_000,
                                  "buffers": 0, "macs": 2_048_000}
    assert main(["summary", "detr-resnet-50", "--json", "--size", "480", "640"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["params"] == 41_524_768
    assert [l["shape"] for l in data["layers"] if l["name"] == "model.input_projection"] == [[256, 15, 20]]


def test_cli_checks_the_checkpoint_shapes(capsys, resnet50_dir, tmp_path):
    """--weights reads config.json and refuses a checkpoint whose tensors do not match it."""
    folder = tmp_path / "ten-classes"
    folder.mkdir()
    (folder / "model.safetensors").symlink_to(resnet50_dir / "model.safetensors")
    config = json.loads((resnet50_dir / "config.json").read_text())
    config["id2label"] = {str(i): f"class {i}" for i in range(10)}
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copy(resnet50_dir / "preprocessor_config.json", folder)
    assert main(["summary", "resnet-50", "--weights", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "CheckpointMismatchError" in err and "classifier.1.weight" in err
    assert main(["summary", "resnet-50", "--size", "8", "8"]) == 2
    assert "at least 32x32" in capsys.readouterr().err


def test_detr_totals_match_the_checkpoint(detr_timm_dir):
    config = json.loads((detr_timm_dir / "config.json").read_text())
    t = summary.detr_resnet50(800, 1066, config).totals()
    tensors = checkpoint_tensors(detr_timm_dir)
    # DETR's batch norms are frozen: weight, bias and running statistics are all buffers.
    bn = {k for k in tensors if k.endswith(BUFFER_SUFFIXES)}
    bn |= {k.replace("running_mean", s) for k in bn if k.endswith("running_mean") for s in ("weight", "bias")}
    assert t["params"] == sum(v.size for k, v in tensors.items() if k not in bn) == 41_524_768
    assert t["buffers"] == sum(tensors[k].size for k in bn)
    assert main(["summary", "detr-resnet-50", "--weights", str(detr_timm_dir), "--json"]) == 0


def test_detr_shapes_equal_traced_forward(detr_timm_dir):
    from refimpl.api import load_detr

    h, w = 320, 480
    trace = {}
    load_detr(detr_timm_dir).forward(np.zeros((1, 3, h, w), np.float32), None, trace)
    compared = 0
    for layer in summary.detr_resnet50(h, w).layers:
        if layer.name in trace:
            assert trace[layer.name].shape[1:] == layer.shape, layer.name
            compared += 1
    assert compared > 40 and "model.decoder.layers.5.encoder_attn" in trace
