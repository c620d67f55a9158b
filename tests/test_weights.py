"""The loader refuses every malformed checkpoint with an error naming the key or the file, and
keeps provenance (folder, revision, commit, SHA-256) of what it loaded."""

import hashlib
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from refimpl.models import resnet
from refimpl.pipeline import weights
from refimpl.errors import (
    BadWeightsFileError,
    CheckpointMismatchError,
    ConfigFileError,
    NonFiniteWeightsError,
    WeightsNotFoundError,
)


@pytest.fixture
def copy_dir(resnet50_dir, tmp_path):
    """A writable copy of the synthesized checkpoint (the session one is shared)."""
    dst = tmp_path / "ckpt"
    shutil.copytree(resnet50_dir, dst)
    return dst


def load(folder):
    return weights.load_checkpoint(folder, resnet.classifier_shapes)


def rewrite(folder, change):
    tensors = load_file(str(folder / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "model.safetensors"))


def test_loads_and_records_provenance(resnet50_dir):
    ck = load(resnet50_dir)
    expected = hashlib.sha256((resnet50_dir / "model.safetensors").read_bytes()).hexdigest()
    assert ck.sha256 == expected
    assert ck.provenance()["weights_sha256"] == expected
    assert ck.commit is None and ck.revision is None  # a local folder has no hub commit
    assert len(ck.id2label) == 1000 and ck.id2label[283] == "Persian cat"
    # every architecture tensor is present; BN step counters are dropped
    assert set(ck.params) == set(resnet.classifier_shapes(ck.config))
    assert not any(k.endswith("num_batches_tracked") for k in ck.params)


def test_parameter_count_matches_the_published_figure(resnet50_dir):
    """25,557,032 trainable parameters (microsoft/resnet-50): conv weights, BN affine, classifier."""
    shapes = resnet.classifier_shapes(load(resnet50_dir).config)
    trainable = {k: s for k, s in shapes.items() if not k.endswith(("running_mean", "running_var"))}
    assert resnet.num_params(trainable) == 25_557_032


def test_missing_key_is_named(copy_dir):
    rewrite(copy_dir, lambda t: t.pop("resnet.encoder.stages.2.layers.3.layer.1.convolution.weight"))
    with pytest.raises(CheckpointMismatchError, match=r"missing key 'resnet\.encoder\.stages\.2\.layers\.3\.layer\.1\.convolution\.weight'"):
        load(copy_dir)


def test_unexpected_key_is_named(copy_dir):
    rewrite(copy_dir, lambda t: t.__setitem__("resnet.extra.weight", np.zeros(3, np.float32)))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected key 'resnet\.extra\.weight'"):
        load(copy_dir)


def test_num_batches_tracked_is_allowed(copy_dir):
    tensors = load_file(str(copy_dir / "model.safetensors"))
    assert any(k.endswith("num_batches_tracked") for k in tensors)  # save_pretrained wrote them
    load(copy_dir)


def test_wrong_shape_is_named(copy_dir):
    rewrite(copy_dir, lambda t: t.__setitem__("classifier.1.bias", np.zeros(999, np.float32)))
    with pytest.raises(CheckpointMismatchError, match=r"'classifier\.1\.bias' has shape \(999,\)"):
        load(copy_dir)


def test_wrong_dtype_is_named(copy_dir):
    rewrite(copy_dir, lambda t: t.__setitem__("classifier.1.bias", np.zeros(1000, np.int32)))
    with pytest.raises(CheckpointMismatchError, match=r"'classifier\.1\.bias' has dtype int32"):
        load(copy_dir)


def test_truncated_file_is_refused(copy_dir):
    path = copy_dir / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BadWeightsFileError, match="model.safetensors is not a valid safetensors file"):
        load(copy_dir)


@pytest.mark.parametrize("content", [b"", b"hello, I am not a tensor file", b"\x00" * 64])
def test_garbage_file_is_refused(copy_dir, content):
    (copy_dir / "model.safetensors").write_bytes(content)
    with pytest.raises(BadWeightsFileError, match="model.safetensors"):
        load(copy_dir)


@pytest.mark.parametrize("head", [b"PK\x03\x04", b"\x80\x02}q\x00"])
def test_pickle_is_never_loaded(copy_dir, head):
    (copy_dir / "model.safetensors").write_bytes(head + b"\x00" * 100)
    with pytest.raises(BadWeightsFileError, match="pickle/zip file, not safetensors: refusing"):
        load(copy_dir)


def test_only_pickle_present_says_so(copy_dir):
    (copy_dir / "model.safetensors").rename(copy_dir / "pytorch_model.bin")
    with pytest.raises(WeightsNotFoundError, match="found pytorch_model.bin: pickle files are never loaded"):
        load(copy_dir)


