"""refimpl: pure-numpy reference implementations of ResNet-50 and DETR-ResNet-50.

    import refimpl
    refimpl.run("@cf/microsoft/resnet-50", open("cat.png", "rb").read())   # the hosted API's call
    model = refimpl.load("resnet-50", path="reference")   # or load_resnet50(), load_detr(); see refimpl.api
"""

__version__ = "0.1.0"

from refimpl.api import load, load_detr, load_resnet50, run  # noqa: E402

__all__ = ["run", "load", "load_resnet50", "load_detr", "__version__"]
