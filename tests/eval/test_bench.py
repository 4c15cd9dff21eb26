"""`python -m eval.bench`: the planning benchmark (timings, FLOPs, matmul peak)."""

import pytest


def test_planning_benchmark_runs_and_counts_flops():
    from eval.bench import bench_planning

    out = bench_planning(repeats=3, presets=["test"], env_counts=[1, 2], scaling_preset="test")
    res = out["test"]
    assert res["tflop_per_plan"] > 0 and res["seconds_per_plan"] > 0
    # One peak per timed plan, and the ratio is computed from their median.
    assert len(res["all_peaks_gflops"]) == len(res["all_seconds"]) == 3
    assert res["matmul_peak_gflops"] == sorted(res["all_peaks_gflops"])[1]
    expected = res["tflop_per_plan"] * 1e3 / res["seconds_per_plan"] / res["matmul_peak_gflops"]
    assert res["peak_ratio"] == pytest.approx(expected)
    assert set(out["scaling_seconds"]) == {"1", "2"}
