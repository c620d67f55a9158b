"""Trace transformers models with forward hooks, under refimpl's trace names (test helper).

refimpl names every intermediate after the checkpoint's module path, and `save_pretrained` keeps
those paths, so for ResNet-50 a forward hook on `model.get_submodule(name)` captures exactly the
tensor refimpl records under `name`. Outputs are cloned because the reference adds the residual
in place.
"""

import numpy as np


def hf_trace(model, names, pixel_values, **inputs):
    """Run a transformers model with a forward hook on every module in `names` (module paths);
    return {name: np.ndarray}. Names that are not modules are skipped (e.g. `pixel_values`, `image`)."""
    import torch

    captured, hooks = {}, []
    for name in names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        hooks.append(module.register_forward_hook(
            lambda mod, inp, out, name=name: captured.__setitem__(name, _first(out).detach().clone())))
    try:
        with torch.no_grad():
            extra = {k: torch.from_numpy(v) for k, v in inputs.items()}
            out = model(pixel_values=torch.from_numpy(pixel_values), **extra)
    finally:
        for h in hooks:
            h.remove()
    return {k: v.numpy() for k, v in captured.items()}


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def in_flow_order(traced, names):
    """{name: array} reordered as `names` (our data-flow order)."""
    return {n: traced[n] for n in names if n in traced}


__all__ = ["hf_trace", "in_flow_order", "np"]
