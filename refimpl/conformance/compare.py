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

The first failing tensor in data-flow order is diagnosed (`diagnose`, which walks the diagnosis
catalogue's "tensor" entries, refimpl/diagnoses/; `refimpl diagnoses` lists them): shape mismatch,
layout transposed (NHWC vs NCHW, H and W swapped, a transposed matrix), NaN/inf, channel swap or
permutation, constant or per-channel offset, scale factor (or per-channel scale, or scale and
offset), ..., else generic drift - numerical error that no simple transformation explains, which
is what a wrong weight, a wrong formula or accumulated rounding looks like. Given the checkpoint's
parameters (`params=`), a divergence at a batch norm's output is checked against that BN's
running_var (another eps); given the image and the preprocessor config (`image=`,
`preprocessor=`), one at `pixel_values` against candidate resize filters.

Names: `name_map` renames tensors of either side before matching: `{"old": "new"}` for one
tensor, `{"prefix*": "other.prefix*"}` to rewrite a prefix. Data-flow order comes from whichever
side records it (a refimpl trace's `tensor_order`, B first), else from the file's own order.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refimpl.diagnoses.tensor import diagnose
from refimpl.numerics import DEFAULT_ATOL, DEFAULT_RTOL, measure, num, shape_text, squeeze_batch
from refimpl.conformance.trace import decode_metadata, load_trace
from refimpl.models.resnet import BN_EPS



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
#
# A name map is an ordered dict {source pattern: target or [targets]}; one tensor may get several
# names (a stage's output is also its last block's output). Source patterns, tried in this order:
#   exact name                          "head.fc": "classifier.1"
#   captures                            "layer{S}.{B}.relu#2": "resnet.encoder.stages.{S-1}.layers.{B}"
#                                       ({X} matches one name part without dots; the target may use
#                                       {X}, {X+n}, {X-n} with integer arithmetic)
#   regular expression                  "re:^body/(\\d+)$": "resnet.encoder.stages.\\1" (full match)
#   prefix (longest wins)               "body.stage*": "resnet.encoder.stages.*"

_CAPTURE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TARGET = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:([+-])(\d+))?\}")


def parse_map(items=(), map_file=None):
    """`--map old=new` strings and a JSON map file {old: new or [new, ...]} -> one ordered dict."""
    mapping = {}
    if map_file:
        mapping.update(read_map_file(map_file))
    for item in items or ():
        old, sep, new = item.partition("=")
        if not sep or not old:
            raise ValueError(f"--map {item!r}: expected OLD=NEW")
        mapping[old] = new
    check_map(mapping)
    return mapping


