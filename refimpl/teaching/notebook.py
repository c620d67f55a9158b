"""Which weights a teaching notebook runs on, and the label its outputs carry.

A notebook reads the same setting as the command line ($REFIMPL_RESNET50_WEIGHTS,
$REFIMPL_DETR_WEIGHTS: a folder or a hub repo id). Without it, it synthesizes a checkpoint with
refimpl.synth (the official architecture and file layout, random weights with calibrated batch
norms; needs the `test` extra: torch, transformers, timm) so that it runs anywhere, offline, and
says so on every output: the numbers are computed exactly as with the real model, but the classes,
boxes and maps mean nothing.
"""

import atexit
import contextlib
import importlib
import importlib.util
import io
import os
import shutil
import tempfile
from pathlib import Path

from refimpl import registry
from refimpl.errors import WeightsNotFoundError

SYNTHESIZED = "synthesized weights (random, calibrated) - not {repo}'s"


def weights_for(model):
    """-> (source, label): the folder or repo id to load `model` (any accepted name) from, and the
    label for the notebook's outputs."""
    spec = registry.get(model)
    source = os.environ.get(spec.weights_env)
    if source:
        return source, f"weights: {source} (from ${spec.weights_env})"
    if importlib.util.find_spec("transformers") is None:  # the synthesizer builds the checkpoint with it
        raise WeightsNotFoundError(f"no ${spec.weights_env} set, and transformers is not installed to synthesize "
                                   f"weights: set ${spec.weights_env} to a folder or repo id (e.g. {spec.repo_id}), "
                                   "or pip install -e '.[test]'")
    root = tempfile.mkdtemp(prefix="refimpl-notebook-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)  # ~100-170 MB each: gone with the kernel
    folder = Path(root) / spec.name
    module, _, function = spec.synthesize.partition(":")  # the registry's builder, as refimpl bench uses it
    build = getattr(importlib.import_module(module), function)
    with contextlib.redirect_stderr(io.StringIO()):  # save_pretrained's progress bars
        if spec.task == "image-classification":
            build(folder)
        else:
            build(folder, "timm")  # DETR: the hub's `main` revision layout
    return str(folder), SYNTHESIZED.format(repo=spec.repo_id)
