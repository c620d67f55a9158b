"""`dump:PATH`: tensors another implementation already saved (what `refimpl compare` reads: an .npz,
a safetensors file, a folder of NAME.npy files), for exactly one image - the one it was made from.
Names are mapped by `--map-file`; `--layout nhwc` reads channels-last 4-D tensors."""

from refimpl.errors import AdapterError

from .base import apply_map, to_nchw


class DumpAdapter:
    def __init__(self, path, spec, reference_names, user_map=None, layout="nchw"):
        from refimpl.conformance.compare import load_tensors

        if not path:
            raise AdapterError("dump: needs a path, e.g. dump:mine.npz")
        try:
            self.tensors = load_tensors(path).tensors
        except (OSError, ValueError) as e:
            raise AdapterError(f"dump:{path}: {e}") from e
        self.path, self.names, self.layout, self.reference_names = path, user_map, layout, reference_names
        self.images_allowed = 1

    def describe(self):
        return f"dump {self.path} ({len(self.tensors)} tensors)"

    def run(self, case):
        return apply_map(to_nchw(self.tensors, self.layout), self.names, self.reference_names)
