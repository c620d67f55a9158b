"""Session fixtures: synthesized checkpoints (built once per test session, in a temp dir) and the
reference stack's versions in the report header and again at the end (-q hides the header)."""

import os

import pytest

from refimpl.synth.resnet import build_resnet50

# Fixtures that belong to one part of the suite live in their own modules, imported here so that
# every test file can use them.
from fixtures_detr import *  # noqa: E402,F401,F403
from fixtures_families import *  # noqa: E402,F401,F403
from fixtures_contract import *  # noqa: E402,F401,F403
from fixtures_audit import weights  # noqa: E402,F401
from fixtures_precision import precision_legacy_onnx, precision_port  # noqa: E402,F401

REFERENCE_STACK = ("numpy", "torch", "torchvision", "transformers", "timm", "pillow", "safetensors", "hypothesis")


def stack_lines():
    """The versions the results were validated with, and the BLAS variables in effect."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in REFERENCE_STACK:
        try:
            found.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    blas = [f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ]
    return ["reference stack: " + ", ".join(found), "BLAS environment: " + (", ".join(blas) or "(none set)")]


def pytest_report_header(config):
    return stack_lines()


def pytest_terminal_summary(terminalreporter):
    import json

    import report

    # The header is hidden under -q (the README's and CI's command): say it again at the end.
    terminalreporter.section("reference stack")
    for line in stack_lines():
        terminalreporter.write_line(line)
    if not report.ROWS:
        return
    terminalreporter.section("per-layer errors against the reference (worst case per layer)")
    for line in report.summary_lines():
        terminalreporter.write_line(line)
    if os.environ.get("REFIMPL_ERROR_REPORT"):
        with open(os.environ["REFIMPL_ERROR_REPORT"], "w") as f:
            json.dump(report.ROWS, f, indent=1)


@pytest.fixture(scope="session")
def resnet50_dir(tmp_path_factory):
    """A folder with model.safetensors, config.json, preprocessor_config.json of a synthesized
    microsoft/resnet-50 (official architecture and layout, calibrated random weights)."""
    return build_resnet50(tmp_path_factory.mktemp("resnet-50"))


@pytest.fixture(scope="session")
def resnet50(resnet50_dir):
    from refimpl.api import load_resnet50

    return load_resnet50(resnet50_dir)


@pytest.fixture(scope="session")
def resnet50_hf(resnet50_dir):
    """transformers' ResNetForImageClassification on the same checkpoint, eval mode, float32."""
    from transformers import ResNetForImageClassification

    return ResNetForImageClassification.from_pretrained(resnet50_dir).eval()


@pytest.fixture(scope="session")
def resnet50_small_dir(tmp_path_factory, resnet50_dir):
    """The session's synthesized ResNet-50 with 64 px inputs (fast; names and maths unchanged)."""
    from hf_trace import small_checkpoint

    return small_checkpoint(tmp_path_factory.mktemp("resnet-50-64px"), resnet50_dir, size={"shortest_edge": 64})


@pytest.fixture(scope="session")
def resnet50_small(resnet50_small_dir):
    from refimpl.api import load_resnet50

    return load_resnet50(resnet50_small_dir)
