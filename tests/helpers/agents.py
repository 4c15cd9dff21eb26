"""Stub agents with the SB3 predict signature, and the batched-planning check of LeWM."""

from __future__ import annotations

import numpy as np

from envs import two_room


def _agent_xy(pixels: np.ndarray) -> np.ndarray:
    """Centroid of the agent's colour in (B, H, W, 3) frames, in [0, 1] units (x, y)."""
    mask = np.all(np.abs(pixels.astype(int) - two_room.AGENT_COLOR) < 40, axis=-1)  # (B, H, W)
    ys, xs = np.indices(mask.shape[1:])
    n = mask.sum(axis=(1, 2)).clip(1)
    size = pixels.shape[1]
    x = ((mask * xs).sum((1, 2)) / n + 0.5) / size
    y = 1.0 - ((mask * ys).sum((1, 2)) / n + 0.5) / size  # image rows grow downwards
    return np.stack([x, y], 1)


class PixelOracle:
    """Reads the agent and goal positions off the images and walks via the door."""

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        pos, goal = _agent_xy(obs["pixels"]), _agent_xy(obs["goal"])
        way = two_room_waypoint(pos, goal)
        d = way - pos
        return np.clip(d / np.maximum(np.abs(d).max(1, keepdims=True), 1e-6), -1, 1), None


def two_room_waypoint(pos, goal):
    from envs.scripted import TwoRoomHeuristic

    return TwoRoomHeuristic.waypoint(pos, goal)


class DoNothing:
    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        return np.zeros((len(obs["pixels"]), 2), np.float32), None


def assert_batched_predict_equals_per_env(agent_dir, observations: list[dict], **plan) -> None:
    """Env i of a batch gets the plan a single-env agent loaded with seed + i gets.

    Float rounding differs between batch sizes (~1e-7) and the softmax weighting
    amplifies it a little over iterations: ~1e-3 measured, so 1e-2 is the bar. The
    envs' own plans differ far more (other goals and frames), so a mix-up of envs,
    goals or generators fails.
    """
    from lewm_agent import WorldModelAgent

    base = WorldModelAgent.load(agent_dir, **plan)
    batch = {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    batched, _ = base.predict(batch)
    assert batched.shape == (len(observations), *base.action_low.shape)
    singles = []
    for i, obs in enumerate(observations):
        seed = base.plan_config.seed + i
        singles.append(WorldModelAgent.load(agent_dir, seed=seed, **plan).predict(obs)[0])
        np.testing.assert_allclose(batched[i], singles[-1], atol=1e-2)
    n = len(singles)
    gaps = [np.abs(singles[i] - singles[j]).max() for i in range(n) for j in range(i + 1, n)]
    assert min(gaps) > 0.05, gaps
