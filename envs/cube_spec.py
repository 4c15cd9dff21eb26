"""The spec of ``lewm/Cube-v0`` (envs/cube.py); envs/spec.py says why it is a module of its own.

The oracle is imported only when a policy is made: it needs the ``ogbench`` package.
"""

from __future__ import annotations

from typing import Any

from envs.spec import EnvSpec


def _oracle(action_space: Any, seed: int | None, targets: str = "own") -> Any:
    from envs.cube_oracle import CubeOracle

    return CubeOracle(targets=targets, action_noise=0.1, min_norm=0.4, seed=seed)


def _goal_expert(action_space: Any, seed: int | None) -> Any:
    return _oracle(action_space, seed, targets="goal")


SPEC = EnvSpec(
    id="lewm/Cube-v0",
    entry_point="envs.cube:CubeEnv",
    max_episode_steps=200,
    collection_kwargs={"terminate_on_success": False},
    data_policies={"oracle": _oracle},
    goal_expert=_goal_expert,
)
