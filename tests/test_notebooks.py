"""The teaching notebooks: committed WITH their outputs (so a learner sees every picture without
running anything), labelled with the weights that produced them, and executed end to end in CI.

Each notebook is executed with nbclient in a fresh kernel, in notebooks/, with the hub offline and
no REFIMPL_*_WEIGHTS set: exactly as the committed outputs were made, the notebook synthesizes its
checkpoints with refimpl.synth (refimpl.teaching.notebook.weights_for) and says so on every output.
A cell that raises fails the test with its traceback.

To refresh the committed outputs after editing a notebook:
    python -m jupyter nbconvert --to notebook --execute --inplace notebooks/NAME.ipynb
(with REFIMPL_RESNET50_WEIGHTS / REFIMPL_DETR_WEIGHTS unset)."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).parent.parent / "notebooks"
NOTEBOOKS = ["01_resnet50.ipynb", "02_detr.ipynb", "03_conformance.ipynb"]
MIN_FIGURES = {"01_resnet50.ipynb": 10, "02_detr.ipynb": 11, "03_conformance.ipynb": 2}
LABEL = "synthesized weights (random, calibrated) - not "
# the exercises each notebook grades, and what the committed outputs show for them
EXERCISES = {"01_resnet50.ipynb": ["grade_bottleneck"], "02_detr.ipynb": ["grade_attention", "grade_box_decoding"]}


@pytest.fixture
def notebook_environment(monkeypatch):
    for name in ("REFIMPL_RESNET50_WEIGHTS", "REFIMPL_DETR_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)  # the notebooks synthesize their weights, as committed
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a notebook must never reach for the network here
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")


def outputs_of(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def text_of(nb):
    return "".join(o.get("text", "") for o in outputs_of(nb) if o.output_type == "stream")


def check_executed(name, nb):
    outputs = outputs_of(nb)
    assert not [o for o in outputs if o.output_type == "error"], f"{name}: a cell failed"
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code"), f"{name}: a cell did not run"
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert figures >= MIN_FIGURES[name], f"{name}: {figures} figures"
    assert LABEL in text_of(nb), f"{name}: the outputs do not say which weights produced them"


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb")) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_with_labelled_outputs(name):
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    nbformat.validate(nb)
    check_executed(name, nb)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), f"{name}: not executed top to bottom in one run"
    for cell in nb.cells:  # every figure goes through show(), which writes the weights' label on it
        if cell.cell_type == "code":
            source = re.sub(r"def show\(.*?plt\.show\(\)", "", cell.source, flags=re.S)
            assert "plt.show()" not in source, f"{name}: a figure shown without the weights' label (use show())"


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_exercises_are_graded_in_the_committed_outputs(name):
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    source = "".join(c.source for c in nb.cells if c.cell_type == "code")
    text = text_of(nb)
    for grader in EXERCISES[name]:
        assert source.count(f"exercises.{grader}(") == 2, f"{name}: {grader} should grade the exercise and a wrong attempt"
    assert text.count("verdict: NOT ATTEMPTED") == len(EXERCISES[name])  # the learner's cells, left to write
    assert text.count("verdict: WRONG") == len(EXERCISES[name]) and text.count("your bug: ") >= len(EXERCISES[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, notebook_environment):
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    client.execute()  # raises CellExecutionError, with the cell's traceback, if any cell fails
    check_executed(name, nb)


def test_weights_for_reads_the_variable_and_says_so(monkeypatch):
    from refimpl.teaching.notebook import weights_for

    monkeypatch.setenv("REFIMPL_DETR_WEIGHTS", "/some/folder")
    source, label = weights_for("detr")
    assert source == "/some/folder" and "/some/folder" in label and LABEL not in label


def test_weights_for_without_weights_or_transformers_is_a_typed_error(monkeypatch):
    import sys

    from refimpl.errors import WeightsNotFoundError
    from refimpl.teaching.notebook import weights_for

    monkeypatch.delenv("REFIMPL_RESNET50_WEIGHTS", raising=False)
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(WeightsNotFoundError, match="REFIMPL_RESNET50_WEIGHTS"):
        weights_for("resnet-50")
