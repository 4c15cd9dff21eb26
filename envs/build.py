"""How an env was built, so another command can build it again: id, module, kwargs, wrappers.

``lewm collect --env gym_pusht:gym_pusht/PushT-v0 --env-kwargs '{...}'`` records an
:class:`EnvBuild` in the dataset's ``meta.json`` (``"env_build"``); training copies it
into the checkpoint, and ``lewm eval`` rebuilds the same env from it. Everything in it
is JSON: callables (a ``state_fn`` or ``goal_fn`` of :class:`envs.wrappers.PixelGoal`)
are stored as ``"module:function"`` or ``"path/to/file.py:function"`` references.

The package's own envs (``lewm/...``) take ``obs_mode`` and ``image_size``; a foreign
env gets them only if its constructor accepts them, and is wrapped in
:class:`~envs.wrappers.PixelGoal` (pixels + goal image at ``image_size``) automatically.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from lewm_agent.validation import ConfigError

__all__ = [
    "OWN_NAMESPACE",
    "EnvBuild",
    "EnvBuildError",
    "accepted_kwargs",
    "make_env",
    "parse_env_spec",
    "resolve_callable",
]

OWN_NAMESPACE = "lewm/"
"""Ids of the package's own envs start with this; they keep the env contract."""


class EnvBuildError(ConfigError):
    """An env id, module, kwarg or wrapper setting that cannot build the env.

    A ``ConfigError`` (so a ``ValueError``): ``lewm`` prints its message, which says
    what to change, as one line (``lewm --debug`` shows the traceback).
    """


# PixelGoal kwargs that name a callable (stored as "module:function" strings).
_CALLABLE_KWARGS = ("state_fn", "goal_fn", "goal_state_fn")
# Keywords gymnasium.make takes itself (not passed to the env's constructor).
_MAKE_KWARGS = frozenset({"max_episode_steps", "disable_env_checker"})


def parse_env_spec(spec: str) -> tuple[str | None, str]:
    """``"module:Namespace/Env-v0"`` -> ``("module", "Namespace/Env-v0")``; no module -> None.

    Gymnasium's own form: the module is imported to register the id (see
    ``gymnasium.make``). Raises EnvBuildError on an empty part or a second ``:``.
    """
    if spec.count(":") > 1:
        raise EnvBuildError(f"env {spec!r}: expected 'ENV_ID' or 'MODULE:ENV_ID' (one ':')")
    module, _, env_id = spec.rpartition(":")
    if (":" in spec and not module) or not env_id:
        raise EnvBuildError(
            f"env {spec!r}: expected 'ENV_ID' or 'MODULE:ENV_ID', e.g. gym_pusht:gym_pusht/PushT-v0"
        )
    return (module or None), env_id


