"""Compare two traces tensor by tensor, in data-flow order, and explain the first divergence.

    A, B = what to compare; B is the reference the errors are measured against.
    Each may be: a refimpl trace (`refimpl trace ... --out x.safetensors`), any safetensors file,
    an `.npz` file, or a folder of `.npy` files - one per tensor, named `<module.path>.npy`
    (e.g. `resnet.encoder.stages.0.layers.1.npy`; files in sub-folders are named by their
    relative path with `/` read as `.`), or a golden case folder (`refimpl golden`).

Per tensor common to both: shape check, max abs error max|A - B|, max rel error
max|A - B| / max|B|, and pass/fail with the rule

    max|A - B| <= atol + rtol * max|B|          (defaults: rtol 1e-4, atol 1e-6)

(a norm-wise rule: one bound per tensor, scaled by the tensor's magnitude, so values near zero
after a ReLU do not fail on rounding noise). A leading batch dimension of 1 present on one side
only is squeezed, not failed. NaN and inf must sit at the same places on both sides.

The first failing tensor in data-flow order is diagnosed (`diagnose`): shape mismatch, layout
transposed (NHWC vs NCHW, H and W swapped, a transposed matrix), NaN/inf, channel swap or
permutation, constant or per-channel offset, scale factor (or per-channel scale, or scale and
offset), else generic drift - numerical error that no simple transformation explains, which is
what a wrong weight, a wrong formula or accumulated rounding looks like.

Names: `name_map` renames tensors of either side before matching: `{"old": "new"}` for one
tensor, `{"prefix*": "other.prefix*"}` to rewrite a prefix. Data-flow order comes from whichever
side records it (a refimpl trace's `tensor_order`, B first), else from the file's own order.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refimpl.conformance.diagnose import diagnose
from refimpl.conformance.numerics import DEFAULT_ATOL, DEFAULT_RTOL, measure, num, shape_text, squeeze_batch
from refimpl.conformance.trace import decode_metadata, load_trace



# --- loading ------------------------------------------------------------------------------------

@dataclass
class Tensors:
    """Named tensors from one side of a comparison."""

    path: str
    kind: str  # "trace", "safetensors", "npz", "npy folder"
    tensors: dict
    metadata: dict = field(default_factory=dict)
    ordered: bool = False  # True when the order is a recorded data-flow order

    def describe(self):
        m = self.metadata
        bits = [self.kind, f"{len(self.tensors)} tensors"]
        if m.get("model"):
            bits.append(f"{m['model']} {m.get('dtype', '')}".strip())
        if m.get("refimpl_version"):
            bits.append(f"refimpl {m['refimpl_version']}")
        return f"{self.path} ({', '.join(bits)})"


def natural_key(name):
    """'layers.10' after 'layers.9'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def load_tensors(path):
    """Read a trace, a safetensors or npz file, or a folder of .npy files -> Tensors."""
    if isinstance(path, Tensors):
        return path
    p = Path(path)
    if p.is_dir():
        return _load_folder(p)
    if not p.exists():
        raise FileNotFoundError(f"no such file or folder: {p}")
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            tensors = {k: z[k] for k in z.files}
        return Tensors(str(p), "npz", tensors, {}, False)
    if p.suffix == ".npy":
        return Tensors(str(p), "npy", {p.stem: np.load(p, allow_pickle=False)}, {}, False)
    tensors, metadata = load_trace(p)
    ordered = isinstance(metadata.get("tensor_order"), list)
    kind = "trace" if metadata.get("format", "").startswith("refimpl-trace") else "safetensors"
    return Tensors(str(p), kind, tensors, metadata, ordered)


def _load_folder(folder):
    # A golden case folder keeps its tensors in tensors/ and its metadata in trace.json.
    if (folder / "tensors").is_dir() and not any(folder.glob("*.npy")):
        base = folder / "tensors"
        meta_dirs = (folder, base)
    else:
        base, meta_dirs = folder, (folder,)
    files = sorted(base.rglob("*.npy"))
    if not files:
        traces = sorted(folder.glob("*.safetensors"))
        if len(traces) == 1:
            return load_tensors(traces[0])
        raise FileNotFoundError(f"{folder}: no .npy files (expected one <module.path>.npy per tensor)")
    tensors = {}
    for f in files:
        name = f.relative_to(base).with_suffix("").as_posix().replace("/", ".")
        tensors[name] = np.load(f, allow_pickle=False)
    metadata, order = {}, None
    for d in meta_dirs:
        if (d / "trace.json").is_file():
            metadata = json.loads((d / "trace.json").read_text())
            order = metadata.get("tensor_order")
            break
        if (d / "order.txt").is_file():
            order = [line.strip() for line in (d / "order.txt").read_text().splitlines() if line.strip()]
            break
    if order:
        names = [n for n in order if n in tensors] + sorted((n for n in tensors if n not in set(order)), key=natural_key)
    else:
        names = sorted(tensors, key=natural_key)
    return Tensors(str(folder), "npy folder", {n: tensors[n] for n in names}, metadata, bool(order))


