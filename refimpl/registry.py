"""The model registry: every fact about a model that more than one module needs, in one table.

    >>> from refimpl import registry
    >>> spec = registry.get("@cf/microsoft/resnet-50")    # any alias: resnet-50, microsoft/resnet-50, ...
    >>> spec.name, spec.task, spec.repo_id
    ('resnet-50', 'image-classification', 'microsoft/resnet-50')
    >>> model = registry.load("resnet-50", weights="weights/resnet-50", path="reference")
    >>> registry.spec_of(model) is spec
    True

Every command and module that takes a model name resolves it here (`get`), so every command
accepts every alias. A model is a registry entry: the families' code (refimpl/models/resnet.py,
detr.py, the loaded-model classes ResNet and DETR, the layer table, the synthesized checkpoints)
reads the architecture from config.json, so adding a member of a family (another depth, DC5) is
adding one `ModelSpec` to `MODELS` and nothing else (docs/models.md; tests/test_families.py adds a
fake one). Two entries are the hosted API's (`hosted=True`); the others are named by refimpl.
"""

import os
from dataclasses import dataclass, field

from refimpl.errors import UnknownModelError
from refimpl.pipeline.loaded import DEFAULT_PATH, DETR, ResNet
from refimpl.serving import schemas
from refimpl.viz import summary


@dataclass(frozen=True)
class ModelSpec:
    name: str  # refimpl's short name, used in file names and reports
    hosted_name: str  # the hosted API's name (the seeds'); for models it does not serve, refimpl's name
    repo_id: str  # the official Hugging Face repository
    task: str  # "image-classification" or "object-detection"
    revisions: tuple  # hub revisions refimpl implements; the first is the default
    weights_env: str  # environment variable naming a folder or repo id to load instead
    model_class: type  # refimpl.pipeline.loaded class; `.load(source, revision, dtype, path, expect)`
    output_schema: dict  # the seed's output schema
    hf_class: str  # the transformers class of the checkpoint (test peers, benchmarks)
    summary: object  # refimpl.viz.summary builder: (height, width, config) -> Summary
    summary_size: tuple  # (height, width) the summary uses by default
    synthesize: str  # "module:function" in refimpl.synth: (folder, config, layout=None, seed=0) -> folder
    compare_tolerance: dict  # recommended {rtol, atol} for a float32 port (golden sets; docs/conformance.md)
    config: dict = field(default_factory=dict)  # the official config.json's architecture fields (see `architecture`)
    aliases: tuple = field(default=())  # more accepted names
    hosted: bool = False  # served by the hosted API under `hosted_name`

    @property
    def architecture(self):
        """What the model is (resnet.Arch, or DETR's HParams without layout and labels), from
        `config`: a checkpoint loaded under this name must describe exactly this."""
        return self.model_class.architecture(self.config)

    @property
    def names(self):
        """Every name this model is accepted under."""
        return tuple(dict.fromkeys((self.name, self.hosted_name, self.repo_id, *self.aliases)))

    @property
    def default_revision(self):
        return self.revisions[0]

    def weights_source(self, weights=None):
        """The folder or repo id to load: `weights` if given, else $weights_env, else the
        official repo. Read at call time, so a changed environment is honoured."""
        return str(weights or os.environ.get(self.weights_env) or self.repo_id)

    def load(self, weights=None, revision=None, dtype="float32", path=DEFAULT_PATH):
        """Load this model (see `weights_source`) on `path` ("reference" or "fast"). A checkpoint
        whose config.json describes another architecture is refused (CheckpointMismatchError)."""
        return self.model_class.load(self.weights_source(weights), revision or self.default_revision, dtype, path,
                                     expect=(self.name, self.architecture))


# float32 vs float64 stays below ~1e-5 relative on ResNet-50 (measured, docs/conformance.md)
RESNET_TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}
# ~5e-5 on DETR's attention weights and box head (measured, docs/conformance.md)
DETR_TOLERANCE = {"rtol": 1e-3, "atol": 1e-5}


def resnet_entry(depth, hosted_name=None, aliases=(), weights_env=None):
    """The registry entry of microsoft/resnet-{depth} (its architecture: timm's resnet{depth})."""
    name = f"resnet-{depth}"
    return ModelSpec(
        name=name,
        hosted_name=hosted_name or name,
        repo_id=f"microsoft/{name}",
        task="image-classification",
        revisions=("main",),
        weights_env=weights_env or f"REFIMPL_RESNET{depth}_WEIGHTS",
        model_class=ResNet,
        output_schema=schemas.CLASSIFICATION_OUTPUT,
        hf_class="ResNetForImageClassification",
        summary=summary.resnet,
        summary_size=(224, 224),
        synthesize="refimpl.synth.resnet:build_resnet",
        compare_tolerance=RESNET_TOLERANCE,
        config=resnet_config(depth),
        aliases=(f"resnet{depth}", *aliases),
        hosted=hosted_name is not None,
    )