def _import_module(module: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise EnvBuildError(
            f"cannot import {module!r} to register its envs ({e}); install the package that "
            f"provides it (e.g. pip install {module.split('.')[0].replace('_', '-')})"
        ) from e


def _spec_of(env_id: str, module: str | None) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id`` (importing ``module`` first), with a clear error."""
    import envs  # noqa: F401  (registers lewm/*)

    if module is not None:
        _import_module(module)
    if env_id in gym.registry:
        return gym.registry[env_id]
    namespace = env_id.split("/")[0] if "/" in env_id else None
    hint = (
        f"; if the package {namespace!r} registers it, name the module: --env {namespace}:{env_id}"
        if namespace and module is None
        else ""
    )
    raise EnvBuildError(f"env {env_id!r} is not registered with gymnasium{hint}")


def accepted_kwargs(env_id: str, module: str | None = None) -> frozenset[str] | None:
    """Keyword arguments the env's constructor takes; None when it takes ``**kwargs``.

    Read from the signature of the registered entry point (plus the kwargs its
    registration fills in), without making the env.
    """
    spec = _spec_of(env_id, module)
    creator = spec.entry_point
    if isinstance(creator, str):
        creator = gym.envs.registration.load_env_creator(creator)
    try:
        params = inspect.signature(creator).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):  # a builtin or C callable: cannot tell
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    names = {
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return frozenset(names | set(spec.kwargs))


def resolve_callable(ref: str | Callable[..., Any]) -> Callable[..., Any]:
    """A callable from ``"package.module:name"`` or ``"path/to/file.py:name"`` (or itself).

    A module that is not importable from ``sys.path`` is looked up from the current
    folder too (``examples.third_party_env:state_fn`` from a checkout), as ``python -m`` would.
    """
    if callable(ref):
        return ref
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise EnvBuildError(
            f"expected a 'module:function' or 'file.py:function' string, got {ref!r}"
        )
    where, name = ref.split(":")
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if not path.is_file():
            raise EnvBuildError(f"{ref!r}: no file {path.resolve()}")
        mod_name = f"_lewm_ref_{abs(hash(str(path.resolve())))}"
        mod = sys.modules.get(mod_name)
        if mod is None:
            spec = importlib.util.spec_from_file_location(mod_name, path)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = mod
            spec.loader.exec_module(mod)
    else:
        try:
            mod = importlib.import_module(where)
        except ModuleNotFoundError:
            if os.getcwd() in sys.path:
                raise
            sys.path.append(os.getcwd())
            mod = importlib.import_module(where)
    try:
        fn = getattr(mod, name)
    except AttributeError as e:
        raise EnvBuildError(f"{ref!r}: module {where!r} has no {name!r}") from e
    if not callable(fn):
        raise EnvBuildError(f"{ref!r} is not callable")
    return fn


@dataclass(frozen=True)
class EnvBuild:
    """How to build an env: a JSON-able record (``to_dict`` / ``from_dict``).

    Attributes:
        id: the registered Gymnasium id, e.g. ``gym_pusht/PushT-v0``.
        module: module imported first to register the id (``None`` for ``lewm/*``).
        kwargs: the user's env kwargs (``--env-kwargs``), passed as given.
        wrappers: ``[{"name": "PixelGoal", "kwargs": {...}}]`` applied in order;
            foreign envs get PixelGoal by default (see :meth:`from_spec`).
    """

    id: str
    module: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    wrappers: tuple[dict[str, Any], ...] = ()

    @property
    def own(self) -> bool:
        """Whether this is one of the package's ``lewm/*`` envs (no wrapper needed)."""
        return self.id.startswith(OWN_NAMESPACE)

    @classmethod
    def from_spec(
        cls,
        env: str,
        env_kwargs: Mapping[str, Any] | None = None,
        wrapper_kwargs: Mapping[str, Any] | None = None,
    ) -> EnvBuild:
        """From the CLI's ``--env [MODULE:]ID --env-kwargs JSON --wrapper-kwargs JSON``.

        Checks now what would fail later: the module imports, the id is registered, the
        env accepts every given kwarg, the wrapper's callables resolve.
        """
        module, env_id = parse_env_spec(env)
        build = cls(env_id, module, dict(env_kwargs or {}))
        if not build.own:
            pixel_goal = {"name": "PixelGoal", "kwargs": dict(wrapper_kwargs or {})}
            build = cls(env_id, module, build.kwargs, (pixel_goal,))
        elif wrapper_kwargs:
            raise EnvBuildError(
                f"--wrapper-kwargs configure the PixelGoal wrapper of foreign envs; {env_id} "
                "is one of this package's envs and has pixels and goals itself"
            )
        build.check()
        return build

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "module": self.module,
            "kwargs": dict(self.kwargs),
            "wrappers": [dict(w) for w in self.wrappers],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EnvBuild:
        return cls(
            str(d["id"]),
            d.get("module"),
            dict(d.get("kwargs") or {}),
            tuple(dict(w) for w in d.get("wrappers") or ()),
        )

    @classmethod
    def coerce(cls, env: str | EnvBuild | Mapping[str, Any]) -> EnvBuild:
        """An EnvBuild from itself, its dict, or an env string (foreign ids get PixelGoal)."""
        if isinstance(env, EnvBuild):
            return env
        if isinstance(env, Mapping):
            return cls.from_dict(env)
        module, env_id = parse_env_spec(env)
        wrappers = (
            () if env_id.startswith(OWN_NAMESPACE) else ({"name": "PixelGoal", "kwargs": {}},)
        )
        return cls(env_id, module, {}, wrappers)

    @property
    def spec_string(self) -> str:
        """``module:id`` (or the id), the form ``--env`` takes."""
        return f"{self.module}:{self.id}" if self.module else self.id

    def check(self) -> None:
        """Raise EnvBuildError naming the problem if ``make`` would fail on the kwargs."""
        accepted = accepted_kwargs(self.id, self.module)
        if accepted is not None:
            unknown = sorted(set(self.kwargs) - accepted - _MAKE_KWARGS)
            if unknown:
                raise EnvBuildError(
                    f"env {self.id} does not take {unknown} (--env-kwargs); it takes "
                    f"{sorted(accepted)} (and gymnasium.make's {sorted(_MAKE_KWARGS)})"
                )
        for w in self.wrappers:
            if w.get("name") != "PixelGoal":
                raise EnvBuildError(
                    f"unknown wrapper {w.get('name')!r} in the env build; known: PixelGoal"
                )
            for key in _CALLABLE_KWARGS:
                if w.get("kwargs", {}).get(key) is not None:
                    resolve_callable(w["kwargs"][key])

    def make(
        self,
        *,
        obs_mode: str | None = None,
        image_size: int | None = None,
        wrapper_overrides: Mapping[str, Any] | None = None,
        **defaults: Any,
    ) -> gym.Env:
        """Build the env.

        ``obs_mode``, ``image_size`` and ``defaults`` (e.g. ``terminate_on_success``) are
        this package's own kwargs: passed only to an env that accepts them (a foreign
        env's ``image_size`` goes to its PixelGoal instead). ``render_mode`` is
        ``"rgb_array"`` unless the user's kwargs say otherwise. The user's kwargs
        (``self.kwargs``) are passed as given and win over the defaults.
        ``wrapper_overrides`` update the PixelGoal kwargs (not recorded).
        """
        accepted = accepted_kwargs(self.id, self.module)
        own: dict[str, Any] = {"render_mode": "rgb_array", **defaults}
        if obs_mode is not None:
            own["obs_mode"] = obs_mode
        if image_size is not None:
            own["image_size"] = int(image_size)
        if accepted is not None:
            own = {k: v for k, v in own.items() if k in accepted}
        elif not self.own:  # **kwargs: only the standard render_mode is safe to pass
            own = {k: v for k, v in own.items() if k == "render_mode"}
        env = gym.make(self.id, **{**own, **self.kwargs})
        for w in self.wrappers:
            from envs.wrappers import PixelGoal

            kw = {**w.get("kwargs", {}), **(wrapper_overrides or {})}
            for key in _CALLABLE_KWARGS:
                if kw.get(key) is not None:
                    kw[key] = resolve_callable(kw[key])
            if image_size is not None:
                kw["image_size"] = int(image_size)
            env = PixelGoal(env, **kw)
        return env


def make_env(
    env: str | EnvBuild | Mapping[str, Any],
    **kwargs: Any,
) -> gym.Env:
    """``EnvBuild.coerce(env).make(**kwargs)``: an env from an id, ``module:id`` or a build."""
    return EnvBuild.coerce(env).make(**kwargs)
