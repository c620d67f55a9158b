"""DETR-ResNet-50: the two checkpoint layouts, layout detection from config.json, strict loading
and its refusals, the synthesized checkpoints themselves, and the COCO labels."""

import copy
import json
import shutil

import numpy as np
import pytest

from refimpl.models import detr, resnet
from refimpl.api import load_detr
from refimpl.errors import CheckpointMismatchError
from refimpl.pipeline.weights import check_params, read_safetensors
from refimpl.synth.detr import COCO_ID2LABEL, DETR_PREPROCESSOR

# --- the official layouts, as save_pretrained writes them ----------------------------------------

LEGACY_TRANSFORMER_KEYS = (
    "model.input_projection.weight",
    "model.query_position_embeddings.weight",
    "model.encoder.layers.0.self_attn.out_proj.weight",
    "model.encoder.layers.5.fc1.weight",
    "model.encoder.layers.5.final_layer_norm.bias",
    "model.decoder.layers.5.encoder_attn.k_proj.weight",
    "model.decoder.layers.5.encoder_attn_layer_norm.weight",
    "model.decoder.layers.5.fc2.bias",
    "model.decoder.layernorm.weight",
    "class_labels_classifier.weight",
    "bbox_predictor.layers.2.bias",
)
BACKBONE_KEYS = {
    "timm": ("model.backbone.conv_encoder.model.conv1.weight", "model.backbone.conv_encoder.model.bn1.running_var",
             "model.backbone.conv_encoder.model.layer1.0.conv1.weight",
             "model.backbone.conv_encoder.model.layer1.0.downsample.0.weight",
             "model.backbone.conv_encoder.model.layer4.2.bn3.weight"),
    "transformers": ("model.backbone.conv_encoder.model.embedder.embedder.convolution.weight",
                     "model.backbone.conv_encoder.model.encoder.stages.0.layers.0.shortcut.convolution.weight",
                     "model.backbone.conv_encoder.model.encoder.stages.3.layers.2.layer.2.normalization.running_mean"),
}


