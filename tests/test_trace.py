"""refimpl.trace and `refimpl trace`: names, metadata, the file format, and agreement with a
transformers trace made through forward hooks (float32, and float64 at 1e-12)."""

import copy
import hashlib
import json
import re

import numpy as np
import pytest

from hf_trace import hf_trace, small_checkpoint
from images import encode, pixels
from refimpl.api import load_resnet50
from refimpl.cli import main
from refimpl.conformance.compare import compare, save_npy_folder
from refimpl.conformance.trace import load_trace, save_trace, trace
from refimpl.pipeline.weights import sha256_file

PARAM_SUFFIXES = (".weight", ".bias", ".running_mean", ".running_var", ".num_batches_tracked")


@pytest.fixture(scope="module")
def model(resnet50_small):
    return resnet50_small


@pytest.fixture(scope="module")
def photo():
    from PIL import Image

    return encode(Image.fromarray(pixels(90, 120, seed=4)), "PNG")


@pytest.fixture(scope="module")
def traced(model, photo):
    return trace(photo, model=model)


@pytest.fixture(scope="module")
def resnet50_f64(resnet50_small_dir):
    return load_resnet50(resnet50_small_dir, dtype="float64")


@pytest.fixture(scope="module")
def resnet50_hf_f64(resnet50_hf):
    return copy.deepcopy(resnet50_hf).double()


def test_names_are_module_paths_and_cover_every_layer(traced, model, resnet50_hf):
    tensors, metadata = traced
    names = list(tensors)
    assert names[:2] == ["image", "pixel_values"] and names[-1] == "classifier.1"
    assert metadata["tensor_order"] == names
    modules = [n for n in names if n not in ("image", "pixel_values")]
    for name in modules:  # every traced name is a module of the checkpoint's model
        resnet50_hf.get_submodule(name)
    # every layer of the checkpoint is traced: the module owning each tensor, or its parent
    # (a conv+BN pair is traced once, as the pair's module) is in the trace
    layers = {re.sub(r"\.[a-z_]+$", "", k) for k in model.checkpoint.params}
    for layer in sorted(layers):
        assert layer in tensors or layer.rsplit(".", 1)[0] in tensors, f"{layer} is not traced"
    assert len(modules) == 2 + 16 * 4 + 4 + 4 + 2  # stem, pool; per block 3 convs + output; shortcuts; stages; pooler, logits


def test_metadata_records_provenance(traced, model, resnet50_small_dir, resnet50_dir, photo):
    tensors, m = traced
    assert m["format"] == "refimpl-trace/1"
    assert m["model"] == "resnet-50" and m["hosted_model"] == "@cf/microsoft/resnet-50"
    assert m["weights"]["sha256"] == sha256_file(resnet50_dir / "model.safetensors")
    assert m["input"]["sha256"] == hashlib.sha256(photo).hexdigest() and m["input"]["bytes"] == len(photo)
    assert m["input"]["decoded_shape"] == [90, 120, 3]
    assert m["dtype"] == "float32"
    assert m["preprocessing"] == json.loads((resnet50_small_dir / "preprocessor_config.json").read_text())
    assert m["weights"]["source"] == str(resnet50_small_dir)
    assert m["environment"]["numpy"] == np.__version__ and "blas" in m["environment"]
    # the final contract output, from the traced logits (the readable path; `model(photo)` runs
    # refimpl's fast path, equal within float rounding)
    expected = model(photo)
    assert [x["label"] for x in m["output"]] == [x["label"] for x in expected]
    assert [x["score"] for x in m["output"]] == pytest.approx([x["score"] for x in expected], rel=1e-5)
    assert m["refimpl_version"]
    assert tensors["image"].dtype == np.uint8 and tensors["image"].shape == (90, 120, 3)
    assert all(v.dtype == np.float32 for k, v in tensors.items() if k != "image")
    assert tensors["pixel_values"].shape == (1, 3, 64, 64)


