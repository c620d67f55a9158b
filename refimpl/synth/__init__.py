"""Synthesized checkpoints: the official architectures built by transformers itself (random but
realistic weights, the official config values and file layout, `save_pretrained`).

The official weights cannot be downloaded everywhere refimpl is tested, so these stand in for
them in the test suite and in `refimpl bench`. They need the `test` extra (torch, transformers,
timm); refimpl's runtime never imports this package.

    resnet.py  build_resnet(folder, config): any microsoft/resnet-* architecture, calibrated BatchNorms
    detr.py    build_detr(folder, layout, config=...): any facebook/detr-resnet-*, either backbone layout

`synthesize(spec, folder)` builds the checkpoint of any registry entry (its `synthesize` and `config`).
"""


def synthesize(spec, folder, layout=None, seed=0):
    """A synthesized checkpoint of the registry entry `spec` in `folder` (DETR: `layout` "timm",
    the default, or "transformers"). Returns the folder."""
    import importlib

    module, _, function = spec.synthesize.partition(":")
    build = getattr(importlib.import_module(module), function)
    if spec.task == "object-detection":
        return build(folder, layout or "timm", seed=seed, config=spec.config)
    return build(folder, spec.config, layout, seed=seed)
