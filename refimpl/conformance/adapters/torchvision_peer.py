"""`torchvision:resnet50`: torchvision's ResNet-50 with the checkpoint loaded through the shipped key
map (maps/torchvision_resnet50.keys.json) and traced through the shipped name map
(maps/torchvision_resnet50.names.json: a block's one `relu` module runs three times, so its calls
are named `layer{S}.{B}.relu#0`, `#1`, `#2`)."""

from refimpl.errors import AdapterError

from .base import load_map
from .torch_hooks import load_state, run_module

ARCHS = ("resnet50",)


class TorchvisionAdapter:
    def __init__(self, arch, spec, checkpoint, reference_names, user_map=None):
        if arch not in ARCHS or spec.task != "image-classification":
            raise AdapterError(f"torchvision:{arch} for {spec.name}: refimpl ships a key map for "
                               f"torchvision:{'/'.join(ARCHS)} with an image-classification checkpoint only")
        try:
            import torchvision
        except ImportError as e:
            raise AdapterError("torchvision:resnet50 needs torchvision (pip install torchvision)") from e
        self.arch = arch
        self.version = torchvision.__version__
        self.model = load_state(getattr(torchvision.models, arch)(weights=None), checkpoint.params,
                                load_map(f"torchvision_{arch}.keys"))
        self.names = user_map or load_map(f"torchvision_{arch}.names")
        self.spec, self.reference_names = spec, reference_names

    def describe(self):
        return f"torchvision {self.version} models.{self.arch}, checkpoint loaded by refimpl's key map"

    def run(self, case):
        return run_module(self.model, case, self.spec, self.names, self.reference_names)
