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

from refimpl.errors import BadWeightsFileError, CheckpointMismatchError, WeightsNotFoundError
from refimpl.provenance import sha256_file

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
CHECKPOINT_FILES = (WEIGHTS_FILE, CONFIG_FILE, PREPROCESSOR_FILE)

# BatchNorm's step counter is training state, present in some checkpoints and not in others.
IGNORED_SUFFIXES = ("num_batches_tracked",)


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
    except (ValueError, UnicodeDecodeError) as e:
        raise BadWeightsFileError(f"{path} is not valid JSON: {e}") from e


def read_safetensors(path):
    """Read every tensor of a safetensors file as numpy arrays. Refuses anything else by name."""
    path = Path(path)
    if not path.is_file():
        others = sorted(p.name for p in path.parent.glob("*.bin")) + sorted(p.name for p in path.parent.glob("*.pt*"))
        hint = f" (found {', '.join(others)}: pickle files are never loaded; convert them to safetensors)" if others else ""
        raise WeightsNotFoundError(f"{path.name} is missing from {path.parent}{hint}")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise BadWeightsFileError(f"{path} is a pickle/zip file, not safetensors: refusing to load it")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, ValueError, OSError) as e:
        raise BadWeightsFileError(f"{path} is not a valid safetensors file (truncated or corrupt): {e}") from e


def check_params(params, expected, path="checkpoint"):
    """Strictly compare a checkpoint's tensors with the architecture's expected shapes.

    expected: key -> shape. Every expected key must be present with that shape and a float dtype;
    any other key (except BatchNorm's num_batches_tracked) is an error.
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
        if arr.dtype not in (np.float32, np.float64, np.float16):
            raise CheckpointMismatchError(f"{path}: {key!r} has dtype {arr.dtype}, expected floating point")


def load_checkpoint(weights, expected_shapes, revision="main", dtype=np.float32):
    """Resolve, read and check a checkpoint.

    expected_shapes: a function config -> {key: shape}, given by the model module, so the check
    follows the checkpoint's own config (e.g. its number of labels).
    """
    folder, commit = resolve(weights, revision)
    config = _read_json(folder / CONFIG_FILE)
    preprocessor = _read_json(folder / PREPROCESSOR_FILE)
    weights_path = folder / WEIGHTS_FILE
    raw = read_safetensors(weights_path)
    expected = expected_shapes(config)
    check_params(raw, expected, path=str(weights_path))
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
