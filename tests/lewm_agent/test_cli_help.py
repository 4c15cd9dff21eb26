"""What a new user reads: help texts, sub-usages, names, and the messages that say why."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from lewm_agent.cli import main as lewm

HELP_COMMANDS = [
    [],
    ["collect"],
    ["train"],
    ["eval"],
    ["compare"],
    ["videos"],
    ["info"],
    ["data"],
    ["probe"],
    ["probe", "state"],
    ["probe", "surprise"],
    ["zoo"],
    ["zoo", "add"],
    ["bench"],
    ["bench", "planning-quality"],
    ["suite"],
    ["demo"],
]  # every command of the tree: tests/lewm_agent/test_cli_tree.py


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        lewm([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", HELP_COMMANDS, ids=lambda a: " ".join(a) or "lewm")
def test_help_says_lewm_and_has_no_escaped_percent(argv, capsys) -> None:
    text = _help(argv, capsys)
    assert text.startswith("usage: lewm"), text[:200]
    assert "python -m" not in text.split("\n\n")[0]  # the usage block names `lewm ...`
    assert "%%" not in text


def test_eval_help_points_at_compare_and_videos(capsys) -> None:
    text = _help(["eval"], capsys)
    assert "`lewm compare`" in text and "`lewm videos`" in text and "--episodes-from" in text
    assert _help(["compare"], capsys).startswith("usage: lewm compare")
    assert "95% Wilson" in _help(["compare"], capsys)


def test_probe_has_one_name_per_experiment(capsys) -> None:
    text = _help(["probe"], capsys)
    assert "state" in text and "surprise" in text and "straightness" in text
    with pytest.raises(SystemExit) as e:  # the old name `probe probe` is gone
        lewm(["probe", "probe", "x", "--data", "d"])
    assert e.value.code == 2


def test_one_name_for_the_scripted_policy(capsys) -> None:
    collect_help = _help(["collect"], capsys)
    assert "scripted" in collect_help and "MODULE:ID" in collect_help
    from lewm_agent.cli import build_parser

    args = build_parser().parse_args(["collect", "--env", "lewm/TwoRoom-v0", "--episodes", "1",
                                      "--out", "x"])  # fmt: skip
    assert args.policy == "scripted"  # collect's default is compare's `scripted`


def test_eval_without_data_says_what_the_dataset_is_for(tiny_agent_dir, capsys) -> None:
    with pytest.raises(SystemExit, match="start/goal pairs.*--episodes-from env"):
        lewm(["eval", "--agent", str(tiny_agent_dir)])
    with pytest.raises(SystemExit, match="start/goal pairs.*--episodes-from env"):
        lewm(
            ["compare", "--env", "lewm/TwoRoom-v0", "--agents", "random", "--data", "/nonexistent"]
        )


def test_compare_random_and_scripted_with_episodes_from_the_env(tmp_path: Path) -> None:
    """No dataset and no learned agent: start/goal pairs from the env's own resets."""
    from eval.protocol import sample_env_episodes

    out = tmp_path / "cmp"
    argv = ["--env", "lewm/TwoRoom-v0", "--agents", "random,scripted", "--episodes-from", "env",
            "--episodes", "4", "--image-size", "32", "--out", str(out), "--no-progress"]  # fmt: skip
    assert lewm(["compare", *argv]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"random", "scripted"}
    assert results["random"]["episodes"] == results["scripted"]["episodes"] == 4
    assert results["scripted"]["successes"] > results["random"]["successes"]
    assert "sampled by the env's reset" in (out / "results.md").read_text()
    # The pairs are the env's own resets, seeded: the same every time.
    a = sample_env_episodes("lewm/TwoRoom-v0", n=3, seed=42, image_size=32)
    b = sample_env_episodes("lewm/TwoRoom-v0", n=3, seed=42, image_size=32)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.start_state, y.start_state)
        np.testing.assert_array_equal(x.goal_state, y.goal_state)
    assert not np.array_equal(a[0].goal_state, a[1].goal_state)


def test_fit_says_when_it_trains_at_the_datas_size(tmp_path: Path, capsys) -> None:
    import warnings

    from lewm_agent import WorldModelAgent
    from tests.helpers.synthetic import moving_square_dataset

    moving_square_dataset(tmp_path / "d64", episodes=3, steps=20, size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        agent = WorldModelAgent.fit(tmp_path / "d64", preset="test", steps=2, progress=False)
    assert agent.model_config.image_size == 64
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "px" in ln]
    assert lines == [
        "training at the dataset's 64 px, not the configured 32 px (record with "
        "--image-size 32 to train at 32 px)"
    ]


def test_eval_progress_moves_during_a_plan(tiny_agent_dir, tworoom_data, capsys) -> None:
    """A planning agent's bar counts plans and moves after every planner iteration."""
    from eval.compare import protocol_episodes
    from eval.protocol import run_protocol
    from lewm_agent import WorldModelAgent

    agent = WorldModelAgent.load(tiny_agent_dir, device="cpu")
    calls: list[tuple[int, int, int]] = []
    agent.plan_callback = lambda *a: calls.append(a)
    episodes, _ = protocol_episodes(tworoom_data, n=3)
    agent.predict({k: np.zeros((3, 32, 32, 3), np.uint8) for k in ("pixels", "goal")})
    iters = agent.plan_config.iterations
    assert calls == [(i, iters, 3) for i in range(1, iters + 1)]  # one call per iteration
    mine = agent.plan_callback
    run_protocol("lewm/TwoRoom-v0", agent, episodes, env_kwargs={"image_size": 32}, budget=10)
    assert agent.plan_callback is mine  # restored after the run
    err = capsys.readouterr().err
    assert "plans" in err and "/3 plans" in err  # 3 envs x ceil(10 / 25) plans


def test_commands_end_by_listing_the_files_they_wrote(
    tworoom_data, tmp_path, capsys, monkeypatch
) -> None:
    import warnings

    from eval import bench

    # The 2048^2 matmul peak is measured before every timed plan: seconds each here.
    monkeypatch.setattr(bench, "matmul_peak_gflops", lambda n=2048, repeats=10: 100.0)
    fast = functools.partial(bench.bench_planning, scaling_preset="test")  # not `cpu`
    monkeypatch.setattr(bench, "bench_planning", fast)

    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        argv = ["train", "--data", str(tworoom_data), "--out", str(run), "--preset", "test",
                "--steps", "4", "--checkpoint-every", "2"]  # fmt: skip
        assert lewm(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    for name in ("config.json", "model.safetensors", "stats.json", "train_curves.png"):
        assert str(run / name) in last, last
    assert not (run / "train_state").exists()  # finished: the optimiser state is gone

    path = tmp_path / "bench.json"
    argv = ["bench", "planning", "--presets", "test", "--envs", "1", "--repeats", "1", "--json",
            str(path)]  # fmt: skip
    assert lewm(argv) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith(f"wrote {path}") and path.is_file()
    assert "plan" in err  # the progress bar, in plans