# --- names --------------------------------------------------------------------------------------

def parse_map(items=(), map_file=None):
    """`--map old=new` strings and a JSON {old: new} file -> one dict."""
    mapping = {}
    if map_file:
        data = json.loads(Path(map_file).read_text())
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ValueError(f"{map_file}: a name map must be a JSON object of strings {{\"old\": \"new\"}}")
        mapping.update(data)
    for item in items or ():
        old, sep, new = item.partition("=")
        if not sep or not old:
            raise ValueError(f"--map {item!r}: expected OLD=NEW")
        mapping[old] = new
    for old, new in mapping.items():
        if old.endswith("*") != new.endswith("*"):
            raise ValueError(f"name map {old!r} -> {new!r}: a prefix rule needs '*' at the end of both sides")
    return mapping


def rename(name, mapping):
    if name in mapping:
        return mapping[name]
    best = None
    for old, new in mapping.items():
        if old.endswith("*") and name.startswith(old[:-1]) and (best is None or len(old) > len(best[0])):
            best = (old, new)
    if best:
        return best[1][:-1] + name[len(best[0]) - 1:]
    return name


def _renamed(side, mapping):
    if not mapping:
        return side
    out = {}
    for name, value in side.tensors.items():
        new = rename(name, mapping)
        if new in out:
            raise ValueError(f"{side.path}: the name map sends two tensors to {new!r}")
        out[new] = value
    return Tensors(side.path, side.kind, out, side.metadata, side.ordered)


def flow_order(a, b):
    """Names of both sides in data-flow order: the recorded order of B, else of A, else A's own
    order; names the chosen side lacks are placed after their predecessor on the other side."""
    first, second = (b, a) if b.ordered or not a.ordered else (a, b)
    names = list(first.tensors)
    seen = set(names)
    prev = None
    for n in second.tensors:
        if n not in seen:
            names.insert(names.index(prev) + 1 if prev is not None else 0, n)
            seen.add(n)
        prev = n
    return names


# --- the report -----------------------------------------------------------------------------------

@dataclass
class Report:
    a: Tensors
    b: Tensors
    rtol: float
    atol: float
    rows: list  # dicts in data-flow order
    first: dict | None  # the first failing row, with "diagnosis"

    @property
    def compared(self):
        return [r for r in self.rows if r["status"] in ("ok", "fail")]

    @property
    def agree(self):
        return bool(self.compared) and all(r["status"] == "ok" for r in self.compared)

    def to_json(self):
        return {
            "agree": self.agree,
            "a": {"path": self.a.path, "kind": self.a.kind, "tensors": len(self.a.tensors), **_meta_summary(self.a.metadata)},
            "b": {"path": self.b.path, "kind": self.b.kind, "tensors": len(self.b.tensors), **_meta_summary(self.b.metadata)},
            "rule": "max|A - B| <= atol + rtol * max|B|",
            "rtol": self.rtol,
            "atol": self.atol,
            "summary": {
                "compared": len(self.compared),
                "failed": sum(r["status"] == "fail" for r in self.rows),
                "only_in_a": [r["name"] for r in self.rows if r["status"] == "only in A"],
                "only_in_b": [r["name"] for r in self.rows if r["status"] == "only in B"],
            },
            "first_divergence": self.first,
            "tensors": self.rows,
        }

    def text(self, all_rows=True):
        """The report as text; all_rows=False lists only the failing tensors."""
        lines = [f"A: {self.a.describe()}", f"B: {self.b.describe()} (reference)",
                 f"rule: max|A - B| <= atol + rtol * max|B|  (rtol {self.rtol:g}, atol {self.atol:g})", ""]
        width = max([len(r["name"]) for r in self.rows] + [6])
        lines.append(f"{'#':>3}  {'tensor':<{width}}  {'shape':<16} {'max abs':>10} {'max rel':>10}  result")
        for i, r in enumerate(self.rows, 1):
            if not all_rows and r["status"] != "fail":
                continue
            shape = shape_text(r["shape_b"] if r.get("shape_b") is not None else r["shape_a"])
            if r.get("shape_a") is not None and r.get("shape_b") is not None and r["shape_a"] != r["shape_b"]:
                shape = f"{shape_text(r['shape_a'])}/{shape}"
            if r["status"] in ("ok", "fail"):
                mark = "ok" if r["status"] == "ok" else "FAIL"
                if self.first and r["name"] == self.first["name"]:
                    mark += "  <- first divergence"
                lines.append(f"{i:>3}  {r['name']:<{width}}  {shape:<16} {_e(r['max_abs']):>10} {_e(r['max_rel']):>10}  {mark}")
            else:
                lines.append(f"{i:>3}  {r['name']:<{width}}  {shape:<16} {'':>10} {'':>10}  ({r['status']})")
        lines.append("")
        only_a = sum(r["status"] == "only in A" for r in self.rows)
        only_b = sum(r["status"] == "only in B" for r in self.rows)
        extra = []
        if only_a:
            extra.append(f"{only_a} only in A")
        if only_b:
            extra.append(f"{only_b} only in B")
        extra = f"; not compared: {', '.join(extra)}" if extra else ""
        failed = sum(r["status"] == "fail" for r in self.rows)
        if self.first:
            lines.append(f"first divergence: {self.first['name']}")
            lines.append(f"  diagnosis: {self.first['diagnosis']['message']}")
            lines.append(f"verdict: DISAGREE - {failed} of {len(self.compared)} compared tensors exceed the tolerance{extra}")
        else:
            lines.append(f"verdict: AGREE - all {len(self.compared)} compared tensors within tolerance{extra}")
        return "\n".join(lines)


