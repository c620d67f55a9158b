"""Fuzzing config.json and preprocessor_config.json (issue 14): the official contents with one
field replaced by random JSON (or a random JSON document instead of the whole file). The only
allowed outcomes are a usable config (shapes / a preprocessed image that is finite and of the
promised size) or a typed error that names the file and the field: ConfigFileError or
CheckpointMismatchError (code 5007) for config.json, PreprocessorConfigError for the
preprocessor. Never a traceback, and never an allocation beyond preprocess.MAX_EDGE."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.errors import PreprocessorConfigError, WeightsError
from refimpl.models import detr, resnet
from refimpl.pipeline import preprocess, weights
from refimpl.synth.detr import COCO_ID2LABEL, DETR_PREPROCESSOR
from refimpl.synth.resnet import RESNET50_CONFIG

RESNET_CONFIG = dict(RESNET50_CONFIG, model_type="resnet", num_channels=3,
                     id2label={str(i): f"class {i}" for i in range(1000)})
DETR_CONFIG = dict(model_type="detr", use_timm_backbone=True, backbone="resnet50", num_queries=100, d_model=256,
                   encoder_layers=6, decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
                   encoder_ffn_dim=2048, decoder_ffn_dim=2048, activation_function="relu",
                   position_embedding_type="sine", dilation=False, num_channels=3,
                   id2label={str(k): v for k, v in COCO_ID2LABEL.items()})
RESNET_PREPROCESSOR = {"crop_pct": 0.875, "do_normalize": True, "do_rescale": True, "do_resize": True,
                       "image_mean": [0.485, 0.456, 0.406], "image_processor_type": "ConvNextImageProcessor",
                       "image_std": [0.229, 0.224, 0.225], "resample": 3, "rescale_factor": 1 / 255,
                       "size": {"shortest_edge": 224}}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=6)
    | st.sampled_from([0, 1, 3, 224, 800, 1333, 4096, 4097, 10**9, -1, 0.5, 1e-9, "224", [224], {"0": "a"}]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=8,
)

EXTRA_KEYS = ["num_labels", "label2id", "backbone_config", "out_features", "max_size", "pad_size",
              "do_center_crop", "feature_extractor_type", "shortest_edge", "longest_edge"]


def mutated(base):
    """`base` with one field (or a nested field of `size` / `id2label`) set to random JSON, or
    deleted, or a whole random JSON document."""
    keys = sorted(base) + EXTRA_KEYS
    one = st.tuples(st.sampled_from(keys), json_values).map(lambda kv: {**base, kv[0]: kv[1]})
    dropped = st.sampled_from(sorted(base)).map(lambda k: {x: v for x, v in base.items() if x != k})
    nested = st.tuples(st.sampled_from(["size", "id2label"]), st.text(max_size=14), json_values).map(
        lambda t: {**base, t[0]: {**(base.get(t[0]) if isinstance(base.get(t[0]), dict) else {}), t[1]: t[2]}})
    return st.one_of(one, one, dropped, nested, json_values)


def check_model_config(config, shapes_of):
    try:
        shapes = shapes_of(weights.check_config(config))
    except WeightsError as e:  # ConfigFileError, CheckpointMismatchError: the weights' fault, 5007
        assert e.code == 5007 and "config.json" in str(e)
        return
    assert shapes and all(all(type(d) is int and d >= 1 for d in s) for s in shapes.values())


@settings(max_examples=120, deadline=None)
@given(mutated(RESNET_CONFIG))
def test_resnet_config_json(config):
    check_model_config(config, resnet.classifier_shapes)


@settings(max_examples=120, deadline=None)
@given(mutated(DETR_CONFIG))
def test_detr_config_json(config):
    check_model_config(config, detr.expected_shapes)


IMAGE = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
SMALL = 512  # run the whole preprocessing only for outputs this small (the checks bound the rest)


@settings(max_examples=150, deadline=None)
@given(mutated(RESNET_PREPROCESSOR))
def test_classification_preprocessor_config(config):
    try:
        _, _, _, size, crop_pct = preprocess.check_classification_config(config)
    except PreprocessorConfigError as e:
        assert str(e).startswith("preprocessor config: ")
        return
    assert 1 <= size <= preprocess.MAX_EDGE and (size >= 384 or 1 <= int(size / crop_pct) <= preprocess.MAX_EDGE)
    if size <= SMALL and (size >= 384 or int(size / crop_pct) <= SMALL):
        out = preprocess.classification_inputs([IMAGE], config)
        assert out.shape == (1, 3, size, size) and np.isfinite(out).all()


@settings(max_examples=150, deadline=None)
@given(mutated(DETR_PREPROCESSOR))
def test_detection_preprocessor_config(config):
    try:
        preprocess.check_detection_config(config)
    except PreprocessorConfigError as e:
        assert str(e).startswith("preprocessor config: ")
        return
    h, w = preprocess.detection_resize_shape(*IMAGE.shape[:2], config)
    assert h >= 1 and w >= 1 and max(h, w) <= preprocess.MAX_EDGE * math.ceil(7 / 5)
    if h * w <= SMALL * SMALL:
        values, mask, sizes = preprocess.detection_inputs([IMAGE], config)
        assert values.shape[2:] == (h, w) and np.isfinite(values).all() and sizes == [(h, w)]
