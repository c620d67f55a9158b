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
import math
import re
from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path

import numpy as np

from .trace import decode_metadata, load_trace

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-6
ORDER_FILES = ("trace.json", "order.txt")


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


# --- one tensor ---------------------------------------------------------------------------------

def _num(x):
    """JSON-safe number: non-finite values as strings."""
    x = float(x)
    return x if math.isfinite(x) else str(x)


def _shape(s):
    return "x".join(str(d) for d in s) if len(s) else "scalar"


def _squeeze_batch(a, b):
    """Drop leading size-1 axes from the side that has more axes, if that makes the shapes equal."""
    if a.shape == b.shape:
        return a, b, None
    if a.ndim > b.ndim and a.shape[a.ndim - b.ndim:] == b.shape and all(d == 1 for d in a.shape[:a.ndim - b.ndim]):
        return a.reshape(b.shape), b, "B lacks A's leading axis of size 1 (ignored)"
    if b.ndim > a.ndim and b.shape[b.ndim - a.ndim:] == a.shape and all(d == 1 for d in b.shape[:b.ndim - a.ndim]):
        return a, b.reshape(a.shape), "A lacks B's leading axis of size 1 (ignored)"
    return a, b, None


def _float(x):
    x = np.asarray(x)
    return x.astype(np.float64) if x.dtype != np.float64 else x


def measure(a, b, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL):
    """Errors of A against the reference B (same shape): dict with max_abs, max_rel, limit, ok,
    plus nonfinite counts when NaN/inf appear."""
    a, b = _float(a), _float(b)
    fa, fb = np.isfinite(a), np.isfinite(b)
    out = {}
    same_nonfinite = np.array_equal(fa, fb) and np.array_equal(a[~fa], b[~fb], equal_nan=True)
    if not (fa.all() and fb.all()):
        out["nonfinite_a"] = int((~fa).sum())
        out["nonfinite_b"] = int((~fb).sum())
    both = fa & fb
    diff = np.abs(a[both] - b[both]) if both.any() else np.zeros(0)
    scale = float(np.abs(b[fb]).max()) if fb.any() else 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    limit = atol + rtol * scale
    if not same_nonfinite:  # NaN or inf where the other side has a number (or another one)
        max_abs = math.nan
    out.update(
        max_abs=max_abs,
        max_rel=(max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)),
        ref_max=scale,
        limit=limit,
        ok=bool(same_nonfinite and max_abs <= limit),
    )
    return out


# --- diagnosis ------------------------------------------------------------------------------------

def _close(a, b, rtol, atol):
    if a.shape != b.shape:
        return False
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return False
    scale = float(np.abs(b).max()) if b.size else 0.0
    return float(np.abs(a - b).max(initial=0.0)) <= atol + rtol * scale


def _perm_words(perm, ndim):
    if ndim == 4 and perm == (0, 2, 3, 1):
        return "A is channels-last (NHWC) where B is channels-first (NCHW)"
    if ndim == 4 and perm == (0, 3, 1, 2):
        return "A is channels-first (NCHW) where B is channels-last (NHWC)"
    if ndim == 4 and perm == (0, 1, 3, 2):
        return "height and width are swapped (the image or feature map is transposed)"
    if ndim == 2 and perm == (1, 0):
        return "A is B transposed (a transposed matrix)"
    if ndim >= 2 and perm == tuple(range(ndim - 2)) + (ndim - 1, ndim - 2):
        return "the last two axes are swapped (a transposed matrix per batch item)"
    return f"A's axes are B's in the order {perm}"


def _transposition(a, b, rtol, atol):
    """A permutation of B's axes that makes it equal A, other than the identity, or None."""
    if a.ndim != b.ndim or a.ndim < 2 or a.ndim > 6 or sorted(a.shape) != sorted(b.shape):
        return None
    for perm in permutations(range(b.ndim)):
        if perm == tuple(range(b.ndim)):
            continue
        if tuple(b.shape[i] for i in perm) != a.shape:
            continue
        if _close(a, np.transpose(b, perm), rtol, atol):
            return perm
    return None


