"""The Python API in one place: load a model, run the hosted API's call.

    >>> from refimpl.api import load, load_resnet50, load_detr, run
    >>> model = load("@cf/microsoft/resnet-50", weights="weights/resnet-50")   # any registry alias
    >>> model.path                                   # "fast" unless path="reference" is given
    >>> model("examples/cat.png")                    # top-5 [{"label", "score"}]
    >>> run("@cf/microsoft/resnet-50", open("examples/cat.png", "rb").read())  # the contract

Every registry entry loads the same way (`load("resnet-101")`, `load("detr-resnet-50-dc5")`, ...;
docs/models.md). Weights come from `weights=` (a folder or a Hugging Face repo id), else the
model's environment variable (REFIMPL_RESNET50_WEIGHTS, REFIMPL_DETR_WEIGHTS,
REFIMPL_RESNET18_WEIGHTS, ...: `registry.get(name).weights_env`), else the official repo.
"""

from refimpl.pipeline.loaded import image_array  # noqa: F401  (part of the API)
from refimpl.registry import load
from refimpl.serving.contract import run  # noqa: F401  (part of the API)


def load_resnet50(weights=None, revision="main", dtype="float32", path="fast"):
    """microsoft/resnet-50 (or a folder in its format) -> a loaded ResNet50."""
    return load("resnet-50", weights, revision, dtype, path)


def load_detr(weights=None, revision="main", dtype="float32", path="fast"):
    """facebook/detr-resnet-50 (or a folder in its format) at revision `main` (timm backbone) or
    `no_timm` (transformers backbone) -> a loaded DETR."""
    return load("detr-resnet-50", weights, revision, dtype, path)
