"""refimpl: pure-numpy reference implementations of ResNet-50 and DETR-ResNet-50."""

__version__ = "0.1.0"


def __getattr__(name):
    # refimpl.run(model, inputs, **options): the hosted API's call (refimpl/contract.py), imported
    # on first use so that `import refimpl` stays light.
    if name == "run":
        from .contract import run

        return run
    raise AttributeError(f"module 'refimpl' has no attribute {name!r}")
