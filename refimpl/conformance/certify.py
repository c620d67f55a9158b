"""Certify another implementation in one call: run it and refimpl on the same images, compare every
tensor both have against per-tensor error budgets, and give a verdict you can trust.

    >>> from refimpl.conformance.certify import certify
    >>> report = certify("torchvision:resnet50", model="resnet-50", weights="weights/resnet-50")
    >>> report.verdict, report.exit_code
    ('certified', 0)
    >>> report.to_json()          # the JSON-able dict (keys: docs/conformance.md, "certify")

IMPL is one of `onnx:FILE.onnx`, `torchvision:resnet50`, `timm:resnet50`, `transformers`,
`torch:FILE.py:FACTORY`, `cmd:'PROGRAM {image} {pixel_values} {out}'`, `dump:PATH`
(refimpl/conformance/adapters/).

For each image:
  1. refimpl runs the reference path twice, in float32 and in float64 (the truth);
  2. the budgets are measured: budget(t) = FACTOR * |refimpl f32 - f64|(t) + FLOOR, relative to
     max|f64(t)| (refimpl/conformance/budgets.py);
  3. the other implementation runs (on refimpl's float32 pixel_values unless it preprocesses
     itself) and its tensors are compared with the float64 trace, tensor by tensor, in data-flow
     order (refimpl.conformance.compare, with the budgets).

Reduced precision (`precision=`, `--precision`; docs/conformance.md, "Reduced precision"): a port in
fp16, bf16 or int8 - declared by its graph or detected from its tensors' dtypes, and said in the
report - gets budgets from refimpl run in that precision instead of step 2 (FACTOR[p] * |rounded
run - f64|(t) + FLOOR[p], refimpl/conformance/precision.py); structural checks (negatives after a
ReLU, a BN's eps inside the noise) run before the size check; the first divergence is isolated in
the port's precision (introduced here or inherited); each row gets its SNR and cosine, each image
the top-k agreement of the logits; a certified verdict says "within fp16 rounding".

Verdicts: `certified` (exit 0) only when, on every image, the final outputs (logits; logits and
pred_boxes) were compared and every compared tensor is within its budget; `diverges` (exit 1)
names the first divergence in data-flow order with its diagnosis; `incomplete` (exit 3) when the
final outputs were not compared. Coverage (compared / the reference's tensors, and which parts
of the network were covered) is always reported; an implementation that gives only its outputs
is certified "on outputs" and the verdict says so.
"""

from dataclasses import dataclass, field
from pathlib import Path

from refimpl import __version__, registry
from refimpl.conformance import adapters
from refimpl.conformance import precision as reduced
from refimpl.conformance.budgets import FACTOR, FLOOR, final_outputs, measure_budgets
from refimpl.conformance.compare import Tensors, compare
from refimpl.conformance.trace import trace, weights_record
from refimpl.errors import AdapterError
from refimpl.pipeline.decode import decode_image
from refimpl.provenance import sha256_bytes

FORMAT = "refimpl-certify/1"
EXIT_CODES = {"certified": 0, "diverges": 1, "incomplete": 3}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def default_images():
    """The repository's examples/ (when refimpl runs from a checkout), else two synthetic images."""
    import refimpl

    folder = Path(refimpl.__file__).resolve().parent.parent / "examples"
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if files:
        return {p.name: p.read_bytes() for p in files}
    from refimpl.conformance.golden import synthetic_images

    return synthetic_images()


def _inputs(images):
    if images is None or (not isinstance(images, dict) and not images):
        return default_images()
    if isinstance(images, dict):
        return dict(images)
    out = {}
    for p in images:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"no such image: {p}")
        out[p.name if p.name not in out else str(p)] = p.read_bytes()
    return out


def part_of(name):
    """The part of the network a tensor belongs to, for coverage: its name up to the first index
    (`resnet.encoder.stages.2`, `model.decoder.layers.4`), else its first two components."""
    parts = name.split(".")
    for i, p in enumerate(parts):
        if p.isdigit() and i > 0 and parts[i - 1] in ("stages", "layers"):
            return ".".join(parts[: i + 1])
    return ".".join(parts[:2])


