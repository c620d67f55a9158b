"""The house rules, checked: no import cycle among refimpl's modules, the packages import only
downwards (docs/code-layout.md, generated from ALLOWED below), the model code never imports the kit or the pictures, and the
runtime never imports the test-only reference stack."""

import ast
from pathlib import Path

import refimpl

ROOT = Path(refimpl.__file__).parent

# What each part may import (besides itself, the standard library and the runtime dependencies).
# "refimpl" is the package's __init__ (the public API and __version__).
ALLOWED = {
    "errors": set(),
    "provenance": set(),
    "numerics": set(),
    "models": {"errors"},
    "pipeline": {"errors", "models", "provenance"},
    "registry": {"errors", "pipeline", "serving.schemas", "viz"},
    "api": {"registry", "pipeline", "serving"},
    "refimpl": {"api"},
    "serving.schemas": {"pipeline"},
    "serving": {"errors", "models", "pipeline", "registry", "refimpl", "provenance", "serving.schemas"},
    "viz": {"errors", "models", "pipeline"},
    # The diagnosis catalogue: why two tensors (or two answers) differ. Below both kits.
    "diagnoses": {"errors", "numerics", "models", "pipeline"},
    # The tensor kit: traces, compare, certify, golden sets, isolate, the adapters to other implementations.
    # (golden sets also record the answer tolerances the audit kit will judge a port's outputs with)
    "conformance": {"errors", "numerics", "diagnoses", "models", "pipeline", "registry", "refimpl", "serving",
                    "provenance", "conformance.adapters", "audit"},
    # adapters wrap other implementations (torch, onnxruntime, ...): imported lazily, inside functions
    "conformance.adapters": {"errors", "numerics", "models", "pipeline", "registry", "refimpl", "serving", "provenance",
                             "conformance"},
    # The answer-audit kit: a claimed response judged against the reference's (never tensors).
    "audit": {"errors", "numerics", "diagnoses", "pipeline", "registry", "refimpl", "serving", "provenance"},
    # HTML reports of both kits' results (the kits hand them plain dicts).
    "reports": {"errors", "audit", "diagnoses"},
    "perf": {"errors", "models", "pipeline", "registry", "viz"},
    # Whole datasets (refimpl evaluate): runs models through the registry, shares audit-dir's results file.
    "evaluation": {"errors", "models", "pipeline", "registry", "audit"},
    "synth": set(),
    # The synthesized datasets label images with a reference run of refimpl's own model.
    "synth.datasets": {"errors", "registry", "pipeline", "evaluation"},
    "commands": {"errors", "registry", "refimpl", "pipeline", "serving", "conformance", "audit", "diagnoses", "reports",
                 "viz", "perf", "models", "cli", "evaluation"},
    "cli": {"errors", "refimpl", "commands"},
    "__main__": {"cli"},
    # Exercises graded by refimpl (the notebooks): the learner's function in the reference pipeline, compared.
    "teaching": {"errors", "numerics", "models", "pipeline", "conformance", "registry"},
}
RUNTIME = {"numpy", "PIL", "safetensors", "huggingface_hub", "tqdm"}
TEST_ONLY = {"torch", "torchvision", "transformers", "timm", "jsonschema", "hypothesis", "pytest"}


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["refimpl", *parts])


def imports(path):
    """(refimpl modules imported, other top-level packages imported), at any depth in the file."""
    tree = ast.parse(path.read_text())
    mine, other = set(), set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                (mine if alias.name.split(".")[0] == "refimpl" else other).add(alias.name if alias.name.startswith("refimpl") else alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if target.split(".")[0] != "refimpl":
                other.add(target.split(".")[0])
                continue
            for alias in node.names:  # `from refimpl.models import ops` imports refimpl.models.ops
                candidate = f"{target}.{alias.name}"
                mine.add(candidate if (ROOT.parent / (candidate.replace(".", "/") + ".py")).exists()
                         or (ROOT.parent / candidate.replace(".", "/")).is_dir() else target)
    return mine, other


def graph():
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    return modules, {name: imports(path) for name, path in modules.items()}


def part(module):
    """The row of ALLOWED a module belongs to: 'serving.schemas', 'models', 'refimpl', ..."""
    rest = module.split(".")[1:]
    if not rest:
        return "refimpl"
    if ".".join(rest[:2]) in ALLOWED:
        return ".".join(rest[:2])
    return rest[0]


def test_no_import_cycle():
    modules, edges = graph()
    deps = {m: {d for d in edges[m][0] if d in modules and d != m} for m in modules}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(deps[m]):
            if state.get(d) == "open":
                cycle = stack[stack.index(d):] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(modules):
        if m not in state:
            visit(m)


def test_packages_import_only_downwards():
    modules, edges = graph()
    wrong = []
    for m, (mine, _) in edges.items():
        here = part(m)
        for d in mine:
            there = part(d)
            if there != here and there not in ALLOWED[here] and there.split(".")[0] not in ALLOWED[here]:
                wrong.append(f"{m} imports {d} ({here} may import {sorted(ALLOWED[here]) or 'nothing of refimpl'})")
    assert not wrong, "\n".join(wrong)


def test_the_model_code_is_numpy_only():
    _, edges = graph()
    for m, (mine, other) in edges.items():
        if part(m) == "models":
            assert other <= {"numpy", "math", "dataclasses", "threading", "weakref", "os", "concurrent"}, (m, other)
            assert all(part(d) in ("models", "errors") for d in mine), (m, mine)


def test_the_reference_model_code_imports_nothing_of_the_fast_path():
    """resnet.py, detr.py and ops.py are the readable reference: which code computes an answer is
    chosen where the model is loaded (refimpl/pipeline/loaded.py), never inside them."""
    _, edges = graph()
    fast = {"refimpl.models.fast", "refimpl.models.fast_detr"}
    for m in ("refimpl.models.resnet", "refimpl.models.detr", "refimpl.models.ops"):
        assert m == "refimpl.models.ops" or "refimpl.models.ops" in edges[m][0], m  # the graph sees their imports
        assert not edges[m][0] & fast, f"{m} imports {sorted(edges[m][0] & fast)}"


def test_the_runtime_never_imports_the_reference_stack():
    """torch, transformers, timm (and the test tools) are for tests, the benchmark's peers and the
    synthesized checkpoints only."""
    _, edges = graph()
    for m, (_, other) in edges.items():
        if part(m) in ("synth", "perf"):
            continue
        if part(m) == "conformance.adapters":  # peers, imported only inside the functions that run them
            top = _top_level_imports(ROOT.parent / (m.replace(".", "/") + ".py"))
            assert not top & (TEST_ONLY | {"onnx", "onnxruntime"}), f"{m} imports {sorted(top & TEST_ONLY)} at module level"
            continue
        assert not other & TEST_ONLY, f"{m} imports {sorted(other & TEST_ONLY)}"


def _top_level_imports(path):
    if not path.exists():
        path = path.with_suffix("") / "__init__.py"
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            out.add(node.module.split(".")[0])
    return out


def test_the_benchmark_does_not_import_the_tests():
    _, edges = graph()
    for m, (_, other) in edges.items():
        assert not other & {"tests", "synth", "synth_detr", "conftest", "sys.path"}, m
    bench = (ROOT / "perf" / "bench.py").read_text()
    assert "sys.path.insert" not in bench and "_tests_dir" not in bench
