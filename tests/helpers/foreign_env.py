"""A tiny env that is NOT one of ours, for the third-party env tests.

Importing the module registers ``dotpkg/Dot-v0``, as a pip package would (so the
tests can name it ``tests.helpers.foreign_env:dotpkg/Dot-v0``). It does not follow the lewm
env contract: no ``obs_mode`` / ``image_size`` kwargs (passing them raises
TypeError), no ``info["state"]``, its observation holds the dot's position but not
its velocity, and it restores a state through its own reset option ``set_to``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import register, registry

ENV_ID = "dotpkg/Dot-v0"
GOAL = np.array([0.5, 0.5])


class DotEnv(gym.Env):
    """A dot with momentum on a black square; the goal is the centre."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None, size: int = 24, speed: float = 0.05):
        self.render_mode = render_mode
        self.size = int(size)
        self.speed = float(speed)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Dict(
            {
                "pixels": gym.spaces.Box(0, 255, (self.size, self.size, 3), np.uint8),
                "pos": gym.spaces.Box(0.0, 1.0, (2,), np.float64),
            }
        )
        self.pos = np.full(2, 0.5)
        self.vel = np.zeros(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options and options.get("set_to") is not None:  # unknown options are ignored
            s = np.asarray(options["set_to"], dtype=np.float64)
            self.pos, self.vel = s[:2].copy(), s[2:4].copy()
        else:
            self.pos = self.np_random.uniform(0.1, 0.9, 2)
            self.vel = self.np_random.uniform(-0.03, 0.03, 2)
        return self._obs(), {}

    def step(self, action: Any):
        self.vel = 0.8 * self.vel + self.speed * np.clip(np.asarray(action, np.float64), -1, 1)
        self.pos = np.clip(self.pos + self.vel, 0.0, 1.0)
        dist = float(np.linalg.norm(self.pos - GOAL))
        success = dist < 0.1
        return self._obs(), -dist, success, False, {"is_success": success}

    def _draw(self, pos: np.ndarray) -> np.ndarray:
        img = np.zeros((self.size, self.size, 3), np.uint8)
        r, c = (
            (np.clip(1 - pos[1], 0, 1) * (self.size - 3)).astype(int),
            int(pos[0] * (self.size - 3)),
        )
        img[r : r + 3, c : c + 3] = 255
        return img

    def _obs(self) -> dict[str, np.ndarray]:
        return {"pixels": self._draw(self.pos), "pos": self.pos.copy()}

    def render(self) -> np.ndarray:
        return self._draw(self.pos)


def state_fn(env: gym.Env) -> np.ndarray:
    """The full state, as ``reset(options={"set_to": ...})`` takes it back."""
    u = env.unwrapped
    return np.concatenate([u.pos, u.vel])


def goal_fn(env: gym.Env) -> np.ndarray:
    """The frame with the dot at the goal."""
    return env.unwrapped._draw(GOAL)


def broken_state_fn(env: gym.Env) -> np.ndarray:
    raise RuntimeError("broken state_fn")


# The kwargs the tests wrap the env with (callables by name, as the CLI takes them).
WRAPPER_KWARGS = {
    "state_fn": "tests.helpers.foreign_env:state_fn",
    "goal_fn": "tests.helpers.foreign_env:goal_fn",
    "frame_from": "obs",
    "state_option": "set_to",
}

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point=DotEnv, max_episode_steps=30)
