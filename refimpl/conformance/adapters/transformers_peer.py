"""`transformers`: the checkpoint's own transformers class (the registry's `hf_class`, e.g.
ResNetForImageClassification, DetrForObjectDetection) loaded with `from_pretrained` from the same
folder. Its module paths are the checkpoint's names, except DETR's backbone wrapper and attention
weights, which maps/transformers_detr.names.json renames. DETR runs with eager attention (sdpa
returns no attention weights), and its outputs go through the image processor's own
`post_process_object_detection` (threshold -1: every query; target size: the original image),
compared as `post_process.scores` and `post_process.boxes`."""

from refimpl.errors import AdapterError

from .base import MAPS, load_map
from .torch_hooks import run_module


class TransformersAdapter:
    def __init__(self, spec, checkpoint, reference_names, user_map=None):
        try:
            import transformers
        except ImportError as e:
            raise AdapterError("transformers needs the transformers package (pip install transformers)") from e
        cls = getattr(transformers, spec.hf_class)
        kwargs = {"attn_implementation": "eager"} if spec.task == "object-detection" else {}
        self.model = cls.from_pretrained(str(checkpoint.folder), **kwargs).eval()
        self.version = transformers.__version__
        shipped = MAPS / f"transformers_{spec.name.split('-')[0]}.names.json"
        self.names = user_map or (load_map(shipped.stem) if shipped.exists() else None)
        self.spec, self.reference_names = spec, reference_names
        self.postprocess = None
        if spec.task == "object-detection":  # transformers' own post-processing, every query kept
            processor = getattr(transformers, spec.hf_class.replace("ForObjectDetection", "ImageProcessor"))
            processor = processor.from_pretrained(str(checkpoint.folder))
            self.postprocess = lambda output, size: processor.post_process_object_detection(
                output, threshold=-1.0, target_sizes=[size])

    def describe(self):
        return f"transformers {self.version} {self.spec.hf_class}.from_pretrained (float32)"

    def run(self, case):
        return run_module(self.model, case, self.spec, self.names, self.reference_names, postprocess=self.postprocess)
