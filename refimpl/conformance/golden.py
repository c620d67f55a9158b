"""Golden test sets: self-describing reference data another implementation checks itself against.

    >>> from refimpl.conformance.golden import export
    >>> manifest = export("golden/", model="resnet-50", images=["examples/cat.png"])

In the spirit of ONNX's backend test data (`test_data_set_0/input_0.pb, output_0.pb`), but with
every intermediate: for each input image, a folder with

    <case>/input.<ext>            the exact input bytes (what the hosted API would be sent)
    <case>/output.json            the final contract output (the hosted API's JSON)
    <case>/trace.json             the trace metadata: data-flow order, shapes, provenance
    <case>/tensors/<name>.npy     every named tensor: image, pixel_values, each layer's output...
                                  (or <case>/trace.safetensors with format="safetensors")

plus `manifest.json` (model, weights and input SHA-256, dtype, preprocessing, tolerances, and
every file with its SHA-256) and a `README.md` telling another implementation how to check
itself, with `refimpl compare` or by hand with numpy (`readme()` writes it).

Deterministic: the same images, weights and versions give byte-identical files (no timestamps,
sorted JSON keys, `np.save` and `save_trace` write no clocks or random state).
"""

import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from refimpl import __version__, registry
from refimpl.conformance.budgets import FACTOR, FLOOR, final_outputs, measure_budgets
from refimpl.conformance.compare import save_npy_folder
from refimpl.audit.judge import Tolerances
from refimpl.conformance.trace import save_trace, trace, weights_record
from refimpl.provenance import environment, sha256_file

FORMAT = "refimpl-golden/1"
FORMATS = ("npy", "safetensors")

def _json(obj):
    return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n"


def synthetic_images():
    """Two small deterministic test images (PNG bytes), used when no images are given."""
    from io import BytesIO

    from PIL import Image

    y, x = np.mgrid[0:120, 0:160].astype(np.float64)
    gradient = np.stack([255 * x / 159, 255 * y / 119, 128 + 100 * np.sin((x + y) / 9)], axis=-1)
    sy, sx = np.mgrid[0:128, 0:96]
    shapes = np.full((128, 96, 3), 30.0)
    shapes[20:70, 10:60] = (220, 40, 40)
    shapes[((sy - 90) ** 2 + (sx - 55) ** 2) < 500] = (40, 200, 90)
    out = {}
    for name, array in (("gradient", gradient), ("shapes", shapes)):
        buf = BytesIO()
        Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).save(buf, "PNG")
        out[name + ".png"] = buf.getvalue()
    return out


def _case_name(name, taken):
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem) or "image"
    candidate, i = stem, 2
    while candidate in taken:
        candidate, i = f"{stem}-{i}", i + 1
    taken.add(candidate)
    return candidate


