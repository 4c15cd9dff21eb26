"""The spec of ``lewm/TwoRoom-v0`` (envs/two_room.py); envs/spec.py says why it is a module of its own."""

from __future__ import annotations

from typing import Any

from envs.spec import EnvSpec, PhysicsSpec


def _scripted(action_space: Any, seed: int | None) -> Any:
    from envs.scripted import TwoRoomHeuristic

    return TwoRoomHeuristic(seed=seed)


def _physics() -> PhysicsSpec:
    from envs import two_room

    def legal(state: Any) -> bool:
        return two_room.is_legal_position(float(state[0]), float(state[1]))

    return PhysicsSpec(
        quantities={"agent_x": 0, "agent_y": 1},
        teleport_columns=(0, 1),
        min_jump=0.3,
        is_legal=legal,
        recolor_columns=(0, 1),
        recolor_radius=two_room.AGENT_RADIUS,
        old_color=tuple(two_room.AGENT_COLOR),  # type: ignore[arg-type]
        new_color=(40, 90, 220),  # blue instead of red
    )


SPEC = EnvSpec(
    id="lewm/TwoRoom-v0",
    entry_point="envs.two_room:TwoRoomEnv",
    max_episode_steps=100,
    # A world model wants long trajectories: episodes must not end at the goal.
    collection_kwargs={"terminate_on_success": False},
    data_policies={"scripted": _scripted},
    physics=_physics,
)