@dataclass
class CertifyReport:
    impl: str
    description: str
    spec: object
    weights: dict
    factor: float
    floor: float
    cases: list  # [{"name", "input_sha256", "report": compare.Report, "unmapped", "notes"}]
    unmapped: list = field(default_factory=list)
    precision: str = "fp32"  # the port's precision the budgets were measured for
    precision_why: str = "default"  # given (--precision) or how it was detected

    @property
    def reduced(self):
        return self.precision != "fp32"

    def rounding_words(self):
        """'fp16 rounding', 'int8 quantization': what explains the differences of a certified port."""
        return "int8 quantization" if self.precision == "int8" else f"{self.precision} rounding"

    @property
    def verdict(self):
        verdicts = [c["report"].verdict for c in self.cases]
        if "disagree" in verdicts:
            return "diverges"
        if "incomplete" in verdicts or not verdicts:
            return "incomplete"
        return "certified"

    @property
    def exit_code(self):
        return EXIT_CODES[self.verdict]

    @property
    def first_divergence(self):
        for c in self.cases:
            if c["report"].first:
                return {"case": c["name"], **c["report"].first}
        return None

    def coverage(self):
        """Union over the images: compared names, the reference's names, parts covered/missing."""
        compared, reference = set(), []
        for c in self.cases:
            compared |= {r["name"] for r in c["report"].compared}
            reference += [n for n in c["report"].b.tensors if n not in reference]
        parts = []
        for n in reference:
            if part_of(n) not in parts:
                parts.append(part_of(n))
        covered = [p for p in parts if any(part_of(n) == p for n in compared)]
        finals = set(final_outputs(self.spec))
        inner = compared - finals - {"pixel_values", "pixel_mask", "image"}
        return {
            "compared": len(compared & set(reference)),
            "reference_tensors": len(reference),
            "parts_covered": covered,
            "parts_missing": [p for p in parts if p not in covered],
            "scope": "layer by layer" if inner else "on outputs",
        }

    def min_headroom(self):
        best = None
        for c in self.cases:
            for r in c["report"].compared:
                h = r.get("headroom")
                if isinstance(h, (int, float)) and (best is None or h < best["headroom"]):
                    best = {"case": c["name"], "name": r["name"], "headroom": h, "max_rel": r["max_rel"],
                            "budget": r["budget"]}
        return best

    def to_json(self):
        cov = self.coverage()
        return {
            "format": FORMAT,
            "refimpl_version": __version__,
            "verdict": self.verdict,
            "scope": cov["scope"],
            "impl": {"spec": self.impl, "description": self.description},
            "model": self.spec.name,
            "hosted_model": self.spec.hosted_name,
            "weights": self.weights,
            "truth": "refimpl reference path, float64",
            "precision": {"precision": self.precision, "why": self.precision_why},
            "budget_rule": {"text": "per tensor: max|theirs - refimpl f64| <= budget * max|refimpl f64|, "
                                    + ("budget = factor * (refimpl f32 vs f64 relative error) + floor" if not self.reduced
                                       else f"budget = factor * (refimpl run in {self.precision} vs f64 relative error) "
                                            "+ floor; structural checks first"),
                            "factor": self.factor, "floor": self.floor},
            "final_outputs": list(final_outputs(self.spec)),
            "coverage": cov,
            "first_divergence": self.first_divergence,
            "min_headroom": self.min_headroom(),
            "unmapped": self.unmapped,
            "cases": [{"name": c["name"], "input_sha256": c["input_sha256"], "verdict": c["report"].verdict,
                       "notes": c["notes"], "compare": c["report"].to_json(),
                       **({"top_k": c["top_k"]} if c.get("top_k") else {}),
                       **({"isolate": c["isolate"]} if c.get("isolate") else {})} for c in self.cases],
        }

    def text(self, tensors=False):
        cov = self.coverage()
        lines = [f"certify {self.impl} against refimpl {__version__} ({self.spec.name}; truth: reference path, float64)",
                 f"  implementation: {self.description}",
                 f"  weights: {self.weights.get('source')} sha256 {str(self.weights.get('sha256'))[:16]}...",
                 f"  precision: {self.precision} ({self.precision_why})",
                 (f"  budget per tensor: {self.factor:g} x refimpl's own float32 error + {self.floor:g}, "
                  "relative to max|refimpl f64|" if not self.reduced else
                  f"  budget per tensor: {self.factor:g} x the error of refimpl run in {self.precision} "
                  f"(weights and stored tensors rounded as the port's) + {self.floor:g}, relative to max|refimpl f64|; "
                  "structural checks (negatives after a ReLU, a BN's eps, shapes) before the size check")]
        for c in self.cases:
            r = c["report"]
            heads = [x["headroom"] for x in r.compared if isinstance(x.get("headroom"), (int, float))]
            least = min(heads) if heads else None
            where = next((x["name"] for x in r.compared if x.get("headroom") == least), "") if heads else ""
            word = {"agree": "certified", "disagree": "diverges", "incomplete": "incomplete"}[r.verdict]
            line = f"  {c['name']}: {word} - {len(r.compared)} of {len(r.b.tensors)} tensors compared"
            if r.first:
                line += f"; first divergence {r.first['name']}"
            elif least is not None:
                line += f"; least headroom {least:.3g}x at {where}"
            lines.append(line)
            if c.get("top_k"):
                k = c["top_k"]
                lines.append(f"    top-1 {'agrees' if k['top1'] else 'DIFFERS'}, top-{k['k']} overlap {k['top_k']:.0%}")
            if c.get("isolate"):
                lines.append(f"    isolate in {self.precision}: {c['isolate']['message']}")
            for note in c["notes"]:
                lines.append(f"    note: {note}")
        if tensors and self.cases:
            first = next((c for c in self.cases if c["report"].first), self.cases[0])
            lines += ["", f"tensors of {first['name']}:", first["report"].text()]
        lines.append("")
        lines.append(f"coverage: {cov['compared']} of the reference's {cov['reference_tensors']} tensors compared; "
                     f"{len(cov['parts_covered'])} of {len(cov['parts_covered']) + len(cov['parts_missing'])} parts covered"
                     + (f" (not: {', '.join(cov['parts_missing'])})" if cov["parts_missing"] else ""))
        if self.unmapped:
            shown = ", ".join(self.unmapped[:6]) + (f", ... ({len(self.unmapped)} in all)" if len(self.unmapped) > 6 else "")
            lines.append(f"not mapped to a checkpoint name (not compared): {shown}")
        first = self.first_divergence
        if self.verdict == "diverges":
            lines.append(f"first divergence: {first['name']} (image {first['case']})")
            lines.append(f"  diagnosis: {first['diagnosis']['message']}")
            lines.append(f"verdict: DIVERGES at {first['name']}")
        elif self.verdict == "incomplete":
            missing = sorted({m for c in self.cases for m in c["report"].missing_required})
            lines.append(f"verdict: INCOMPLETE - the final outputs were not compared ({', '.join(missing) or 'nothing compared'}): "
                         "nothing is certified")
        else:
            h = self.min_headroom()
            scope = cov["scope"]
            lines.append(f"verdict: CERTIFIED {scope} on {len(self.cases)} image(s)"
                         + (f" within {self.rounding_words()}" if self.reduced else "")
                         + (" - only the final outputs were compared" if scope == "on outputs" else "")
                         + (f"; least headroom {h['headroom']:.3g}x at {h['name']}" if h else ""))
        return "\n".join(lines)


