"""One spec per env: everything the rest of the project needs to know about it.

An :class:`EnvSpec` holds an env's Gymnasium id, entry point and time limit (what
registration needs), the kwargs data collection makes it with, its data policies
(``"scripted"`` / ``"expert"`` / ``"oracle"``), its goal-directed evaluation expert
(``agents.make("expert")``) and its physics-probe facts (:class:`PhysicsSpec`).
Registration (``envs/__init__.py``), collection (``envs.collect``), the data policies
(``envs.scripted.make_data_policy``), the expert agent, the probes
(``eval.probe.physics_spec``) and the benchmarks read these specs; there is no
other per-env table.

Where a spec lives: in a small module beside its env, ``envs/<env>_spec.py``
(``envs/push_t_spec.py`` next to ``envs/push_t.py``), named by one line of
``envs/__init__.py``. Not in the env module itself because ``import envs`` registers
every env, so it imports every spec: the env modules import pygame, pymunk and MuJoCo
(the four together roughly double ``import envs``, in every
collection worker and every process that makes one env), and MuJoCo with the
``MUJOCO_GL=egl`` the MuJoCo envs set refuses to import where EGL is not available,
which would break ``import envs`` for the pure-numpy Two-Room too. A spec module
therefore imports only this module; everything heavy is named by a string (the entry
point) or reached through a function that imports it when called (the policy
factories, the physics facts), which also keeps the spec free of import cycles with
the env's expert modules.

Adding an env: its module, its spec module (``SPEC = EnvSpec(...)``), and its name in
``envs/__init__.py``'s ``ENV_SPEC_MODULES``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import gymnasium as gym
    import numpy as np

__all__ = [
    "EnvSpec",
    "PhysicsSpec",
    "PolicyFactory",
    "SPEC_POLICIES",
    "env_spec",
    "env_specs",
    "find_env_spec",
    "register_spec",
]

PolicyFactory = Callable[["gym.spaces.Box", "int | None"], Any]
"""``factory(action_space, seed) -> policy`` with the SB3 ``predict`` signature."""

SPEC_POLICIES: tuple[str, ...] = ("scripted", "expert", "oracle")
"""Data policies an env provides itself (``"random"`` works for every env)."""


@dataclass(frozen=True)
class PhysicsSpec:
    """What the physics tools (``eval.probe``) need to know about one env's states.

    ``quantities`` is all the state probe (``lewm probe state``) needs. The other
    fields describe the two perturbations of the surprise test (``lewm probe
    surprise``); an env whose objects cannot be teleported or recoloured cleanly from
    a state (Cube: a shaded 3-D cube) leaves them ``None``, and the surprise test then
    says so instead of drawing wrong frames.
    """

    quantities: Mapping[str, int | str]
    """Probe targets: name -> state column, or "angle:c" (sin/cos targets)."""
    teleport_columns: tuple[int, int] | None = None
    """State columns (x, y) of the object a teleport moves."""
    min_jump: float = 0.0
    """A teleport moves the object at least this far (state units)."""
    is_legal: Callable[[np.ndarray], bool] | None = None
    """Whether a full state is a legal configuration (used to place teleports)."""
    recolor_columns: tuple[int, int] | None = None
    """State columns (x, y) of the object the colour change recolours."""
    recolor_radius: float = 0.0
    """Size of that object (state units): background renders keep it this far away."""
    old_color: tuple[int, int, int] | None = None
    new_color: tuple[int, int, int] | None = None

    @property
    def has_perturbations(self) -> bool:
        """Whether the surprise test's teleport and colour change are defined."""
        return None not in (
            self.teleport_columns,
            self.is_legal,
            self.recolor_columns,
            self.old_color,
            self.new_color,
        )


