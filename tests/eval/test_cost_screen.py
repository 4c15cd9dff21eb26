"""The cost screen: plan costs ranked against the env's state cost, predicted vs true."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval.cost_screen import screen_costs


def test_screen_ranks_the_latent_cost_on_held_out_pairs(tiny_agent_dir, tworoom_data) -> None:
    result = screen_costs(tiny_agent_dir, tworoom_data, pairs=60, seed=1)
    assert result["env"] == "lewm/TwoRoom-v0" and result["state_cost"] == "distance"
    assert result["pairs"] == 60
    (row,) = result["rows"]  # no cost head: the latent cost only
    assert row["cost"] == "latent"
    for key in ("spearman_predicted", "spearman_true"):
        assert -1.0 <= row[key] <= 1.0
    assert result["prediction_error"] > 0 and result["goal_spread"] > 0
    again = screen_costs(tiny_agent_dir, tworoom_data, pairs=60, seed=1)
    assert again["rows"] == result["rows"]
    other = screen_costs(tiny_agent_dir, tworoom_data, pairs=60, seed=2)
    assert other["rows"] != result["rows"]


def test_screen_pairs_the_reached_frame_with_its_goal(tiny_agent_dir, tworoom_data) -> None:
    """Goal = the reached frame: the true cost is 0 everywhere and the predicted one is
    exactly the prediction error, so start, reached and goal frames are wired right."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant input has no rank correlation
        result = screen_costs(tiny_agent_dir, tworoom_data, pairs=40, goal_offsets=(0, 0))
    assert result["goal_spread"] == 0.0
    assert result["prediction_error"] > 0
    assert np.isnan(result["rows"][0]["spearman_true"])


def test_screen_refuses_what_it_cannot_score(tiny_agent_dir, tworoom_data) -> None:
    with pytest.raises(ValueError, match="lewm train-cost"):
        screen_costs(tiny_agent_dir, tworoom_data, costs=["learned"], pairs=20)
    with pytest.raises(ValueError, match="pairs must be >= 10"):
        screen_costs(tiny_agent_dir, tworoom_data, pairs=3)
    with pytest.raises(ValueError, match="lo <= hi"):
        screen_costs(tiny_agent_dir, tworoom_data, goal_offsets=(5, 1))


def test_lewm_bench_cost_screen_writes_its_json(tiny_agent_dir, tworoom_data, tmp_path) -> None:
    from lewm_agent.cli import main

    out = tmp_path / "screen.json"
    argv = ["bench", "cost-screen", "--agent", str(tiny_agent_dir), "--data", str(tworoom_data)]
    assert main([*argv, "--pairs", "30", "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert [r["cost"] for r in written["rows"]] == ["latent"]
    assert np.isfinite(written["rows"][0]["spearman_predicted"])


def test_sensitivity_recovers_known_weights_per_displacement() -> None:
    from eval.cost_screen import sensitivity

    rng = np.random.default_rng(0)
    a = rng.uniform(50, 450, (200, 10))
    b = rng.uniform(50, 450, (200, 10))
    a[:, 4], b[:, 4] = rng.uniform(-np.pi, np.pi, (2, 200))
    pusher = np.hypot(*(a[:, :2] - b[:, :2]).T) / 100
    block = np.hypot(*(a[:, 2:4] - b[:, 2:4]).T) / 100
    d = a[:, 4] - b[:, 4]
    angle = np.abs(np.arctan2(np.sin(d), np.cos(d)))
    cost = 33.5 * pusher + 21.6 * block + 0.93 * angle + 7.0
    got = sensitivity(cost, a, b, "lewm/PushT-v0")
    assert got == pytest.approx(
        {"pusher_per_100px": 33.5, "block_per_100px": 21.6, "angle_per_rad": 0.93}, rel=1e-6
    )
    assert sensitivity(cost, a, b, "lewm/TwoRoom-v0") is None