def _slice_permutation(a, b, axis, rtol, atol):
    """If A equals B with some indices along `axis` permuted: the mapping {i: j} (A[i] = B[j])."""
    n = a.shape[axis]
    if n < 2:
        return None
    A = np.moveaxis(a, axis, 0).reshape(n, -1)
    B = np.moveaxis(b, axis, 0).reshape(n, -1)
    limit = atol + rtol * float(np.abs(B).max(initial=0.0))
    err = np.abs(A - B).max(axis=1)
    bad = np.flatnonzero(err > limit)
    if len(bad) < 2:
        return None
    if len(bad) > 4096:
        return None
    # Necessary conditions first, exact check only for the pairs that meet them: if A[i] == B[j]
    # within `limit` elementwise, then at a few sampled positions they differ by <= limit, their
    # sums by <= S * limit, their sums of squares by <= 2 * S * limit * (max|B| + limit).
    s, bmax = A.shape[1], float(np.abs(B).max(initial=0.0))
    probe = np.linspace(0, s - 1, min(s, 16)).astype(int)
    sig_a = np.concatenate([A[bad][:, probe], A[bad].sum(1, keepdims=True), (A[bad] ** 2).sum(1, keepdims=True)], 1)
    sig_b = np.concatenate([B[bad][:, probe], B[bad].sum(1, keepdims=True), (B[bad] ** 2).sum(1, keepdims=True)], 1)
    slack = 1e-9 * (np.abs(sig_b).max(0) + 1e-300)
    tol = np.concatenate([np.full(len(probe), limit), [s * limit, 2 * s * limit * (bmax + limit)]]) + slack
    candidates = [np.flatnonzero((np.abs(sig_b - sig_a[ia]) <= tol).all(1)) for ia in range(len(bad))]
    if any(len(c) == 0 for c in candidates) or sum(len(c) for c in candidates) * s > 5e8:
        return None  # some slice has no possible partner (or too many to check: not a permutation)
    mapping, used = {}, set()
    for ia, i in enumerate(bad):
        found = None
        for jb in candidates[ia]:
            j = bad[jb]
            if j != i and j not in used and np.abs(A[i] - B[j]).max() <= limit:
                found = j
                break
        if found is None:
            return None
        mapping[int(i)] = int(found)
        used.add(found)
    return mapping


def _axis_name(axis, ndim):
    if ndim == 4 and axis == 1:
        return "channels"
    if ndim == 4 and axis == 3:
        return "channels (last axis)"
    if ndim == 2 and axis == 1:
        return "classes/features"
    return f"indices along axis {axis}"


def _per_axis(a, b, axis):
    """Per-index least-squares offset and scale of A against B along `axis`."""
    n = a.shape[axis]
    A = np.moveaxis(a, axis, 0).reshape(n, -1)
    B = np.moveaxis(b, axis, 0).reshape(n, -1)
    offset = (A - B).mean(1)
    denom = (B * B).sum(1)
    scale = np.where(denom > 0, (A * B).sum(1) / np.where(denom > 0, denom, 1), 1.0)
    shape = [1] * a.ndim
    shape[axis] = n
    return offset.reshape(shape), scale.reshape(shape)


def _fmt(x):
    return f"{x:.6g}"


