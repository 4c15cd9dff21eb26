"""Tiny synthetic datasets: a drifting dot (actions predictable) and a moving square.

`write_drift_dataset`: a dataset whose actions ARE predictable from (frame, goal frame).

The Two-Room heuristic's actions are mostly noise (a linear fit from the true
state and a hindsight goal explains ~17% of their variance), so "the loss
falls" tests of the imitation learners use this instead: a dot drifting at a
constant velocity per episode, the velocity being the action. Any frame later
in the episode shows which way the dot went.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lewm_agent.data import EpisodeWriter

SIZE = 32


def render_dot(p: np.ndarray, size: int = SIZE) -> np.ndarray:
    """uint8 (size, size, 3): a 3x3 white dot at position p in [0, 1]^2."""
    img = np.zeros((size, size, 3), dtype=np.uint8)
    x, y = np.clip((p * (size - 1)).round().astype(int), 1, size - 2)
    img[y - 1 : y + 2, x - 1 : x + 2] = 255
    return img


def write_drift_dataset(root: Path, episodes: int = 30, length: int = 60, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with EpisodeWriter(
        root,
        env_id="test/Drift-v0",
        image_size=SIZE,
        action_low=[-1.0, -1.0],
        action_high=[1.0, 1.0],
        state_dim=2,
        collector="constant drift",
    ) as w:
        for _ in range(episodes):
            a = rng.uniform(-1, 1, size=2).astype(np.float32)
            p = rng.uniform(0.3, 0.7, size=2)
            states = [p.copy()]
            for _ in range(length):
                p = np.clip(p + 0.008 * a, 0.03, 0.97)
                states.append(p.copy())
            states = np.asarray(states, dtype=np.float32)  # (T+1, 2)
            pixels = np.stack([render_dot(s) for s in states])  # (T+1, H, W, 3)
            actions = np.repeat(a[None], length, axis=0)  # (T, 2)
            w.write(pixels, actions, states, terminated=False, truncated=True)
    return root


def square_writer(root: Path, size: int = 32, **kwargs) -> EpisodeWriter:
    """The writer of the red-square datasets: 2-D actions in [-1, 1], 2-D states."""
    return EpisodeWriter(
        root,
        env_id="test/Square-v0",
        image_size=size,
        action_low=[-1, -1],
        action_high=[1, 1],
        state_dim=2,
        **kwargs,
    )


def moving_square_dataset(path: Path, episodes: int = 12, steps: int = 60, size: int = 32, seed=0):
    """A square that moves by the action: learnable dynamics for the tiny preset."""
    from lewm_agent.data import load_dataset

    rng = np.random.default_rng(seed)
    w = square_writer(path, size)
    for _ in range(episodes):
        pos = rng.uniform(6, size - 6, 2)
        acts = rng.uniform(-1, 1, (steps, 2)).astype(np.float32)
        states, frames = [], []
        for t in range(steps + 1):
            img = np.full((size, size, 3), 240, np.uint8)
            x, y = pos.astype(int)
            img[y - 3 : y + 3, x - 3 : x + 3] = (200, 30, 30)
            frames.append(img)
            states.append(pos.copy())
            if t < steps:
                pos = np.clip(pos + 1.5 * acts[t], 4, size - 4)
        w.write(np.stack(frames), acts, np.stack(states), False, True)
    return load_dataset(path)
