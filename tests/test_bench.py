"""`refimpl bench` runs and emits its documented JSON. A smoke test on a tiny config: no assertion
on any time (a benchmark is not a test)."""

import pytest
import json

from refimpl.perf import bench
from refimpl.cli import main


@pytest.mark.slow
def test_bench_json_has_the_documented_keys(resnet50_dir, capsys):
    code = main(["bench", "--json", "--repeat", "1", "--models", "resnet-50", "--batch", "1", "--size", "32", "--gap", "0",
                 "--peers", "refimpl,refimpl-readable,refimpl-gemms,pytorch", "--weights", f"resnet-50={resnet50_dir}",
                 "--threads", "1", "--profile"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    for key in bench.REPORT_KEYS:
        assert key in report
    env = report["environment"]
    assert env["threads"] == 1
    assert set(env["openblas_env"]) >= {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"}
    assert "libraries" in env["blas"] or "error" in env["blas"]
    assert report["weights"]["resnet-50"] == {"source": str(resnet50_dir), "synthesized": False}
    assert [c["batch"] for c in report["cases"]] == [1]
    for case in report["cases"]:
        for key in bench.CASE_KEYS:
            assert key in case
        assert case["gflop"] > 0 and case["sgemm"]["median_gflops"] > 0
        peers = {p["peer"]: p for p in case["peers"]}
        assert set(peers) == {"refimpl", "refimpl-readable", "refimpl-gemms", "pytorch"}
        for row in peers.values():
            assert row["status"] == "ok", row
            for key in bench.PEER_KEYS:
                assert key in row
            assert row["memory"]["peak_rss_mb"] > 0
        assert peers["pytorch"]["ratio_to_pytorch"] == 1.0
    profile = report["profile"]
    for path in ("fast", "readable"):
        assert set(profile[path]["fractions"]) >= {"rest"}
        assert profile[path]["total_ms"] > 0
    # the profile-vs-bench gap is measured, condition by condition, and split by part
    assert set(profile["fast_conditions"]) == set(bench.PROFILE_CONDITIONS) >= {"back_to_back", "as_benched"}
    for condition, s in profile["fast_conditions"].items():
        assert s["median_total_ms"] > 0 and s["gemm"] > 0 and s["first_gemm_ms"] > 0, condition
    assert set(profile["gap_vs_back_to_back"]) == set(bench.PROFILE_CONDITIONS) - {"back_to_back"}
    assert set(profile["gap_vs_back_to_back"]["as_benched"]) == {"total_ms", "im2col copy", "gemm", "rest", "first_gemm_ms"}


def test_missing_peers_are_skipped_with_a_reason(resnet50_dir, monkeypatch):
    def missing(case, ctx):
        raise bench.Skip("not installed: onnxruntime")

    monkeypatch.setitem(bench.SETUPS, "onnxruntime", missing)
    report = bench.run(["resnet-50"], [1], ["refimpl", "onnxruntime"], repeat=1, threads=1,
                       weights={"resnet-50": resnet50_dir}, size=32, rss=False, gap=0, log=lambda *a: None)
    (case,) = report["cases"]
    rows = {p["peer"]: p for p in case["peers"]}
    assert rows["onnxruntime"] == {"peer": "onnxruntime", "status": "skipped", "reason": "not installed: onnxruntime"}
    assert rows["refimpl"]["status"] == "ok" and rows["refimpl"]["ratio_to_pytorch"] is None


def test_flop_counts_match_the_published_figures():
    """The bench's FLOPs are the summary's MACs (counted once, refimpl/viz/summary.py) x 2 x batch."""
    flops = lambda model, n, h, w: bench.model_flops(bench.Case(model, n, h, w))  # noqa: E731
    # ResNet-50 at 224x224 is the well-known 4.1 GMACs (8.2 GFLOP as 2 x MACs).
    assert abs(flops("resnet-50", 1, 224, 224) / 1e9 - 8.2) < 0.05
    assert flops("resnet-50", 8, 224, 224) == 8 * flops("resnet-50", 1, 224, 224)
    # DETR-R50 at 800x1066: the backbone alone is 140 GFLOP, the transformer adds about 22.
    assert 100 < flops("detr-resnet-50", 1, 800, 1066) / 1e9 < 200


def test_text_report_names_the_blas_and_the_environment(resnet50_dir):
    report = bench.run(["resnet-50"], [1], ["refimpl"], repeat=1, threads=1, weights={"resnet-50": resnet50_dir},
                       size=32, rss=False, gap=0, log=lambda *a: None)
    text = bench.format_report(report)
    assert "numpy BLAS:" in text and "OPENBLAS env:" in text and "refimpl" in text


def test_the_gemm_floor_replays_exactly_the_fast_paths_gemms(resnet50_dir, tmp_path):
    """The `refimpl-gemms` peer records the fast forward's GEMM calls and replays them: replaying
    reproduces what the forward's last GEMM wrote (same operands, same buffers), and it makes one
    matmul per conv (53 convs, minus the 4 shortcuts merged into conv3: 49) at batch 1."""
    import numpy as np

    from refimpl.models import fast

    case = bench.Case("resnet-50", 1, 64, 64)
    ctx = bench.Context(weights={"resnet-50": resnet50_dir}, threads=1, workdir=tmp_path)
    calls = []
    original = np.matmul
    run = bench.setup_gemm_floor(case, ctx)
    try:
        np.matmul = lambda a, b, out=None: calls.append((a.shape, b.shape)) or original(a, b, out=out)
        run()
    finally:
        np.matmul = original
    assert len(calls) == 49
    assert calls[0] == ((32 * 32, 147), (147, 64))  # the stem: 7x7x3 columns, 64 channels
    assert fast.gemm is not None and fast.gemm.__name__ == "gemm"  # the recording patch was undone
    with pytest.raises(bench.Skip, match="ResNet-50 only"):
        bench.setup_gemm_floor(bench.Case("detr-resnet-50", 1, 64, 64), ctx)
