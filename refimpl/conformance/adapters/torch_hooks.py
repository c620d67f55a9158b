"""What every PyTorch adapter shares: load the checkpoint through a key map, run with forward hooks.

Recording: a forward hook on every submodule counts its calls; the k-th call of module `path` is
named `path#k`, and a module called once is also `path`. An output that is a tuple (an attention
returning (output, weights)) gives `path` (item 0) and `path@i` (item i). Each recorded name goes
through the name map (compare's syntax: exact, `{X}` captures, `re:`, prefixes, several targets);
tensors that land on a reference name are kept - cloned at once, because torchvision and timm add
the residual and apply ReLU in place - and the rest are listed as unmapped, never guessed.
"""

import numpy as np

from refimpl.errors import AdapterError

from .base import Result


def load_state(module, params, key_map):
    """Fill `module`'s state dict from the checkpoint `params` ({key: np.ndarray}) through
    `key_map` (checkpoint key pattern -> module key). Strict: a module key left empty or a
    checkpoint tensor of the wrong shape is an AdapterError naming it."""
    import torch

    from refimpl.conformance.compare import rename_all

    state = module.state_dict()
    filled = {}
    for key, value in params.items():
        for target in (rename_all(key, key_map) if key_map else [key]):
            if target not in state:
                continue
            if tuple(state[target].shape) != tuple(value.shape):
                raise AdapterError(f"key map: checkpoint {key} {tuple(value.shape)} -> {target} "
                                   f"{tuple(state[target].shape)}: shapes differ")
            filled[target] = torch.from_numpy(np.ascontiguousarray(value)).to(state[target].dtype)
    for k in state:  # a counter BN keeps for training; it does not enter an eval-mode forward
        if k not in filled and k.endswith("num_batches_tracked"):
            filled[k] = state[k]
    missing = [k for k in state if k not in filled]
    if missing:
        raise AdapterError(f"key map: {len(missing)} of the module's {len(state)} state keys got no checkpoint "
                           f"tensor, e.g. {missing[:5]}")
    module.load_state_dict(filled, strict=True)
    return module.eval()


def _tensor_items(out):
    """A module output -> [(suffix, tensor)]: '' for the tensor itself or item 0, '@i' for item i."""
    import torch

    if isinstance(out, torch.Tensor):
        return [("", out)]
    if isinstance(out, (tuple, list)):
        return [("" if i == 0 else f"@{i}", v) for i, v in enumerate(out) if isinstance(v, torch.Tensor)]
    if hasattr(out, "to_tuple"):  # transformers' ModelOutput
        return _tensor_items(out.to_tuple())
    return []


def record(module, call, name_map, reference_names):
    """Run `call()` (which calls `module`) with hooks on every submodule.

    Returns (Result with {reference name: np.ndarray}, the call's return value)."""
    import torch

    from refimpl.conformance.compare import rename_all

    counts, kept, seen = {}, {}, []
    plain_used = {}  # path -> reference names given by a rule on the bare path

    def names_for(key):
        targets = rename_all(key, name_map) if name_map else [key]
        return [t for t in targets if t in reference_names]

    def hook(mod, args, out, path):
        k = counts.get(path, 0)
        counts[path] = k + 1
        for suffix, tensor in _tensor_items(out):
            base = f"{path}#{k}{suffix}"
            hits = names_for(base)
            if not hits and k == 0:
                hits = names_for(path + suffix)
                if hits:
                    plain_used.setdefault(path, []).extend(hits)
            seen.append(base)
            for name in hits:
                if name not in kept:  # the first producer of a name wins
                    kept[name] = tensor.detach().clone()

    hooks = [m.register_forward_hook(lambda mod, args, out, path=path: hook(mod, args, out, path))
             for path, m in module.named_modules() if path]
    try:
        with torch.no_grad():
            output = call()
    finally:
        for h in hooks:
            h.remove()
    notes = []
    for path, hits in plain_used.items():
        if counts[path] > 1:  # a rule on the bare path of a reused module would name only its first call
            for name in hits:
                kept.pop(name, None)
            notes.append(f"{path} runs {counts[path]} times: name its calls {path}#0 ... {path}#{counts[path] - 1}")
    unmapped = []
    for key in seen:
        path, _, rest = key.partition("#")
        k, _, suffix = rest.partition("@")
        bare = path + (f"@{suffix}" if suffix else "")
        if names_for(key) or (k == "0" and names_for(bare)):
            continue
        unmapped.append(bare if counts[path] == 1 else key)
    tensors = {name: _numpy(t) for name, t in kept.items()}
    return Result(tensors, unmapped, notes), output


