"""`lewm bench gpu` on a CPU: the reduced size runs, says what it skipped, writes its JSON."""

import json

import pytest

from eval.bench_gpu import PAPER_BATCH, REDUCED, bench_gpu
from lewm_agent.cli import main


def test_cli_on_cpu_runs_reduced_and_says_what_it_skipped(tmp_path, capsys):
    """The `test` preset keeps it quick; the sizes are the CPU's reduced ones."""
    out = tmp_path / "gpu.json"
    assert main(["bench", "gpu", "--device", "cpu", "--preset", "test", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    step, plan = result["train_step"], result["plan"]
    assert result["device"]["device"] == "cpu"
    assert (step["batch"], plan["samples"], plan["iterations"]) == (
        REDUCED.batch,
        REDUCED.samples,
        REDUCED.iterations,
    )
    assert step["precision"] == plan["precision"] == "float32"
    assert step["ms_per_step"] > 0 and len(step["all_ms"]) == REDUCED.train_repeats
    assert step["loss_finite"] and step["weights_float32"]
    assert plan["seconds_per_plan"] > 0 and len(plan["all_seconds"]) == REDUCED.plan_repeats
    assert plan["plan_shape"] == [1, plan["horizon"], 10]  # (envs, H, frameskip * A)
    assert plan["rollout"] == "LatentRollout"  # the CPU's exact float32 rollout
    (skipped,) = result["skipped"]
    assert f"training batch {PAPER_BATCH}" in skipped and "device cpu asked for" in skipped
    assert f"skipped: {skipped}" in printed and f"wrote {out}" in printed


def test_sizes_given_replace_the_defaults():
    lines: list[str] = []
    result = bench_gpu(
        "cpu",
        preset="test",
        batch=2,
        samples=8,
        iterations=2,
        repeats=1,
        warmup=0,
        echo=lines.append,
    )
    assert result["train_step"]["batch"] == 2 and result["train_step"]["warmup"] == 0
    assert (result["plan"]["samples"], result["plan"]["iterations"]) == (8, 2)
    assert result["plan"]["seconds_per_iteration"] == pytest.approx(
        result["plan"]["seconds_per_plan"] / 2
    )
    assert any(line.startswith("test training step: batch 2 x 3 frames") for line in lines)


def test_negative_warmup_is_refused():
    with pytest.raises(SystemExit, match="--warmup must be >= 0"):
        main(["bench", "gpu", "--device", "cpu", "--warmup", "-1"])


@pytest.mark.slow
def test_paper_preset_reduced_on_cpu(tmp_path):
    """The default (`make gpu-check` without CUDA): the paper preset at the reduced size."""
    out = tmp_path / "gpu.json"
    assert main(["bench", "gpu", "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["train_step"]["image_size"] == 224 and result["plan"]["history"] == 3
    assert result["train_step"]["loss_finite"]
