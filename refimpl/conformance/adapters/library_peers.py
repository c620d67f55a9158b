"""`torchvision:resnet50` and `timm:resnet50`: a library's own ResNet-50 with the checkpoint loaded
through the shipped key map (maps/<library>_resnet50.keys.json) and traced through the shipped
name map (maps/<library>_resnet50.names.json). Both are v1.5 (stride on the 3x3 conv) like the
checkpoint. torchvision's block has one `relu` module that runs three times, so its calls are
named `layer{S}.{B}.relu#0`, `#1`, `#2`; timm gives each ReLU its own module (act1..act3)."""

from refimpl.errors import AdapterError

from .base import load_map
from .torch_hooks import load_state, run_module

ARCHS = ("resnet50",)


def _torchvision(arch):
    import torchvision

    return torchvision.__version__, getattr(torchvision.models, arch)(weights=None), f"models.{arch}"


def _timm(arch):
    import timm

    return timm.__version__, timm.create_model(arch, pretrained=False), f"create_model({arch!r})"


BUILDERS = {"torchvision": _torchvision, "timm": _timm}  # library -> arch -> (version, module, what)


class LibraryAdapter:
    def __init__(self, library, arch, spec, checkpoint, reference_names, user_map=None):
        if arch not in ARCHS or spec.task != "image-classification":
            raise AdapterError(f"{library}:{arch} for {spec.name}: refimpl ships a key map for "
                               f"{library}:{'/'.join(ARCHS)} with an image-classification checkpoint only")
        try:
            self.version, model, self.what = BUILDERS[library](arch)
        except ImportError as e:
            raise AdapterError(f"{library}:{arch} needs {library} (pip install {library})") from e
        self.library, self.arch = library, arch
        self.model = load_state(model, checkpoint.params, load_map(f"{library}_{arch}.keys"))
        self.names = user_map or load_map(f"{library}_{arch}.names")
        self.spec, self.reference_names = spec, reference_names

    def describe(self):
        return f"{self.library} {self.version} {self.what}, checkpoint loaded by refimpl's key map"

    def run(self, case):
        return run_module(self.model, case, self.spec, self.names, self.reference_names)
