"""`torch:FILE.py:FACTORY`: your own PyTorch module.

`FACTORY(weights_dir)` returns a torch.nn.Module, or a dict

    {"model": module,
     "names": {module_path or "module_path#k" (its k-th call) or a pattern: checkpoint name},
     "preprocess": callable(PIL.Image) -> pixel_values tensor (1, 3, H, W) or (3, H, W),
     "postprocess": callable(model output, (height, width)) -> {"scores": (Q,), "boxes": (Q, 4)}}

"postprocess" (DETR) is your detector's post-processing run on every query (no threshold) for an
image of that original size: the best real class's probability per query and the boxes as your
contract gives them, (xmin, ymin, xmax, ymax) in the image's pixels. They are compared with
refimpl's `post_process.scores` and `post_process.boxes`, so a conversion left out (boxes in
cxcywh) is caught there. transformers' `post_process_object_detection(output, threshold=-1,
target_sizes=[size])` has this shape (a one-item list of that dict).

Without "names" the module paths must already be checkpoint names (a `--map-file` may give them);
without "preprocess" the module gets refimpl's pixel_values. The module returns logits
(ResNet-50), or (logits, pred_boxes), a dict or an object with those attributes (DETR).
"""

import importlib.util
from pathlib import Path

from refimpl.errors import AdapterError

from .torch_hooks import run_module


class TorchFileAdapter:
    def __init__(self, target, spec, checkpoint, reference_names, user_map=None):
        file, sep, factory = target.rpartition(":")
        if not sep or not file or not factory:
            raise AdapterError(f"torch:{target}: expected torch:FILE.py:FACTORY")
        path = Path(file)
        if not path.is_file():
            raise AdapterError(f"torch:{target}: no such file {file}")
        mod_spec = importlib.util.spec_from_file_location(f"refimpl_certify_{path.stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        if not callable(getattr(module, factory, None)):
            raise AdapterError(f"torch:{target}: {file} defines no function {factory}")
        made = getattr(module, factory)(str(checkpoint.folder))
        made = made if isinstance(made, dict) else {"model": made}
        if "model" not in made:
            raise AdapterError(f"torch:{target}: the factory's dict has no 'model'")
        self.model = made["model"].eval()
        self.names = user_map or made.get("names")
        self.preprocess = made.get("preprocess")
        self.postprocess = made.get("postprocess")
        self.target, self.spec, self.reference_names = target, spec, reference_names

    def describe(self):
        own = "its own preprocessing" if self.preprocess else "refimpl's pixel_values"
        return f"torch module from {self.target} ({type(self.model).__name__}, {own})"

    def run(self, case):
        return run_module(self.model, case, self.spec, self.names, self.reference_names, self.preprocess,
                          self.postprocess)
