"""The model registry: every fact about a model that more than one module needs, in one table.

    >>> from refimpl import registry
    >>> spec = registry.get("@cf/microsoft/resnet-50")    # any alias: resnet-50, microsoft/resnet-50, ...
    >>> spec.name, spec.task, spec.repo_id
    ('resnet-50', 'image-classification', 'microsoft/resnet-50')
    >>> model = registry.load("resnet-50", weights="weights/resnet-50", path="reference")
    >>> registry.spec_of(model) is spec
    True

Every command and module that takes a model name resolves it here (`get`), so every command
accepts every alias. Adding a model means adding one `ModelSpec` to `MODELS` plus its code: the
math in refimpl/models/, a loaded-model class in refimpl/pipeline/loaded.py, its layer table in
refimpl/viz/summary.py and its synthesized checkpoint in refimpl/synth/.
"""

import os
from dataclasses import dataclass, field

from refimpl.errors import UnknownModelError
from refimpl.pipeline.loaded import DEFAULT_PATH, DETR, ResNet50
from refimpl.serving import schemas
from refimpl.viz import summary


@dataclass(frozen=True)
class ModelSpec:
    name: str  # refimpl's short name, used in file names and reports
    hosted_name: str  # the hosted API's name (the seeds')
    repo_id: str  # the official Hugging Face repository
    task: str  # "image-classification" or "object-detection"
    revisions: tuple  # hub revisions refimpl implements; the first is the default
    weights_env: str  # environment variable naming a folder or repo id to load instead
    model_class: type  # refimpl.pipeline.loaded class; `.load(source, revision, dtype, path)`
    output_schema: dict  # the seed's output schema
    hf_class: str  # the transformers class of the checkpoint (test peers, benchmarks)
    summary: object  # refimpl.viz.summary builder: (height, width, config) -> Summary
    summary_size: tuple  # (height, width) the summary uses by default
    synthesize: str  # "module:function" in refimpl.synth building a synthesized checkpoint
    compare_tolerance: dict  # recommended {rtol, atol} for a float32 port (golden sets; docs/conformance.md)
    aliases: tuple = field(default=())  # more accepted names

    @property
    def names(self):
        """Every name this model is accepted under."""
        return (self.name, self.hosted_name, self.repo_id, *self.aliases)

    @property
    def default_revision(self):
        return self.revisions[0]

    def weights_source(self, weights=None):
        """The folder or repo id to load: `weights` if given, else $weights_env, else the
        official repo. Read at call time, so a changed environment is honoured."""
        return str(weights or os.environ.get(self.weights_env) or self.repo_id)

    def load(self, weights=None, revision=None, dtype="float32", path=DEFAULT_PATH):
        """Load this model (see `weights_source`) on `path` ("reference" or "fast")."""
        return self.model_class.load(self.weights_source(weights), revision or self.default_revision, dtype, path)


MODELS = (
    ModelSpec(
        name="resnet-50",
        hosted_name="@cf/microsoft/resnet-50",
        repo_id="microsoft/resnet-50",
        task="image-classification",
        revisions=("main",),
        weights_env="REFIMPL_RESNET50_WEIGHTS",
        model_class=ResNet50,
        output_schema=schemas.CLASSIFICATION_OUTPUT,
        hf_class="ResNetForImageClassification",
        summary=summary.resnet50,
        summary_size=(224, 224),
        synthesize="refimpl.synth.resnet:build_resnet50",
        # float32 vs float64 stays below ~1e-5 relative on ResNet-50 (measured, docs/conformance.md)
        compare_tolerance={"rtol": 1e-4, "atol": 1e-6},
        aliases=("resnet50",),
    ),
    ModelSpec(
        name="detr-resnet-50",
        hosted_name="@cf/facebook/detr-resnet-50",
        repo_id="facebook/detr-resnet-50",
        task="object-detection",
        revisions=("main", "no_timm"),
        weights_env="REFIMPL_DETR_WEIGHTS",
        model_class=DETR,
        output_schema=schemas.DETECTION_OUTPUT,
        hf_class="DetrForObjectDetection",
        summary=summary.detr_resnet50,
        summary_size=(800, 1066),  # a 4:3 photo after DETR's resize
        synthesize="refimpl.synth.detr:build_detr",
        # ~5e-5 on DETR's attention weights and box head (measured, docs/conformance.md)
        compare_tolerance={"rtol": 1e-3, "atol": 1e-5},
        aliases=("detr",),
    ),
)

_BY_NAME = {n.lower(): spec for spec in MODELS for n in spec.names}


def names():
    """Every accepted model name, the hosted names first."""
    return [spec.hosted_name for spec in MODELS] + [n for spec in MODELS for n in spec.names if n != spec.hosted_name]


def get(model):
    """The ModelSpec of a model name (any alias; letter case ignored, nothing else), a loaded
    model, or a spec. Raises UnknownModelError naming the accepted names."""
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, str):
        spec = _BY_NAME.get(model.lower())
        if spec is not None:
            return spec
        raise UnknownModelError(f"unknown model {model!r}; known models: {', '.join(names())}")
    for spec in MODELS:
        if isinstance(model, spec.model_class):
            return spec
    raise UnknownModelError(f"model must be a model name or a loaded refimpl model, got {type(model).__name__}; "
                            f"known models: {', '.join(names())}")


spec_of = get  # reads better for a loaded model: registry.spec_of(model)


def load(model, weights=None, revision=None, dtype="float32", path=DEFAULT_PATH):
    """Load `model` (any accepted name): see ModelSpec.load."""
    return get(model).load(weights, revision, dtype, path)
