"""Which weights a teaching notebook runs on, and the label its outputs carry.

A notebook reads the same setting as the command line ($REFIMPL_RESNET50_WEIGHTS,
$REFIMPL_DETR_WEIGHTS: a folder or a hub repo id). Without it, it synthesizes a checkpoint with
refimpl.synth (the official architecture and file layout, random weights with calibrated batch
norms; needs the `test` extra: torch, transformers, timm) so that it runs anywhere, offline, and
says so on every output: the numbers are computed exactly as with the real model, but the classes,
boxes and maps mean nothing.
"""

import contextlib
import io
import os
import tempfile
from pathlib import Path

from refimpl import registry

SYNTHESIZED = "synthesized weights (random, calibrated) - not {repo}'s"


def weights_for(model):
    """-> (source, label): the folder or repo id to load `model` (any accepted name) from, and the
    label for the notebook's outputs."""
    spec = registry.get(model)
    source = os.environ.get(spec.weights_env)
    if source:
        return source, f"weights: {source} (from ${spec.weights_env})"
    folder = Path(tempfile.mkdtemp(prefix="refimpl-notebook-")) / spec.name
    with contextlib.redirect_stderr(io.StringIO()):  # save_pretrained's progress bars
        if spec.task == "image-classification":
            from refimpl.synth.resnet import build_resnet50

            build_resnet50(folder)
        else:
            from refimpl.synth.detr import build_detr

            build_detr(folder, "timm", seed=0)  # the hub's `main` revision layout
    return str(folder), SYNTHESIZED.format(repo=spec.repo_id)