def _prepare_out(out, overwrite):
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        manifest = out / "manifest.json"
        is_golden = manifest.is_file() and json.loads(manifest.read_text()).get("format") == FORMAT
        if not overwrite:
            raise FileExistsError(f"{out} is not empty (pass overwrite=True / --overwrite to replace a golden set)")
        if not is_golden:
            raise FileExistsError(f"{out} is not empty and is not a golden set: refusing to delete anything in it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def export(out, model="resnet-50", images=None, weights=None, revision=None, dtype="float32",
           format="npy", overwrite=False, progress=None, path="reference", **options):
    """Write a golden set for `images` (paths, or {name: bytes}; default: two synthetic images)
    to the folder `out`. model: a name or a loaded model. path: "reference" (default; the code
    held against transformers) or "fast", recorded in the manifest. options: output options as
    for `refimpl.run` (top_k, threshold, ...). Returns the manifest (a dict)."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if isinstance(model, str):
        model = registry.load(model, weights, revision, dtype, path)
    spec = registry.spec_of(model)
    if images is None or (not isinstance(images, dict) and not images):
        inputs = synthetic_images()
    elif isinstance(images, dict):
        inputs = dict(images)
    else:
        inputs = {}
        for p in images:
            key = str(p)
            inputs[key] = Path(p).read_bytes()
    out = _prepare_out(out, overwrite)
    # The budgets need refimpl's own float32 error on each tensor: the float64 twin of the model.
    twin = None
    if np.dtype(model.dtype) == np.float32:
        twin = registry.load(spec.name, model.checkpoint.folder, model.checkpoint.revision, "float64", "reference")
    weights = portable_weights(model)
    taken, cases, metadata, ops = set(), [], None, None
    for i, (source, data) in enumerate(inputs.items()):
        case = _case_name(source, taken)
        if progress:
            progress(i, len(inputs), case)
        folder = out / case
        folder.mkdir()
        ext = Path(source).suffix.lower() or ".bin"
        (folder / f"input{ext}").write_bytes(data)
        tensors, metadata = trace(data, model, **options)
        metadata["input"]["name"] = Path(source).name
        metadata["weights"] = weights
        budgets = measure_budgets(tensors, trace(data, twin, **options)[0]) if twin is not None else {}
        if ops is None:
            ops = tensor_ops(spec, tensors, model.checkpoint.config)
            for name, sign in relu_outputs(model).items():
                if name in tensors:
                    ops.setdefault(name, [])
                    ops[name] = {"ops": ops[name], **sign}
        per_case = {k: v for k, v in metadata.items() if k != "environment"}
        (folder / "output.json").write_text(_json(metadata["output"]))
        files = {"input": f"{case}/input{ext}", "output": f"{case}/output.json"}
        entries = []
        if format == "npy":
            save_npy_folder(folder / "tensors", tensors, {})
            (folder / "tensors" / "trace.json").unlink()  # the case's trace.json (below) holds it
            (folder / "trace.json").write_text(_json(dict(per_case, tensor_order=list(tensors))))
            files["trace"] = f"{case}/trace.json"
            for t, value in tensors.items():
                rel = f"{case}/tensors/{t}.npy"
                entries.append({"name": t, "file": rel, "shape": list(value.shape), "dtype": value.dtype.name,
                                "sha256": sha256_file(out / rel), **_extra(t, budgets, ops)})
        else:
            save_trace(folder / "trace.safetensors", tensors, per_case)
            files["trace"] = f"{case}/trace.safetensors"
            entries = [{"name": t, "shape": list(v.shape), "dtype": v.dtype.name, **_extra(t, budgets, ops)}
                       for t, v in tensors.items()]
        cases.append({
            "name": case,
            "files": {k: {"file": v, "sha256": sha256_file(out / v)} for k, v in files.items()},
            "input": {k: v for k, v in metadata["input"].items()},
            "output": metadata["output"],
            "tensors": entries,
        })
    manifest = {
        "format": FORMAT,
        "refimpl_version": __version__,
        "model": spec.name,
        "hosted_model": spec.hosted_name,
        "path": model.path,
        "dtype": np.dtype(model.dtype).name,
        "weights": weights,
        "preprocessing": model.checkpoint.preprocessor,
        "final_outputs": list(final_outputs(spec)),
        "files": {"config": "config.json", "labels": "labels.json", "checker": "check_golden.py"},
        "output_options": metadata["output_options"] if metadata else {},
        "environment": environment(),
        "tensor_format": format,
        "naming": "tensors are named by the checkpoint's module path; <case>/tensors/<name>.npy; "
                  "data-flow order = the order of each case's `tensors` list",
        "tolerances": {
            "rule": "per tensor: max|yours - golden| <= atol + rtol * max|golden|",
            **spec.compare_tolerance,
            "output": asdict(Tolerances()),
            "budgets": ({"rule": "per tensor: max|yours - golden| <= budget * max|golden| (each tensor's `budget`)",
                         "budget": "factor * f32_error + floor, f32_error = refimpl's own float32 vs float64 "
                                   "relative error on that tensor and input",
                         "factor": FACTOR, "floor": FLOOR} if twin is not None else None),
        },
        "cases": cases,
    }
    config = dict(model.checkpoint.config)
    (out / "config.json").write_text(_json(config))
    (out / "labels.json").write_text(_json({str(k): v for k, v in sorted(model.checkpoint.id2label.items())}))
    (out / "check_golden.py").write_text(CHECKER)
    (out / "manifest.json").write_text(_json(manifest))
    (out / "README.md").write_text(readme(manifest))
    return manifest


def portable_weights(model):
    """Weights provenance that means something on another machine: the repo id, revision, commit
    and SHA-256 of model.safetensors - never the exporting machine's local path."""
    from refimpl.pipeline.weights import is_repo_id

    w = weights_record(model)
    hub = isinstance(w["source"], str) and is_repo_id(w["source"]) and w["commit"] is not None
    return {"repo_id": w["source"] if hub else None, "revision": w["revision"], "commit": w["commit"],
            "sha256": w["sha256"],
            "origin": "Hugging Face hub" if hub else "a local folder (its path is not recorded; identify it by sha256)"}