@dataclass(frozen=True)
class EnvSpec:
    """One env's facts. Factories are called only when needed, so they may import
    heavy or optional packages (MuJoCo, ogbench) inside.

    Not Gymnasium's own ``EnvSpec`` (what ``gym.spec(id)`` returns): :meth:`register`
    makes that one from this one's id, entry point and time limit.
    """

    id: str
    """Gymnasium id, e.g. ``"lewm/TwoRoom-v0"``."""
    entry_point: str
    """``"module:Class"`` of the env (imported by ``gym.make``, not by registration)."""
    max_episode_steps: int
    """Time limit ``gym.make`` applies (``TimeLimit``)."""
    collection_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Env kwargs data collection uses unless the caller overrides them."""
    data_policies: Mapping[str, PolicyFactory] = field(default_factory=dict)
    """Data-collection policies by name (keys from :data:`SPEC_POLICIES`)."""
    goal_expert: PolicyFactory | None = None
    """Privileged expert driving to the observation's goal (``agents.make("expert")``)."""
    physics: Callable[[], PhysicsSpec] | None = None
    """Builds the env's :class:`PhysicsSpec` (a function: it needs the env module)."""

    def __post_init__(self) -> None:
        where = f"EnvSpec({self.id!r})"
        if not isinstance(self.id, str) or not self.id or ":" in self.id:
            raise ValueError(
                f"EnvSpec id must be a Gymnasium id like 'lewm/Name-v0', got {self.id!r}"
            )
        module, _, attr = str(self.entry_point).partition(":")
        if not isinstance(self.entry_point, str) or not module or not attr:
            raise ValueError(
                f"{where}: entry_point must be 'module:Class', got {self.entry_point!r}"
            )
        steps = self.max_episode_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"{where}: max_episode_steps must be an int >= 1, got {steps!r}")
        unknown = sorted(set(self.data_policies) - set(SPEC_POLICIES))
        if unknown:
            raise ValueError(
                f"{where}: unknown data policy names {unknown}; use {SPEC_POLICIES} "
                "('random' needs no entry: it works for every env)"
            )
        for name, factory in {**self.data_policies, "goal_expert": self.goal_expert}.items():
            if factory is not None and not callable(factory):
                raise ValueError(f"{where}: {name} must be a factory(action_space, seed)")
        if self.physics is not None and not callable(self.physics):
            raise ValueError(f"{where}: physics must be a function returning a PhysicsSpec")
        if not all(isinstance(k, str) for k in self.collection_kwargs):
            raise ValueError(f"{where}: collection_kwargs keys must be kwarg names (str)")
        # Read-only views: a spec is shared by every caller in the process.
        object.__setattr__(
            self, "collection_kwargs", MappingProxyType(dict(self.collection_kwargs))
        )
        object.__setattr__(self, "data_policies", MappingProxyType(dict(self.data_policies)))

    def register(self) -> None:
        """Register the id with Gymnasium (once: importing twice must not warn)."""
        from gymnasium.envs.registration import register, registry

        if self.id not in registry:
            register(
                id=self.id, entry_point=self.entry_point, max_episode_steps=self.max_episode_steps
            )


_SPECS: dict[str, EnvSpec] = {}
"""The registered specs by id, in registration order. Importing this module runs
``envs/__init__.py`` first (its package), which registers the package's own specs, so
the lookups below never see an empty table."""


def register_spec(spec: EnvSpec) -> EnvSpec:
    """Make ``spec`` known to every lookup here and register its id with Gymnasium."""
    if not isinstance(spec, EnvSpec):
        raise TypeError(f"register_spec needs an envs.spec.EnvSpec, got {type(spec).__name__}")
    known = _SPECS.get(spec.id)
    if known is not None and known != spec:
        raise ValueError(f"env id {spec.id!r} already has another spec; pick a new id or version")
    _SPECS[spec.id] = spec
    spec.register()
    return spec


def env_specs() -> tuple[EnvSpec, ...]:
    """Every registered spec, in registration order."""
    return tuple(_SPECS.values())


def find_env_spec(env_id: str) -> EnvSpec | None:
    """The spec of ``env_id``, or None for an env without one (a foreign env)."""
    return _SPECS.get(env_id)


def env_spec(env_id: str) -> EnvSpec:
    """The spec of ``env_id``; a ValueError naming the known ids otherwise."""
    spec = find_env_spec(env_id)
    if spec is None:
        raise ValueError(
            f"no env spec for {env_id!r}; known: {sorted(_SPECS)} "
            "(an env of this package needs an envs/<env>_spec.py listed in envs/__init__.py)"
        )
    return spec
