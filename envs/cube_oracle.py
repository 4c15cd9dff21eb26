"""OGBench's scripted cube oracle as a batched data policy for ``lewm/Cube-v0``.

The pick-and-place logic is OGBench's own Markov oracle
(``ogbench.manipspace.oracles.markov.cube_markov.CubeMarkovOracle``: move above the
cube, descend, grasp, lift, carry above the target, descend, release, lift off, move
to a random final pose), one instance per env. It reads OGBench's privileged info
dict; this module rebuilds that dict from the env's *state* observation (OGBench's
28-D ``cube-single`` layout) plus a target the policy holds itself, so it needs no
access to the simulator.

Data mode (``targets="own"``, the collection default) follows OGBench's and
stable-worldmodel's data generation: each episode draws a noise level
``xi ~ U(0, action_noise)``, actions get Gaussian noise of std
``(xi, xi, xi, 3 xi, 10 xi)``, and the oracle places the cube at a uniformly random
table target with a random yaw; once it is done (cube placed, arm at its final pose,
or 200 steps), it draws a new target and starts over. The env's goal is ignored, so
a 200-step episode holds one or two full pick-and-place cycles and the cube moves.

Goal mode (``targets="goal"``) carries the cube to the env's ``desired_goal`` (no
yaw turn: OGBench's success test ignores the yaw); used to measure the oracle's own
success.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from envs.common import BatchedPolicy
from envs.cube import (
    ARM_SAMPLING_BOUNDS,
    CUBE_REST_Z,
    GRIPPER_SCALE,
    OBS_DIM,
    TARGET_SAMPLING_BOUNDS,
    XYZ_CENTER,
    XYZ_SCALE,
)

__all__ = ["CubeOracle", "oracle_info"]


def _markov_oracle_class() -> type:
    """OGBench's Markov cube oracle, reseeded: its ``reset`` draws from ``np.random``."""
    try:
        from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            f"the Cube oracle needs the 'ogbench' package ({e}): `pip install ogbench==1.2.2`"
        ) from e

    class SeededCubeMarkovOracle(CubeMarkovOracle):
        """``CubeMarkovOracle`` whose final pose comes from a given generator.

        OGBench's ``reset`` samples the post-placement pose from the global
        ``np.random``; drawing it from the policy's generator keeps data seeded.
        ``select_action`` is OGBench's, unchanged.
        """

        def __init__(self, rng: np.random.Generator, min_norm: float) -> None:
            super().__init__(env=None, min_norm=min_norm)
            self._rng = rng

        def reset(self, ob: Any, info: Any) -> None:
            self._done = False
            self._step = 0
            self._max_step = 200
            self._final_pos = self._rng.uniform(*ARM_SAMPLING_BOUNDS)
            self._final_yaw = self._rng.uniform(-np.pi, np.pi)

    return SeededCubeMarkovOracle


def oracle_info(observation: np.ndarray, target_pos: np.ndarray, target_yaw: float) -> dict:
    """OGBench's info dict (the keys the cube oracles read) from one 28-D observation.

    Inverts the env's scaling: positions are ``(p - XYZ_CENTER) * XYZ_SCALE``, the
    gripper opening is scaled by ``GRIPPER_SCALE``, yaws are given as (cos, sin).
    """
    ob = np.asarray(observation, dtype=np.float64)
    return {
        "proprio/effector_pos": ob[12:15] / XYZ_SCALE + XYZ_CENTER,
        "proprio/effector_yaw": np.array([math.atan2(ob[16], ob[15])]),
        "proprio/gripper_opening": np.array([ob[17] / GRIPPER_SCALE]),
        "proprio/gripper_contact": np.array([ob[18]]),
        "privileged/target_task": "cube",
        "privileged/target_block": 0,
        "privileged/block_0_pos": ob[19:22] / XYZ_SCALE + XYZ_CENTER,
        "privileged/block_0_yaw": np.array([math.atan2(ob[27], ob[26])]),
        "privileged/target_block_pos": np.asarray(target_pos, dtype=np.float64),
        "privileged/target_block_yaw": np.array([float(target_yaw)]),
    }