def read_map_file(path):
    """A JSON object {old: new or [new, ...]}; keys starting with "_" are comments."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a name map must be a JSON object {{\"old\": \"new\" or [\"new\", ...]}}")
    out = {}
    for k, v in data.items():
        if k.startswith("_"):
            continue
        if not (isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(x, str) for x in v))):
            raise ValueError(f"{path}: {k!r} must map to a name or a list of names, got {v!r}")
        out[k] = v
    check_map(out, str(path))
    return out


def _targets(value):
    return [value] if isinstance(value, str) else list(value)


def check_map(mapping, where="name map"):
    for old, new in mapping.items():
        for target in _targets(new):
            if old.startswith("re:"):
                try:
                    re.compile(old[3:])
                except re.error as e:
                    raise ValueError(f"{where}: {old!r} is not a valid regular expression: {e}") from e
            elif old.endswith("*") != target.endswith("*"):
                raise ValueError(f"{where} {old!r} -> {target!r}: a prefix rule needs '*' at the end of both sides")
            elif not old.startswith("re:"):
                unknown = set(_TARGET_NAMES(target)) - set(_CAPTURE.findall(old))
                if unknown:
                    raise ValueError(f"{where} {old!r} -> {target!r}: {sorted(unknown)} not captured on the left")


def _TARGET_NAMES(target):
    return [m.group(1) for m in _TARGET.finditer(target)]


def _capture_regex(pattern):
    parts, last = [], 0
    for m in _CAPTURE.finditer(pattern):
        parts.append(re.escape(pattern[last:m.start()]))
        parts.append(f"(?P<{m.group(1)}>[^.#/]+)")
        last = m.end()
    parts.append(re.escape(pattern[last:]))
    return re.compile("".join(parts))


def _fill(target, groups):
    def sub(m):
        value = groups[m.group(1)]
        if m.group(2):
            if not value.isdigit():
                raise ValueError(f"name map: {{{m.group(1)}{m.group(2)}{m.group(3)}}} needs a number, got {value!r}")
            value = str(int(value) + (1 if m.group(2) == "+" else -1) * int(m.group(3)))
        return value
    return _TARGET.sub(sub, target)


def rename_all(name, mapping):
    """Every name `name` gets under `mapping` (see above); [name] when no rule applies."""
    if not mapping:
        return [name]
    if name in mapping:
        return _targets(mapping[name])
    for old, new in mapping.items():
        if old.startswith("re:"):
            m = re.fullmatch(old[3:], name)
            if m:
                return [m.expand(t) for t in _targets(new)]
        elif "{" in old:
            m = _capture_regex(old).fullmatch(name)
            if m:
                return [_fill(t, m.groupdict()) for t in _targets(new)]
    best = None
    for old, new in mapping.items():
        if old.endswith("*") and not old.startswith("re:") and name.startswith(old[:-1]) \
                and (best is None or len(old) > len(best[0])):
            best = (old, new)
    if best:
        return [t[:-1] + name[len(best[0]) - 1:] for t in _targets(best[1])]
    return [name]


def rename(name, mapping):
    """The first name `name` gets under `mapping`."""
    return rename_all(name, mapping)[0]


def _renamed(side, mapping):
    if not mapping:
        return side
    out = {}
    for name, value in side.tensors.items():
        for new in rename_all(name, mapping):
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

# Verdicts: "agree" only when every required tensor (at least the final outputs) was compared and
# every compared tensor is within its tolerance; "disagree" when one is not (whatever else is
# missing: a divergence found is a divergence); "incomplete" when nothing failed but a required
# tensor was not compared - an oracle that certifies on the input alone is worse than none.
EXIT_CODES = {"agree": 0, "disagree": 1, "incomplete": 3}


@dataclass
class Report:
    """The comparison, JSON-able with `to_json()` (keys documented in docs/conformance.md)."""

    a: Tensors
    b: Tensors
    rtol: float
    atol: float
    rows: list  # dicts in data-flow order
    first: dict | None  # the first failing row, with "diagnosis"
    required: list = field(default_factory=list)  # names that must be compared for "agree"
    required_why: str = ""  # where `required` came from
    budgets: dict | None = None  # name -> relative budget, when per-tensor budgets were used

    @property
    def compared(self):
        return [r for r in self.rows if r["status"] in ("ok", "fail")]

    @property
    def missing_required(self):
        done = {r["name"] for r in self.compared}
        return [n for n in self.required if n not in done]

    @property
    def verdict(self):
        if self.first is not None or any(r["status"] == "fail" for r in self.rows):
            return "disagree"
        if not self.compared or self.missing_required:
            return "incomplete"
        return "agree"

    @property
    def agree(self):
        return self.verdict == "agree"

    @property
    def exit_code(self):
        return EXIT_CODES[self.verdict]

    def to_json(self):
        return {
            "verdict": self.verdict,
            "agree": self.agree,
            "a": {"path": self.a.path, "kind": self.a.kind, "tensors": len(self.a.tensors), **_meta_summary(self.a.metadata)},
            "b": {"path": self.b.path, "kind": self.b.kind, "tensors": len(self.b.tensors), **_meta_summary(self.b.metadata)},
            "rule": self.rule,
            "rtol": self.rtol,
            "atol": self.atol,
            "required": self.required,
            "required_why": self.required_why,
            "missing_required": self.missing_required,
            "summary": {
                "compared": len(self.compared),
                "failed": sum(r["status"] == "fail" for r in self.rows),
                "reference_tensors": len(self.b.tensors),
                "only_in_a": [r["name"] for r in self.rows if r["status"] == "only in A"],
                "only_in_b": [r["name"] for r in self.rows if r["status"] == "only in B"],
            },
            "first_divergence": self.first,
            "tensors": self.rows,
        }

    @property
    def rule(self):
        if self.budgets is not None:
            return "per tensor: max|A - B| <= budget * max|B| (budget: docs/conformance.md, Budgets)"
        return "max|A - B| <= atol + rtol * max|B|"

    def text(self, all_rows=True):
        """The report as text; all_rows=False lists only the failing tensors."""
        rule = self.rule if self.budgets is not None else f"{self.rule}  (rtol {self.rtol:g}, atol {self.atol:g})"
        lines = [f"A: {self.a.describe()}", f"B: {self.b.describe()} (reference)", f"rule: {rule}", ""]
        width = max([len(r["name"]) for r in self.rows] + [6])
        extra_head = f" {'budget':>9} {'headroom':>9}" if self.budgets is not None else ""
        lines.append(f"{'#':>3}  {'tensor':<{width}}  {'shape':<16} {'max abs':>10} {'max rel':>10}{extra_head}  result")
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
                extra = (f" {_e(r.get('budget', 'n/a')):>9} {_h(r.get('headroom', 'n/a')):>9}"
                         if self.budgets is not None else "")
                lines.append(f"{i:>3}  {r['name']:<{width}}  {shape:<16} {_e(r['max_abs']):>10} {_e(r['max_rel']):>10}{extra}  {mark}")
            else:
                lines.append(f"{i:>3}  {r['name']:<{width}}  {shape:<16} {'':>10} {'':>10}  ({r['status']})")
        lines.append("")
        lines += self.summary_lines()
        return "\n".join(lines)

    def summary_lines(self):
        only_a = sum(r["status"] == "only in A" for r in self.rows)
        only_b = sum(r["status"] == "only in B" for r in self.rows)
        extra = []
        if only_a:
            extra.append(f"{only_a} only in A")
        if only_b:
            extra.append(f"{only_b} only in B")
        extra = f"; not compared: {', '.join(extra)}" if extra else ""
        failed = sum(r["status"] == "fail" for r in self.rows)
        n = len(self.compared)
        lines = [f"coverage: {n} of the reference's {len(self.b.tensors)} tensors compared; "
                 f"required ({self.required_why}): {', '.join(self.required) or 'none'}"]
        verdict = self.verdict
        if verdict == "disagree":
            lines.append(f"first divergence: {self.first['name']}")
            lines.append(f"  diagnosis: {self.first['diagnosis']['message']}")
            lines.append(f"verdict: DISAGREE - {failed} of {n} compared tensors exceed the tolerance{extra}")
        elif verdict == "incomplete":
            missing = self.missing_required
            lines.append(f"verdict: INCOMPLETE - {n} compared tensors within tolerance, but not compared: "
                         f"{', '.join(missing) if missing else 'anything'} (required){extra}")
        else:
            lines.append(f"verdict: AGREE - all {n} compared tensors within tolerance, "
                         f"including {', '.join(self.required)}{extra}")
        return lines


def _e(x):
    return x if isinstance(x, str) else f"{x:.2e}"


def _h(x):
    return x if isinstance(x, str) else (f"{x:.3g}x" if x < 1e6 else ">1e6x")


def _meta_summary(m):
    return {k: m[k] for k in ("model", "dtype", "refimpl_version") if k in m}


def required_outputs(a, b):
    """(names, why): the final outputs of the model the reference's metadata names (else A's),
    else the reference's last tensor in its data-flow order."""
    from refimpl import registry
    from refimpl.conformance.budgets import final_outputs
    from refimpl.errors import UnknownModelError

    for side in (b, a):
        model = side.metadata.get("model") if isinstance(side.metadata, dict) else None
        if isinstance(model, str):
            try:
                spec = registry.get(model)
            except UnknownModelError:
                continue
            return list(final_outputs(spec)), f"the final outputs of {spec.name}"
    if b.tensors:
        return [list(b.tensors)[-1]], "the reference's last tensor in data-flow order"
    return [], "none"


