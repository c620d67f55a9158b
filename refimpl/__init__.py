"""refimpl: pure-numpy reference implementations of ResNet-50 and DETR-ResNet-50."""

__version__ = "0.1.0"
