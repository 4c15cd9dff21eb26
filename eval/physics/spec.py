"""Which state columns are which physical quantity, per env, and how to re-render states."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

PERTURBATIONS = ("teleport", "colour")


# ---------------------------------------------------------------------------------------
# per-env knowledge
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PhysicsSpec:
    """What the physics tools need to know about one env's states and drawing."""

    quantities: Mapping[str, int | str]
    """Probe targets: name -> state column, or "angle:c" (sin/cos targets)."""
    teleport_columns: tuple[int, int]
    """State columns (x, y) of the object a teleport moves."""
    min_jump: float
    """A teleport moves the object at least this far (state units)."""
    is_legal: Callable[[np.ndarray], bool]
    """Whether a full state is a legal configuration (used to place teleports)."""
    recolor_columns: tuple[int, int]
    """State columns (x, y) of the object the colour change recolours."""
    recolor_radius: float
    """Size of that object (state units): background renders keep it this far away."""
    old_color: tuple[int, int, int]
    new_color: tuple[int, int, int]


def _two_room_spec() -> PhysicsSpec:
    from envs import two_room

    def legal(state: np.ndarray) -> bool:
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


def _push_t_spec() -> PhysicsSpec:
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


_SPECS: dict[str, Callable[[], PhysicsSpec]] = {
    "lewm/TwoRoom-v0": _two_room_spec,
    "lewm/PushT-v0": _push_t_spec,
}


def physics_spec(env_id: str) -> PhysicsSpec:
    """The :class:`PhysicsSpec` of a registered env id (clear error for unknown ones)."""
    if env_id not in _SPECS:
        raise ValueError(
            f"no physics spec for env {env_id!r}; known: {sorted(_SPECS)} "
            "(add one to eval/physics.py: quantities, teleport and colour columns)"
        )
    return _SPECS[env_id]()


def make_env(env_id: str, image_size: int) -> Any:
    """The unwrapped env (no time limit or order checks: we replay recorded actions)."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers lewm/*)

    return gym.make(env_id, image_size=image_size, render_mode="rgb_array").unwrapped


def render_states(env: Any, states: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` frames of ``(N, S)`` states via ``env.render_state``."""
    return np.stack([env.render_state(s) for s in states])


def resimulate(env: Any, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """States ``(T+1, S)`` reached by replaying ``actions (T, A)`` from ``state``."""
    env.reset(seed=0, options={"state": np.asarray(state)})
    out = [np.asarray(state, dtype=np.float32)]
    for a in actions:
        _obs, _r, _term, _trunc, info = env.step(a)
        out.append(np.asarray(info["state"], dtype=np.float32))
    return np.stack(out)
