"""`cmd:'PROGRAM ARGS... {image} {pixel_values} {out}'`: any executable (a C++, Rust or JS port).

For each image refimpl writes, in a fresh temporary folder, `{image}` (the exact input bytes, with
their extension) and `{pixel_values}` (`pixel_values.npy`, refimpl's float32 model input; DETR
also gets `{pixel_mask}`, `pixel_mask.npy`), runs the program (no shell: the template is split
like a shell would, then the placeholders are filled in), and reads `{out}`: the program writes
`{out}.npz` (numpy's `savez` adds the suffix itself), `{out}.safetensors`, or a folder `{out}/`
of `NAME.npy` files. Names are mapped by `--map-file` when they are not already checkpoint names;
a channels-last port passes `--layout nhwc`.
"""

import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from refimpl.errors import AdapterError

from .base import apply_map, to_nchw

TIMEOUT = 600  # seconds per image


class CommandAdapter:
    def __init__(self, template, spec, reference_names, user_map=None, layout="nchw"):
        try:
            self.argv = shlex.split(template)
        except ValueError as e:
            raise AdapterError(f"cmd:{template}: {e}") from e
        if not self.argv:
            raise AdapterError("cmd: needs a program, e.g. cmd:'./port {image} {out}'")
        if not any("{out}" in a for a in self.argv):
            raise AdapterError(f"cmd:{template}: the command must write its tensors to {{out}}")
        self.template, self.spec, self.reference_names = template, spec, reference_names
        self.names, self.layout = user_map, layout

    def describe(self):
        return f"program {self.template!r}"

    def run(self, case):
        from refimpl.conformance.compare import load_tensors

        with tempfile.TemporaryDirectory(prefix="refimpl-certify-") as tmp:
            tmp = Path(tmp)
            image = tmp / f"image{case.suffix}"
            image.write_bytes(case.data)
            np.save(tmp / "pixel_values.npy", case.pixel_values)
            fields = {"image": str(image), "pixel_values": str(tmp / "pixel_values.npy"), "out": str(tmp / "out")}
            if case.pixel_mask is not None:
                np.save(tmp / "pixel_mask.npy", case.pixel_mask)
                fields["pixel_mask"] = str(tmp / "pixel_mask.npy")
            argv = [_fill(a, fields) for a in self.argv]
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, cwd=Path.cwd())
            except (OSError, subprocess.TimeoutExpired) as e:
                raise AdapterError(f"cmd: could not run {argv[0]}: {e}") from e
            if done.returncode != 0:
                raise AdapterError(f"cmd: {argv[0]} exited with code {done.returncode}: {done.stderr.strip()[-800:]}")
            out = tmp / "out"
            candidates = [out, out.with_name("out.npz"), out.with_name("out.safetensors")]
            found = next((c for c in candidates if c.exists()), None)
            if found is None:
                raise AdapterError(f"cmd: {argv[0]} wrote nothing to {{out}} (expected out.npz, out.safetensors or out/)")
            if found.is_file() and found.suffix == "":
                raise AdapterError("cmd: {out} must be written as out.npz, out.safetensors or a folder out/")
            tensors = load_tensors(found).tensors
        return apply_map(to_nchw(tensors, self.layout), self.names, self.reference_names)


def _fill(arg, fields):
    for key, value in fields.items():
        arg = arg.replace("{" + key + "}", value)
    return arg
