"""The Python API: load a model, then preprocess -> forward -> postprocess, or all in one call.

    >>> import refimpl
    >>> model = refimpl.load_resnet50("path/to/folder-or-repo-id")
    >>> model("examples/cat.png")                       # top-5 [{"label", "score"}]
    >>> pixel_values = model.preprocess([image])        # (N, 3, 224, 224)
    >>> trace = {}
    >>> logits = model.forward(pixel_values, trace)     # (N, 1000); trace: name -> array
    >>> model.postprocess(logits[0], top_k=5)

Weights come from `weights=` (a folder or a Hugging Face repo id), else the environment variable
named in ENV_WEIGHTS, else the official repo.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import decode, detr, fast, postprocess, preprocess, resnet
from .errors import CheckpointMismatchError
from .weights import Checkpoint, load_checkpoint

OFFICIAL_REPO = {"resnet-50": "microsoft/resnet-50", "detr-resnet-50": "facebook/detr-resnet-50"}
ENV_WEIGHTS = {"resnet-50": "REFIMPL_RESNET50_WEIGHTS", "detr-resnet-50": "REFIMPL_DETR_WEIGHTS"}
DTYPES = {"float32": np.float32, "float64": np.float64}


def weights_source(model, weights=None):
    """The folder or repo id to load for `model` ("resnet-50" or "detr-resnet-50")."""
    return weights or os.environ.get(ENV_WEIGHTS[model]) or OFFICIAL_REPO[model]


def as_dtype(dtype):
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        return DTYPES[dtype]
    return np.dtype(dtype).type


def image_array(image):
    """Accept encoded bytes, a path, or an (H, W, 3) uint8 array; return the (H, W, 3) uint8 array."""
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode.decode_image(bytes(image))
    if isinstance(image, (str, Path)):
        return decode.read_image(image)[1]
    raise TypeError(f"image must be bytes, a path or an (H, W, 3) uint8 array, got {type(image).__name__}")


@dataclass
class ResNet50:
    """microsoft/resnet-50: image in, top-k [{"label", "score"}] out."""

    checkpoint: Checkpoint
    dtype: type = np.float32

    def preprocess(self, images):
        """List of (H, W, 3) uint8 images -> pixel_values (N, 3, 224, 224)."""
        return preprocess.classification_inputs(images, self.checkpoint.preprocessor, dtype=self.dtype)

    def forward(self, pixel_values, trace=None):
        """pixel_values (N, 3, H, W) -> logits (N, num_labels). `trace`, a dict, receives every
        named intermediate."""
        return resnet.classify(self.checkpoint.params, pixel_values.astype(self.dtype, copy=False), trace)

    def postprocess(self, logits, top_k=5, labels="seed"):
        """logits (num_labels,) -> [{"label", "score"}], best first."""
        return postprocess.top_k(logits, self.checkpoint.id2label, top_k, labels)

    def __call__(self, image, top_k=5, labels="seed"):
        logits = self.forward(self.preprocess([image_array(image)]))
        return self.postprocess(logits[0], top_k, labels)


def load_resnet50(weights=None, revision="main", dtype="float32"):
    dtype = as_dtype(dtype)
    source = weights_source("resnet-50", weights)
    model = ResNet50(load_checkpoint(source, resnet.classifier_shapes, revision, dtype), dtype)
    fast.plan(model.checkpoint.params, resnet.CLASSIFIER_NAMES, dtype=dtype)  # fold BN into the convs once, now
    return model


# --- DETR-ResNet-50 -----------------------------------------------------------------------------

@dataclass
class DETR:
    """facebook/detr-resnet-50 (either layout): image in, [{"score", "label", "box"}] out.

        >>> from refimpl.api import load_detr
        >>> model = load_detr("path/to/folder-or-repo-id", revision="main")   # or "no_timm"
        >>> model("examples/street.jpg")                 # detections with score > 0.5
        >>> pixel_values, pixel_mask, _ = model.preprocess([image_a, image_b])
        >>> outputs = model.forward(pixel_values, pixel_mask, trace={})
        >>> model.postprocess(outputs, [image_a.shape[:2], image_b.shape[:2]], threshold=0.5)
    """

    checkpoint: Checkpoint
    dtype: type = np.float32

    def __post_init__(self):
        self.hparams = detr.hparams(self.checkpoint.config)

    @property
    def layout(self):
        """"timm" (hub revision main) or "transformers" (revision no_timm)."""
        return self.hparams.layout

    def preprocess(self, images):
        """List of (H, W, 3) uint8 images -> (pixel_values (N, 3, H', W'), pixel_mask (N, H', W')
        int64, resized sizes [(h, w)]): resized, normalized and padded as DetrImageProcessor."""
        return preprocess.detection_inputs(images, self.checkpoint.preprocessor, dtype=self.dtype)

    def forward(self, pixel_values, pixel_mask=None, trace=None):
        """-> {"logits": (N, 100, num_labels + 1), "pred_boxes": (N, 100, 4) normalized (cx, cy, w, h)}.
        `trace`, a dict, receives every named intermediate (see refimpl.detr.forward)."""
        pixel_values = pixel_values.astype(self.dtype, copy=False)
        return detr.forward(self.checkpoint.params, self.hparams, pixel_values, pixel_mask, trace)

    def postprocess(self, outputs, sizes, threshold=0.5):
        """outputs of `forward`, sizes [(height, width)] of the ORIGINAL images -> one list of
        detections per image, in query order, boxes in the original image's pixels.
        threshold=None keeps every query."""
        return postprocess.object_detection(outputs, sizes, self.checkpoint.id2label, threshold)

    def __call__(self, image, threshold=0.5):
        image = image_array(image)
        pixel_values, pixel_mask, _ = self.preprocess([image])
        return self.postprocess(self.forward(pixel_values, pixel_mask), [image.shape[:2]], threshold)[0]


def load_detr(weights=None, revision="main", dtype="float32"):
    """Load facebook/detr-resnet-50 (or a folder in its format) in either layout: revision `main`
    (timm backbone) or `no_timm` (transformers backbone); the layout is read from config.json."""
    dtype = as_dtype(dtype)
    source = weights_source("detr-resnet-50", weights)
    try:
        checkpoint = load_checkpoint(source, detr.expected_shapes, revision, dtype)
    except CheckpointMismatchError as e:
        hint = _detr_layout_hint(source, revision)
        if not hint:
            raise
        raise CheckpointMismatchError(f"{e}{hint}") from e
    model = DETR(checkpoint, dtype)
    fast.plan(checkpoint.params, model.hparams.backbone_names, dtype=dtype)  # fold the backbone's BN once, now
    return model


def _detr_layout_hint(source, revision):
    """When the strict check fails, say whether config.json and the weights' keys describe
    different layouts (e.g. a `main` config beside `no_timm` weights). Reads only the file header."""
    from safetensors import safe_open

    from .weights import CONFIG_FILE, WEIGHTS_FILE, _read_json, resolve

    try:
        folder, _ = resolve(source, revision)
        config_layout = detr.layout(_read_json(folder / CONFIG_FILE))
        with safe_open(str(folder / WEIGHTS_FILE), framework="numpy") as f:
            keys_layout = detr.layout_of_keys(f.keys())
    except Exception:  # the original error says enough
        return ""
    if keys_layout is None or keys_layout == config_layout:
        return ""
    revisions = {name: rev for name, (_, rev) in detr.LAYOUTS.items()}
    return (
        f" (config.json describes the {config_layout} backbone layout of revision "
        f"{revisions[config_layout]!r}, but the weights use the {keys_layout} layout of revision "
        f"{revisions[keys_layout]!r}: the two files come from different revisions)"
    )
