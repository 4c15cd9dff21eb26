"""The spec of ``lewm/Cube-v0`` (envs/cube.py); envs/spec.py says why it is a module of its own.

The oracle is imported only when a policy is made: it needs the ``ogbench`` package.
"""

from __future__ import annotations

from typing import Any

from envs.spec import EnvSpec, PhysicsSpec


def _oracle(action_space: Any, seed: int | None, targets: str = "own") -> Any:
    from envs.cube_oracle import CubeOracle

    return CubeOracle(targets=targets, action_noise=0.1, min_norm=0.4, seed=seed)


def _goal_expert(action_space: Any, seed: int | None) -> Any:
    return _oracle(action_space, seed, targets="goal")


def _physics() -> PhysicsSpec:
    """Probe quantities only: the cube's centre (m).

    State columns: ``qpos`` 14-16 is the cube's free-joint position (envs/cube.py
    ``_CUBE_QPOS``). No perturbations: the shaded cube cannot be recoloured by
    replacing one colour, and a teleported cube in mid-air is not a clean event.
    """
    return PhysicsSpec(quantities={"cube_x": 14, "cube_y": 15, "cube_z": 16})


SPEC = EnvSpec(
    id="lewm/Cube-v0",
    entry_point="envs.cube:CubeEnv",
    max_episode_steps=200,
    collection_kwargs={"terminate_on_success": False},
    data_policies={"oracle": _oracle},
    goal_expert=_goal_expert,
    physics=_physics,
)