def to_nchw(tensors):
    """A channels-last dump -> NCHW: every 4-D tensor (N, H, W, C) is transposed to (N, C, H, W)."""
    return {k: (np.transpose(v, (0, 3, 1, 2)) if np.ndim(v) == 4 else v) for k, v in tensors.items()}


def feeding_bn(name, params):
    """The batch norm whose output is the tensor `name`, by the checkpoint's names -> its key prefix
    in `params`, or None. Tried in order: `name` itself is a BN (torchvision/timm taps such as
    `layer3.0.bn2`); `name.normalization` (transformers' conv-BN steps `...layer.1`, the stem
    `embedder.embedder`); a timm/torchvision activation `...act2` / the stem's `act1` fed by `bn2` /
    `bn1` (the scale survives a ReLU on the positive values only, so the fit may still fail there);
    a shortcut `...shortcut` / `...downsample` fed by its `.normalization` / `.1`."""
    if not params:
        return None
    head, _, last = name.rpartition(".")
    candidates = [name, f"{name}.normalization", f"{name}.1"]
    if last.startswith("act") and last[3:].isdigit():
        candidates.append(f"{head}.bn{last[3:]}" if head else f"bn{last[3:]}")
    for c in candidates:
        if f"{c}.running_var" in params:
            return c
    return None


