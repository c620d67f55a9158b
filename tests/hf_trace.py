"""Trace transformers models with forward hooks, under refimpl's trace names (test helper).

refimpl names every intermediate after the checkpoint's module path, and `save_pretrained` keeps
those paths, so for ResNet-50 a forward hook on `model.get_submodule(name)` captures exactly the
tensor refimpl records under `name`. Outputs are cloned because the reference adds the residual
in place.
"""

import json


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
            model(pixel_values=torch.from_numpy(pixel_values), **extra)
    finally:
        for h in hooks:
            h.remove()
    return {k: v.numpy() for k, v in captured.items()}


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def small_checkpoint(folder, checkpoint_dir, edit=None, **preprocessor):
    """A copy of a checkpoint folder (weights and config symlinked) whose preprocessor_config.json
    has `preprocessor` overrides, e.g. size={"shortest_edge": 64}: the same model on small inputs,
    so conformance tests stay fast. edit: a function {key: array} -> {key: array} applied to the
    weights (then written, not symlinked)."""
    from pathlib import Path

    from safetensors.numpy import load_file, save_file

    folder, checkpoint_dir = Path(folder), Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").symlink_to((checkpoint_dir / "config.json").resolve())
    if edit is None:
        (folder / "model.safetensors").symlink_to((checkpoint_dir / "model.safetensors").resolve())
    else:
        save_file(edit(load_file(str(checkpoint_dir / "model.safetensors"))), str(folder / "model.safetensors"))
    config = json.loads((checkpoint_dir / "preprocessor_config.json").read_text())
    config.update(preprocessor)
    (folder / "preprocessor_config.json").write_text(json.dumps(config, indent=2))
    return folder
