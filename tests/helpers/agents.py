"""Stub agents with the SB3 predict signature, for the protocol and comparison tests."""

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