def tensor_ops(spec, tensors, config):
    """{trace name: [what computes it, e.g. "conv 3x3/2 (pad 1)", "batch norm (eps 1e-05)", ...]}
    from the model's layer table (refimpl.viz.summary via the registry) at this input size."""
    pv = tensors.get("pixel_values")
    if pv is None or np.ndim(pv) != 4:
        return {}
    layers = spec.summary(int(pv.shape[2]), int(pv.shape[3]), config).layers
    ops = {}
    for name in tensors:
        kinds = [_op_words(layer.kind) for layer in layers if layer.name == name or layer.name.startswith(name + ".")]
        if kinds:
            ops[name] = kinds
    return ops


def _op_words(kind):
    m = re.match(r"conv (\d+)x(\d+)(?:/(\d+))?", kind)
    if m:  # refimpl's convolutions pad k // 2 on each side (ResNet's "same" padding)
        k, stride = int(m.group(1)), int(m.group(3) or 1)
        return f"conv {k}x{m.group(2)} stride {stride} pad {k // 2}"
    if kind == "batch norm":
        import inspect

        from refimpl.models import ops

        return f"batch norm (frozen statistics, eps {inspect.signature(ops.batch_norm).parameters['eps'].default:g})"
    return kind


def relu_outputs(model):
    """{trace name: {"activation": "relu", "nonnegative": True}} for the backbone tensors that are a
    ReLU's output (the stem, the first two conv-BN-ReLU steps of every bottleneck, each block and
    stage output), and {"nonnegative": True} for the poolings of them (the max pool, the global
    average pool). A port's ReLU outputs are >= 0 exactly and their zeros are exact zeros: a
    negative value there is a missing or misplaced activation, whatever its size.
    model: a loaded refimpl model (a ResNet or a DETR); its backbone is walked by resnet.blocks."""
    from refimpl.models import resnet

    names = model.backbone_names
    relu = {"activation": "relu", "nonnegative": True}
    _, _, stem_out, pool_out = names.stem()
    out = {stem_out: relu, pool_out: {"nonnegative": True}}
    for block in resnet.blocks(names):
        out.update({layer.out: relu for layer in block.layers if layer.relu})
        out[block.name] = relu
        if block.last_in_stage:
            out[names.stage(block.stage)] = relu
    if not hasattr(model, "hparams"):  # a classifier: its pooler too
        out["resnet.pooler"] = {"nonnegative": True}
    return out


def _extra(name, budgets, ops):
    out = {}
    if isinstance(ops.get(name), dict):  # {"ops": [...], "activation": ..., "nonnegative": ...}
        out.update({k: v for k, v in ops[name].items() if v != []})
    elif name in ops:
        out["ops"] = ops[name]
    if name in budgets:
        out["f32_error"] = budgets[name]["f32_error"]
        out["budget"] = budgets[name]["budget"]
    return out


def _fmt(budgets, key):
    return f"{budgets[key]:g}" if budgets else "n/a"


