"""Synthesized DETR checkpoints (any family member: facebook/detr-resnet-50, -101, DC5) in both
official layouts, built by transformers itself.

`build_detr(folder, layout, config=...)` makes `DetrForObjectDetection(DetrConfig(<facebook/detr-
resnet-50's values, the entry's backbone and dilation>))` with either the timm ResNet backbone (the
hub's `main` revision) or the transformers ResNet backbone (`no_timm`), gives it random but
realistic weights and writes it with
`save_pretrained` (which writes the hub's legacy key names) beside the official
preprocessor_config.json values. Nothing is downloaded: timm builds resnet50 with
pretrained=False and transformers is told use_pretrained_backbone=False.

transformers' own initialisation (std 0.02 everywhere) gives a degenerate transformer: the
attention is nearly uniform and all 100 queries answer the same, which would hide bugs (a wrong
mask, swapped heads, a position embedding added to the values...). So the transformer here gets
fan-in scaled linear weights, unit-variance query embeddings and q/k projections sharpened so
that attention is peaked; `model_properties` measures what the fixtures assert about it.
"""

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from refimpl.synth.resnet import arch_fields, calibration_images, last_branch_norm, randomize_batch_norms

# facebook/detr-resnet-50's config.json id2label: the 91 COCO category ids (1..90 plus 0), with
# "N/A" for the ids COCO never used (0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83). The classifier
# has one more logit, "no object". (Checked against torchvision's _COCO_CATEGORIES in the tests.)
COCO_ID2LABEL = {
    0: "N/A", 1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus",
    7: "train", 8: "truck", 9: "boat", 10: "traffic light", 11: "fire hydrant", 12: "N/A",
    13: "stop sign", 14: "parking meter", 15: "bench", 16: "bird", 17: "cat", 18: "dog",
    19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe",
    26: "N/A", 27: "backpack", 28: "umbrella", 29: "N/A", 30: "N/A", 31: "handbag", 32: "tie",
    33: "suitcase", 34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite",
    39: "baseball bat", 40: "baseball glove", 41: "skateboard", 42: "surfboard",
    43: "tennis racket", 44: "bottle", 45: "N/A", 46: "wine glass", 47: "cup", 48: "fork",
    49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple", 54: "sandwich",
    55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut",
    61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed", 66: "N/A",
    67: "dining table", 68: "N/A", 69: "N/A", 70: "toilet", 71: "N/A", 72: "tv", 73: "laptop",
    74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven",
    80: "toaster", 81: "sink", 82: "refrigerator", 83: "N/A", 84: "book", 85: "clock",
    86: "vase", 87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}

# facebook/detr-resnet-50's preprocessor_config.json.
DETR_PREPROCESSOR = {
    "do_normalize": True,
    "do_pad": True,
    "do_rescale": True,
    "do_resize": True,
    "format": "coco_detection",
    "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "DetrImageProcessor",
    "image_std": [0.229, 0.224, 0.225],
    "resample": 2,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 800, "longest_edge": 1333},
}

LAYOUTS = ("timm", "transformers")  # hub revisions `main` and `no_timm`

# How the random transformer is drawn (see the module docstring).
QK_SHARPEN = 2.0  # q/k weights this many times the fan-in scale: attention logits of std ~4-6
# Attention and FFN branches damped so the residual stream keeps the tokens apart (undamped,
# random branches add a component common to all tokens and the encoder output collapses).
RESIDUAL_BRANCH_GAIN = 0.6
CLASS_LOGIT_STD = 3.0  # spread of each class logit over the queries
NO_OBJECT_BIAS = 10.0  # no-object wins for most queries, as in a trained DETR
BIAS_STD = 0.1


# timm's ResNet names -> transformers' ResNetConfig fields (the no_timm layout of the same backbone).
TIMM_RESNETS = {
    "resnet18": dict(depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic"),
    "resnet34": dict(depths=[3, 4, 6, 3], hidden_sizes=[64, 128, 256, 512], layer_type="basic"),
    "resnet50": dict(depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048], layer_type="bottleneck"),
    "resnet101": dict(depths=[3, 4, 23, 3], hidden_sizes=[256, 512, 1024, 2048], layer_type="bottleneck"),
    "resnet152": dict(depths=[3, 8, 36, 3], hidden_sizes=[256, 512, 1024, 2048], layer_type="bottleneck"),
}


