"""Fixtures shared by the audit tests (tests/test_audit.py, tests/test_audit_dir.py)."""

import json

import pytest
from PIL import Image

from hf_trace import small_checkpoint
from images import encode, pixels


def sharper_classifier(params):
    """Logits x3: top-5 scores like a trained model's (about 0.6, 0.15, 0.06, ...), not a near tie."""
    return dict(params, **{k: 3 * params[k] for k in ("classifier.1.weight", "classifier.1.bias")})


@pytest.fixture(scope="session")
def weights(tmp_path_factory, resnet50_dir):
    """The synthesized ResNet-50 on 64 px inputs, with a sharper classifier."""
    folder = tmp_path_factory.mktemp("resnet-50-64px-sharp")
    return str(small_checkpoint(folder, resnet50_dir, edit=sharper_classifier, size={"shortest_edge": 64}))


def photo(seed, h=60, w=80):
    return encode(Image.fromarray(pixels(h, w, seed=seed)), "PNG")


def envelope(result):
    """The hosted API's success envelope around `result`."""
    return {"result": result, "success": True, "errors": [], "messages": []}


def write(tmp_path, obj, name="claim.json"):
    """A claim file: `obj` as JSON, or a string written as it is."""
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path
