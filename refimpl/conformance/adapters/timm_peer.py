"""`timm:resnet50`: timm's ResNet-50 (v1.5, stride on the 3x3 conv like the checkpoint) with the
checkpoint loaded through maps/timm_resnet50.keys.json and traced through
maps/timm_resnet50.names.json (timm gives each ReLU of a block its own module, act1..act3)."""

from refimpl.errors import AdapterError

from .base import load_map
from .torch_hooks import load_state, run_module

ARCHS = ("resnet50",)


class TimmAdapter:
    def __init__(self, arch, spec, checkpoint, reference_names, user_map=None):
        if arch not in ARCHS or spec.task != "image-classification":
            raise AdapterError(f"timm:{arch} for {spec.name}: refimpl ships a key map for "
                               f"timm:{'/'.join(ARCHS)} with an image-classification checkpoint only")
        try:
            import timm
        except ImportError as e:
            raise AdapterError("timm:resnet50 needs timm (pip install timm)") from e
        self.arch = arch
        self.version = timm.__version__
        self.model = load_state(timm.create_model(arch, pretrained=False), checkpoint.params,
                                load_map(f"timm_{arch}.keys"))
        self.names = user_map or load_map(f"timm_{arch}.names")
        self.spec, self.reference_names = spec, reference_names

    def describe(self):
        return f"timm {self.version} create_model({self.arch!r}), checkpoint loaded by refimpl's key map"

    def run(self, case):
        return run_module(self.model, case, self.spec, self.names, self.reference_names)