def _diagnosis_context(name, params, bn_eps, images, preprocessor, task):
    """diagnose()'s optional evidence for the tensor `name`: the feeding BN's running_var, and the
    input images for `pixel_values`."""
    extra = {}
    norm = feeding_bn(name, params)
    if norm is not None:
        extra["bn"] = {"running_var": np.asarray(params[f"{norm}.running_var"]), "eps": bn_eps, "module": norm}
    if name == "pixel_values" and images is not None and preprocessor is not None:
        extra["resize"] = {"images": images, "config": preprocessor, "task": task or _task_of(preprocessor)}
    return extra


def _task_of(preprocessor):
    """classification (ConvNextImageProcessor) or detection (DetrImageProcessor), from the config."""
    declared = str(preprocessor.get("image_processor_type", preprocessor.get("feature_extractor_type", "")))
    size = preprocessor.get("size")
    if declared.startswith("Detr") or "max_size" in preprocessor or (isinstance(size, dict) and "longest_edge" in size):
        return "detection"
    return "classification"


def _images(image):
    """compare's `image`: a path, an (H, W, 3) uint8 array, or a list of them -> [arrays], or None."""
    if image is None:
        return None
    from refimpl.pipeline.decode import read_image

    items = image if isinstance(image, (list, tuple)) else [image]
    return [np.asarray(read_image(x)[1]) if isinstance(x, (str, Path)) else np.asarray(x) for x in items]


