"""DETR with the true official weights, both revisions. The official files cannot be downloaded
in CI, so these skip with the reason unless they are in the local Hugging Face cache:

    huggingface-cli download facebook/detr-resnet-50
    huggingface-cli download facebook/detr-resnet-50 --revision no_timm
    pytest -m official tests/test_detr_official.py

The published values are transformers' own integration-test values for the COCO image
000000039769.png (two cats, two remotes, a couch); point REFIMPL_COCO_IMAGE at that file.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from refimpl.errors import WeightsNotFoundError

pytestmark = pytest.mark.official

REPO = "facebook/detr-resnet-50"
EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="module", params=["main", "no_timm"])
def official(request, monkeypatch_module):
    """(revision, refimpl model) from the cache only: the network is never used."""
    from refimpl.api import load_detr

    monkeypatch_module.setenv("HF_HUB_OFFLINE", "1")
    try:
        return request.param, load_detr(REPO, revision=request.param)
    except WeightsNotFoundError as e:
        pytest.skip(f"official weights {REPO}@{request.param} are not in the local Hugging Face cache "
                    f"({type(e.__cause__ or e).__name__})")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_layout_matches_the_revision(official):
    revision, model = official
    assert model.layout == {"main": "timm", "no_timm": "transformers"}[revision]
    assert model.checkpoint.id2label[17] == "cat" and len(model.checkpoint.id2label) == 91


def test_published_values(official):
    from refimpl.pipeline.decode import read_image

    path = os.environ.get("REFIMPL_COCO_IMAGE")
    if not path or not Path(path).is_file():
        pytest.skip("set REFIMPL_COCO_IMAGE to COCO val2017 000000039769.png to check the published values")
    _, model = official
    _, image = read_image(path)
    pixel_values, pixel_mask, _ = model.preprocess([image])
    outputs = model.forward(pixel_values, pixel_mask)
    np.testing.assert_allclose(outputs["logits"][0, :3, :3], [[-19.1194, -0.0893, -11.0154],
                                                              [-17.3640, -1.8035, -14.0219],
                                                              [-20.0461, -0.5837, -11.1060]], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(outputs["pred_boxes"][0, :3, :3], [[0.4433, 0.5302, 0.8853],
                                                                  [0.5494, 0.2517, 0.0529],
                                                                  [0.4998, 0.5360, 0.9956]], rtol=1e-4, atol=1e-4)
    dets = model.postprocess(outputs, [image.shape[:2]], threshold=0.3)[0]
    assert [d["label"] for d in dets] == ["remote", "remote", "couch", "cat", "cat"]
    np.testing.assert_allclose([d["score"] for d in dets], [0.9982, 0.9960, 0.9955, 0.9988, 0.9987], atol=1e-4)
    box = dets[0]["box"]
    np.testing.assert_allclose([box["xmin"], box["ymin"], box["xmax"], box["ymax"]],
                               [40.1633, 70.8115, 175.5471, 117.9841], atol=1e-2)


def test_same_as_transformers_on_a_photo(official):
    """The official weights through refimpl and through transformers (from the same cache)."""
    import torch
    from transformers import DetrForObjectDetection

    revision, model = official
    try:
        hf = DetrForObjectDetection.from_pretrained(REPO, revision=revision, local_files_only=True).eval()
    except OSError as e:
        pytest.skip(f"transformers cannot load {REPO}@{revision} offline: {e}")
    from refimpl.pipeline.decode import read_image

    _, photo = read_image(EXAMPLES / "street.jpg")
    pixel_values, pixel_mask, _ = model.preprocess([photo])
    ours = model.forward(pixel_values, pixel_mask)
    with torch.no_grad():
        ref = hf(pixel_values=torch.from_numpy(pixel_values), pixel_mask=torch.from_numpy(pixel_mask))
    for key in ("logits", "pred_boxes"):
        theirs = getattr(ref, key).numpy()
        assert np.abs(ours[key] - theirs).max() <= 1e-4 * np.abs(theirs).max(), key
