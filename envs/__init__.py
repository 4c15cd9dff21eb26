"""The worlds: Gymnasium environments for lewm-agent. ``import envs`` registers them.

Every env takes ``render_mode="rgb_array"``, ``obs_mode="pixels" | "state"`` and
``image_size`` (see docs/formats.md). Each env's facts (id, time limit, collection
kwargs, data policies, expert, probe quantities) are one :class:`envs.spec.EnvSpec`
in a light module beside the env; ``envs.spec.env_spec(id)`` looks one up.
"""

from importlib import import_module

from envs.spec import EnvSpec, register_spec

# ---- registered environments: one line per env, the module holding its SPEC ----------
ENV_SPEC_MODULES: tuple[str, ...] = (
    "envs.two_room_spec",
    "envs.push_t_spec",
    "envs.reacher_spec",
    "envs.cube_spec",
)
"""To add an env, append the name of the module that defines its ``SPEC``."""

ENV_SPECS: tuple[EnvSpec, ...] = tuple(
    register_spec(import_module(name).SPEC) for name in ENV_SPEC_MODULES
)
"""The package's own env specs, registered with Gymnasium."""

ENV_IDS: tuple[str, ...] = tuple(spec.id for spec in ENV_SPECS)
"""Ids of the environments this package registers."""

__all__ = ["ENV_IDS", "ENV_SPECS", "ENV_SPEC_MODULES", "EnvSpec"]
