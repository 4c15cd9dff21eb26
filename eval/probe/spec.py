"""Which state columns are which physical quantity, per env, and how to re-render states.

The per-env facts are each env's ``EnvSpec.physics`` (envs/<env>_spec.py); the
:class:`PhysicsSpec` type lives in :mod:`envs.spec` and is re-exported here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.spec import PhysicsSpec, env_specs, find_env_spec

__all__ = [
    "PERTURBATIONS",
    "PhysicsSpec",
    "make_env",
    "physics_spec",
    "render_states",
    "resimulate",
]

PERTURBATIONS = ("teleport", "colour")


def physics_spec(env_id: str) -> PhysicsSpec:
    """The :class:`PhysicsSpec` of a registered env id, from its env spec's ``physics``
    (clear error for envs without one)."""
    spec = find_env_spec(env_id)
    if spec is None or spec.physics is None:
        known = sorted(s.id for s in env_specs() if s.physics is not None)
        raise ValueError(
            f"no physics spec for env {env_id!r}; known: {known} "
            "(give its EnvSpec in envs/<env>_spec.py a physics=function returning a "
            "PhysicsSpec: quantities, teleport and colour columns)"
        )
    return spec.physics()


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
