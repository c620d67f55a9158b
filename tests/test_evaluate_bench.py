"""benchmarks/evaluate_workers.py end to end at a tiny size (16 images, 2 configurations, one run
each): it builds its dataset, runs every configuration in its own process, counts the workers'
memory with the main process's, and writes the JSON and the Markdown table it promises. The
numbers themselves are not asserted (a loaded test machine says nothing about throughput)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_the_throughput_script_runs_end_to_end(resnet50_small_dir, tmp_path):
    pytest.importorskip("psutil", reason="the script samples memory with psutil")
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "evaluate_workers.py"), "--weights", str(resnet50_small_dir),
                           "--n", "16", "--configs", "loop,2x1x4", "--repeats", "1", "--out", str(out), "--markdown", str(table)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [r["config"] for r in result["runs"]] == ["loop", "2x1x4"]
    assert all(r["images"] == 16 and r["rate"] > 0 and r["peak_rss_mb"] > 0 for r in result["runs"])
    loop, two = result["summary"]
    assert loop["processes"] == 1 and two["processes"] >= 3  # the main process and its 2 workers were counted
    assert two["peak_rss_mb"] > loop["peak_rss_mb"]  # three models in memory, not one
    assert loop["speedup_vs_loop"] == 1.0 and result["best"]["config"] == "2x1x4"
    text = table.read_text()
    assert "| 2x1x4 | 2 x 1 | 4 |" in text and "one-process loop" in text
    assert "refimpl/evaluation/defaults.py: WORKERS = " in done.stdout
