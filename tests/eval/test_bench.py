"""`lewm bench`: the planning benchmark (timings, FLOPs, matmul peak)."""

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


@pytest.mark.slow
def test_cpu_preset_planning_benchmark_writes_sane_json(tmp_path):
    """`lewm bench planning` on the real `cpu` preset, as `make bench` runs it.

    Slow: every CEM 300 x 10 plan costs around a second of CPU. The FLOP count is exact (counted over the real rollout), so it pins the model
    and planner docs/results/planning.md reports (0.10 TFLOP per plan); the peak ratio is
    relative to the same run's matmul peak, so load barely moves it: below 0.3 the rollout has lost its batching.
    """
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "bench.json"
    # fmt: off
    argv = ["planning", "--presets", "cpu", "--repeats", "3", "--envs", "1,4", "--threads", "1",
            "--json", str(out)]
    # fmt: on
    proc = subprocess.run(
        [sys.executable, "-m", "lewm_agent.cli", "bench", *argv],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["threads"] == 1 and res["scaling_preset"] == "cpu"
    cpu = res["cpu"]
    assert cpu["plan"] == "cem 300 x 10, horizon 5, history 1"
    assert cpu["tflop_per_plan"] == pytest.approx(0.102, rel=0.02)
    assert len(cpu["all_seconds"]) == len(cpu["all_peaks_gflops"]) == 3
    assert cpu["seconds_per_plan"] == sorted(cpu["all_seconds"])[1] > 0
    assert cpu["achieved_gflops"] == pytest.approx(
        cpu["tflop_per_plan"] * 1e3 / cpu["seconds_per_plan"]
    )
    assert 0.3 < cpu["peak_ratio"] < 1.5, cpu
    seconds = res["scaling_seconds"]
    # Four envs planned together: more work than one, at most ~linear.
    assert set(seconds) == {"1", "4"} and seconds["1"] < seconds["4"] < 8 * seconds["1"], seconds
