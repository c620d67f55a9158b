"""refimpl evaluate --ray: on a local Ray instance (2 CPUs), the same records as the local
workers, and a resumed Ray run loses and duplicates nothing. Needs ray (the `evaluate` extra)."""

import json
import signal
from pathlib import Path

import pytest

from refimpl.evaluation import evaluate
from refimpl.synth.datasets import make_classification

ray = pytest.importorskip("ray", reason="pip install 'refimpl[evaluate]' for the Ray runner")


@pytest.fixture(scope="module")
def local_ray():
    def too_long(*_):
        raise TimeoutError("the Ray test took more than 15 minutes")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(900)  # bounded in time, whatever Ray does
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def records(path):
    return sorted(Path(path).read_text().splitlines())


@pytest.mark.slow
def test_ray_writes_the_records_of_the_local_run(local_ray, resnet50_small_dir, tmp_path):
    data = tmp_path / "data"
    make_classification(data, weights=str(resnet50_small_dir), n=20, seed=3)
    local = evaluate(data, "resnet-50", out=tmp_path / "local.jsonl", workers=2, progress=False,
                     weights=str(resnet50_small_dir))
    # a Ray run stopped after 9 images (its batches are those of the local run: 0-7, 8-15, 16-19) ...
    partial = evaluate(data, "resnet-50", out=tmp_path / "ray.jsonl", limit=9, ray="auto", progress=False,
                       weights=str(resnet50_small_dir))
    assert partial["computed_now"] == 9
    # ... then resumed: the same records as the local workers', none lost or duplicated
    done = evaluate(data, "resnet-50", out=tmp_path / "ray.jsonl", ray="auto", progress=False,
                    weights=str(resnet50_small_dir))
    assert done["computed_now"] == 11 and done["metrics"] == local["metrics"]
    assert records(tmp_path / "ray.jsonl") == records(tmp_path / "local.jsonl")
    assert len({json.loads(line)["image"] for line in records(tmp_path / "ray.jsonl")}) == 20
