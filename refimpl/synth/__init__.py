"""Synthesized checkpoints: the official architectures built by transformers itself (random but
realistic weights, the official config values and file layout, `save_pretrained`).

The official weights cannot be downloaded everywhere refimpl is tested, so these stand in for
them in the test suite and in `refimpl bench`. They need the `test` extra (torch, transformers,
timm); refimpl's runtime never imports this package.

    resnet.py  build_resnet50(folder): microsoft/resnet-50's architecture, calibrated BatchNorms
    detr.py    build_detr(folder, layout): facebook/detr-resnet-50, either backbone layout
"""
