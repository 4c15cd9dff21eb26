"""Scripted data policies: random and noisy heuristic experts (the envs' data policies).

They collect the reward-free training data and serve as sanity baselines. All
share the stable-baselines3 ``predict(observation, state=None, episode_start=None,
deterministic=False) -> (actions, state)`` signature and accept single or batched
(leading batch dimension, as from a vector env) observations.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs import two_room
from envs.common import BatchedPolicy
from envs.spec import SPEC_POLICIES, env_specs

_WALL_X = two_room.WALL_X
_DOOR_Y = two_room.DOOR_CENTER_Y


def _is_batched(observation: Any, observation_space: gym.Space | None) -> bool:
    """Whether ``observation`` carries a leading batch dimension.

    With an ``observation_space`` this is exact. Without one: dict observations are
    judged by ``pixels`` (4-D = batch of images) or ``observation``/``state`` (2-D =
    batch of vectors); plain arrays are batched when 2-D (vectors) or 4-D (images).
    """
    if observation_space is not None:
        if isinstance(observation_space, gym.spaces.Dict):
            key = next(iter(observation_space.spaces))
            return np.ndim(observation[key]) > len(observation_space[key].shape)
        return np.ndim(observation) > len(observation_space.shape)
    if isinstance(observation, dict):
        if "pixels" in observation:
            return np.ndim(observation["pixels"]) == 4
        for key in ("observation", "state"):
            if key in observation:
                return np.ndim(observation[key]) == 2
        raise ValueError(
            f"cannot tell whether an observation with keys {list(observation)} is batched; "
            "pass observation_space"
        )
    return np.ndim(observation) in (2, 4)


def _batch_size(observation: Any) -> int:
    first = next(iter(observation.values())) if isinstance(observation, dict) else observation
    return int(np.shape(first)[0])


class RandomPolicy:
    """Uniformly random actions from a ``Box`` action space (seeded, reproducible).

    Args:
        action_space: the env's (single, unbatched) action space.
        seed: seed of the policy's own generator.
        observation_space: optional; makes single-vs-batched detection exact.
    """

    def __init__(
        self,
        action_space: gym.spaces.Box,
        seed: int | None = None,
        observation_space: gym.Space | None = None,
    ) -> None:
        if not isinstance(action_space, gym.spaces.Box):
            raise TypeError(f"RandomPolicy needs a Box action space, got {action_space}")
        self.action_space = action_space
        self.observation_space = observation_space
        self.rng = np.random.default_rng(seed)

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """Random actions: ``(A,)`` for a single observation, ``(B, A)`` for a batch."""
        batched = _is_batched(observation, self.observation_space)
        n = _batch_size(observation) if batched else 1
        low, high = self.action_space.low, self.action_space.high
        actions = self.rng.uniform(low, high, size=(n, *self.action_space.shape))  # (B, A)
        actions = actions.astype(self.action_space.dtype)
        return (actions if batched else actions[0]), state


class TwoRoomHeuristic(BatchedPolicy):
    """Noisy expert for Two-Room acting on the GoalEnv *state* observation.

    Heads for the door when the goal is in the other room, then for the goal, at
    full speed. Noise makes the data cover the rooms and sometimes fail (as the
    paper's collector does): Gaussian noise of std ``noise`` on the unit direction,
    and with probability ``burst_prob`` per step a burst: one uniformly random action
    held for ``burst_len`` steps (a straight excursion). Actions are capped to ``[-1, 1]``.

    Use with ``obs_mode="state"``: ``observation`` is the agent position and
    ``desired_goal`` the goal position, ``(2,)`` or batched ``(B, 2)``.

    If the agent is at its goal and the episode goes on (data collection runs the
    env with ``terminate_on_success=False``), it picks a fresh uniformly random legal
    target and keeps travelling, so long episodes keep covering both rooms.
    ``episode_start`` (a ``(B,)`` bool mask) clears the burst and target memory; so
    does a change of ``desired_goal`` (a new episode), for callers that omit it.
    """

    def __init__(
        self,
        noise: float = 0.5,
        seed: int | None = None,
        burst_prob: float = 0.04,
        burst_len: tuple[int, int] = (3, 12),
    ) -> None:
        if noise < 0 or not 0 <= burst_prob <= 1 or not 1 <= burst_len[0] <= burst_len[1]:
            raise ValueError("need noise >= 0, 0 <= burst_prob <= 1, 1 <= burst_len[0] <= [1]")
        self.noise = float(noise)
        self.burst_prob = float(burst_prob)
        self.burst_len = (int(burst_len[0]), int(burst_len[1]))
        self.rng = np.random.default_rng(seed)
        self._burst_left = np.zeros(0, dtype=np.int64)  # (B,) random steps left per env
        self._burst_action = np.zeros((0, 2), dtype=np.float32)  # (B, 2)
        self._target = np.zeros((0, 2), dtype=np.float64)  # (B, 2) own target, NaN = goal
        self._last_goal = np.zeros((0, 2), dtype=np.float64)  # (B, 2) goal seen last call

    def _random_targets(self, n: int) -> np.ndarray:
        """``n`` uniform legal positions, ``(n, 2)`` (rejection sampling)."""
        out = np.empty((n, 2), dtype=np.float64)
        for i in range(n):
            while True:
                x, y = self.rng.uniform(two_room.AGENT_RADIUS, 1 - two_room.AGENT_RADIUS, 2)
                if two_room.is_legal_position(float(x), float(y)):
                    out[i] = (x, y)
                    break
        return out

    @staticmethod
    def waypoint(pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Where to head next, ``(B, 2)``: the goal, or the door if the goal is across the wall."""
        pos_side = pos[:, 0] >= _WALL_X  # (B,) True = right room
        goal_side = goal[:, 0] >= _WALL_X  # (B,)
        target = goal.copy()  # (B, 2)
        cross = pos_side != goal_side
        # Aim at the door centre; once lined up with it, aim just past it so the
        # agent crosses instead of dithering at x = 0.5.
        lined_up = np.abs(pos[:, 1] - _DOOR_Y) < 0.04
        past = np.where(goal_side, _WALL_X + 0.1, _WALL_X - 0.1)  # (B,)
        target[cross, 0] = np.where(lined_up[cross], past[cross], _WALL_X)
        target[cross, 1] = _DOOR_Y
        return target

    def _actions(
        self, observation: Any, episode_start: np.ndarray | None, deterministic: bool
    ) -> tuple[np.ndarray, bool]:
        """Actions ``(B, 2)`` (see ``predict``); ``deterministic=True`` disables all noise."""
        if not isinstance(observation, dict) or "desired_goal" not in observation:
            raise TypeError(
                "TwoRoomHeuristic acts on the GoalEnv state observation "
                "(make the env with obs_mode='state')"
            )
        pos = np.asarray(observation["observation"], dtype=np.float64)
        goal = np.asarray(observation["desired_goal"], dtype=np.float64)
        if pos.shape[-1:] != (2,) or pos.ndim > 2 or goal.shape != pos.shape:
            raise ValueError(
                "TwoRoomHeuristic needs observation and desired_goal of equal shape (2,) "
                f"or (B, 2); got {pos.shape} and {goal.shape} (make the env with "
                "obs_mode='state', and stack a batch along the first axis)"
            )
        batched = pos.ndim == 2
        pos = pos.reshape(-1, 2)  # (B, 2)
        goal = goal.reshape(-1, 2)  # (B, 2)
        b = pos.shape[0]
        if self._burst_left.shape[0] != b:
            self._burst_left = np.zeros(b, dtype=np.int64)
            self._burst_action = np.zeros((b, 2), dtype=np.float32)
            self._target = np.full((b, 2), np.nan)
            self._last_goal = goal.copy()
        new_episode = np.any(goal != self._last_goal, axis=1)  # (B,)
        if episode_start is not None:
            new_episode |= np.asarray(episode_start, dtype=bool).reshape(-1)
        self._burst_left[new_episode] = 0
        self._target[new_episode] = np.nan
        self._last_goal = goal.copy()

        # Own target if one was picked, else the env's goal; re-target once reached.
        target = np.where(np.isnan(self._target), goal, self._target)  # (B, 2)
        reached = np.linalg.norm(target - pos, axis=1) < two_room.SUCCESS_RADIUS  # (B,)
        if reached.any():
            self._target[reached] = self._random_targets(int(reached.sum()))
            target[reached] = self._target[reached]

        delta = self.waypoint(pos, target) - pos  # (B, 2)
        direction = delta / np.maximum(np.linalg.norm(delta, axis=1, keepdims=True), 1e-8)
        if deterministic:
            actions = direction
        else:
            actions = direction + self.noise * self.rng.standard_normal((b, 2))  # (B, 2)
            start = (self._burst_left == 0) & (self.rng.random(b) < self.burst_prob)  # (B,)
            n_start = int(start.sum())
            if n_start:
                lo, hi = self.burst_len
                self._burst_left[start] = self.rng.integers(lo, hi + 1, size=n_start)
                self._burst_action[start] = self.rng.uniform(-1, 1, size=(n_start, 2))
            in_burst = self._burst_left > 0
            actions[in_burst] = self._burst_action[in_burst]
            self._burst_left[in_burst] -= 1
        return actions, batched  # (B, 2)


DATA_POLICIES: tuple[str, ...] = ("random", *SPEC_POLICIES)


def make_data_policy(
    name: str, env_id: str, action_space: gym.spaces.Box, seed: int | None = None
) -> Any:
    """Build a data-collection policy by name: ``"random"``, ``"scripted"``, ``"expert"``
    or ``"oracle"`` (the last three from the env's :class:`envs.spec.EnvSpec`).

    ``"scripted"`` is the env's noisy heuristic, the same policy the comparison's agent
    ``scripted`` runs deterministically. The
    returned object has the SB3 ``predict`` signature and accepts batched observations
    (as collected from a vector env).
    """
    if name == "random":
        return RandomPolicy(action_space, seed=seed)
    if name in SPEC_POLICIES:  # the env's own, from its spec (envs/<env>_spec.py)
        factories = {s.id: s.data_policies[name] for s in env_specs() if name in s.data_policies}
        if env_id not in factories:
            other = (
                "use --policy random for other envs"
                if name == "scripted"
                else "or use policy 'scripted' or 'random'"
            )
            raise ValueError(
                f"no {name} data policy for {env_id!r}; known: {sorted(factories)} ({other})"
            )
        return factories[env_id](action_space, seed)
    raise ValueError(f"unknown data policy {name!r}; choose one of {DATA_POLICIES}")