def diagnose(a, b, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL):
    """Why does A differ from the reference B? -> {"kind", "message", ...details}.

    kinds: "shape mismatch", "layout transposed", "NaN/inf", "channel swap", "channel permutation",
    "constant offset", "per-channel offset", "scale factor", "per-channel scale",
    "scale and offset", "generic drift"."""
    a0, b0 = np.asarray(a), np.asarray(b)
    a, b = _float(a0), _float(b0)
    if a.shape != b.shape:
        a2, b2, _ = _squeeze_batch(a, b)
        if a2.shape != b2.shape:
            perm = _transposition(a2, b2, rtol, atol)
            if perm is not None:
                return {"kind": "layout transposed", "axes": list(perm),
                        "message": f"layout transposed: {_perm_words(perm, b2.ndim)} "
                                   f"(A == B.transpose{perm}; shapes {_shape(a.shape)} vs {_shape(b.shape)})"}
            hint = ""
            if a.size == b.size:
                hint = "; same number of elements: a reshape or flatten in a different order?"
            elif sorted(a.shape) == sorted(b.shape):
                hint = "; same axis sizes in another order, but no transposition of B equals A"
            return {"kind": "shape mismatch", "message": f"shape mismatch: A is {_shape(a.shape)}, B is {_shape(b.shape)}{hint}"}
        a, b = a2, b2
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(fa, fb) or not np.array_equal(a[~fa], b[~fb], equal_nan=True):
        nan_a, inf_a = int(np.isnan(a).sum()), int(np.isinf(a).sum())
        nan_b, inf_b = int(np.isnan(b).sum()), int(np.isinf(b).sum())
        side, x = ("A", a) if (nan_a + inf_a) >= (nan_b + inf_b) else ("B", b)
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        what = "NaN" if np.isnan(x).any() else "inf"
        return {"kind": "NaN/inf", "nan_a": nan_a, "inf_a": inf_a, "nan_b": nan_b, "inf_b": inf_b,
                "first_index": list(first),
                "message": f"{what} in {side}: A has {nan_a} NaN and {inf_a} inf, B has {nan_b} NaN and {inf_b} inf "
                           f"(first at index {first})"}
    perm = _transposition(a, b, rtol, atol)
    if perm is not None:
        return {"kind": "layout transposed", "axes": list(perm),
                "message": f"layout transposed: {_perm_words(perm, b.ndim)} (A == B.transpose{perm})"}
    axes = [ax for ax in ([1, b.ndim - 1] + list(range(b.ndim))) if 0 <= ax < b.ndim]
    axes = [ax for i, ax in enumerate(axes) if ax not in axes[:i] and b.shape[ax] > 1 and not (ax == 0 and b.ndim > 2)]
    for axis in axes:
        mapping = _slice_permutation(a, b, axis, rtol, atol)
        if mapping:
            what = _axis_name(axis, b.ndim)
            if len(mapping) == 2:
                i, j = sorted(mapping)
                hint = " (RGB vs BGR?)" if b.shape[axis] == 3 and {i, j} == {0, 2} else ""
                return {"kind": "channel swap", "axis": axis, "swapped": [i, j],
                        "message": f"channel swap: {what} {i} and {j} are exchanged{hint} "
                                   f"(A[{i}] == B[{j}] and A[{j}] == B[{i}] along axis {axis})"}
            example = ", ".join(f"A[{i}] == B[{j}]" for i, j in list(mapping.items())[:4])
            return {"kind": "channel permutation", "axis": axis, "mapping": {str(k): v for k, v in mapping.items()},
                    "message": f"channel permutation: {len(mapping)} {what} are in a different order along axis {axis} "
                               f"({example}{', ...' if len(mapping) > 4 else ''})"}
    d = a - b
    c = float(d.mean())
    if _close(a - c, b, rtol, atol):
        return {"kind": "constant offset", "offset": c, "message": f"constant offset: A == B + {_fmt(c)}"}
    k = float((a * b).sum() / (b * b).sum()) if (b * b).sum() > 0 else 1.0
    if k != 0 and _close(a / k, b, rtol, atol):
        hint = ""
        if abs(k + 1) < 1e-3:
            hint = " (sign flipped)"
        elif abs(k - 255) / 255 < 1e-3 or abs(k * 255 - 1) < 1e-3:
            hint = " (0-255 vs 0-1 pixel range?)"
        return {"kind": "scale factor", "scale": k, "message": f"scale factor: A == {_fmt(k)} * B{hint}"}
    if b.ndim >= 2:
        axis = 1
        off, sc = _per_axis(a, b, axis)
        if _close(a - off, b, rtol, atol):
            moved = np.flatnonzero(np.abs(off.ravel()) > atol + rtol * float(np.abs(b).max()))
            return {"kind": "per-channel offset", "axis": axis, "offsets": off.ravel().tolist()[:16],
                    "channels": moved.tolist()[:16],
                    "message": f"per-channel offset along axis {axis}: {len(moved)} of {b.shape[axis]} channels shifted "
                               f"(e.g. channel {moved[0]} by {_fmt(off.ravel()[moved[0]])}; a wrong mean or bias?)"}
        if np.all(sc != 0) and _close(a / sc, b, rtol, atol):
            moved = np.flatnonzero(np.abs(sc.ravel() - 1) > 1e-6)
            return {"kind": "per-channel scale", "axis": axis, "scales": sc.ravel().tolist()[:16],
                    "channels": moved.tolist()[:16],
                    "message": f"per-channel scale along axis {axis}: {len(moved)} of {b.shape[axis]} channels scaled "
                               f"(e.g. channel {moved[0]} by {_fmt(sc.ravel()[moved[0]])}; a wrong std or gamma?)"}
    # scale and offset together (least squares): e.g. a different normalisation
    bm, am = b.mean(), a.mean()
    var = ((b - bm) ** 2).sum()
    if var > 0:
        k2 = float(((a - am) * (b - bm)).sum() / var)
        c2 = float(am - k2 * bm)
        if k2 != 0 and _close((a - c2) / k2, b, rtol, atol):
            return {"kind": "scale and offset", "scale": k2, "offset": c2,
                    "message": f"scale and offset: A == {_fmt(k2)} * B + {_fmt(c2)} (a different normalisation?)"}
    scale = float(np.abs(b).max()) if b.size else 0.0
    limit = atol + rtol * scale
    err = np.abs(d)
    worst = tuple(int(i) for i in np.unravel_index(int(err.argmax()), err.shape)) if err.size else ()
    frac = float((err > limit).mean()) if err.size else 0.0
    sa, sb = a.std(), b.std()
    corr = float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb)) if sa > 0 and sb > 0 else float("nan")
    return {"kind": "generic drift", "fraction_over": frac, "worst_index": list(worst), "correlation": _num(corr),
            "message": f"generic drift: {frac:.1%} of the elements exceed the tolerance, worst at index {worst} "
                       f"(A={_fmt(a[worst])}, B={_fmt(b[worst])}); correlation with B {corr:.6f}. No layout, "
                       "offset, scale or channel-order change explains it: look at this layer's weights and formula"}


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
            shape = _shape(r["shape_b"] if r.get("shape_b") is not None else r["shape_a"])
            if r.get("shape_a") is not None and r.get("shape_b") is not None and r["shape_a"] != r["shape_b"]:
                shape = f"{_shape(r['shape_a'])}/{shape}"
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
        xa, xb, note = _squeeze_batch(np.asarray(ta), np.asarray(tb))
        if note:
            row["note"] = note
        if xa.shape != xb.shape:
            row.update(status="fail", max_abs="n/a", max_rel="n/a", shape_ok=False)
        else:
            m = measure(xa, xb, rtol, atol)
            row.update(status="ok" if m.pop("ok") else "fail", shape_ok=True,
                       **{k: _num(v) if isinstance(v, float) else v for k, v in m.items()})
        if row["status"] == "fail" and first is None:
            first = {"name": name, "index": len(rows), "diagnosis": _jsonable(diagnose(ta, tb, rtol, atol))}
        rows.append(row)
    return Report(a, b, rtol, atol, rows, first)


def _jsonable(d):
    return {k: (_num(v) if isinstance(v, float) else v) for k, v in d.items()}


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
