"""The other agents, all with the stable-baselines3 ``predict`` signature.

``agents.make(name, **kw)`` builds any of them by name, so scripts (``eval.compare``,
``eval.suite``) take agent lists as plain strings:

==================  ==============================================================
``lewm``            ``WorldModelAgent.load(path, planner=None, device="auto", ...)``
``ppo``, ``sac``    an SB3 baseline on the state observation: loaded from ``path``,
                    or trained on ``env_id`` (``agents.baselines.train_baseline``)
``ppo-pixels``      PPO on the 64 px ``{"pixels", "goal"}`` observation, same rules
``random``          uniform actions over ``env_id``'s (or ``action_space``'s) box
``scripted``        the env's noisy heuristic expert, deterministic, on the state
``expert``          the env's goal-directed expert (privileged state; Push-T, and
                    OGBench's oracle on Cube), the ceiling that its data sets
``gcbc``            goal-conditioned behaviour cloning from pixels on the same
                    reward-free data: loaded from ``path``, or trained on ``data``
                    (``agents.gcbc.train_gcbc``) and saved to ``path`` if given
==================  ==============================================================

Everything returned has ``predict(observation, state=None, episode_start=None,
deterministic=...) -> (actions, state)``; agents that act on the state observation
carry ``obs_mode = "state"``, which ``eval.protocol.run_protocol`` reads.
Heavy imports (torch, stable-baselines3) happen inside :func:`make`, so
``import envs.scripted`` stays light.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["AGENT_NAMES", "ScriptedAgent", "make", "training_info"]

AGENT_NAMES: tuple[str, ...] = (
    "lewm",
    "ppo",
    "sac",
    "ppo-pixels",
    "random",
    "scripted",
    "expert",
    "gcbc",
)


class ScriptedAgent:
    """A data policy used as an evaluation agent: state observations, deterministic.

    The protocol calls ``predict`` without ``deterministic``; a data policy's default
    (noisy) is right for collecting data and wrong for a sanity baseline, so this
    wrapper defaults to ``deterministic=True``.
    """

    obs_mode = "state"
    supports_env_indices = False

    def __init__(self, policy: Any, name: str = "scripted") -> None:
        self.policy = policy
        self.name = name
        self.training_stats: dict[str, Any] = {"seconds": 0.0, "env_steps": 0, "reward_used": False}

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """Delegates to the data policy with ``deterministic=True`` by default."""
        return self.policy.predict(
            observation, state=state, episode_start=episode_start, deterministic=deterministic
        )


def _action_space(env_id: str | None, action_space: Any) -> Any:
    if action_space is not None:
        return action_space
    if env_id is None:
        raise ValueError("pass env_id=... (or action_space=...) to build this agent")
    import gymnasium as gym

    import envs  # noqa: F401  (registers lewm/*)

    env = gym.make(env_id, obs_mode="state")
    space = env.action_space
    env.close()
    return space


def make(name: str, **kw: Any) -> Any:
    """Build an agent by name (see the module docstring for the names and their kwargs).

    Args:
        name: ``lewm``, ``ppo``, ``sac``, ``ppo-pixels``, ``random`` or ``scripted``.
        **kw: per agent:
            lewm: ``path`` (required), ``planner``, ``device``, plan overrides.
            ppo / sac / ppo-pixels: ``path`` of a saved baseline to load; without one
                (or when it holds no saved baseline and ``env_id`` is given) a new
                baseline is trained with the remaining kwargs of
                ``agents.baselines.train_baseline`` (``env_id``, ``total_timesteps``,
                ``seed``, ...) and saved to ``path`` if given.
            random: ``env_id`` or ``action_space``, ``seed``.
            scripted: ``env_id``, ``seed``.
            gcbc: ``path`` of a saved GCBC agent; without one, ``data`` (the dataset
                folder) and the ``agents.gcbc.train_gcbc`` kwargs train one (saved to
                ``path`` if given); ``device``.
    Returns:
        an object with the SB3 ``predict`` signature.
    """
    key = name.lower().replace("_", "-")
    if key == "lewm":
        from lewm_agent import WorldModelAgent

        if "path" not in kw:
            raise ValueError("agents.make('lewm', path=CHECKPOINT_FOLDER) needs a path")
        path = kw.pop("path")
        return WorldModelAgent.load(path, **kw)
    if key in ("ppo", "sac", "ppo-pixels", "sac-pixels", "ppo-state", "sac-state"):
        from agents.baselines import SB3Agent, parse_baseline_name, train_baseline

        algo, obs_mode = parse_baseline_name(key)
        path = kw.pop("path", None)
        device = kw.pop("device", "cpu")
        if path is not None and SB3Agent.is_saved(path):
            agent = SB3Agent.load(path, device=device)
            if agent.config.algo != algo or agent.obs_mode != obs_mode:
                raise ValueError(
                    f"{path} holds a {agent.name} baseline, not {key!r} "
                    f"(algo {agent.config.algo}, obs_mode {agent.obs_mode})"
                )
            return agent
        if "env_id" not in kw:
            where = f"{path} holds no saved baseline; " if path is not None else ""
            raise ValueError(
                f"{where}agents.make({key!r}) needs path=SAVED_FOLDER or env_id=... to train one"
            )
        env_id = kw.pop("env_id")
        return train_baseline(env_id, algo, obs_mode, save_to=path, device=device, **kw)
    if key == "random":
        from envs.scripted import RandomPolicy

        space = _action_space(kw.pop("env_id", None), kw.pop("action_space", None))
        agent = RandomPolicy(space, seed=kw.pop("seed", None), **kw)
        agent.training_stats = {"seconds": 0.0, "env_steps": 0, "reward_used": False}  # type: ignore[attr-defined]
        return agent
    if key == "scripted":
        from envs.scripted import make_data_policy

        env_id = kw.pop("env_id", None)
        if env_id is None:
            raise ValueError("agents.make('scripted', env_id=...) needs the env id")
        space = _action_space(env_id, None)
        return ScriptedAgent(make_data_policy("scripted", env_id, space, seed=kw.pop("seed", None)))
    if key == "expert":
        from envs.spec import env_specs

        env_id = kw.pop("env_id", None)
        experts = {s.id: s.goal_expert for s in env_specs() if s.goal_expert is not None}
        if env_id not in experts:
            raise ValueError(
                f"agents.make('expert', env_id=...): no goal-directed expert for {env_id!r}; "
                f"known: {sorted(experts)}"
            )
        space = _action_space(env_id, None)
        return ScriptedAgent(experts[env_id](space, kw.pop("seed", None)), name="expert")
    if key == "gcbc":
        from agents.gcbc import GCBCAgent, train_gcbc

        path = kw.pop("path", None)
        device = kw.pop("device", "cpu")
        if path is not None and GCBCAgent.is_saved(path):
            return GCBCAgent.load(path, device=device)
        if "data" not in kw:
            where = f"{path} holds no saved GCBC agent; " if path is not None else ""
            raise ValueError(f"{where}agents.make('gcbc') needs path=SAVED_FOLDER or data=DATASET")
        return train_gcbc(kw.pop("data"), save_to=path, device=device, **kw)
    raise ValueError(f"unknown agent {name!r}; choose one of {AGENT_NAMES}")


def training_info(agent: Any) -> dict[str, Any]:
    """What training cost an agent, for reports: wall seconds, env steps, reward used.

    LeWM: its training wall time and the env steps of the episodes it trained on
    (its checkpoint records the dataset's size: ``train_env_steps`` is that total,
    held-out episodes included, unless a caller passes the exact split's size);
    SB3 baselines: their ``learn`` wall time and ``num_timesteps``; random/scripted: none.
    Missing values are None.
    """
    stats = dict(getattr(agent, "training_stats", None) or {})
    if "reward_used" in stats or "env_steps" in stats:  # baselines, random, scripted
        return {
            "train_seconds": stats.get("seconds"),
            "train_env_steps": stats.get("env_steps"),
            "reward_used": bool(stats.get("reward_used", False)),
        }
    dataset = stats.get("dataset") or {}
    return {  # a world model: reward-free data
        "train_seconds": stats.get("seconds"),
        "train_env_steps": dataset.get("num_steps"),
        "reward_used": False,
    }
