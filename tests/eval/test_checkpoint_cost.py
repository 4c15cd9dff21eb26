"""A checkpoint's plan cost on rendered exact states: wiring, the ceiling run, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eval.ceiling import CEILING_PLAN, ceiling
from eval.checkpoint_cost import CheckpointCost, checkpoint_state_cost
from eval.protocol import ProtocolEpisode
from lewm_agent.config import replace

TWOROOM = "lewm/TwoRoom-v0"
SMALL = replace(CEILING_PLAN, samples=24, iterations=2, elites=4, horizon=2, receding_horizon=2)


def test_the_cost_is_the_plan_cost_of_the_rendered_frames(tiny_agent_dir) -> None:
    from envs.build import make_env
    from lewm_agent import WorldModelAgent
    from lewm_agent.heads import embed_frames

    cost, described = checkpoint_state_cost(TWOROOM, CheckpointCost(agent=str(tiny_agent_dir)))
    assert described["cost"] == "latent" and described["over"] == "final"
    states = np.array([[0.2, 0.3], [0.7, 0.6], [0.35, 0.45]], np.float32)  # (3, 2)
    goal = np.array([0.35, 0.45], np.float32)
    got = cost(states, goal)  # (3,)
    # by hand: the env draws each state, the checkpoint encodes, squared distance to the goal's
    agent = WorldModelAgent.load(tiny_agent_dir, device="cpu")
    env = make_env(TWOROOM, image_size=agent.model_config.image_size).unwrapped
    env.reset(seed=0)
    frames = np.stack([env.render_state(s) for s in [*states, goal]])  # (4, H, W, 3)
    z = embed_frames(agent.model, frames, torch.device("cpu"))  # (4, D)
    want = (z[:3] - z[3]).square().sum(-1).double().numpy()  # (3,)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
    assert got[2] < 1e-9  # the goal's own state is its own frame (0 up to batch rounding)
    assert got[0] > 0 and got[1] > 0


def test_ceiling_plans_with_a_checkpoint_cost(tiny_agent_dir) -> None:
    pair = ProtocolEpisode("tr", 0, np.array([0.2, 0.3], np.float32), np.array([0.3, 0.4]))
    cfg = CheckpointCost(agent=str(tiny_agent_dir))
    out = ceiling(TWOROOM, [pair], cfg, SMALL, budget=10)
    assert out["cost"]["agent"] == str(tiny_agent_dir)
    assert out["cost"]["on"] == "frames rendered from exact states"
    assert out["decisions"] >= 1 and out["episodes"] == 1
    assert out["mean_steps"] <= 10


def test_checkpoint_cost_refuses_what_it_cannot_score(tiny_agent_dir) -> None:
    with pytest.raises(ValueError, match="trained on 'lewm/TwoRoom-v0', not 'lewm/PushT-v0'"):
        checkpoint_state_cost("lewm/PushT-v0", CheckpointCost(agent=str(tiny_agent_dir)))
    with pytest.raises(ValueError, match="lewm train-cost"):
        checkpoint_state_cost(TWOROOM, CheckpointCost(agent=str(tiny_agent_dir), cost="learned"))
    with pytest.raises(ValueError, match="cost must be one of"):
        CheckpointCost(agent="x", cost="pose")
    with pytest.raises(ValueError, match="'final' or 'blocks'"):
        CheckpointCost(agent="x", over="all")


def test_lewm_bench_ceiling_with_an_agent(tiny_agent_dir, tworoom_data, tmp_path) -> None:
    from lewm_agent.cli import main

    out = tmp_path / "ceiling.json"
    argv = ["bench", "ceiling", "--data", str(tworoom_data), "--episodes", "1"]
    small = ["--samples", "16", "--iterations", "2", "--elites", "4", "--horizon", "2"]
    small += ["--receding-horizon", "2"]
    assert main([*argv, *small, "--agent", str(tiny_agent_dir), "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["cost"]["cost"] == "latent" and written["planner"]["episodes"] == 1
    with pytest.raises(SystemExit, match="do not apply to --agent"):
        main([*argv, "--agent", str(tiny_agent_dir), "--contact-weight", "1"])
    with pytest.raises(SystemExit, match="cost must be one of"):
        main([*argv, "--agent", str(tiny_agent_dir), "--cost", "block_pose"])