def reference_traces(model64, model32, data):
    """refimpl's float64 and float32 traces of one encoded image (reference path)."""
    t64, _ = trace(data, model64)
    t32, _ = trace(data, model32)
    return t32, t64


def certify(impl, model="resnet-50", weights=None, revision=None, images=None, map_file=None, layout="nchw",
            factor=None, floor=None, progress=None, precision="auto"):
    """Run IMPL and refimpl on `images` (paths or {name: bytes}; default: the examples) -> CertifyReport.

    precision: "fp32", "fp16", "bf16", "int8", or "auto" (default): what the port declares (an int8
    ONNX graph), else its tensors' dtypes (float16, bfloat16), else fp32. In a reduced precision the
    budgets come from refimpl run in it (refimpl/conformance/precision.py) and structural checks run
    before the size check. factor, floor: None for the precision's defaults."""
    reduced.check_precision(precision)
    spec = registry.get(model)
    model32 = registry.load(spec.name, weights, revision, "float32", "reference")
    model64 = registry.load(spec.name, weights, revision, "float64", "reference")
    inputs = _inputs(images)
    cases, adapter, unmapped = [], None, []
    for i, (name, data) in enumerate(inputs.items()):
        t32, t64 = reference_traces(model64, model32, data)
        if adapter is None:
            adapter = adapters.make(impl, spec, model32.checkpoint, list(t64), map_file, layout)
            if getattr(adapter, "images_allowed", None) == 1 and len(inputs) != 1:
                raise AdapterError(f"{impl}: a dump holds one image's tensors: name exactly the image it was made from")
        case = adapters.Case(name, data, Path(name).suffix or ".png", decode_image(data),
                             t32["pixel_values"], t32.get("pixel_mask"))
        result = adapter.run(case)
        if i == 0:
            chosen, why = ((precision, "given (--precision)") if precision != "auto" else
                           reduced.detect(result.tensors, getattr(adapter, "precision", None)))
            if chosen != "fp32" and spec.task != "image-classification":
                raise reduced.PrecisionError(f"{impl}: runs in {chosen} ({why}); refimpl runs reduced precision "
                                             f"for the ResNet classifiers only, not {spec.name}")
            if factor is None:
                factor = FACTOR if chosen == "fp32" else reduced.FACTOR[chosen]
            if floor is None:
                floor = FLOOR if chosen == "fp32" else reduced.FLOOR[chosen]
        structural = None
        if chosen == "fp32":
            budgets = {n: b["budget"] for n, b in measure_budgets(t32, t64, factor, floor).items()}
        else:
            quant = getattr(adapter, "quantization", None)
            rounded = reduced.rounded_trace(model64.checkpoint.params, t32["pixel_values"], chosen, quant,
                                            model64.backbone_names)
            budgets = {n: b["budget"] for n, b in reduced.measure_budgets(rounded, t64, chosen, factor, floor).items()}
            structural = reduced.structural_check(chosen, rounded)
        reference = Tensors(f"refimpl float64 ({name})", "trace", t64, {"model": spec.name, "dtype": "float64"}, True)
        theirs = Tensors(f"{impl} ({name})", "adapter", result.tensors, {}, False)
        if not result.tensors:
            raise AdapterError(f"{impl}: produced no tensor under a checkpoint name for {name} "
                               f"(unmapped: {result.unmapped[:6]}); give names with --map-file")
        # The checkpoint's BN statistics and the image let the diagnosis name a wrong eps or a
        # wrong resize filter (float64 params: the reference is the float64 trace).
        report = compare(theirs, reference, budgets=budgets, params=model64.checkpoint.params, image=case.pixels,
                         preprocessor=model32.checkpoint.preprocessor, structural=structural)
        found = {"name": name, "input_sha256": sha256_bytes(data), "report": report,
                 "unmapped": result.unmapped, "notes": result.notes}
        if chosen != "fp32":
            reduced.annotate(found, result.tensors, t64, chosen, model64.checkpoint.params,
                             getattr(adapter, "quantization", None), budgets, structural, model64.backbone_names)
        cases.append(found)
        unmapped += [u for u in result.unmapped if u not in unmapped]
        if progress:
            progress(i + 1, len(inputs), name)
    return CertifyReport(impl, adapter.describe(), spec, weights_record(model32), factor, floor, cases, unmapped,
                         chosen, why)


__all__ = ["certify", "CertifyReport", "default_images", "part_of", "EXIT_CODES"]