def detr_config(layout, backbone="resnet50", dilation=False):
    """DetrConfig with facebook/detr-resnet-50's transformer values, in the given backbone layout,
    with the timm ResNet `backbone` ("resnet50", "resnet101", ...) and DC5 `dilation`.

    transformers' ResNet cannot dilate (DetrConfig: dilation "only supported when
    use_timm_backbone = True"), so layout "transformers" with dilation writes `dilation: true`
    into a model that transformers computes undilated (tests/fixtures_detr.py renames a timm DC5
    checkpoint's keys instead)."""
    from transformers import DetrConfig, ResNetConfig

    common = dict(
        num_queries=100,
        d_model=256,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
        activation_function="relu",
        position_embedding_type="sine",
        dilation=dilation,
        auxiliary_loss=False,
        id2label=dict(COCO_ID2LABEL),
        label2id={v: k for k, v in COCO_ID2LABEL.items()},  # the "N/A"s collapse, as in the official file
        architectures=["DetrForObjectDetection"],
        use_pretrained_backbone=False,  # never download backbone weights
    )
    if layout == "timm":
        return DetrConfig(use_timm_backbone=True, backbone=backbone, **common)
    if layout == "transformers":
        fields = arch_fields(TIMM_RESNETS[backbone])
        resnet_config = ResNetConfig(**fields, out_features=[f"stage{len(fields['depths'])}"])
        return DetrConfig(use_timm_backbone=False, backbone_config=resnet_config, **common)
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


@contextlib.contextmanager
def _offline():
    """Make any attempt to reach the hub fail loudly while the model is built."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _is_frozen_bn(m):
    return type(m).__name__.endswith("FrozenBatchNorm2d")


def calibrate_frozen_batch_norms(backbone, x):
    """Set every frozen BN's running statistics to those of its own input on `x`.

    DETR's BNs are frozen (no train mode), so a pre-hook does what synth.calibrate_batch_norms
    does with train mode: it records each BN's input statistics just before the BN uses them,
    layer by layer, so every later layer already sees calibrated activations.
    """
    import torch

    def hook(m, inputs):
        (t,) = inputs
        m.running_mean.copy_(t.mean(dim=(0, 2, 3)))
        m.running_var.copy_(t.var(dim=(0, 2, 3), unbiased=False))

    handles = [m.register_forward_pre_hook(hook) for m in backbone.modules() if _is_frozen_bn(m)]
    try:
        with torch.no_grad():
            backbone(x)
    finally:
        for h in handles:
            h.remove()
    return len(handles)


def _normal(rng, std, shape):
    import torch

    return torch.from_numpy(rng.normal(0.0, std, shape).astype(np.float32))


def randomize_transformer(model, rng):
    """Fan-in scaled weights for every linear layer of the transformer and the heads, sharpened q/k,
    unit-variance query embeddings, layer norms around (1, 0)."""
    import torch

    with torch.no_grad():
        for name, m in model.named_modules():
            if name.startswith("model.backbone"):
                continue
            if isinstance(m, torch.nn.Linear):
                std = 1.0 / np.sqrt(m.in_features)
                if name.endswith(("q_proj", "k_proj")):
                    std *= QK_SHARPEN
                if name.endswith(("v_proj", "o_proj", "out_proj", "fc2")):
                    std *= RESIDUAL_BRANCH_GAIN
                m.weight.copy_(_normal(rng, std, m.weight.shape))
                m.bias.copy_(_normal(rng, BIAS_STD, m.bias.shape))
            elif isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(torch.from_numpy(rng.uniform(0.8, 1.2, m.weight.shape).astype(np.float32)))
                m.bias.copy_(_normal(rng, BIAS_STD, m.bias.shape))
        model.model.query_position_embeddings.weight.copy_(_normal(rng, 1.0, model.model.query_position_embeddings.weight.shape))
        proj = model.model.input_projection
        proj.weight.copy_(_normal(rng, 1.0 / np.sqrt(proj.in_channels), proj.weight.shape))
        proj.bias.copy_(_normal(rng, BIAS_STD, proj.bias.shape))


def _standardize(linear, inputs, std=1.0, mean=0.0):
    """Rescale a Linear/1x1-conv layer so that, on `inputs`, each of its outputs has the given mean
    and std over all positions (what BN calibration does for the backbone, done once here).
    inputs: (..., in) for a Linear, (N, in, h, w) for a conv."""
    import torch

    with torch.no_grad():
        y = linear(inputs)
        if y.ndim == 4:  # conv: channels on axis 1
            y = y.transpose(1, -1)
        y = y.reshape(-1, y.shape[-1])
        scale = torch.as_tensor(std, dtype=y.dtype) / y.std(0)
        shift = torch.as_tensor(mean, dtype=y.dtype) - y.mean(0) * scale
        linear.weight.mul_(scale.reshape(-1, *([1] * (linear.weight.ndim - 1))))
        linear.bias.mul_(scale).add_(shift)


def calibrate_transformer(model, x):
    """Standardize the encoder's input and the heads' outputs on calibration images `x`.

    Random layer4 features share a large common component (they are post-ReLU), and a random head
    reads mostly the part of the decoder output all queries share, so without this every query
    predicts the same class and box. Standardizing the projection per channel and each head
    output over the queries makes the classes and boxes differ from query to query."""
    import torch

    mask = torch.ones(x.shape[0], *x.shape[2:], dtype=torch.long)
    with torch.no_grad():
        features = model.model.backbone(x, mask)[-1][0]
        _standardize(model.model.input_projection, features)
        hs = model.model(pixel_values=x, pixel_mask=mask).last_hidden_state  # (N, Q, D)
        _standardize(model.class_labels_classifier, hs, std=CLASS_LOGIT_STD)
        model.class_labels_classifier.bias[-1] += NO_OBJECT_BIAS
        # A trained DETR never predicts the unused "N/A" ids; neither should this one, mostly.
        for i, name in COCO_ID2LABEL.items():
            if name == "N/A":
                model.class_labels_classifier.bias[i] -= NO_OBJECT_BIAS
        mlp = model.bbox_predictor.layers
        h = torch.relu(mlp[1](torch.relu(mlp[0](hs))))
        # centers spread over the image, sizes around a fifth of it
        _standardize(mlp[2], h, std=torch.tensor([1.0, 1.0, 0.7, 0.7]), mean=torch.tensor([0.0, 0.0, -1.5, -1.5]))


def build_detr(folder, layout="timm", seed=0, config=None):
    """DetrForObjectDetection with official config values and realistic random weights, written to
    `folder` with save_pretrained plus the official preprocessor_config.json. Returns the folder.
    config: a registry entry's `config` ({"backbone": "resnet101", "dilation": true, ...}; default
    facebook/detr-resnet-50's)."""
    import torch
    from transformers import DetrForObjectDetection

    config = config or {}
    name, dilation = config.get("backbone", "resnet50"), bool(config.get("dilation", False))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    with _offline():
        model = DetrForObjectDetection(detr_config(layout, name, dilation)).eval()
    backbone = model.model.backbone.model
    last_bn = last_branch_norm(TIMM_RESNETS[name]["layer_type"], "timm" if layout == "timm" else "transformers")
    randomize_batch_norms(backbone, rng, damp=lambda name: name.endswith(last_bn))
    x = torch.from_numpy(calibration_images(n=4, size=320, seed=seed))
    calibrate_frozen_batch_norms(backbone, x)
    randomize_transformer(model, rng)
    calibrate_transformer(model, x)
    folder = Path(folder)
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(DETR_PREPROCESSOR, indent=2))
    return folder


