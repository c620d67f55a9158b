"""Adapters: run another implementation on one image and return its tensors under checkpoint names.

    IMPL                              module here             what runs
    onnx:FILE.onnx                    onnx_runtime.py         ONNX Runtime, every intermediate exposed, named by the
                                      (onnx_align.py)         exporter's scopes or, without any, by the graph's structure
    torchvision:resnet50              torchvision_peer.py     torchvision's model, the checkpoint loaded by a key map
    timm:resnet50                     timm_peer.py            timm's model, likewise
    transformers                      transformers_peer.py    the checkpoint's transformers class (spec.hf_class)
    torch:FILE.py:FACTORY             torch_file.py           your own torch.nn.Module
    cmd:'PROGRAM {image} {pixel_values} {out}'   command.py   any executable (a C++, Rust, JS port)
    dump:PATH                         dump.py                 tensors someone already saved

Every adapter is an object with `describe()` -> str and `run(case)` -> Result, where `case` is a
`Case` (the image and refimpl's float32 model input) and Result holds {checkpoint name: array}
plus the tensors it could not name (listed in the report, never guessed).

Peers (torch, torchvision, timm, transformers, onnxruntime) are imported inside the functions
that use them: refimpl's runtime never needs them (tests/test_architecture.py).
Key maps and name maps ship in `maps/` as JSON (the syntax of `refimpl compare --map-file`).
"""

import functools

from refimpl.errors import AdapterError, RefimplError

from .base import MAPS, Case, Result, apply_map, load_map, shipped_maps, to_nchw  # noqa: F401 (the package's API)

KINDS = ("onnx", "torchvision", "timm", "transformers", "torch", "cmd", "dump")


def make(impl, spec, checkpoint, reference_names, map_file=None, layout="nchw"):
    """IMPL string -> adapter. spec: registry.ModelSpec; checkpoint: the loaded refimpl checkpoint
    (its folder feeds the peers); reference_names: the names refimpl records (so unmapped tensors
    can be told from checkpoint names); map_file: a user name map (compare's --map-file syntax).

    Whatever the other implementation raises - a `torch:` file that fails to import, a factory or
    a forward that raises, a peer library missing - becomes one AdapterError naming IMPL and the
    error (`refimpl certify` exit 2), never a traceback from someone else's code."""
    try:
        adapter = _make(impl, spec, checkpoint, reference_names, map_file, layout)
    except RefimplError:
        raise
    except Exception as e:  # the implementation's own code, run while loading it
        raise AdapterError(f"{impl}: loading it raised {_one_line(e)}") from e
    adapter.run = _typed_errors(impl, adapter.run)
    return adapter


def _one_line(e):
    """"ValueError: the message" on one line (the last line of a multi-line message)."""
    lines = [x for x in str(e).strip().splitlines() if x.strip()]
    return f"{type(e).__name__}: {lines[-1].strip() if lines else ''}".rstrip(": ")


def _typed_errors(impl, run):
    """adapter.run, with an exception from the implementation turned into an AdapterError."""

    @functools.wraps(run)
    def typed(case):
        try:
            return run(case)
        except RefimplError:
            raise
        except Exception as e:
            raise AdapterError(f"{impl}: running it on {case.name} raised {_one_line(e)}") from e

    return typed


def _make(impl, spec, checkpoint, reference_names, map_file=None, layout="nchw"):
    kind, sep, rest = impl.partition(":")
    if kind not in KINDS:
        raise AdapterError(f"IMPL {impl!r}: expected one of {', '.join(k + ':...' for k in KINDS)} "
                           "(e.g. torchvision:resnet50, onnx:model.onnx, cmd:'./port {image} {out}', dump:DIR)")
    user_map = None
    if map_file:
        from refimpl.conformance.compare import read_map_file

        user_map = read_map_file(map_file)
    names = set(reference_names)
    if kind == "onnx":
        from .onnx_runtime import OnnxAdapter

        return OnnxAdapter(rest, spec, names, user_map, layout, checkpoint)
    if kind in ("torchvision", "timm"):
        from .library_peers import LibraryAdapter

        return LibraryAdapter(kind, rest or "resnet50", spec, checkpoint, names, user_map)
    if kind == "transformers":
        from .transformers_peer import TransformersAdapter

        return TransformersAdapter(spec, checkpoint, names, user_map)
    if kind == "torch":
        from .torch_file import TorchFileAdapter

        return TorchFileAdapter(rest, spec, checkpoint, names, user_map)
    if kind == "cmd":
        from .command import CommandAdapter

        return CommandAdapter(rest, spec, names, user_map, layout)
    from .dump import DumpAdapter

    return DumpAdapter(rest, spec, names, user_map, layout)


