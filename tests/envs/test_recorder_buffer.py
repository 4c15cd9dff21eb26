"""RecordEpisodes' preallocated episode arrays: every stored row is the step it claims.

A fake env renders (episode, step) into its frames and states, reusing one canvas
array for every render (as many renderers do), so a row copied from the wrong step,
left over from an earlier or dropped episode, lost when the arrays grow, not copied
out of the env's canvas, or overwritten by the next episode while its background
write was still running, shows up as a mismatch.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs.record as record
from envs.wrappers import RecordEpisodes
from lewm_agent.data import EpisodeWriter, load_dataset

SIZE = 8
# (episode length, steps actually taken): the third episode is interrupted by reset()
# and must not be stored; the second and fifth outgrow the 4-row first buffer.
PLAN = [(3, 3), (11, 11), (5, 2), (1, 1), (9, 9), (6, 6)]


def frame(ep: int, k: int) -> np.ndarray:
    f = np.empty((SIZE, SIZE, 3), np.uint8)
    f[..., 0], f[..., 1], f[..., 2] = ep, k, 7 * ep + k
    return f


def action(ep: int, k: int) -> np.ndarray:
    """Action before step k; out of bounds on odd k (the recorder stores it clipped)."""
    return np.array([0.1 * ep, 1.5 if k % 2 else -0.01 * k], np.float32)


class CountingEnv(gym.Env):
    """Episode ``ep`` lasts ``lengths[ep]`` steps; frame and state encode ``(ep, k)``."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, lengths: list[int], pixels_in_obs: bool) -> None:
        self.lengths = lengths
        self.pixels_in_obs = pixels_in_obs
        self.render_mode = "rgb_array"
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.ep, self.k = -1, 0
        self.canvas = np.zeros((SIZE, SIZE, 3), np.uint8)  # reused by every render
        self.on_last_step: Any = None

    def _out(self) -> tuple[Any, dict[str, Any]]:
        state = np.array([self.ep, self.k], np.float32)
        obs = {"pixels": self.render(), "state_vec": state} if self.pixels_in_obs else state
        return obs, {"state": state.copy()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.ep, self.k = self.ep + 1, 0
        return self._out()

    def step(self, a: np.ndarray):
        np.testing.assert_array_equal(a, action(self.ep, self.k))
        self.k += 1
        terminated = self.k == self.lengths[self.ep]
        if terminated and self.on_last_step is not None:
            self.on_last_step(self.ep)
        obs, info = self._out()
        return obs, 0.0, terminated, False, info

    def render(self) -> np.ndarray:
        self.canvas[...] = frame(self.ep, self.k)
        return self.canvas


@pytest.mark.parametrize("background", [True, False])
@pytest.mark.parametrize("pixels_in_obs", [False, True])
def test_every_stored_row_is_the_step_it_claims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, background: bool, pixels_in_obs: bool
) -> None:
    monkeypatch.setattr(record, "_FIRST_BUFFER_FRAMES", 4)  # the env has no time limit
    env = CountingEnv([n for n, _ in PLAN], pixels_in_obs)
    assert env.spec is None

    # Background: episode k's write blocks until the last step of the next finished
    # episode, so that whole episode is recorded while write k holds its arrays.
    gates: dict[int, threading.Event] = {}
    finished: list[int] = []
    real_write = EpisodeWriter.write

    def gated_write(self: EpisodeWriter, pixels, actions, states, *args: Any) -> Path:
        ep = int(states[0, 0])
        assert gates.setdefault(ep, threading.Event()).wait(30), f"episode {ep} never released"
        return real_write(self, pixels, actions, states, *args)

    def on_last_step(ep: int) -> None:
        for done in finished:
            gates.setdefault(done, threading.Event()).set()
        finished.append(ep)

    if background:
        monkeypatch.setattr(EpisodeWriter, "write", gated_write)
        env.on_last_step = on_last_step

    rec = RecordEpisodes(env, tmp_path / "ds", background=background)
    for ep, (_, steps) in enumerate(PLAN):
        rec.reset(seed=ep)
        for k in range(steps):
            rec.step(action(ep, k))
    for ep in range(len(PLAN)):
        gates.setdefault(ep, threading.Event()).set()  # the last write
    rec.close()

    stored = [(ep, n) for ep, (n, steps) in enumerate(PLAN) if steps == n]
    ds = load_dataset(tmp_path / "ds")
    assert len(ds) == len(stored) == rec.episodes_written
    for e, (ep, n) in zip(ds.episodes, stored, strict=True):
        assert len(e) == n and e.terminated and not e.truncated
        np.testing.assert_array_equal(e.pixels, np.stack([frame(ep, k) for k in range(n + 1)]))
        np.testing.assert_array_equal(e.states, [[ep, k] for k in range(n + 1)])
        expected = np.clip(np.stack([action(ep, k) for k in range(n)]), -1.0, 1.0)
        np.testing.assert_array_equal(e.actions, expected)


def test_a_shape_change_within_an_episode_is_an_error(tmp_path: Path) -> None:
    env = CountingEnv([5, 5], pixels_in_obs=False)
    rec = RecordEpisodes(env, tmp_path / "ds")
    rec.reset(seed=0)
    rec.step(action(0, 0))
    env.render = lambda: np.zeros((SIZE + 1, SIZE + 1, 3), np.uint8)
    with pytest.raises(ValueError, match="frame shape changed within an episode"):
        rec.step(action(0, 1))
    del env.render
    rec.reset(seed=1)
    env.step = lambda a: (np.zeros(2), 0.0, False, False, {"state": np.zeros(3)})
    with pytest.raises(ValueError, match="state shape changed within an episode"):
        rec.step(action(1, 0))
    rec.close()