def _numpy(t):
    """A tensor -> numpy, keeping its precision: bfloat16 (which numpy lacks) as ml_dtypes.bfloat16
    when ml_dtypes is installed, else float32 (certify then cannot detect bf16: --precision bf16)."""
    import torch

    if t.dtype != torch.bfloat16:
        return t.numpy()
    try:
        import ml_dtypes
    except ImportError:
        return t.float().numpy()
    return t.float().numpy().astype(ml_dtypes.bfloat16)  # exact: every bfloat16 is a float32


def final_outputs(output, spec):
    """The model's return value -> {final output name: np.ndarray} (budgets.final_outputs order):
    a tensor (logits), a tuple (logits, pred_boxes), a dict or an object with `logits` and
    `pred_boxes` attributes."""
    import torch

    from refimpl.conformance.budgets import final_outputs as names

    wanted = names(spec)
    keys = ("logits", "pred_boxes")[: len(wanted)]
    if isinstance(output, torch.Tensor):
        values = [output]
    elif isinstance(output, dict):
        values = [output.get(k) for k in keys]
    elif isinstance(output, (tuple, list)):
        values = list(output[: len(wanted)])
    else:
        values = [getattr(output, k, None) for k in keys]
    out = {}
    for name, v in zip(wanted, values):
        if isinstance(v, torch.Tensor):
            out[name] = v.detach().float().numpy() if v.dtype != torch.float64 else v.detach().numpy()
    if not out:
        raise AdapterError(f"the module returned {type(output).__name__}; expected {' and '.join(keys)} "
                           "(a tensor, a tuple, a dict or an object with those attributes)")
    return out


POST_PROCESS = ("post_process.scores", "post_process.boxes")  # trace names, (1, Q) and (1, Q, 4)


def post_process_tensors(postprocess, output, size):
    """A detector's post-processing on every query -> {"post_process.scores": (1, Q),
    "post_process.boxes": (1, Q, 4)} (boxes as the implementation returns them: the contract's
    are (xmin, ymin, xmax, ymax) in the original image's pixels).

    postprocess(output, (height, width)) is the implementation's own, run with no threshold; it
    returns {"scores", "boxes"} or a one-item list of it (transformers' post_process_object_detection
    shape); keys it lacks are not recorded."""
    import torch

    got = postprocess(output, size)
    if isinstance(got, (list, tuple)):
        if len(got) != 1:
            raise AdapterError(f"postprocess returned {len(got)} results for one image")
        got = got[0]
    if not isinstance(got, dict):
        raise AdapterError(f"postprocess returned {type(got).__name__}; expected a dict with 'scores' and 'boxes'")
    out = {}
    for key, name in zip(("scores", "boxes"), POST_PROCESS):
        v = got.get(key)
        if v is None:
            continue
        v = v.detach().float().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        out[name] = v[None]
    return out


def _module_dtype(module):
    """The floating dtype of a module's parameters (torch.float16 after `.half()`), or None."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def run_module(module, case, spec, name_map, reference_names, preprocess=None, postprocess=None):
    """Run a torch module on one case with hooks; the final outputs come from its return value.
    preprocess: the implementation's own (PIL.Image -> pixel_values tensor); without it the module
    gets refimpl's pixel_values (and pixel_mask for DETR, when its forward takes one).
    postprocess: a detector's own post-processing (see `post_process_tensors`), run on every
    query with the original image's size; its scores and boxes are compared as
    `post_process.scores` and `post_process.boxes`."""
    import inspect

    import torch
    from PIL import Image

    if preprocess is not None:
        pv = preprocess(Image.fromarray(case.pixels))
        pv = torch.as_tensor(pv, dtype=torch.float32)
        if pv.ndim == 3:
            pv = pv[None]
    else:
        pv = torch.from_numpy(case.pixel_values.astype(np.float32))
    dtype = _module_dtype(module)
    if dtype is not None and dtype != pv.dtype:  # a module in .half() / bfloat16 reads its own dtype
        pv = pv.to(dtype)
    kwargs = {}
    if case.pixel_mask is not None and preprocess is None:
        try:
            if "pixel_mask" in inspect.signature(module.forward).parameters:
                kwargs["pixel_mask"] = torch.from_numpy(case.pixel_mask)
        except (TypeError, ValueError):
            pass
    result, output = record(module, lambda: module(pv, **kwargs), name_map, reference_names)
    result.tensors.update(final_outputs(output, spec))
    if postprocess is not None:
        with torch.no_grad():
            result.tensors.update(post_process_tensors(postprocess, output, tuple(case.pixels.shape[:2])))
    if preprocess is not None:
        result.tensors["pixel_values"] = _numpy(pv)  # their own preprocessing is under test too
    return result
