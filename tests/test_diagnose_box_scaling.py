"""refimpl/diagnoses/box_scaling.py: a DETR port that scales its boxes by (h, w) instead of (w, h)
(target_sizes swapped) is diagnosed "box scaling" with its factors at post_process.boxes, not
"generic drift ... look at this layer's weights" (issue 21)."""

import numpy as np
import pytest

from refimpl import diagnoses
from refimpl.conformance.compare import compare
from refimpl.diagnoses.tensor import diagnose
from refimpl.diagnoses import box_scaling
from images import pixels


def boxes(h, w, n=100, seed=0):
    """(1, n, 4) corner boxes in an h x w image, like post_process.boxes."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.05, 0.95, (n, 2))
    s = rng.uniform(0.05, 0.5, (n, 2))
    rel = np.concatenate([c - s / 2, c + s / 2], -1)
    return (rel * np.array([w, h, w, h]))[None].astype(np.float32)


def swapped(b, h, w):
    """The same boxes scaled by (h, w) instead of (w, h): x by h/w, y by w/h."""
    return (b * np.array([h / w, w / h, h / w, w / h])).astype(np.float32)


def test_registered_in_the_catalogue():
    entry = diagnoses.CATALOGUE["box scaling"]
    assert entry.applies_to == "tensor" and entry.check is box_scaling.check and "target_sizes" in entry.look_at
    assert entry in diagnoses.entries("tensor")


@pytest.mark.parametrize("h, w", [(480, 640), (500, 741), (800, 600)])
def test_swapped_image_sizes(h, w):
    b = boxes(h, w)
    # through the catalogue's entry point: the entry's confidence and look_at come with it
    d = diagnose(swapped(b, h, w), b, 1e-4, 1e-4, name="post_process.boxes")
    assert d["kind"] == "box scaling" and d["swapped_sizes"] and d["confidence"] == "certain"
    assert np.allclose(d["factors"], [h / w, w / h, h / w, w / h], rtol=1e-5)
    assert "(w, h) where (h, w) is expected" in d["message"] and "post_process.boxes" in d["message"]
    assert "target_sizes" in d["look_at"] and "(height, width)" in d["look_at"]


def test_other_per_coordinate_factors_and_what_it_leaves_alone():
    b = boxes(480, 640)
    d = box_scaling.check({"a": b * np.array([2.0, 1.0, 2.0, 1.0]), "b": b, "rtol": 1e-4, "atol": 1e-4})
    assert d["kind"] == "box scaling" and not d["swapped_sizes"] and np.allclose(d["factors"], [2, 1, 2, 1])
    d = box_scaling.check({"a": b * np.array([1.0, 1.0, 3.0, 1.0]), "b": b, "rtol": 1e-4, "atol": 1e-4})
    assert d["kind"] == "box scaling" and "a different factor per coordinate" in d["message"]
    assert box_scaling.check({"a": 2 * b, "b": b, "rtol": 1e-4, "atol": 1e-4}) is None  # uniform: "scale factor"
    assert box_scaling.check({"a": b + 3, "b": b, "rtol": 1e-4, "atol": 1e-4}) is None  # not a scaling
    noisy = swapped(b, 480, 640) + np.random.default_rng(1).normal(0, 5, b.shape)
    assert box_scaling.check({"a": noisy, "b": b, "rtol": 1e-4, "atol": 1e-4}) is None  # not reproduced
    assert box_scaling.check({"a": np.ones((1, 10, 3)), "b": np.ones((1, 10, 3)), "rtol": 0, "atol": 0}) is None


@pytest.mark.slow
def test_a_port_with_swapped_target_sizes_through_compare(detr_small_models):
    """refimpl's own DETR trace; the port's post_process.boxes scaled by (h, w): compare's first
    divergence is post_process.boxes, diagnosed box scaling with the factors."""
    from refimpl.conformance.trace import trace

    h, w = 90, 150
    ours, _ = trace(pixels(h, w, seed=3), detr_small_models["timm"])
    theirs = dict(ours, **{"post_process.boxes": swapped(ours["post_process.boxes"], h, w)})
    report = compare(theirs, ours)
    assert not report.agree and report.first["name"] == "post_process.boxes"
    d = report.first["diagnosis"]
    assert d["kind"] == "box scaling" and d["swapped_sizes"], d["message"]
    assert np.allclose(d["factors"], [h / w, w / h, h / w, w / h], rtol=1e-4)
