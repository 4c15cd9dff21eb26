"""The worlds: Gymnasium environments for lewm-agent. ``import envs`` registers them.

Every env takes ``render_mode="rgb_array"``, ``obs_mode="pixels" | "state"`` and
``image_size`` (see docs/CONTRACTS.md).
"""

from gymnasium.envs.registration import register, registry

# ---- registered environments: one entry per env (id, entry point, time limit) ----------
# To add an env, append a line.
_ENVS: list[tuple[str, str, int]] = [
    ("lewm/TwoRoom-v0", "envs.two_room:TwoRoomEnv", 100),
    ("lewm/PushT-v0", "envs.push_t:PushTEnv", 300),
    ("lewm/Reacher-v0", "envs.reacher:ReacherEnv", 200),
    ("lewm/Cube-v0", "envs.cube:CubeEnv", 200),
]

for _env_id, _entry_point, _max_steps in _ENVS:
    if _env_id not in registry:  # importing twice (or reloading) must not warn
        register(id=_env_id, entry_point=_entry_point, max_episode_steps=_max_steps)

ENV_IDS: tuple[str, ...] = tuple(e[0] for e in _ENVS)
"""Ids of the environments this package registers."""

__all__ = ["ENV_IDS"]