def test_file_round_trip_keeps_order_and_metadata_and_is_deterministic(traced, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    tensors, metadata = traced
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_trace(a, tensors, metadata)
    save_trace(b, dict(tensors), copy.deepcopy(metadata))
    assert a.read_bytes() == b.read_bytes()
    back, meta = load_trace(a)
    assert list(back) == list(tensors) and meta == metadata
    for name in tensors:
        assert back[name].dtype == tensors[name].dtype and np.array_equal(back[name], tensors[name]), name
    # a plain safetensors file: other readers load it, and the metadata is string -> JSON text
    assert set(load_file(str(a))) == set(tensors)
    with safe_open(str(a), framework="np") as f:
        raw = f.metadata()
    assert all(isinstance(v, str) for v in raw.values())
    assert json.loads(raw["tensor_order"]) == list(tensors)
    assert json.loads(raw["output"]) == metadata["output"]
    header_len = int.from_bytes(a.read_bytes()[:8], "little")
    assert header_len % 8 == 0


def test_transformers_trace_through_hooks_compares_clean(traced, resnet50_hf, tmp_path, capsys):
    """The transformers model traced with forward hooks, written as <module.path>.npy files (the
    documented convention, no order file), agrees with our trace through `refimpl compare`."""
    tensors, metadata = traced
    ours = tmp_path / "ours.safetensors"
    save_trace(ours, tensors, metadata)
    theirs = hf_trace(resnet50_hf, list(tensors), tensors["pixel_values"])
    folder = tmp_path / "transformers"
    folder.mkdir()
    for name, value in theirs.items():
        np.save(folder / f"{name}.npy", value)
    assert main(["compare", str(folder), str(ours), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["agree"] and report["first_divergence"] is None
    assert report["summary"]["compared"] == len(tensors) - 2
    assert report["summary"]["only_in_b"] == ["image", "pixel_values"]
    assert [r["name"] for r in report["tensors"]] == list(tensors)  # our data-flow order
    assert max(r["max_rel"] for r in report["tensors"] if r["status"] == "ok") < 1e-5


def test_float64_trace_matches_transformers_float64(resnet50_f64, resnet50_hf_f64, photo):
    tensors, metadata = trace(photo, model=resnet50_f64)
    assert metadata["dtype"] == "float64"
    assert all(v.dtype == np.float64 for k, v in tensors.items() if k != "image")
    theirs = hf_trace(resnet50_hf_f64, list(tensors), tensors["pixel_values"])
    report = compare(theirs, (tensors, metadata), rtol=1e-12, atol=0)
    assert report.agree, report.text(all_rows=False)
    assert len(report.compared) == len(tensors) - 2
    assert max(r["max_rel"] for r in report.compared) <= 1e-12


def test_float32_error_budget_against_float64(traced, resnet50_f64, resnet50_hf, resnet50_hf_f64, photo):
    """float32 vs float64 gives the float32 error budget per layer: for us, and for transformers
    on the same pixels. Both stay within the default tolerance and are of the same size."""
    t32, m32 = traced
    t64, m64 = trace(photo, model=resnet50_f64)
    ours = compare((t32, m32), (t64, m64))
    assert ours.agree, ours.text(all_rows=False)
    hf32 = hf_trace(resnet50_hf, list(t32), t64["pixel_values"].astype(np.float32))
    hf64 = hf_trace(resnet50_hf_f64, list(t64), t64["pixel_values"])
    theirs = compare(hf32, hf64)
    assert theirs.agree
    worst_ours = max(r["max_rel"] for r in ours.compared)
    worst_theirs = max(r["max_rel"] for r in theirs.compared)
    assert 0 < worst_ours < 1e-5 and 0 < worst_theirs < 1e-5
    assert worst_ours < 10 * worst_theirs  # our float32 is no less accurate than the reference's


def test_trace_command_writes_a_file_or_a_folder(resnet50_small_dir, photo, tmp_path, capsys):
    image = tmp_path / "photo.png"
    image.write_bytes(photo)
    out = tmp_path / "photo.trace.safetensors"
    assert main(["trace", str(image), "--weights", str(resnet50_small_dir), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "wrote 78 tensors" in text and "data-flow order: image, pixel_values" in text
    tensors, metadata = load_trace(out)
    assert metadata["input"]["name"] == "photo.png" and len(tensors) == 78
    folder = tmp_path / "npy"
    assert main(["trace", str(image), "--model", "@cf/microsoft/resnet-50", "--weights", str(resnet50_small_dir),
                 "--dtype", "float64", "--out", str(folder), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["dtype"] == "float64" and (folder / "resnet.encoder.stages.3.npy").is_file()
    assert json.loads((folder / "trace.json").read_text())["tensor_order"] == list(tensors)
    assert np.load(folder / "classifier.1.npy").dtype == np.float64


def test_npy_folder_writer_is_the_naming_convention(traced, tmp_path):
    tensors, metadata = traced
    save_npy_folder(tmp_path, tensors, metadata)
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == sorted(f"{n}.npy" for n in tensors)


def test_trace_refuses_unknown_models_and_bad_inputs(model):
    from refimpl.errors import NotAnImageError, UnknownModelError

    with pytest.raises(UnknownModelError, match="unknown model"):
        trace(b"x", model="vgg-16")
    with pytest.raises(NotAnImageError):
        trace(b"not an image", model=model)
    tensors, metadata = trace(pixels(40, 50), model=model)  # an array: hashed as pixels
    assert metadata["input"]["kind"] == "pixels" and tensors["image"].shape == (40, 50, 3)


# --- DETR ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detr_small(tmp_path_factory, detr_timm_dir):
    """The session's synthesized DETR (timm layout) on inputs of at most 128 x 192 px."""
    return small_checkpoint(tmp_path_factory.mktemp("detr-small"), detr_timm_dir,
                            size={"shortest_edge": 128, "longest_edge": 192})


@pytest.fixture(scope="module")
def detr_small_hf(detr_small):
    """transformers' DETR on the same checkpoint: {dtype: model}."""
    from transformers import DetrForObjectDetection

    hf = DetrForObjectDetection.from_pretrained(detr_small, attn_implementation="eager").eval()
    return {"float32": hf, "float64": copy.deepcopy(hf).double()}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_detr_trace_names_and_agreement_with_transformers(detr_small, detr_small_hf, photo, dtype):
    """DETR traces: checkpoint module paths covering every layer (attention weights included), and
    agreement with transformers traced through forward hooks (float64: at 1e-12 relative)."""
    from fixtures_detr import hf_detr_trace

    tensors, metadata = trace(photo, "detr-resnet-50", weights=str(detr_small), dtype=dtype)
    names = list(tensors)
    assert names[:3] == ["image", "pixel_values", "pixel_mask"]
    assert names[-3:] == ["pred_boxes", "post_process.scores", "post_process.boxes"]
    assert metadata["model"] == "detr-resnet-50" and metadata["dtype"] == dtype
    assert metadata["output_options"] == {"shape": "reference", "threshold": 0.5, "wrap_uint16": False}
    assert sum(n.endswith(".attn_weights") for n in names) == 6 + 6 * 2
    keys = load_file_keys(detr_small / "model.safetensors")
    for name in names:  # every layer name is a module path of the checkpoint
        if name not in ("image", "pixel_values", "pixel_mask", "pred_boxes", "model.position_embedding",
                        "model.backbone.conv_encoder.mask") and not name.endswith(".attn_weights") \
                and not name.startswith("post_process."):
            assert any(k.startswith(name + ".") for k in keys) or name.endswith((".act1", ".act2", ".maxpool")), name
    layers = {re.sub(r"\.[a-z_]+$", "", k) for k in keys}
    # not modules with an output of their own: the stem's conv and BN (traced as act1, after the
    # ReLU) and the query embeddings (a learned input of every decoder layer)
    inputs = {"model.backbone.conv_encoder.model.conv1", "model.backbone.conv_encoder.model.bn1",
              "model.query_position_embeddings"}
    for layer in layers - inputs:  # every layer is traced (itself, or the block/attention that owns it)
        parts = layer.split(".")
        assert any(".".join(parts[:i]) in tensors for i in range(len(parts), 0, -1)), f"{layer} is not traced"

    calls, outputs = hf_detr_trace(detr_small_hf[dtype], names, tensors["pixel_values"], tensors["pixel_mask"])
    theirs = {n: out for n, (_, out) in calls.items()}
    theirs["pred_boxes"] = outputs.pred_boxes.numpy()
    # transformers' own post-processing, every query kept, boxes in the original image's pixels
    from transformers import DetrImageProcessor

    post = DetrImageProcessor().post_process_object_detection(outputs, threshold=-1.0,
                                                              target_sizes=[tensors["image"].shape[:2]])[0]
    theirs["post_process.scores"] = post["scores"].numpy()[None]
    theirs["post_process.boxes"] = post["boxes"].numpy()[None]
    report = compare(theirs, (tensors, metadata), **({"rtol": 1e-12, "atol": 0} if dtype == "float64" else {}))
    assert report.agree, report.text(all_rows=False)
    assert len(report.compared) == len(names) - 3  # all but image, pixel_values, pixel_mask


def load_file_keys(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return list(f.keys())


def test_detr_trace_post_process_is_what_the_contract_keeps(detr_small, photo):
    """post_process.boxes/scores are every query before the threshold: the contract's detections
    are exactly the queries scoring above it, with those boxes (xyxy pixels of the original image)."""
    tensors, metadata = trace(photo, "detr-resnet-50", weights=str(detr_small), threshold=0.0)
    scores, boxes = tensors["post_process.scores"][0], tensors["post_process.boxes"][0]
    h, w = tensors["image"].shape[:2]
    assert scores.shape == (100,) and boxes.shape == (100, 4)
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()  # corners, not (w, h)
    cx, cy = tensors["pred_boxes"][0, :, 0] * w, tensors["pred_boxes"][0, :, 1] * h
    np.testing.assert_allclose((boxes[:, 0] + boxes[:, 2]) / 2, cx, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose((boxes[:, 1] + boxes[:, 3]) / 2, cy, rtol=1e-5, atol=1e-3)
    kept = np.flatnonzero(scores > 0)
    assert [d["score"] for d in metadata["output"]] == [float(s) for s in scores[kept]]
    assert [list(d["box"].values()) for d in metadata["output"]] == [[float(v) for v in b] for b in boxes[kept]]
