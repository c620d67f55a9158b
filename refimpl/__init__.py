"""refimpl: pure-numpy reference implementations of ResNet-50 and DETR-ResNet-50.

    import refimpl
    refimpl.run("@cf/microsoft/resnet-50", open("cat.png", "rb").read())   # the hosted API's call
    model = refimpl.load_resnet50()        # or load_detr(); see refimpl.api
"""

__version__ = "0.1.0"

# Resolved on first use, so `import refimpl` stays cheap (the CLI imports only what it runs).
_EXPORTS = {"run": "contract", "load_resnet50": "api", "load_detr": "api"}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'refimpl' has no attribute {name!r}")


__all__ = ["run", "load_resnet50", "load_detr", "__version__"]
