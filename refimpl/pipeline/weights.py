"""Find, read and strictly check a checkpoint: `model.safetensors` + `config.json` + `preprocessor_config.json`.

A checkpoint is named either by a local folder or by a Hugging Face repo id (`microsoft/resnet-50`),
which is downloaded with `huggingface_hub` into the standard cache (it honours `HF_HOME` and
`HF_HUB_OFFLINE`) at a revision the caller pins. Only safetensors is read: pickle files are never
loaded. The loaded checkpoint keeps where it came from (folder, repo id, requested revision,
resolved commit) and the SHA-256 of the weights file, so provenance records can say what ran.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refimpl.errors import (
    BadWeightsFileError,
    CheckpointMismatchError,
    ConfigFileError,
    NonFiniteWeightsError,
    WeightsNotFoundError,
)
from refimpl.provenance import sha256_file

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
CHECKPOINT_FILES = (WEIGHTS_FILE, CONFIG_FILE, PREPROCESSOR_FILE)

# BatchNorm's step counter is training state, present in some checkpoints and not in others.
IGNORED_SUFFIXES = ("num_batches_tracked",)

# The official checkpoints store every parameter as float32; any other dtype is refused (an oracle
# does not silently round float16 weights up, or float64 ones down, and then call the result the
# model's answer). Convert such a checkpoint explicitly before loading it.
WEIGHTS_DTYPE = np.float32

# The safetensors format: 8 bytes little-endian header length, a JSON header, then the data.
# safetensors itself refuses headers over 100 MB; the official ones are about 50 KB.
MAX_HEADER_BYTES = 100_000_000
SAFETENSORS_DTYPES = {  # dtype name -> bytes per element
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}
NO_NUMPY_DTYPES = ("BF16", "F8_E5M2", "F8_E4M3")  # numpy has no such type: safetensors cannot read them


@dataclass
class Checkpoint:
    """A loaded checkpoint: the raw tensors by their checkpoint key, the configs, and provenance."""

    params: dict  # key -> np.ndarray, exactly as stored (after the dtype cast, if any)
    config: dict
    preprocessor: dict
    folder: Path
    source: str  # what the user named: a folder path or a repo id
    revision: str | None = None  # the revision asked for (repo ids only)
    commit: str | None = None  # the commit it resolved to (repo ids only)
    sha256: str = ""  # of model.safetensors
    extra: dict = field(default_factory=dict)

    @property
    def id2label(self):
        """{class index: label}; load_checkpoint has checked the config's id2label (check_config)."""
        return {int(k): v for k, v in self.config.get("id2label", {}).items()}

    def provenance(self):
        return {
            "source": self.source,
            "revision": self.revision,
            "commit": self.commit,
            "weights_file": str(self.folder / WEIGHTS_FILE),
            "weights_sha256": self.sha256,
        }


def is_repo_id(name):
    """`owner/name` with no path that exists locally."""
    parts = str(name).split("/")
    return len(parts) == 2 and all(parts) and not Path(name).exists() and not str(name).startswith((".", "~"))


def resolve(weights, revision="main"):
    """Return (folder, commit) holding the checkpoint files for a folder path or a repo id."""
    path = Path(os.path.expanduser(str(weights)))
    if path.is_dir():
        return path, None
    if not is_repo_id(weights):
        raise WeightsNotFoundError(
            f"weights {weights!r}: no such folder, and not a Hugging Face repo id of the form 'owner/name'"
        )
    return _download(str(weights), revision)


def _download(repo_id, revision):
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # a runtime dependency, but say so plainly if it is missing
        raise WeightsNotFoundError("huggingface-hub is not installed; pass a local folder instead") from e
    try:
        # snapshot_download shows a progress bar and reuses the cache; HF_HUB_OFFLINE=1 makes it
        # answer from the cache only.
        folder = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=list(CHECKPOINT_FILES),
            cache_dir=_cache_dir(),
            local_files_only=_offline(),
        )
    except Exception as e:  # the hub raises many types (HTTP, offline, not found): one message for all
        raise WeightsNotFoundError(
            f"could not get {repo_id!r} at revision {revision!r} from the Hugging Face Hub "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}). "
            "If you have no network, download the files elsewhere and pass the folder holding "
            f"{', '.join(CHECKPOINT_FILES)} with --weights DIR (or REFIMPL_*_WEIGHTS=DIR)."
        ) from e
    folder = Path(folder)
    # The cache lays snapshots out as .../snapshots/<commit>/: the folder name is the commit.
    return folder, folder.name