@pytest.mark.parametrize("layout", ["timm", "transformers"])
def test_save_pretrained_writes_the_hub_layout(layout, detr_dirs):
    """The synthesized files carry the official key names (legacy transformer names, the layout's
    backbone names) and exactly the keys refimpl expects, with the expected shapes."""
    folder = detr_dirs[layout]
    params = read_safetensors(folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    for key in LEGACY_TRANSFORMER_KEYS + BACKBONE_KEYS[layout]:
        assert key in params, key
    assert not any(".o_proj." in k or ".mlp." in k for k in params)  # transformers 5's own names
    check_params(params, detr.expected_shapes(config))
    assert detr.layout(config) == layout
    assert detr.layout_of_keys(params) == layout
    assert params["class_labels_classifier.weight"].shape == (92, 256)
    assert params["model.query_position_embeddings.weight"].shape == (100, 256)
    # about 41.5 M parameters (running statistics included), as the official checkpoint
    assert 41.0e6 < resnet.num_params(detr.expected_shapes(config)) < 41.8e6
    assert json.loads((folder / "preprocessor_config.json").read_text()) == DETR_PREPROCESSOR
    assert {int(k): v for k, v in config["id2label"].items()} == COCO_ID2LABEL


def test_both_layouts_load(detr_models):
    assert detr_models["timm"].layout == "timm"
    assert detr_models["transformers"].layout == "transformers"
    for model in detr_models.values():
        assert model.hparams == detr.HParams(layout=model.layout)  # DETR-ResNet-50's numbers
        assert model.checkpoint.id2label == COCO_ID2LABEL


def test_float64_loading(detr_timm_dir):
    model = load_detr(detr_timm_dir, dtype="float64")
    assert all(v.dtype == np.float64 for v in model.checkpoint.params.values())
    outputs = model.forward(np.zeros((1, 3, 64, 96), np.float32), np.ones((1, 64, 96), np.int64))
    assert outputs["logits"].dtype == np.float64


# --- layout detection from config.json ------------------------------------------------------------

def official_main_config():
    """facebook/detr-resnet-50's own config.json (revision main, written by transformers 4.x):
    no backbone_config, the timm model named by `backbone`."""
    return {
        "architectures": ["DetrForObjectDetection"], "model_type": "detr", "backbone": "resnet50",
        "use_timm_backbone": True, "use_pretrained_backbone": True, "dilation": False, "d_model": 256,
        "num_queries": 100, "encoder_layers": 6, "decoder_layers": 6, "encoder_attention_heads": 8,
        "decoder_attention_heads": 8, "encoder_ffn_dim": 2048, "decoder_ffn_dim": 2048,
        "activation_function": "relu", "position_embedding_type": "sine", "num_channels": 3,
        "id2label": {str(k): v for k, v in COCO_ID2LABEL.items()},
    }


def test_layout_of_the_official_configs(detr_dirs):
    assert detr.layout(official_main_config()) == "timm"
    no_timm = json.loads((detr_dirs["transformers"] / "config.json").read_text())
    assert no_timm["use_timm_backbone"] is False and no_timm["backbone_config"]["model_type"] == "resnet"
    assert detr.layout(no_timm) == "transformers"
    timm5 = json.loads((detr_dirs["timm"] / "config.json").read_text())  # how transformers 5 writes `main`
    assert timm5["backbone_config"]["model_type"] == "timm_backbone"
    assert detr.layout(timm5) == "timm"


def _edit(config, path, value):
    config = copy.deepcopy(config)
    target = config
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return config


REFUSED_CONFIGS = [
    ("main", ("backbone",), "resnet26d", "backbone is 'resnet26d'"),
    ("main", ("backbone",), "vgg16", "backbone is 'vgg16'"),
    ("main", ("backbone_kwargs",), {"output_stride": 8}, "output_stride is 8"),
    ("main", ("backbone_kwargs",), {"output_stride": 16}, "output_stride is 16 but dilation is false"),
    ("main", ("position_embedding_type",), "learned", "position_embedding_type"),
    ("main", ("activation_function",), "gelu", "activation_function"),
    ("main", ("use_timm_backbone",), False, "no backbone_config"),
    ("main", ("model_type",), "conditional_detr", "model_type"),
    ("main", ("d_model",), 250, "not divisible"),
    ("no_timm", ("use_timm_backbone",), True, "contradicts"),
    ("no_timm", ("backbone_config", "layer_type"), "preactivation", "layer_type=preactivation"),
    ("no_timm", ("backbone_config", "downsample_in_bottleneck"), True, "downsample_in_bottleneck"),
    ("no_timm", ("backbone_config", "out_features"), ["stage3"], "stage3"),
    ("no_timm", ("backbone_config", "model_type"), "convnext", "convnext"),
    ("timm5", ("backbone_config", "backbone"), "resnet26d", "resnet26d"),
    ("timm5", ("backbone_config", "output_stride"), 16, "output_stride"),
    ("timm5", ("dilation",), True, "output_stride"),  # transformers 5 would build it undilated
]

# Family members (issue 20): other backbones and DC5 are read from the config, not refused.
ACCEPTED_CONFIGS = [
    ("main", ("backbone",), "resnet101", "resnet-101"),
    ("main", ("backbone",), "resnet18", "resnet-18"),
    ("main", ("dilation",), True, "resnet-50-dc5"),
    ("no_timm", ("backbone_config", "depths"), [3, 4, 23, 3], "resnet-101"),
    ("no_timm", ("dilation",), True, "resnet-50-dc5"),
    ("timm5", ("backbone_config", "backbone"), "resnet152", "resnet-152"),
]


@pytest.mark.parametrize("base,path,value,arch", ACCEPTED_CONFIGS)
def test_family_members_are_read_from_the_config(base, path, value, arch, detr_dirs):
    configs = {
        "main": official_main_config(),
        "no_timm": json.loads((detr_dirs["transformers"] / "config.json").read_text()),
        "timm5": json.loads((detr_dirs["timm"] / "config.json").read_text()),
    }
    hp = detr.hparams(_edit(configs[base], path, value))
    assert hp.backbone.name == arch
    shapes = detr.expected_shapes(_edit(configs[base], path, value))
    assert shapes["model.input_projection.weight"] == (256, hp.backbone.out_channels, 1, 1)


@pytest.mark.parametrize("base,path,value,message", REFUSED_CONFIGS)
def test_other_architectures_are_refused(base, path, value, message, detr_dirs):
    configs = {
        "main": official_main_config(),
        "no_timm": json.loads((detr_dirs["transformers"] / "config.json").read_text()),
        "timm5": json.loads((detr_dirs["timm"] / "config.json").read_text()),
    }
    with pytest.raises(CheckpointMismatchError, match=message):
        detr.expected_shapes(_edit(configs[base], path, value))


def test_architecture_numbers_follow_the_config():
    """The transformer's sizes come from config.json; the strict check then holds the file to them."""
    config = dict(official_main_config(), num_queries=300, decoder_layers=3, encoder_ffn_dim=1024)
    config["id2label"] = {"0": "a", "1": "b"}
    shapes = detr.expected_shapes(config)
    assert shapes["model.query_position_embeddings.weight"] == (300, 256)
    assert shapes["class_labels_classifier.weight"] == (3, 256)
    assert shapes["model.encoder.layers.0.fc1.weight"] == (1024, 256)
    assert "model.decoder.layers.2.fc1.weight" in shapes and "model.decoder.layers.3.fc1.weight" not in shapes


# --- strict loading refusals ----------------------------------------------------------------------

def _folder_with(tmp_path, config_from, weights_from, name="mixed"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text((config_from / "config.json").read_text())
    (folder / "preprocessor_config.json").write_text((config_from / "preprocessor_config.json").read_text())
    (folder / "model.safetensors").symlink_to(weights_from / "model.safetensors")
    return folder


def test_wrong_layout_is_refused_with_a_hint(tmp_path, detr_dirs):
    """A `main` config.json beside `no_timm` weights (and the reverse): refused, naming both layouts."""
    folder = _folder_with(tmp_path, detr_dirs["timm"], detr_dirs["transformers"])
    with pytest.raises(CheckpointMismatchError, match=r"missing key 'model\.backbone\.conv_encoder\.model\.conv1\.weight'.*"
                       r"config\.json describes the timm backbone layout of revision 'main', but the weights use "
                       r"the transformers layout of revision 'no_timm'"):
        load_detr(folder)
    folder = _folder_with(tmp_path, detr_dirs["transformers"], detr_dirs["timm"], "mixed2")
    with pytest.raises(CheckpointMismatchError, match="revision 'no_timm', but the weights use the timm layout"):
        load_detr(folder)


def _rewrite(tmp_path, source, edit):
    from safetensors.numpy import save_file

    folder = tmp_path / "edited"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(source / name, folder / name)
    params = read_safetensors(source / "model.safetensors")
    edit(params)
    save_file(params, str(folder / "model.safetensors"))
    return folder


@pytest.mark.parametrize("edit,message", [
    (lambda p: p.pop("model.decoder.layers.3.encoder_attn.v_proj.bias"),
     r"missing key 'model\.decoder\.layers\.3\.encoder_attn\.v_proj\.bias'"),
    (lambda p: p.__setitem__("model.decoder.layers.6.fc1.weight", np.zeros((2048, 256), np.float32)),
     r"unexpected key 'model\.decoder\.layers\.6\.fc1\.weight'"),
    (lambda p: p.__setitem__("class_labels_classifier.weight", np.zeros((251, 256), np.float32)),
     r"'class_labels_classifier\.weight' has shape \(251, 256\), the architecture needs \(92, 256\)"),
])
def test_strict_check_refuses_edited_weights(tmp_path, detr_dirs, edit, message):
    folder = _rewrite(tmp_path, detr_dirs["transformers"], edit)
    with pytest.raises(CheckpointMismatchError, match=message):
        load_detr(folder)


def test_num_batches_tracked_is_accepted(detr_dirs):
    """The official `main` file keeps BatchNorm's num_batches_tracked for the downsample BNs: ignored."""
    params = read_safetensors(detr_dirs["timm"] / "model.safetensors")
    config = json.loads((detr_dirs["timm"] / "config.json").read_text())
    params["model.backbone.conv_encoder.model.layer1.0.downsample.1.num_batches_tracked"] = np.zeros((), np.int64)
    check_params(params, detr.expected_shapes(config))


# --- the labels -----------------------------------------------------------------------------------

def test_coco_labels_match_torchvision():
    """The 91 COCO ids with their "N/A" gaps, checked against torchvision's own table (whose id 0
    is "__background__" where DETR's config says "N/A")."""
    from torchvision.models._meta import _COCO_CATEGORIES

    assert len(COCO_ID2LABEL) == 91 == len(_COCO_CATEGORIES)
    assert [COCO_ID2LABEL[i] for i in range(1, 91)] == _COCO_CATEGORIES[1:]
    assert [i for i, v in COCO_ID2LABEL.items() if v == "N/A"] == [0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83]
    assert (COCO_ID2LABEL[1], COCO_ID2LABEL[2], COCO_ID2LABEL[90]) == ("person", "bicycle", "toothbrush")
