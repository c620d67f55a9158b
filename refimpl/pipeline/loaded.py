"""Loaded models: a checkpoint plus the one pipeline, preprocess -> forward -> postprocess.

    >>> import refimpl
    >>> model = refimpl.load("resnet-50", "path/to/folder-or-repo-id")   # path="fast" by default
    >>> model("examples/cat.png")                        # top-5 [{"label", "score"}]
    >>> pixel_values = model.preprocess([image])         # (N, 3, 224, 224)
    >>> trace = {}
    >>> logits = model.forward(pixel_values, trace)      # (N, 1000); trace: name -> array
    >>> model.postprocess(logits[0], top_k=5)
    >>> output, options = model.predict(image, trace)   # the whole pipeline, every step traced

`path` says which code computes the answer: "reference" (refimpl/models/resnet.py and detr.py, one
op per line) or "fast" (refimpl/models/fast.py and fast_detr.py, BN folded, NHWC): the choice is
made here, in `forward`, and nowhere in the model code. It is fixed when the model is loaded
and visible on the object (`model.path`); `model.with_path("reference")` gives the same weights on
the other path. A trace records what the chosen path computed, and recording changes no bit of
the answer: `predict(image, trace={})` returns exactly what `predict(image)` returns.

Loading by model name (which weights, which environment variable, which architecture the
checkpoint must describe) is the registry's job (refimpl/registry.py); the classes here load from
an explicit folder or repo id and read the architecture from its config.json. One class per
family: `ResNet` (every microsoft/resnet-*), `DETR` (every facebook/detr-resnet-*).
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refimpl.errors import CheckpointMismatchError, ConfigFileError, PreprocessorConfigError
from refimpl.models import check_path, detr, fast, fast_detr, record, resnet
from refimpl.pipeline import decode, postprocess, preprocess
from refimpl.pipeline.weights import PREPROCESSOR_FILE, Checkpoint, load_checkpoint

DTYPES = {"float32": np.float32, "float64": np.float64}
DEFAULT_PATH = "fast"  # what a loaded model answers with unless told otherwise (README: "Paths")


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


def expecting(cls, expect):
    """cls.expected_shapes, after checking that config.json describes the architecture `expect`
    = (registry entry name, cls.architecture(entry's config)) when given: a checkpoint of another
    family member is refused by name before its weights are read."""
    if expect is None:
        return cls.expected_shapes

    def shapes(config):
        name, wanted = expect
        found = cls.architecture(config)
        if found != wanted:
            diffs = [f"{k}={_show(getattr(found, k))} (the entry has {_show(getattr(wanted, k))})"
                     for k in found.__dataclass_fields__ if getattr(found, k) != getattr(wanted, k)]
            raise CheckpointMismatchError(f"config.json: {', '.join(diffs)}: this checkpoint is not {name} but a "
                                          f"{cls.describe(found)}; load it under that model's name")
        return cls.expected_shapes(config)
    return shapes


def _show(value):
    if dataclasses.is_dataclass(value):
        return value.name if hasattr(value, "name") else repr(value)
    return repr(list(value) if isinstance(value, tuple) else value)


def check_preprocessor(checkpoint, check):
    """Run `check` (a preprocess.check_*_config) on the checkpoint's preprocessor_config.json at
    load time: a config refimpl cannot follow is a weights problem (ConfigFileError, 5007), named
    with its file, not an error on every later image."""
    try:
        check(checkpoint.preprocessor)
    except PreprocessorConfigError as e:
        raise ConfigFileError(f"{checkpoint.folder / PREPROCESSOR_FILE}: {e}") from e
    return checkpoint


@dataclass(frozen=True)
class LoadedModel:
    """What both models share: the checkpoint, the compute dtype and the path."""

    checkpoint: Checkpoint
    dtype: type = np.float32
    path: str = DEFAULT_PATH

    def __post_init__(self):
        check_path(self.path)

    def with_path(self, path):
        """The same weights computed by the other path ("reference" or "fast"); nothing is copied."""
        return dataclasses.replace(self, path=check_path(path))

    def __call__(self, image, **options):
        """Image (bytes, a path or an (H, W, 3) uint8 array) -> the contract output."""
        return self.predict(image_array(image), **options)[0]


@dataclass(frozen=True)
class ResNet(LoadedModel):
    """microsoft/resnet-18, -34, -50, -101, -152 (any ResNet config.json describes): image in,
    top-k [{"label", "score"}] out."""

    output_options = staticmethod(postprocess.classification_options)
    expected_shapes = staticmethod(resnet.classifier_shapes)  # config.json -> {key: shape}
    architecture = staticmethod(resnet.check_config)  # config.json -> resnet.Arch

    @staticmethod
    def describe(arch):
        return arch.name

    @classmethod
    def load(cls, source, revision="main", dtype="float32", path=DEFAULT_PATH, expect=None):
        """expect: (registry name, resnet.Arch) the checkpoint must describe (see `expecting`)."""
        dtype = as_dtype(dtype)
        checkpoint = check_preprocessor(load_checkpoint(source, expecting(cls, expect), revision, dtype),
                                        preprocess.check_classification_config)
        model = cls(checkpoint, dtype, check_path(path))
        if path == "fast":
            fast.plan(model.checkpoint.params, model.backbone_names, dtype=dtype)  # fold BN once, now
        return model

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "arch", resnet.check_config(self.checkpoint.config))  # read once

    @property
    def backbone_names(self):
        """The backbone as a resnet.Backbone: its architecture and checkpoint names."""
        return resnet.classifier_backbone(self.arch)

    def preprocess(self, images):
        """List of (H, W, 3) uint8 images -> pixel_values (N, 3, 224, 224)."""
        return preprocess.classification_inputs(images, self.checkpoint.preprocessor, dtype=self.dtype)

    def forward(self, pixel_values, trace=None):
        """pixel_values (N, 3, H, W) -> logits (N, num_labels), computed by `self.path`.
        `trace`, a dict, receives every named intermediate."""
        x = pixel_values.astype(self.dtype, copy=False)
        if self.path == "fast":
            return fast.classify(self.checkpoint.params, x, trace, names=self.backbone_names)
        return resnet.classify(self.checkpoint.params, x, trace, names=self.backbone_names)

    def postprocess(self, logits, top_k=5, labels="seed"):
        """logits (num_labels,) -> [{"label", "score"}], best first."""
        return postprocess.top_k(logits, self.checkpoint.id2label, top_k, labels)

    def predict(self, pixels, trace=None, **options):
        """The pipeline: decoded image (H, W, 3) uint8 -> (contract output, the output options
        used). options: top_k=5, labels="seed". `trace` receives `image`, `pixel_values`, every
        layer and `classifier.1` (the logits), in data-flow order."""
        opts = self.output_options(options)
        record(trace, "image", pixels)
        logits = self.forward(self.preprocess([pixels]), trace)
        return self.postprocess(logits[0], **opts), opts


@dataclass(frozen=True)
class DETR(LoadedModel):
    """facebook/detr-resnet-50, -101, -50-dc5, -101-dc5 (either layout): image in,
    [{"score", "label", "box"}] out.

        >>> model = refimpl.load("detr-resnet-50", "path/to/folder-or-repo-id", revision="no_timm")
        >>> model("examples/street.jpg")                 # detections with score > 0.5
        >>> pixel_values, pixel_mask, _ = model.preprocess([image_a, image_b])
        >>> outputs = model.forward(pixel_values, pixel_mask, trace={})
        >>> model.postprocess(outputs, [image_a.shape[:2], image_b.shape[:2]], threshold=0.5)
    """

    output_options = staticmethod(postprocess.detection_options)
    expected_shapes = staticmethod(detr.expected_shapes)  # config.json -> {key: shape}, either layout

    @staticmethod
    def architecture(config):
        """config.json -> what makes the model (detr.HParams without layout and labels)."""
        return detr.hparams(config).architecture()

    @staticmethod
    def describe(hp):
        return "detr-" + hp.backbone.name

    @classmethod
    def load(cls, source, revision="main", dtype="float32", path=DEFAULT_PATH, expect=None):
        """Revision `main` (timm backbone) or `no_timm` (transformers backbone); the layout and the
        backbone are read from config.json. expect: as ResNet.load."""
        dtype = as_dtype(dtype)
        try:
            checkpoint = load_checkpoint(source, expecting(cls, expect), revision, dtype)
        except CheckpointMismatchError as e:
            hint = _detr_layout_hint(source, revision)
            if not hint:
                raise
            raise CheckpointMismatchError(f"{e}{hint}") from e
        check_preprocessor(checkpoint, preprocess.check_detection_config)
        model = cls(checkpoint, dtype, check_path(path))
        if path == "fast":
            fast.plan(checkpoint.params, model.hparams.backbone_names, dtype=dtype)  # fold the backbone's BN once
        return model

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "hparams", detr.hparams(self.checkpoint.config))  # read once

    @property
    def layout(self):
        """"timm" (hub revision main) or "transformers" (revision no_timm)."""
        return self.hparams.layout

    @property
    def arch(self):
        """The backbone's resnet.Arch."""
        return self.hparams.backbone

    @property
    def backbone_names(self):
        return self.hparams.backbone_names

    def preprocess(self, images):
        """List of (H, W, 3) uint8 images -> (pixel_values (N, 3, H', W'), pixel_mask (N, H', W')
        int64, resized sizes [(h, w)]): resized, normalized and padded as DetrImageProcessor."""
        return preprocess.detection_inputs(images, self.checkpoint.preprocessor, dtype=self.dtype)

    def forward(self, pixel_values, pixel_mask=None, trace=None):
        """-> {"logits": (N, 100, num_labels + 1), "pred_boxes": (N, 100, 4) normalized (cx, cy, w, h)},
        computed by `self.path`: "fast" runs fast_detr.py (fast.py's backbone), "reference" detr.py
        (resnet.py's). `trace`, a dict, receives every named intermediate (see refimpl.models.detr.forward)."""
        pixel_values = pixel_values.astype(self.dtype, copy=False)
        if self.path == "fast":
            return fast_detr.forward(self.checkpoint.params, self.hparams, pixel_values, pixel_mask, trace)
        return detr.forward(self.checkpoint.params, self.hparams, pixel_values, pixel_mask, trace)

    def postprocess(self, outputs, sizes, threshold=0.5):
        """outputs of `forward`, sizes [(height, width)] of the ORIGINAL images -> one list of
        detections per image, in query order, boxes in the original image's pixels.
        threshold=None keeps every query."""
        return postprocess.object_detection(outputs, sizes, self.checkpoint.id2label, threshold)

    def predict(self, pixels, trace=None, **options):
        """The pipeline: decoded image (H, W, 3) uint8 -> (contract output, the output options
        used). options: shape="reference"|"hosted", threshold, wrap_uint16 (see
        refimpl.pipeline.postprocess.detection_options)."""
        opts = self.output_options(options)
        record(trace, "image", pixels)
        pixel_values, pixel_mask, _ = self.preprocess([pixels])
        outputs = self.forward(pixel_values, pixel_mask, trace)
        if trace is not None:  # every query before the threshold: what the contract's boxes are cut from
            scores, _, boxes = postprocess.per_query(outputs["logits"][0], outputs["pred_boxes"][0], pixels.shape[:2])
            record(trace, "post_process.scores", scores[None])
            record(trace, "post_process.boxes", boxes[None])
        detections = self.postprocess(outputs, [pixels.shape[:2]], threshold=opts["threshold"])[0]
        if opts["shape"] == "hosted":
            detections = postprocess.hosted_shape(detections, opts["wrap_uint16"])
        return detections, opts


ResNet50 = ResNet  # the older name (every microsoft/resnet-* is a ResNet)


def _detr_layout_hint(source, revision):
    """When the strict check fails, say whether config.json and the weights' keys describe
    different layouts (e.g. a `main` config beside `no_timm` weights). Reads only the file header."""
    from safetensors import safe_open

    from refimpl.pipeline.weights import CONFIG_FILE, WEIGHTS_FILE, _read_json, resolve

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