def readme(manifest):
    """The README.md of a golden set: what is in it and how to check an implementation against it."""
    m = manifest
    first = m["cases"][0] if m["cases"] else {"name": "CASE", "tensors": [{"name": "pixel_values"}]}
    names = [t["name"] for t in first["tensors"]]
    example = ", ".join(f"`{n}`" for n in names[:4]) + (f", ... `{names[-1]}`" if len(names) > 4 else "")
    npy = m["tensor_format"] == "npy"
    layout = (
        "    <case>/input.<ext>          the exact input bytes\n"
        "    <case>/output.json          the final output, in the hosted API's JSON format\n"
        + ("    <case>/trace.json           metadata: data-flow order (`tensor_order`), provenance\n"
           "    <case>/tensors/<name>.npy   every intermediate, one .npy file per tensor\n"
           if npy else
           "    <case>/trace.safetensors    every intermediate, with the metadata in its header\n")
    )
    cases = "\n".join(f"- `{c['name']}`: {c['input'].get('name', '')} ({c['input'].get('bytes', '?')} bytes, "
                      f"sha256 `{c['input']['sha256'][:16]}...`), {len(c['tensors'])} tensors" for c in m["cases"])
    tol = m["tolerances"]
    load = ("np.load(root / t[\"file\"])" if npy else
            "golden_tensors[t[\"name\"]]")
    preload = "" if npy else (
        "    from safetensors.numpy import load_file\n"
        "    golden_tensors = load_file(str(root / case[\"files\"][\"trace\"][\"file\"]))\n")
    return f"""# Golden test set: {m['model']} ({m['hosted_model']})

Made by refimpl {m['refimpl_version']} (pure-numpy reference implementation), dtype {m['dtype']},
weights sha256 `{m['weights']['sha256']}`. Every file is listed with its SHA-256 in
`manifest.json`.

## Layout

    README.md                   this file
    manifest.json               model, weights, preprocessing, tolerances, every case and file
{layout}
Cases:

{cases}

Tensors are named by the checkpoint's module path ({example}); `image` is the decoded RGB image
(H, W, 3) uint8, `pixel_values` the preprocessed input (N, C, H, W). All tensors keep the batch
axis (N = 1) and the NCHW layout. The order of a case's `tensors` list in `manifest.json` is the
data-flow order: the first tensor that disagrees is where your implementation starts to differ.

## Tolerance: a budget per tensor

Each tensor entry of `manifest.json` carries `f32_error`, refimpl's own float32 error against
its float64 run on that tensor and input, and `budget` = {_fmt(tol.get('budgets'), 'factor')} x f32_error +
{_fmt(tol.get('budgets'), 'floor')} (relative). A tensor passes when
`max|yours - golden| <= budget * max|golden|`: early layers are held to ~1e-6, late ones get the
room float32 really needs there. Without budgets (a float64 set): `max|yours - golden| <= atol +
rtol * max|golden|` with rtol = {tol['rtol']:g}, atol = {tol['atol']:g}.
Final outputs: same labels in the same order, scores within {tol['output']['score_atol']:g}, boxes
with IoU >= {tol['output']['iou_min']:g} and corners within {tol['output']['corner_px']:g} px.

## Check your implementation with refimpl

1. Run your implementation on `<case>/input.*` and save each intermediate you can as
   `<name>.npy` in a folder (`np.save(f"mine/{{name}}.npy", array)`), named like the files here.
   Different names? Map them: `--map yourname=ourname`, `--map 'yourprefix*=ourprefix*'`, or
   `--map-file names.json`. A missing batch axis is fine; missing tensors are listed, not failed.
2. Compare, with this golden case as the reference (B), from this folder:

       refimpl compare mine/ {first['name']}/ --rtol {tol['rtol']:g} --atol {tol['atol']:g}

   Exit code 0: you agree. 1: the report names the first tensor that exceeds the tolerance, in
   data-flow order, with a diagnosis (shape mismatch, layout transposed (NHWC vs NCHW), NaN/inf,
   channel swap or permutation (RGB vs BGR), constant or per-channel offset, scale factor,
   generic drift). `--json` gives the same as JSON.
3. Check the final output: `refimpl audit {first['name']}/input.* --model {m['model']} --claimed
   your_output.json` (needs the same weights), or compare with `<case>/output.json` by hand.

## Check your implementation with numpy only: `check_golden.py`

`check_golden.py` (numpy only, no refimpl) compares a folder of your `<name>.npy` files with one
case, in data-flow order, against each tensor's budget, and reports a shape or layout change as
such (it never reshapes; only a missing leading batch axis of 1 is forgiven):

    python check_golden.py {first['name']} mine/

Exit code 0: every tensor you gave is within budget AND the final outputs
({', '.join(f"`{n}`" for n in m.get('final_outputs', []))}) were among them; 1: a divergence (named);
3: incomplete (the final outputs are missing: nothing is certified).

## Test the model alone, and the preprocessing alone

- **Model alone**: feed `<case>/tensors/pixel_values.npy` ({'and `pixel_mask.npy`, ' if 'pixel_mask' in names else ''}float32, NCHW)
  to your network instead of your own preprocessing, dump the layers, run the checker. A
  divergence then is in the network, not in resizing.
- **Preprocessing alone**: run your preprocessing on `<case>/input.*` and compare your tensor with
  `pixel_values.npy` (the checker does this when you save it as `pixel_values.npy`). The
  algorithm, step by step (refimpl/pipeline/preprocess.py; parameters in `manifest.json`
  `preprocessing`, i.e. the checkpoint's preprocessor_config.json):
  1. decode: EXIF orientation applied, then Pillow `convert("RGB")` (the `image` tensor is the result);
  2. resize the uint8 image with Pillow (`resample` {m['preprocessing'].get('resample', '?')} = bicubic for 3), so the
     result is rounded to uint8; sizes as the preprocessor config says (ResNet: shortest edge to
     `int(224 / crop_pct)`, long side truncated with `int()`, then a center crop with offset
     `(H - 224) // 2`; DETR: shortest edge 800 unless the long side would pass 1333, short side
     `round()`ed half to even, long side truncated);
  3. rescale: `uint8 -> float64 * rescale_factor -> float32`;
  4. normalize in float32 with mean and std cast to float32; layout (1, 3, H, W).
- Files that stand alone: `config.json` (the checkpoint's architecture), `labels.json` (class
  index -> label), and each tensor's `ops` in `manifest.json` (kernel, stride, padding, BN eps,
  attention heads). A tensor that is a ReLU's output has `"activation": "relu"` and
  `"nonnegative": true` (its zeros are exact zeros; a pooling of ReLU outputs is only
  `"nonnegative"`): `check_golden.py` reports a negative value there as a missing ReLU, whatever
  its size.

## Check your implementation by hand, with numpy only

Replace `run_my_implementation` with a call to yours; it gets the input bytes and returns a
dict name -> numpy array of the tensors you want to check.

```python
import hashlib, json, pathlib
import numpy as np

root = pathlib.Path(".")  # this folder
manifest = json.loads((root / "manifest.json").read_text())
rtol, atol = manifest["tolerances"]["rtol"], manifest["tolerances"]["atol"]

def run_my_implementation(image_bytes):
    raise NotImplementedError("return {{tensor name: np.ndarray}} from your implementation")

failures = 0
for case in manifest["cases"]:
    files = case["files"]
    for entry in files.values():  # the golden files are intact
        assert hashlib.sha256((root / entry["file"]).read_bytes()).hexdigest() == entry["sha256"], entry["file"]
{preload}    mine = run_my_implementation((root / files["input"]["file"]).read_bytes())
    for t in case["tensors"]:  # data-flow order
        if t["name"] not in mine:
            continue
        golden = {load}
        ours = np.asarray(mine[t["name"]], dtype=np.float64)
        if ours.shape != golden.shape and ours.shape == golden.shape[1:] and golden.shape[0] == 1:
            ours = ours[None]  # only a missing batch axis of 1 is forgiven; nothing is reshaped
        if ours.shape != golden.shape:
            change = "layout change (axes permuted)" if sorted(ours.shape) == sorted(golden.shape) else "shape change"
            print(f"{{case['name']}}: first divergence at {{t['name']}}: {{change}}: yours {{ours.shape}}, golden {{golden.shape}}")
            failures += 1
            break
        error = np.abs(ours - golden).max()
        limit = (t["budget"] if "budget" in t else rtol) * np.abs(golden).max() + (0 if "budget" in t else atol)
        if not error <= limit:  # also catches NaN
            print(f"{{case['name']}}: first divergence at {{t['name']}}: max abs error {{error:.3g}} > {{limit:.3g}}")
            failures += 1
            break
    else:
        print(f"{{case['name']}}: all checked tensors agree")
raise SystemExit(1 if failures else 0)
```
"""


