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

from . import decode, postprocess, preprocess, resnet
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
    return ResNet50(load_checkpoint(source, resnet.classifier_shapes, revision, dtype), dtype)
