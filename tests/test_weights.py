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
from refimpl.errors import BadWeightsFileError, CheckpointMismatchError, WeightsNotFoundError


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
    config = json.loads((copy_dir / "config.json").read_text())
    config["depths"] = [2, 2, 2, 2]
    (copy_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match=r"depths=\[2, 2, 2, 2\]"):
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