def _cache_dir():
    """The hub cache as the environment says *now* (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None  # the library's default (~/.cache/huggingface/hub)


def _offline():
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _read_json(path):
    if not path.is_file():
        raise WeightsNotFoundError(f"{path.name} is missing from {path.parent}")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BadWeightsFileError(f"{path} is not valid JSON: {str(e)[:200]}") from e


def _format_problem(path, head, size):
    """Why the first bytes of a file are not a safetensors header, or None if they parse as one.

    The format is told by its structure, never by one byte: an 8-byte little-endian length n with
    8 + n <= the file's size, then n bytes of a UTF-8 JSON object. A pickle (protocol 2+ starts
    with 0x80 and the protocol number) or a zip (PyTorch's format, "PK\x03\x04") is named as such
    only when the bytes do not parse as a safetensors header.
    """
    if len(head) >= 8:
        n = int.from_bytes(head[:8], "little")
        if n <= min(size - 8, MAX_HEADER_BYTES) and n >= 2:
            with open(path, "rb") as f:
                f.seek(8)
                text = f.read(n)
            try:
                header = json.loads(text.decode("utf-8"))
            except (ValueError, UnicodeDecodeError, RecursionError):
                header = None
            if isinstance(header, dict):
                return None, header
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06") or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"):
        return f"{path} is a pickle/zip file, not safetensors: refusing to load it", None
    return f"{path} is not a valid safetensors file (truncated or corrupt): its first 8 bytes are not " \
           "the length of a JSON header that fits in the file", None


def _check_header(path, header, data_size):
    """Check every entry of a parsed safetensors header against the file (dtype, shape, offsets)
    before any tensor is read, so a hostile header is refused with the tensor named."""
    spans = []
    bad = f"{path} is not a valid safetensors file (truncated or corrupt)"
    for name, entry in header.items():
        if name == "__metadata__":
            if entry is not None and not (isinstance(entry, dict) and all(isinstance(v, str) for v in entry.values())):
                raise BadWeightsFileError(f"{bad}: __metadata__ must map strings to strings")
            continue
        where = f"{bad}: tensor {name[:100]!r}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise BadWeightsFileError(f"{where}: header entry must have exactly dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in SAFETENSORS_DTYPES:
            raise BadWeightsFileError(f"{where}: unknown dtype {str(dtype)[:20]!r}")
        if dtype in NO_NUMPY_DTYPES:
            raise BadWeightsFileError(f"{path}: tensor {name[:100]!r} has dtype {dtype}, which has no numpy equivalent; refimpl reads float32 "
                                      "checkpoints (convert it to float32 first)")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise BadWeightsFileError(f"{where}: shape must be a list of non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_size):
            raise BadWeightsFileError(f"{where}: data_offsets {str(offsets)[:60]} are not within the "
                                      f"{data_size} bytes of data")
        count = 1
        for d in shape:
            count *= d
        if offsets[1] - offsets[0] != count * SAFETENSORS_DTYPES[dtype]:
            raise BadWeightsFileError(f"{where}: shape {shape} of {dtype} needs {count * SAFETENSORS_DTYPES[dtype]} "
                                      f"bytes, data_offsets give {offsets[1] - offsets[0]}")
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        if start < end:
            raise BadWeightsFileError(f"{bad}: tensors {a[:100]!r} and {b[:100]!r} overlap in the data")


def read_safetensors(path):
    """Read every tensor of a safetensors file as numpy arrays. Refuses anything else by name.

    The header is parsed and checked here first (format by structure, every entry's dtype, shape
    and offsets), then safetensors reads the data.
    """
    path = Path(path)
    if not path.is_file():
        others = sorted(p.name for p in path.parent.glob("*.bin")) + sorted(p.name for p in path.parent.glob("*.pt*"))
        hint = f" (found {', '.join(others)}: pickle files are never loaded; convert them to safetensors)" if others else ""
        raise WeightsNotFoundError(f"{path.name} is missing from {path.parent}{hint}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
    problem, header = _format_problem(path, head, size)
    if problem:
        raise BadWeightsFileError(problem)
    _check_header(path, header, size - 8 - int.from_bytes(head, "little"))
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, ValueError, TypeError, OSError) as e:
        raise BadWeightsFileError(f"{path} is not a valid safetensors file (truncated or corrupt): {e}") from e


def check_params(params, expected, path="checkpoint"):
    """Strictly compare a checkpoint's tensors with the architecture's expected shapes.

    expected: key -> shape. Every expected key must be present with that shape and a float dtype;
    any other key (except BatchNorm's num_batches_tracked) is an error. Every expected tensor must
    be float32 (WEIGHTS_DTYPE). Reads only .shape and .dtype (refimpl summary passes header
    entries); check_finite looks at the values.
    """
    missing = [k for k in expected if k not in params]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointMismatchError(f"{path}: missing key {missing[0]!r}{more}")
    unexpected = [k for k in params if k not in expected and not k.endswith(IGNORED_SUFFIXES)]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointMismatchError(f"{path}: unexpected key {unexpected[0]!r}{more}")
    for key, shape in expected.items():
        arr = params[key]
        if tuple(arr.shape) != tuple(shape):
            raise CheckpointMismatchError(
                f"{path}: {key!r} has shape {tuple(arr.shape)}, the architecture needs {tuple(shape)}"
            )
        if arr.dtype != WEIGHTS_DTYPE:
            raise CheckpointMismatchError(
                f"{path}: {key!r} has dtype {arr.dtype}, expected float32 (the official checkpoints' dtype; "
                "refimpl does not convert weights silently: convert the checkpoint to float32 first)"
            )


MAX_LABELS = 100_000  # far above ImageNet's 1000 and COCO's 91; bounds the classifier check


def check_config(config, name=CONFIG_FILE):
    """The fields of config.json every model reads: it is an object; `id2label`, if present, maps
    integer strings 0..n-1 (each once) to strings; `num_labels`, if present, is a positive integer.
    Raises ConfigFileError naming the file and the field. Returns the config."""
    if not isinstance(config, dict):
        raise ConfigFileError(f"{name} must be a JSON object, got {_json_kind(config)}")
    if "id2label" in config:
        id2label = config["id2label"]
        if not isinstance(id2label, dict):
            raise ConfigFileError(f"{name}: 'id2label' must be an object {{\"0\": \"label\", ...}}, got {_json_kind(id2label)}")
        if len(id2label) > MAX_LABELS:
            raise ConfigFileError(f"{name}: 'id2label' has {len(id2label)} entries, more than {MAX_LABELS}")
        indices = set()
        for key, value in id2label.items():
            text = key.strip() if isinstance(key, str) else ""
            if not (text.isascii() and text.isdigit()):
                raise ConfigFileError(f"{name}: 'id2label' key {key[:40]!r} is not a non-negative integer")
            if not isinstance(value, str):
                raise ConfigFileError(f"{name}: 'id2label'[{key!r}] must be a string, got {_json_kind(value)}")
            indices.add(int(text))
        if indices != set(range(len(id2label))):
            raise ConfigFileError(f"{name}: 'id2label' keys must be 0..{len(id2label) - 1}, each once")
    if "num_labels" in config:
        n = config["num_labels"]
        if type(n) is not int or not 1 <= n <= MAX_LABELS:
            raise ConfigFileError(f"{name}: 'num_labels' must be an integer 1..{MAX_LABELS}, got {str(n)[:40]}")
        if config.get("id2label") and len(config["id2label"]) != n:
            raise ConfigFileError(f"{name}: 'num_labels' is {n} but 'id2label' has {len(config['id2label'])} entries")
    return config


def _json_kind(value):
    return {dict: "an object", list: "an array", str: "a string", type(None): "null", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def check_finite(params, keys, path="checkpoint"):
    """Refuse a checkpoint whose tensors hold NaN or +-infinity, naming the first such tensor."""
    for key in keys:
        arr = params[key]
        if not np.isfinite(arr).all():
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise NonFiniteWeightsError(
                f"{path}: {key!r} holds {bad} non-finite value(s) (NaN or infinity): poisoned or corrupt weights"
            )


def load_checkpoint(weights, expected_shapes, revision="main", dtype=np.float32):
    """Resolve, read and check a checkpoint: config.json (check_config, then the model's own
    checks inside expected_shapes), the safetensors header and every tensor (check_params).

    expected_shapes: a function config -> {key: shape}, given by the model module, so the check
    follows the checkpoint's own config (e.g. its number of labels).
    """
    folder, commit = resolve(weights, revision)
    config = check_config(_read_json(folder / CONFIG_FILE), str(folder / CONFIG_FILE))
    preprocessor = _read_json(folder / PREPROCESSOR_FILE)
    if not isinstance(preprocessor, dict):
        raise ConfigFileError(f"{folder / PREPROCESSOR_FILE} must be a JSON object, got {_json_kind(preprocessor)}")
    weights_path = folder / WEIGHTS_FILE
    raw = read_safetensors(weights_path)
    expected = expected_shapes(config)
    check_params(raw, expected, path=str(weights_path))
    check_finite(raw, expected, path=str(weights_path))
    params = {k: raw[k].astype(dtype, copy=False) for k in expected}
    return Checkpoint(
        params=params,
        config=config,
        preprocessor=preprocessor,
        folder=folder,
        source=str(weights),
        revision=revision if commit else None,
        commit=commit,
        sha256=sha256_file(weights_path),
    )