# The architecture fields of the official microsoft/resnet-* config.json files (transformers' ResNetConfig).
RESNET_CONFIGS = {
    18: {"depths": [2, 2, 2, 2], "hidden_sizes": [64, 128, 256, 512], "layer_type": "basic"},
    34: {"depths": [3, 4, 6, 3], "hidden_sizes": [64, 128, 256, 512], "layer_type": "basic"},
    50: {"depths": [3, 4, 6, 3], "hidden_sizes": [256, 512, 1024, 2048], "layer_type": "bottleneck"},
    101: {"depths": [3, 4, 23, 3], "hidden_sizes": [256, 512, 1024, 2048], "layer_type": "bottleneck"},
    152: {"depths": [3, 8, 36, 3], "hidden_sizes": [256, 512, 1024, 2048], "layer_type": "bottleneck"},
}


def resnet_config(depth):
    return {"model_type": "resnet", "embedding_size": 64, **RESNET_CONFIGS[depth], "hidden_act": "relu",
            "downsample_in_first_stage": False, "num_channels": 3}


def detr_entry(depth, dc5=False, hosted_name=None, aliases=(), weights_env=None, revisions=("main", "no_timm")):
    """The registry entry of facebook/detr-resnet-{depth}[-dc5]."""
    name = f"detr-resnet-{depth}" + ("-dc5" if dc5 else "")
    return ModelSpec(
        name=name,
        hosted_name=hosted_name or name,
        repo_id=f"facebook/{name}",
        task="object-detection",
        revisions=revisions,
        weights_env=weights_env or f"REFIMPL_{name.upper().replace('-', '_').replace('RESNET_', 'RESNET')}_WEIGHTS",
        model_class=DETR,
        output_schema=schemas.DETECTION_OUTPUT,
        hf_class="DetrForObjectDetection",
        summary=summary.detr,
        summary_size=(800, 1066),  # a 4:3 photo after DETR's resize
        synthesize="refimpl.synth.detr:build_detr",
        compare_tolerance=DETR_TOLERANCE,
        config={"model_type": "detr", "use_timm_backbone": True, "backbone": f"resnet{depth}", "dilation": dc5},
        aliases=(name.replace("resnet-", "resnet"), *aliases),
        hosted=hosted_name is not None,
    )


MODELS = (
    resnet_entry(18),
    resnet_entry(34),
    resnet_entry(50, hosted_name="@cf/microsoft/resnet-50", weights_env="REFIMPL_RESNET50_WEIGHTS"),
    resnet_entry(101),
    resnet_entry(152),
    detr_entry(50, hosted_name="@cf/facebook/detr-resnet-50", aliases=("detr",), weights_env="REFIMPL_DETR_WEIGHTS"),
    detr_entry(101),
    # The hub's DC5 repositories have one revision (timm backbone): transformers' ResNet cannot
    # dilate, so there is no `no_timm` one. refimpl still loads either layout (docs/models.md).
    detr_entry(50, dc5=True, revisions=("main",)),
    detr_entry(101, dc5=True, revisions=("main",)),
)
HOSTED = tuple(spec for spec in MODELS if spec.hosted)

_BY_NAME = {}


def names():
    """Every accepted model name, the hosted names first."""
    first = [spec.hosted_name for spec in HOSTED]
    return first + list(dict.fromkeys(n for spec in MODELS for n in spec.names if n not in first))


def _by_name():
    """{lower-cased name: spec}, rebuilt when MODELS changes (a test may add an entry)."""
    if _BY_NAME.get(None) is not MODELS:
        _BY_NAME.clear()
        _BY_NAME.update({n.lower(): spec for spec in MODELS for n in spec.names})
        _BY_NAME[None] = MODELS
    return _BY_NAME


def get(model):
    """The ModelSpec of a model name (any alias; letter case ignored, nothing else), a loaded
    model, or a spec. Raises UnknownModelError naming the accepted names."""
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, str):
        spec = _by_name().get(model.lower())
        if spec is not None:
            return spec
        raise UnknownModelError(f"unknown model {model!r}; known models: {', '.join(names())}")
    for spec in MODELS:  # a loaded model: the entry of its class whose architecture it has
        if isinstance(model, spec.model_class) and spec.architecture == type(model).architecture(model.checkpoint.config):
            return spec
    if isinstance(model, (ResNet, DETR)):
        raise UnknownModelError(f"no registry entry has the architecture of this {type(model).__name__} "
                                f"({type(model).describe(type(model).architecture(model.checkpoint.config))}); "
                                f"known models: {', '.join(names())}")
    raise UnknownModelError(f"model must be a model name or a loaded refimpl model, got {type(model).__name__}; "
                            f"known models: {', '.join(names())}")


spec_of = get  # reads better for a loaded model: registry.spec_of(model)


def load(model, weights=None, revision=None, dtype="float32", path=DEFAULT_PATH):
    """Load `model` (any accepted name): see ModelSpec.load."""
    return get(model).load(weights, revision, dtype, path)
