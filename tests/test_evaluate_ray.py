"""refimpl evaluate --ray: on a local Ray instance (2 CPUs), the same records as the local
workers, and a resumed Ray run loses and duplicates nothing, also after kill -9 of the driver
(whose local Ray instance goes with it: no Ray process is left behind). Needs ray (the
`evaluate` extra)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
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


@pytest.mark.slow
def test_ray_audits_claims_as_the_local_run(local_ray, resnet50_small_dir, tmp_path):
    """--claimed on Ray: the actors judge each claim with audit-dir's code, as the local workers do."""
    import refimpl

    weights = str(resnet50_small_dir)
    data = tmp_path / "data"
    make_classification(data, weights=weights, n=8, seed=7)
    model = refimpl.load("resnet-50", weights)
    for i, image in enumerate(sorted(data.glob("*/*.png"))):
        answer = model(image, top_k=5)
        if i % 2:
            answer = answer[:4]  # a shorter answer: judged against a 4-item reference
        image.with_suffix(".json").write_text(json.dumps(answer))
    local = evaluate(data, "resnet-50", out=tmp_path / "local.jsonl", workers=1, progress=False, weights=weights,
                     claimed=data)
    on_ray = evaluate(data, "resnet-50", out=tmp_path / "ray.jsonl", ray="auto", progress=False, weights=weights,
                      claimed=data)
    assert records(tmp_path / "ray.jsonl") == records(tmp_path / "local.jsonl")
    assert on_ray["claimed"] == local["claimed"] and local["claimed"]["judged_images"] == 8


def descendants(pid, seen, stop):
    """Collect into `seen` every process below `pid` (Ray's GCS, raylet, workers, ...) until `stop`."""
    import psutil

    while not stop.is_set():
        try:
            seen.update(psutil.Process(pid).children(recursive=True))
        except psutil.NoSuchProcess:
            return
        stop.wait(0.2)


@pytest.mark.slow
def test_kill_9_of_a_ray_driver_then_resume(resnet50_small_dir, tmp_path):
    """`refimpl evaluate --ray local` killed with SIGKILL (the driver alone, as `kill -9 PID` does)
    once some records are written, then run again: nothing lost or duplicated, the records of the
    local run; and no process of either run's Ray instance outlives it."""
    psutil = pytest.importorskip("psutil", reason="the test follows Ray's processes with psutil")
    weights = str(resnet50_small_dir)
    data = tmp_path / "data"
    make_classification(data, weights=weights, n=32, seed=4)
    local = tmp_path / "local.jsonl"
    evaluate(data, "resnet-50", out=local, workers=1, progress=False, weights=weights)
    out = tmp_path / "ray.jsonl"
    command = [sys.executable, "-m", "refimpl", "evaluate", str(data), "--weights", weights, "--out", str(out),
               "--ray", "local", "--workers", "2", "--no-progress"]
    root = Path(__file__).parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    env.pop("RAY_ADDRESS", None)
    seen, stop = set(), threading.Event()
    proc = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watcher = threading.Thread(target=descendants, args=(proc.pid, seen, stop), daemon=True)
    watcher.start()
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None and (not out.exists() or out.read_text().count("\n") < 8):
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)  # the driver only: the Ray instance it started must go with it
        proc.wait()
    finally:
        stop.set()
        watcher.join()
    partial = out.read_text().count("\n")
    assert 8 <= partial < 32, partial
    assert seen, "the driver started no Ray process"
    _, alive = psutil.wait_procs(list(seen), timeout=120)
    leftover = [p for p in alive if p.is_running()]
    for p in leftover:  # do not leave them to the next test
        p.kill()
    assert not leftover, [(p.pid, p.name()) for p in leftover]
    # the rerun resumes, and shuts its Ray instance down when it is done
    seen, stop = set(), threading.Event()
    proc = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watcher = threading.Thread(target=descendants, args=(proc.pid, seen, stop), daemon=True)
    watcher.start()
    try:
        assert proc.wait(timeout=600) == 0, proc.stderr.read()[-2000:]
    finally:
        stop.set()
        watcher.join()
    _, alive = psutil.wait_procs(list(seen), timeout=60)
    leftover = [p for p in alive if p.is_running()]
    for p in leftover:
        p.kill()
    assert not leftover, [(p.pid, p.name()) for p in leftover]
    got = [json.loads(line) for line in records(out)]
    assert len(got) == len({r["image"] for r in got}) == 32  # none lost, none duplicated
    assert records(out) == records(local)
