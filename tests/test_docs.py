"""The documentation: README is a short front door that says nothing the docs say, the site builds
with `mkdocs build --strict`, and the generated pages (command reference, code layout) are what the
code says now."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"

# The first command of each of the three users (README, "Three ways in").
FIRST_COMMANDS = {
    "learn": "jupyter lab notebooks/01_resnet50.ipynb",
    "certify a port": "refimpl certify onnx:model.onnx",
    "audit": "refimpl audit examples/street.jpg --model @cf/facebook/detr-resnet-50 --claimed",
}
# Pages made from the old README: they must not repeat the detailed pages others maintain.
FROM_README = ["install.md", "classification.md", "paths.md", "detection.md", "hosted-api.md", "conformance-overview.md",
               "certify.md", "datasets.md", "performance-overview.md", "weights.md", "testing.md"]
DETAILED = ["conformance.md", "contract.md", "detr.md", "evaluation.md", "performance.md"]


def gen_pages():
    spec = importlib.util.spec_from_file_location("gen_pages", DOCS / "gen_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def runs(text, n=12):
    """Every run of n consecutive words (lower case) in a text."""
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_readme_is_a_short_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move material to docs/"
    text = README.read_text()
    code = "\n".join(re.findall(r"```[a-z]*\n(.*?)```", text, re.S))
    for user, command in FIRST_COMMANDS.items():
        assert command in code, f"README's first command for '{user}' ({command}) is missing"
    assert "pip install" in code


def test_readme_links_resolve():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text()):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_readme_says_nothing_the_docs_say():
    readme = runs(README.read_text())
    for page in sorted(DOCS.rglob("*.md")):
        shared = readme & runs(page.read_text())
        assert not shared, f"README repeats {page.relative_to(ROOT)}: {' '.join(next(iter(shared)))!r}"


@pytest.mark.parametrize("page", FROM_README)
def test_pages_from_the_readme_do_not_repeat_the_detailed_pages(page):
    mine = runs((DOCS / page).read_text())
    for other in DETAILED:
        shared = mine & runs((DOCS / other).read_text())
        assert not shared, f"docs/{page} repeats docs/{other}: {' '.join(next(iter(shared)))!r}"


def test_generated_pages_are_fresh():
    stale = gen_pages().stale()
    assert not stale, f"stale generated pages {stale}: run python docs/gen_pages.py"


def test_cli_reference_has_every_command_and_option():
    from refimpl import cli

    page = (DOCS / "reference" / "cli.md").read_text()
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in cli.COMMANDS:
        assert f"### `refimpl {name}`" in page
        for action in sub.choices[name]._actions:
            for flag in action.option_strings:
                assert flag in page, f"refimpl {name} {flag} is missing from the command reference"


def test_code_layout_lists_every_module():
    page = (DOCS / "code-layout.md").read_text()
    for path in (ROOT / "refimpl").rglob("*.py"):
        if "__pycache__" not in path.parts and path.name != "__init__.py":
            assert re.search(rf"^\s+{re.escape(path.name)}\s", page, re.M), f"{path} is missing from docs/code-layout.md"


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    pytest.importorskip("material", reason="mkdocs-material is not installed (pip install -e '.[docs]')")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for page in ("index.html", "teaching/index.html", "reference/cli/index.html", "code-layout/index.html"):
        assert (tmp_path / "site" / page).exists(), page