def model_properties(outputs):
    """What makes a synthesized DETR a useful test subject, measured on transformers' outputs
    (run with eager attention and output_attentions=True). Returns numbers the fixtures assert on."""
    import torch

    enc = torch.stack(outputs.encoder_attentions)  # (layers, N, heads, S, S)
    cross = torch.stack(outputs.cross_attentions)  # (layers, N, heads, Q, S)
    dec = torch.stack(outputs.decoder_attentions)  # (layers, N, heads, Q, Q)
    scores = outputs.logits.softmax(-1)[..., :-1].max(-1).values  # (N, Q)
    boxes = outputs.pred_boxes
    s = enc.shape[-1]
    return {
        "tokens": s,
        # mean over all rows of the largest attention weight; uniform attention gives 1/S
        # (padded keys included in S, so this understates the peaking on padded images)
        "encoder_max_weight": float(enc.max(-1).values.mean()),
        "cross_max_weight": float(cross.max(-1).values.mean()),
        "decoder_max_weight": float(dec.max(-1).values.mean()),
        "uniform_weight": 1.0 / s,
        "scores_above_half": int((scores > 0.5).sum()),
        "scores_below_half": int((scores <= 0.5).sum()),
        "score_range": (float(scores.min()), float(scores.max())),
        "distinct_labels": int(len(torch.unique(outputs.logits[..., :-1].argmax(-1)))),
        "box_std": float(boxes.std(dim=1).mean()),  # spread of the boxes across queries
        "box_range": (float(boxes.min()), float(boxes.max())),
    }