def _e(x):
    return x if isinstance(x, str) else f"{x:.2e}"


def _meta_summary(m):
    return {k: m[k] for k in ("model", "dtype", "refimpl_version") if k in m}


def compare(a, b, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, name_map=None):
    """Compare A against the reference B (paths, Tensors, or dicts of arrays) -> Report."""
    a = _as_tensors(a, "A")
    b = _as_tensors(b, "B")
    a, b = _renamed(a, name_map), _renamed(b, name_map)
    names = flow_order(a, b)
    if not any(n in b.tensors for n in a.tensors):
        raise ValueError(
            f"no tensor names in common between {a.path} and {b.path} "
            f"(A has e.g. {list(a.tensors)[:3]}, B has e.g. {list(b.tensors)[:3]}); "
            "name files <module.path>.npy or map names with --map OLD=NEW / --map-file"
        )
    rows, first = [], None
    for name in names:
        ta, tb = a.tensors.get(name), b.tensors.get(name)
        row = {"name": name,
               "shape_a": list(np.shape(ta)) if ta is not None else None,
               "shape_b": list(np.shape(tb)) if tb is not None else None,
               "dtype_a": str(np.asarray(ta).dtype) if ta is not None else None,
               "dtype_b": str(np.asarray(tb).dtype) if tb is not None else None}
        if ta is None or tb is None:
            row["status"] = "only in A" if tb is None else "only in B"
            rows.append(row)
            continue
        xa, xb, note = squeeze_batch(np.asarray(ta), np.asarray(tb))
        if note:
            row["note"] = note
        if xa.shape != xb.shape:
            row.update(status="fail", max_abs="n/a", max_rel="n/a", shape_ok=False)
        else:
            m = measure(xa, xb, rtol, atol)
            row.update(status="ok" if m.pop("ok") else "fail", shape_ok=True,
                       **{k: num(v) if isinstance(v, float) else v for k, v in m.items()})
        if row["status"] == "fail" and first is None:
            first = {"name": name, "index": len(rows), "diagnosis": _jsonable(diagnose(ta, tb, rtol, atol))}
        rows.append(row)
    return Report(a, b, rtol, atol, rows, first)


def _jsonable(d):
    return {k: (num(v) if isinstance(v, float) else v) for k, v in d.items()}


def _as_tensors(x, label):
    if isinstance(x, Tensors):
        return x
    if isinstance(x, dict):
        return Tensors(f"<{label}: dict>", "dict", dict(x), {}, True)
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], dict):  # (tensors, metadata) from trace()
        return Tensors(f"<{label}: trace>", "trace", dict(x[0]), x[1], True)
    return load_tensors(x)


def save_npy_folder(folder, tensors, metadata=None):
    """Write tensors as `<name>.npy` files (the naming convention), plus trace.json holding the
    metadata and the data-flow order. Deterministic (np.save writes no timestamp)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in tensors.items():
        with open(folder / f"{name}.npy", "wb") as f:
            np.save(f, np.ascontiguousarray(value), allow_pickle=False)
    meta = dict(metadata or {})
    meta["tensor_order"] = list(tensors)
    (folder / "trace.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return folder


__all__ = ["compare", "diagnose", "measure", "load_tensors", "parse_map", "save_npy_folder", "Report", "Tensors",
           "decode_metadata"]