class CubeOracle(BatchedPolicy):
    """OGBench's Markov cube oracle for a batch of ``lewm/Cube-v0`` state observations.

    Args:
        targets: ``"own"`` (data mode: a chain of random table targets, the env's goal
            ignored) or ``"goal"`` (carry the cube to ``desired_goal``).
        action_noise: upper bound of the per-episode noise level ``xi`` (OGBench and
            stable-worldmodel: 0.1); noise std is ``(xi, xi, xi, 3 xi, 10 xi)``.
        min_norm: the oracle's minimum move norm (OGBench: 0.4).
        p_random_action: probability of a uniformly random action per step (OGBench's
            ``p_random_action``, 0 by default).
        seed: seed of the policy's generator (targets, final poses, noise).

    ``predict(observation, state=None, episode_start=None, deterministic=False)``
    takes the GoalEnv dict, single (``(28,)``) or batched (``(B, 28)``), and returns
    float32 actions in ``[-1, 1]``. ``deterministic=True`` drops the action noise and
    random actions. ``episode_start`` (``(B,)`` bool) restarts those envs' oracles; so
    does a change of ``desired_goal`` for callers that omit it.
    """

    obs_mode = "state"

    def __init__(
        self,
        targets: str = "own",
        action_noise: float = 0.1,
        min_norm: float = 0.4,
        p_random_action: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if targets not in ("own", "goal"):
            raise ValueError(f"targets must be 'own' or 'goal', got {targets!r}")
        if action_noise < 0 or min_norm < 0 or not 0 <= p_random_action <= 1:
            raise ValueError("need action_noise >= 0, min_norm >= 0, 0 <= p_random_action <= 1")
        self.targets = targets
        self.action_noise = float(action_noise)
        self.min_norm = float(min_norm)
        self.p_random_action = float(p_random_action)
        self.rng = np.random.default_rng(seed)
        self._oracle_cls = _markov_oracle_class()
        self._oracles: list[Any] = []
        self._target = np.zeros((0, 3))  # (B, 3) own target positions (m)
        self._target_yaw = np.zeros(0)  # (B,)
        self._xi = np.zeros(0)  # (B,) this episode's noise level
        self._last_goal = np.zeros((0, 3))  # (B, 3) desired_goal seen last call

    def _new_target(self, i: int) -> None:
        """Draw env ``i``'s next own target (OGBench's ``set_new_target``) and restart."""
        xy = self.rng.uniform(*TARGET_SAMPLING_BOUNDS)
        self._target[i] = (*xy, CUBE_REST_Z)
        self._target_yaw[i] = self.rng.uniform(0.0, 2 * np.pi)
        self._oracles[i].reset(None, None)

    def _start_episode(self, i: int) -> None:
        self._xi[i] = self.rng.uniform(0.0, self.action_noise)
        self._new_target(i)

    def _actions(
        self, observation: Any, episode_start: np.ndarray | None, deterministic: bool
    ) -> tuple[np.ndarray, bool]:
        """Actions ``(B, 5)`` for state observations of ``lewm/Cube-v0`` (see ``predict``)."""
        if not isinstance(observation, dict) or "observation" not in observation:
            raise TypeError(
                "CubeOracle acts on the GoalEnv state observation of lewm/Cube-v0 "
                "(make the env with obs_mode='state')"
            )
        obs = np.asarray(observation["observation"], dtype=np.float64)
        batched = obs.ndim == 2
        obs = obs.reshape(-1, obs.shape[-1])  # (B, 28)
        if obs.shape[1] != OBS_DIM:
            raise ValueError(
                f"observation rows must be {OBS_DIM}-D (lewm/Cube-v0), got {obs.shape}"
            )
        goal = np.asarray(observation["desired_goal"], dtype=np.float64).reshape(-1, 3)  # (B, 3)
        b = obs.shape[0]
        if len(self._oracles) != b:  # a new batch: every env starts an episode
            self._oracles = [self._oracle_cls(self.rng, self.min_norm) for _ in range(b)]
            self._target = np.zeros((b, 3))
            self._target_yaw = np.zeros(b)
            self._xi = np.zeros(b)
            self._last_goal = goal.copy()
            new = np.ones(b, dtype=bool)
        else:
            new = np.any(goal != self._last_goal, axis=1)  # (B,)
        if episode_start is not None:
            new |= np.broadcast_to(np.asarray(episode_start, dtype=bool).reshape(-1), (b,))
        self._last_goal = goal.copy()
        for i in np.flatnonzero(new):
            self._start_episode(int(i))

        actions = np.zeros((b, 5))
        for i in range(b):
            if self.targets == "goal":
                cube_yaw = math.atan2(obs[i, 27], obs[i, 26])
                info = oracle_info(obs[i], goal[i], cube_yaw)  # no turn: yaw is not scored
            else:
                info = oracle_info(obs[i], self._target[i], self._target_yaw[i])
            action = np.asarray(self._oracles[i].select_action(None, info), dtype=np.float64)
            if not deterministic:
                if self.rng.random() < self.p_random_action:
                    action = self.rng.uniform(-1.0, 1.0, size=5)
                else:
                    xi = self._xi[i]
                    action = action + self.rng.normal(0.0, [xi, xi, xi, 3 * xi, 10 * xi])
            actions[i] = action
            if self._oracles[i].done and self.targets == "own":
                self._new_target(i)
        return actions, batched  # (B, 5)