CHECKER = '''"""Check your implementation's tensors against one case of this golden set. numpy only.

    python check_golden.py CASE YOUR_FOLDER        (YOUR_FOLDER holds <tensor name>.npy files)

Exit 0: every tensor you gave is within its budget and the final outputs were among them;
1: the first divergence in data-flow order (a shape or layout change is named, never reshaped);
3: incomplete - the final outputs were not given; 2: bad arguments.
"""
import json
import pathlib
import sys

import numpy as np


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 2
    root = pathlib.Path(__file__).parent
    manifest = json.loads((root / "manifest.json").read_text())
    case = next((c for c in manifest["cases"] if c["name"] == argv[0]), None)
    if case is None:
        print(f"no case {argv[0]!r}; cases: {[c['name'] for c in manifest['cases']]}")
        return 2
    mine_dir = pathlib.Path(argv[1])
    tol = manifest["tolerances"]
    compared = []
    for t in case["tensors"]:  # data-flow order
        path = mine_dir / f"{t['name']}.npy"
        if not path.is_file():
            continue
        golden = np.load(root / t["file"]).astype(np.float64)
        ours = np.load(path).astype(np.float64)
        if ours.shape != golden.shape and ours.shape == golden.shape[1:] and golden.shape[0] == 1:
            ours = ours[None]  # a missing batch axis of 1 is forgiven, nothing else
        if ours.shape != golden.shape:
            change = "layout change (axes permuted)" if sorted(ours.shape) == sorted(golden.shape) else "shape change"
            print(f"first divergence at {t['name']}: {change}: yours {ours.shape}, golden {golden.shape}")
            return 1
        if t.get("nonnegative") and ours.size and ours.min() < 0:  # a ReLU output is >= 0 exactly
            what = "a ReLU output" if t.get("activation") == "relu" else "a pooling of ReLU outputs"
            print(f"first divergence at {t['name']}: negative values in {what}: "
                  f"{int((ours < 0).sum())} of {ours.size} (min {ours.min():.3g}): a missing or misplaced ReLU?")
            return 1
        scale = np.abs(golden).max() if golden.size else 0.0
        limit = t["budget"] * scale if "budget" in t else tol["atol"] + tol["rtol"] * scale
        error = np.abs(ours - golden).max() if golden.size else 0.0
        if not error <= limit:  # also catches NaN
            print(f"first divergence at {t['name']}: max abs error {error:.3g} > {limit:.3g}")
            return 1
        compared.append(t["name"])
        print(f"ok  {t['name']}  max rel {error / scale if scale else 0:.2e}")
    missing = [n for n in manifest.get("final_outputs", []) if n not in compared]
    if missing:
        print(f"INCOMPLETE: {len(compared)} tensors within budget, but the final outputs {missing} were not given")
        return 3
    print(f"all {len(compared)} tensors within budget, including the final outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


def check_files(folder):
    """Verify every file listed in a golden set's manifest against its SHA-256 -> list of problems."""
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    problems = []
    for case in manifest["cases"]:
        for entry in list(case["files"].values()) + [t for t in case["tensors"] if "file" in t]:
            path = folder / entry["file"]
            if not path.is_file():
                problems.append(f"missing: {entry['file']}")
            elif sha256_file(path) != entry["sha256"]:
                problems.append(f"sha256 mismatch: {entry['file']}")
    return problems