def compare(a, b, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, name_map=None, require=(), budgets=None, layout="nchw",
            *, params=None, bn_eps=BN_EPS, image=None, preprocessor=None, task=None, structural=None):
    """Compare A against the reference B (paths, Tensors, or dicts of arrays) -> Report.

    require: names that must be compared for "agree", besides the final outputs (always required:
        the model's, when B's or A's metadata names it, else B's last tensor).
    budgets: {name: relative budget} (refimpl.conformance.budgets): a tensor with a budget passes
        when max|A - B| <= budget * max|B|; tensors without one use rtol/atol.
    layout: "nhwc" reads A's 4-D tensors as channels-last (transposed to NCHW before comparing).
    params: the checkpoint's parameters ({key: array}, e.g. `loaded.checkpoint.params` or a
        torchvision state dict): the diagnosis of a divergence at a batch norm's output gets that
        BN's running_var (`feeding_bn`), so that a per-channel scale can be recognised as another
        eps ("consistent with eps = 1e-3"); bn_eps is the reference's eps (refimpl's: 1e-5).
    image, preprocessor, task: the input image(s) (path, (H, W, 3) uint8 array, or a list) and the
        checkpoint's preprocessor_config.json: a divergence at `pixel_values` that no simple
        transformation explains is checked against candidate resize filters (diagnoses/resize.py);
        task "classification" or "detection" (default: read from the config).
    structural: checks run on every compared tensor before the size check (certify passes the
        reduced-precision ones, refimpl.conformance.precision.structural_check): f(name, A, B, budget,
        context) -> a diagnosis dict (the tensor fails with it, whatever its size) or None.
    """
    a = _as_tensors(a, "A")
    b = _as_tensors(b, "B")
    a, b = _renamed(a, name_map), _renamed(b, name_map)
    if layout == "nhwc":
        a = Tensors(a.path, a.kind, to_nchw(a.tensors), a.metadata, a.ordered)
    elif layout != "nchw":
        raise ValueError(f"layout must be 'nchw' or 'nhwc', got {layout!r}")
    names = flow_order(a, b)
    if image is not None and preprocessor is None:
        raise ValueError("compare: image= needs preprocessor= (the checkpoint's preprocessor_config.json) to re-run "
                         "the preprocessing")
    images = _images(image)
    if not any(n in b.tensors for n in a.tensors):
        raise ValueError(
            f"no tensor names in common between {a.path} and {b.path} "
            f"(A has e.g. {list(a.tensors)[:3]}, B has e.g. {list(b.tensors)[:3]}); "
            "name files <module.path>.npy or map names with --map OLD=NEW / --map-file"
        )
    required, why = required_outputs(a, b)
    for n in require or ():
        if n not in b.tensors:
            raise ValueError(f"--require {n!r}: the reference {b.path} has no tensor of that name")
        if n not in required:
            required.append(n)
            why = why + " and --require" if "--require" not in why else why
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
        budget = budgets.get(name) if budgets else None
        r_tol, a_tol = (budget, 0.0) if budget is not None else (rtol, atol)
        if xa.shape != xb.shape:
            row.update(status="fail", max_abs="n/a", max_rel="n/a", shape_ok=False)
        else:
            m = measure(xa, xb, r_tol, a_tol)
            row.update(status="ok" if m.pop("ok") else "fail", shape_ok=True,
                       **{k: num(v) if isinstance(v, float) else v for k, v in m.items()})
            if budget is not None:
                rel = m["max_rel"]
                row["budget"] = num(budget)
                row["headroom"] = num(budget / rel) if rel > 0 else "inf"
        found = None
        if structural is not None and row.get("shape_ok"):  # a bug inside the noise is named by its structure
            found = structural(name, xa, xb, r_tol, _diagnosis_context(name, params, bn_eps, None, None, task))
            if found is not None:
                row.update(status="fail", structural=found["kind"])
        if row["status"] == "fail" and first is None and found is not None:
            first = {"name": name, "index": len(rows), "diagnosis": _jsonable(found)}
        elif row["status"] == "fail" and first is None:
            first = {"name": name, "index": len(rows),
                     "diagnosis": _jsonable(diagnose(ta, tb, r_tol, a_tol, name=name, **_diagnosis_context(
                         name, params, bn_eps, images, preprocessor, task)))}
        rows.append(row)
    return Report(a, b, rtol, atol, rows, first, required, why, budgets)


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
