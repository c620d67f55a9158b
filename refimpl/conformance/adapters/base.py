"""What the adapters share: the input of one run (Case), what an adapter returns (Result), the
shipped maps, and renaming a dump's tensors."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refimpl.errors import AdapterError

MAPS = Path(__file__).parent / "maps"


@dataclass
class Case:
    """One input: the encoded image, its decoded pixels and refimpl's float32 model input."""

    name: str
    data: bytes  # the encoded image
    suffix: str  # ".png", ".jpg", ...
    pixels: np.ndarray  # (H, W, 3) uint8, decoded and upright
    pixel_values: np.ndarray  # (1, 3, h, w) float32, refimpl's preprocessing
    pixel_mask: np.ndarray | None = None  # (1, h, w) int64 for DETR


@dataclass
class Result:
    tensors: dict  # checkpoint name -> np.ndarray
    unmapped: list = field(default_factory=list)  # names the implementation produced that map to nothing
    notes: list = field(default_factory=list)


def load_map(name):
    """A shipped map (maps/NAME.json) as an ordered dict."""
    from refimpl.conformance.compare import read_map_file

    path = MAPS / f"{name}.json"
    return read_map_file(path)


def shipped_maps():
    return sorted(p.stem for p in MAPS.glob("*.json"))


def apply_map(tensors, mapping, reference_names):
    """Rename a dump's tensors with a name map -> Result (names that are neither mapped nor a
    reference name are listed as unmapped)."""
    from refimpl.conformance.compare import rename_all

    out, unmapped = {}, []
    for name, value in tensors.items():
        targets = rename_all(name, mapping) if mapping else [name]
        hits = [t for t in targets if t in reference_names]
        if not hits:
            unmapped.append(name)
            continue
        for t in hits:
            if t in out:
                raise AdapterError(f"the name map sends two tensors to {t!r}")
            out[t] = np.asarray(value)
    return Result(out, unmapped)


def to_nchw(tensors, layout):
    if layout == "nhwc":
        return {k: (np.transpose(v, (0, 3, 1, 2)) if np.ndim(v) == 4 else v) for k, v in tensors.items()}
    return tensors
