"""Traces: every named intermediate of one run of the full pipeline, with the metadata to reproduce it.

    >>> from refimpl.conformance.trace import trace, save_trace, load_trace
    >>> tensors, metadata = trace("examples/cat.png", model="resnet-50", dtype="float64", path="reference")
    >>> list(tensors)[:3]          # data-flow order
    ['image', 'pixel_values', 'resnet.embedder.embedder']
    >>> save_trace("cat.trace.safetensors", tensors, metadata)
    >>> tensors, metadata = load_trace("cat.trace.safetensors")

Tensor names (the trace's contract with other implementations; see docs/conformance.md):

* `image` - the decoded, upright RGB image, (H, W, 3) uint8, before any preprocessing;
* `pixel_values` (and `pixel_mask` for DETR) - the model's input after preprocessing;
* every layer's output, named by the checkpoint's module path, e.g.
  `resnet.encoder.stages.0.layers.1.layer.2` (the third conv+BN of block 1 of stage 0),
  `resnet.encoder.stages.0.layers.1` (that block's output), `classifier.1` (the logits), and for
  DETR `model.encoder.layers.3`, `model.decoder.layers.5.encoder_attn.attn_weights`, ...;
* for DETR, after `pred_boxes`, the post-processing of every query before the threshold (what
  the contract's detections are cut from; refimpl.pipeline.postprocess.per_query):
  `post_process.scores` (1, Q), the best real class's probability, and `post_process.boxes`
  (1, Q, 4), the boxes as (xmin, ymin, xmax, ymax) in pixels of the original image.

Everything is kept exactly as computed: batch dimension included (1), NCHW layout, the run's dtype.
`path` says which code ran: "reference" (the default here: refimpl/models/resnet.py and detr.py,
the code the tests hold against transformers) or "fast" (refimpl/models/fast.py's BN-folded
backbone; it records the same names). The metadata records the path, and the final output it
stores is exactly what `refimpl classify`/`detect`/`run` prints on that path: recording a trace
changes no bit of the computation.

File format: a plain safetensors file. Its `__metadata__` (string -> string, as safetensors
requires) holds one JSON text per key: `format`, `refimpl_version`, `model`, `hosted_model`,
`weights` (source, revision, commit, sha256 of model.safetensors), `input` (sha256 and size of the
input bytes, file name), `dtype`, `path`, `preprocessing` (the checkpoint's preprocessor_config.json),
`environment` (python, numpy, BLAS as numpy reports it), `output` (the final contract output, the
hosted API's JSON), `output_options`, and `tensor_order`: safetensors readers sort tensor names,
so the data-flow order is stored here. The file is written by `save_trace` itself, byte for byte
deterministic (no timestamps; header keys in a fixed order; tensor data packed largest
item size first so every tensor is aligned).
"""

import json
import os
from pathlib import Path

import numpy as np

from refimpl import __version__, registry
from refimpl.pipeline.decode import decode_image, read_image
from refimpl.pipeline.loaded import image_array
from refimpl.provenance import environment, sha256_bytes

FORMAT = "refimpl-trace/1"

