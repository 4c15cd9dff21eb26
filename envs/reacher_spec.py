"""The spec of ``lewm/Reacher-v0`` (envs/reacher.py); envs/spec.py says why it is a module of its own."""

from __future__ import annotations

from typing import Any

from envs.spec import EnvSpec


def _scripted(action_space: Any, seed: int | None) -> Any:
    from envs.reacher_policy import ReacherOU

    return ReacherOU(seed=seed)


SPEC = EnvSpec(
    id="lewm/Reacher-v0",
    entry_point="envs.reacher:ReacherEnv",
    max_episode_steps=200,
    collection_kwargs={"terminate_on_success": False},
    data_policies={"scripted": _scripted},
)
