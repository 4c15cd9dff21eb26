"""The spec of ``lewm/PushT-v0`` (envs/push_t.py); envs/spec.py says why it is a module of its own."""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.spec import EnvSpec, PhysicsSpec


def _scripted(action_space: Any, seed: int | None) -> Any:
    from envs.push_t_pusher import PushTPusher

    return PushTPusher(seed=seed)


def _expert(action_space: Any, seed: int | None) -> Any:
    """The goal-directed expert in its data mode: a chain of random targets, with
    action noise and random segments."""
    from envs.push_t_expert import PushTExpert

    return PushTExpert(
        targets="random",
        noise=0.1,
        random_segment_prob=0.02,
        candidates=16,
        tolerance=1.0,
        seed=seed,
    )


def _goal_expert(action_space: Any, seed: int | None) -> Any:
    from envs.push_t_expert import PushTExpert

    return PushTExpert(targets="goal", seed=seed)


def _physics() -> PhysicsSpec:
    from envs import push_t

    margin = push_t.WALL + push_t.BLOCK_RADIUS

    def legal(state: np.ndarray) -> bool:
        bx, by = float(state[2]), float(state[3])
        inside = margin <= bx <= push_t.WORLD_SIZE - margin and margin <= by <= (
            push_t.WORLD_SIZE - margin
        )
        if not inside:
            return False
        clear = push_t.distance_to_block(
            np.asarray(state[:2], np.float64), state[2:5].astype(np.float64)
        )
        return bool(np.all(clear > push_t.PUSHER_RADIUS + 5.0))

    return PhysicsSpec(
        quantities={
            "pusher_x": 0,
            "pusher_y": 1,
            "block_x": 2,
            "block_y": 3,
            "block_angle": "angle:4",
        },
        teleport_columns=(2, 3),  # the block jumps
        min_jump=120.0,
        is_legal=legal,
        recolor_columns=(0, 1),  # the pusher changes colour
        recolor_radius=push_t.PUSHER_RADIUS,
        old_color=push_t.PUSHER_RGB,
        new_color=(220, 50, 40),
    )


SPEC = EnvSpec(
    id="lewm/PushT-v0",
    entry_point="envs.push_t:PushTEnv",
    max_episode_steps=300,
    collection_kwargs={"terminate_on_success": False},
    data_policies={"scripted": _scripted, "expert": _expert},
    goal_expert=_goal_expert,
    physics=_physics,
)