# numpy dtype -> safetensors dtype tag
ST_DTYPES = {
    np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
    np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16", np.dtype("int8"): "I8",
    np.dtype("uint64"): "U64", np.dtype("uint32"): "U32", np.dtype("uint16"): "U16", np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


# --- provenance ---------------------------------------------------------------------------------

def _input(image):
    """(decoded pixels, input record) for bytes, a path or an (H, W, 3) uint8 array."""
    if isinstance(image, np.ndarray):
        pixels = image_array(image)
        record = {"kind": "pixels", "sha256": sha256_bytes(np.ascontiguousarray(pixels).tobytes()),
                  "shape": list(pixels.shape)}
        return pixels, record
    if isinstance(image, (bytes, bytearray, memoryview)):
        data, name = bytes(image), None
        pixels = decode_image(data)
    elif isinstance(image, (str, os.PathLike)):
        data, pixels = read_image(image)
        name = Path(image).name
    else:
        raise TypeError(f"image must be bytes, a path or an (H, W, 3) uint8 array, got {type(image).__name__}")
    record = {"kind": "bytes", "sha256": sha256_bytes(data), "bytes": len(data), "decoded_shape": list(pixels.shape)}
    if name:
        record["name"] = name
    return pixels, record


def weights_record(model):
    p = model.checkpoint.provenance()
    return {"source": p["source"], "revision": p["revision"], "commit": p["commit"], "sha256": p["weights_sha256"]}


# --- the API --------------------------------------------------------------------------------------

def trace(image, model="resnet-50", weights=None, revision=None, dtype="float32", path="reference", **options):
    """Run the whole pipeline on one image and keep every named intermediate.

    image: encoded bytes, a path, or an (H, W, 3) uint8 array.
    model: any name the registry accepts ("resnet-50", "@cf/facebook/detr-resnet-50", ...), or an
        already loaded model (then `weights`, `revision`, `dtype` and `path` are the model's own
        and are ignored).
    path: "reference" (default: the code held against transformers) or "fast".
    options: the output options of `refimpl.run` (`top_k`, `labels` for ResNet-50; `shape`,
        `threshold`, `wrap_uint16` for DETR), recorded in the metadata as `output_options`.

    Returns (tensors, metadata): tensors is a dict name -> np.ndarray in data-flow order (see the
    module docstring for the names); metadata a JSON-able dict (see the module docstring).
    """
    if isinstance(model, str):
        model = registry.load(model, weights, revision, dtype, path)
    spec = registry.spec_of(model)
    pixels, input_record = _input(image)
    tensors = {}
    output, output_options = model.predict(pixels, tensors, **options)
    metadata = {
        "format": FORMAT,
        "refimpl_version": __version__,
        "model": spec.name,
        "hosted_model": spec.hosted_name,
        "path": model.path,
        "weights": weights_record(model),
        "input": input_record,
        "dtype": np.dtype(model.dtype).name,
        "preprocessing": model.checkpoint.preprocessor,
        "environment": environment(),
        "output": to_jsonable(output),
        "output_options": to_jsonable(output_options),
        "tensor_order": list(tensors),
    }
    return tensors, metadata


def to_jsonable(value):
    """numpy scalars/arrays and tuples -> plain JSON types (lists, floats, ints)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- the file -------------------------------------------------------------------------------------

def save_trace(path, tensors, metadata=None):
    """Write `tensors` (name -> array, in data-flow order) and `metadata` (JSON-able dict) to a
    safetensors file, deterministically. The data-flow order is stored as metadata `tensor_order`.
    The file is written to a temporary name and renamed, so a reader never sees half a file."""
    names = list(tensors)
    arrays = {}
    for n in names:
        a = np.asarray(tensors[n])
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        if a.dtype not in ST_DTYPES:
            raise TypeError(f"tensor {n!r}: dtype {a.dtype} cannot be stored in safetensors")
        arrays[n] = np.ascontiguousarray(a)
    meta = dict(metadata or {})
    meta["tensor_order"] = names
    # Pack the data largest item size first (8-byte types, then 4, 2, 1): every tensor starts
    # aligned to its item size, as safetensors' own writer does. Ties keep data-flow order.
    layout = sorted(names, key=lambda n: (-arrays[n].dtype.itemsize, names.index(n)))
    offsets, offset = {}, 0
    for n in layout:
        offsets[n] = [offset, offset + arrays[n].nbytes]
        offset += arrays[n].nbytes
    header = {"__metadata__": {k: json.dumps(v, sort_keys=True, separators=(",", ":")) for k, v in sorted(meta.items())}}
    for n in names:  # header keys in data-flow order (readers do not care, humans do)
        a = arrays[n]
        header[n] = {"dtype": ST_DTYPES[a.dtype], "shape": list(a.shape), "data_offsets": offsets[n]}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for n in layout:
            f.write(memoryview(arrays[n]).cast("B") if arrays[n].size else b"")
    os.replace(tmp, path)
    return path


def decode_metadata(raw):
    """safetensors string metadata -> values (JSON where it parses, the raw string otherwise)."""
    out = {}
    for k, v in (raw or {}).items():
        try:
            out[k] = json.loads(v)
        except (ValueError, TypeError):
            out[k] = v
    return out


def load_trace(path):
    """Read a trace (or any safetensors file) -> (tensors in data-flow order, metadata).

    Tensors are numpy arrays. The order is the metadata's `tensor_order` when present (tensors it
    does not list come after, by name), else the order of the data in the file."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such trace file: {path}")
    try:
        with safe_open(str(path), framework="np") as f:
            metadata = decode_metadata(f.metadata())
            keys = list(f.keys())
            tensors = {k: f.get_tensor(k) for k in keys}
    except SafetensorError as e:
        raise ValueError(f"{path} is not a valid safetensors file: {e}") from e
    order = metadata.get("tensor_order")
    if isinstance(order, list):
        names = [n for n in order if n in tensors] + sorted(n for n in tensors if n not in set(order))
    else:
        names = _file_order(path, keys)
    return {n: tensors[n] for n in names}, metadata


def _file_order(path, keys):
    """Tensor names in the order of their data in the file (the writer's order)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return sorted(keys, key=lambda k: (header[k]["data_offsets"][0], k))