@pytest.mark.parametrize("name", ["config.json", "preprocessor_config.json"])
def test_missing_config_is_named(copy_dir, name):
    (copy_dir / name).unlink()
    with pytest.raises(WeightsNotFoundError, match=name):
        load(copy_dir)


def test_bad_json_is_named(copy_dir):
    (copy_dir / "config.json").write_text("{not json")
    with pytest.raises(BadWeightsFileError, match="config.json is not valid JSON"):
        load(copy_dir)


def test_other_architecture_config_is_refused(copy_dir):
    """A config.json of another family member beside ResNet-50's weights: the strict check names the
    first tensor that disagrees; loading it as resnet-50 names the field that differs."""
    from refimpl import registry

    config = json.loads((copy_dir / "config.json").read_text())
    config["depths"] = [2, 2, 2, 2]
    (copy_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected key 'resnet\.encoder\.stages\.0\.layers\.2\."):
        load(copy_dir)
    with pytest.raises(CheckpointMismatchError, match=r"depths=\[2, 2, 2, 2\] \(the entry has \[3, 4, 6, 3\]\)"):
        registry.load("resnet-50", copy_dir)
    config["layer_type"] = "preactivation"
    (copy_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match="layer_type=preactivation"):
        load(copy_dir)


def test_nonexistent_folder_is_not_a_repo_id(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="no such folder"):
        load(tmp_path / "nowhere" / "at" / "all")


def test_unreachable_hub_says_how_to_pass_a_folder(monkeypatch, tmp_path):
    """Offline, a repo id that is not cached gives an error that says so and names --weights DIR."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(WeightsNotFoundError) as e:
        weights.resolve("microsoft/resnet-50", "main")
    assert "could not get 'microsoft/resnet-50' at revision 'main' from the Hugging Face Hub" in str(e.value)
    assert "--weights DIR" in str(e.value)


def test_repo_id_resolves_from_the_cache_with_its_commit(monkeypatch, tmp_path, resnet50_dir):
    """A repo id is looked up in the standard HF cache layout; the snapshot folder name is the
    resolved commit, kept for provenance. (The layout is built by hand: no network here.)"""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf-home" / "hub" / "models--microsoft--resnet-50"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in weights.CHECKPOINT_FILES:
        shutil.copy(resnet50_dir / f, snap / f)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    ck = weights.load_checkpoint("microsoft/resnet-50", resnet.classifier_shapes, revision="main")
    assert ck.commit == commit and ck.revision == "main" and ck.source == "microsoft/resnet-50"


# --- hardening (issue 14): format by structure, poisoned weights, dtypes, configs ---------------

def header_length(path):
    with open(path, "rb") as f:
        return int.from_bytes(f.read(8), "little")


def test_header_length_with_low_byte_0x80_is_safetensors(copy_dir):
    """Item 4: a valid file whose 8-byte header length has 0x80 as its low byte was called 'a
    pickle/zip file' (about one file in 256). Re-save with metadata padding the header to 128 + 256k."""
    from safetensors.numpy import save

    tensors = load_file(str(copy_dir / "model.safetensors"))
    base = int.from_bytes(save(tensors, metadata={"format": "pt", "note": ""})[:8], "little")
    note = "x" * ((0x80 - base) % 256)  # the header is JSON padded with spaces to a multiple of 8
    save_file(tensors, str(copy_dir / "model.safetensors"), metadata={"format": "pt", "note": note})
    assert header_length(copy_dir / "model.safetensors") % 256 == 0x80
    ck = load(copy_dir)
    np.testing.assert_array_equal(ck.params["classifier.1.bias"], tensors["classifier.1.bias"])


def test_header_starting_like_a_pickle_protocol_is_safetensors(tmp_path):
    """Even the first TWO bytes of a pickle (0x80, protocol 2) can be a header length (640): the
    file is told by whether the header parses, not by its first bytes."""
    path = tmp_path / "model.safetensors"
    for k in range(700):
        save_file({"a": np.zeros(3, np.float32), "b" * (k + 1): np.ones(2, np.float32)}, str(path))
        if header_length(path) == 0x0280:
            break
    assert path.read_bytes()[:2] == b"\x80\x02"
    assert sorted(weights.read_safetensors(path)) == ["a", "b" * (k + 1)]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused_with_the_tensor_named(copy_dir, value):
    """Item 5: a NaN in a tensor loaded silently and produced "score": NaN."""
    def poison(t):
        t["resnet.encoder.stages.2.layers.3.layer.1.convolution.weight"][0, 0, 0, 0] = value
    rewrite(copy_dir, poison)
    with pytest.raises(NonFiniteWeightsError,
                       match=r"'resnet\.encoder\.stages\.2\.layers\.3\.layer\.1\.convolution\.weight' holds 1 non-finite"):
        load(copy_dir)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_weights_other_than_float32_are_refused(copy_dir, dtype):
    """Item 5: float16 tensors loaded silently. The official checkpoints are float32; refimpl
    refuses other dtypes rather than converting them behind the user's back."""
    rewrite(copy_dir, lambda t: t.__setitem__("classifier.1.weight", t["classifier.1.weight"].astype(dtype)))
    with pytest.raises(CheckpointMismatchError, match=rf"'classifier\.1\.weight' has dtype {np.dtype(dtype)}, "
                                                      "expected float32"):
        load(copy_dir)


def write_json(folder, name, value):
    (folder / name).write_text(json.dumps(value))


def edit_config(folder, change, name="config.json"):
    config = json.loads((folder / name).read_text())
    change(config)
    write_json(folder, name, config)


@pytest.mark.parametrize("value, fragment", [
    ([1, 2], "config.json must be a JSON object, got an array"),
    ("resnet", "config.json must be a JSON object, got a string"),
    (None, "config.json must be a JSON object, got null"),
])
def test_config_that_is_not_an_object(copy_dir, value, fragment):
    """Item 6: a config.json that is a list or a string was a traceback."""
    write_json(copy_dir, "config.json", value)
    with pytest.raises(ConfigFileError, match=fragment) as e:
        load(copy_dir)
    assert e.value.code == 5007 and e.value.status == 500


@pytest.mark.parametrize("id2label, fragment", [
    (["tench", "goldfish"], "'id2label' must be an object"),
    ({"0": "tench", "1": 7}, r"'id2label'\['1'\] must be a string"),
    ({"0": "tench", "one": "goldfish"}, "key 'one' is not a non-negative integer"),
    ({"0": "tench", "-1": "goldfish"}, "key '-1' is not a non-negative integer"),
    ({"0": "tench", "5": "goldfish"}, r"keys must be 0\.\.1, each once"),
    ({"0": "tench", "00": "goldfish"}, r"keys must be 0\.\.1, each once"),
])
def test_malformed_id2label_is_named(copy_dir, id2label, fragment):
    edit_config(copy_dir, lambda c: c.__setitem__("id2label", id2label))
    with pytest.raises(ConfigFileError, match=fragment):
        load(copy_dir)


@pytest.mark.parametrize("num_labels", ["1000", 0, -3, 1.5, True, 10**9])
def test_malformed_num_labels_is_named(copy_dir, num_labels):
    def change(c):
        c.pop("id2label")
        c.pop("label2id", None)
        c["num_labels"] = num_labels
    edit_config(copy_dir, change)
    with pytest.raises(ConfigFileError, match="'num_labels' must be an integer"):
        load(copy_dir)


def test_preprocessor_config_that_is_not_an_object(copy_dir):
    write_json(copy_dir, "preprocessor_config.json", ["size", 224])
    with pytest.raises(ConfigFileError, match="preprocessor_config.json must be a JSON object"):
        load(copy_dir)


@pytest.mark.parametrize("change, fragment", [
    (lambda c: c.__setitem__("size", {"shortest_edge": 200000}), "more than refimpl's limit of 4096"),
    (lambda c: c.__setitem__("crop_pct", 1e-6), "resizes to 224000000 pixels"),
    (lambda c: c.__setitem__("crop_pct", float("inf")), "'crop_pct' must be a positive number"),
    (lambda c: c.__setitem__("resample", "bicubic"), "unknown resample"),
    (lambda c: c.__setitem__("image_std", [0.2, 0.2]), "'image_std' must be 3 finite numbers"),
])
def test_preprocessor_config_is_refused_at_load(copy_dir, change, fragment):
    """Item 6: a preprocessor_config.json asking for a 112 GiB resize was a traceback (and only on
    the first image). Now it is refused when the model loads, naming the file and the field."""
    from refimpl.pipeline.loaded import ResNet50

    edit_config(copy_dir, change, "preprocessor_config.json")
    with pytest.raises(ConfigFileError, match=r"preprocessor_config\.json: preprocessor config: .*" + fragment):
        ResNet50.load(copy_dir)


@pytest.mark.parametrize("header, fragment", [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, "needs 8 bytes"),
    ({"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, "unknown dtype"),
    ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, "non-negative integers"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 400]}}, "not within"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}, "overlap"),
    ({"a": {"dtype": "F32", "shape": [1]}}, "exactly dtype, shape and data_offsets"),
    ({"__metadata__": {"n": 1}}, "__metadata__"),
])
def test_hostile_headers_are_named(tmp_path, header, fragment):
    raw = json.dumps(header).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0" * 8)
    with pytest.raises(BadWeightsFileError, match=fragment):
        weights.read_safetensors(path)
