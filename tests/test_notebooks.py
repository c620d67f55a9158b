"""The teaching notebooks run end to end: each is executed with nbclient in a fresh kernel, in
notebooks/, against the synthesized checkpoints (through REFIMPL_RESNET50_WEIGHTS and
REFIMPL_DETR_WEIGHTS, the same setting the CLI reads), with the hub offline. A cell that raises
fails the test with its traceback. The committed files must carry no outputs."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).parent.parent / "notebooks"
NOTEBOOKS = ["01_resnet50.ipynb", "02_detr.ipynb", "03_conformance.ipynb"]
MIN_FIGURES = {"01_resnet50.ipynb": 8, "02_detr.ipynb": 8, "03_conformance.ipynb": 2}


@pytest.fixture
def synthesized_weights(resnet50_dir, detr_timm_dir, monkeypatch):
    monkeypatch.setenv("REFIMPL_RESNET50_WEIGHTS", str(resnet50_dir))
    monkeypatch.setenv("REFIMPL_DETR_WEIGHTS", str(detr_timm_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a notebook must never reach for the network here
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb")) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: clear the outputs before committing"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, synthesized_weights):
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    client.execute()  # raises CellExecutionError, with the cell's traceback, if any cell fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert figures >= MIN_FIGURES[name], f"{name}: {figures} figures"
