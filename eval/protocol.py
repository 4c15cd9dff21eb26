"""The paper's goal-conditioned evaluation protocol, for any registered env.

Pick a start step in a held-out dataset trajectory, set the environment to
that state, take the state 25 steps later in the same trajectory as the goal
(the agent sees its rendering as the goal image), and give the agent 50
environment steps. Success is the environment's own `info["is_success"]`.
The episodes are a pure function of the dataset and the seed, so every agent
is evaluated on the same ones.

All episodes run side by side: each step, the agents' `predict` gets the
observations of every unfinished episode in one batch (a world-model agent
then plans for all of them in one batched rollout).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from lewm_agent.data import Dataset

GOAL_OFFSET = 25
BUDGET = 50
EPISODES = 50
SEED = 42


@dataclass(frozen=True, eq=False)
class ProtocolEpisode:
    """One start/goal pair drawn from a held-out trajectory (or from the env itself).

    With states, the env is reset to them (``options={"state", "goal_state"}``);
    without (``start_state is None``: an env whose start and goal cannot be set), it
    is reset with ``seed`` and plays the start and goal the env samples from it.
    """

    episode: str
    start_step: int
    start_state: np.ndarray | None
    goal_state: np.ndarray | None
    seed: int | None = None


@dataclass
class ProtocolResult:
    """Outcome of one agent on a list of protocol episodes."""

    agent: str
    episodes: int
    successes: int
    success_rate: float
    mean_steps: float
    """Mean episode length (success ends an episode early; failures count the budget)."""
    mean_steps_to_success: float | None
    mean_return: float
    seconds: float
    decision_latency_ms: float
    """Mean wall time of one predict call per env that acted in it."""
    per_episode: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, with_episodes: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_episodes:
            d.pop("per_episode")
        return d


def sample_episodes(
    heldout: Dataset, n: int = EPISODES, goal_offset: int = GOAL_OFFSET, seed: int = SEED
) -> list[ProtocolEpisode]:
    """`n` (start, goal = start + goal_offset) pairs from held-out trajectories."""
    eligible = [ep for ep in heldout.episodes if len(ep.actions) >= goal_offset]
    if not eligible:
        raise ValueError(
            f"no held-out episode has at least {goal_offset} steps; record longer "
            "episodes or lower goal_offset"
        )
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ep = eligible[rng.integers(len(eligible))]
        t = int(rng.integers(0, len(ep.actions) - goal_offset + 1))
        out.append(
            ProtocolEpisode(ep.name, t, ep.states[t].copy(), ep.states[t + goal_offset].copy())
        )
    return out


def sample_env_episodes(
    env_id: str | Any, n: int = EPISODES, seed: int = SEED, image_size: int | None = None
) -> list[ProtocolEpisode]:
    """``n`` start/goal pairs sampled by the env itself: ``reset(seed=seed + i)``.

    No dataset needed (``--episodes-from env``). When the env reports both
    ``info["state"]`` and ``info["goal_state"]`` (the lewm envs), the pairs are stored
    as states, exactly like dataset episodes; otherwise each episode is its reset seed
    and the env samples the same start and goal again when the protocol resets it.
    ``env_id``: an id, ``module:id`` or an env build (see :mod:`envs.build`).
    """
    from envs.build import make_env

    if n < 1:
        raise ValueError(f"need n >= 1 episodes, got {n}")
    env = make_env(
        env_id,
        obs_mode="pixels",
        image_size=image_size,
        wrapper_overrides={"goal_optional": True, "check_state": False},
    )
    out = []
    try:
        for i in range(n):
            _, info = env.reset(seed=seed + i)
            if "state" in info and "goal_state" in info:
                start = np.asarray(info["state"], dtype=np.float32).copy()
                goal = np.asarray(info["goal_state"], dtype=np.float32).copy()
                out.append(ProtocolEpisode(f"env-seed-{seed + i}", 0, start, goal, seed + i))
            else:
                out.append(ProtocolEpisode(f"env-seed-{seed + i}", 0, None, None, seed + i))
    finally:
        env.close()
    return out


def reset_to_episode(env: gym.Env, ep: ProtocolEpisode, index: int) -> tuple[Any, dict[str, Any]]:
    """Reset ``env`` to a protocol episode's start and goal (``index``: its position)."""
    if ep.start_state is None:
        return env.reset(seed=ep.seed)
    return env.reset(
        seed=SEED + index, options={"state": ep.start_state, "goal_state": ep.goal_state}
    )


def episode_goal_image(
    env_id: str | Any, ep: ProtocolEpisode, env_kwargs: dict[str, Any] | None = None
) -> np.ndarray:
    """The goal image the agent sees in episode ``ep`` (index 0), uint8 ``(H, W, 3)``."""
    from envs.build import make_env

    env = make_env(env_id, **{"obs_mode": "pixels", **(env_kwargs or {})})
    try:
        obs, _ = reset_to_episode(env, ep, 0)
    finally:
        env.close()
    return np.asarray(obs["goal"])


def describe_goals(
    env_id: str | Any, episodes: list[ProtocolEpisode], env_kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """How far the protocol's goals are: the share already solved at the start, and
    the median of every ``*_error`` the env reports at reset (Push-T: ``pos_error``
    in px, ``angle_error`` in rad), so a success rate can be read against goals that
    are real moves."""
    from envs.build import make_env

    env = make_env(env_id, **{"obs_mode": "state", **(env_kwargs or {})})
    solved, errors = [], {}
    for i, ep in enumerate(episodes):
        _, info = reset_to_episode(env, ep, i)
        solved.append(bool(info.get("is_success", False)))
        for key, value in info.items():
            if key.endswith("_error") and np.isscalar(value):
                errors.setdefault(key, []).append(float(value))
    env.close()
    out: dict[str, Any] = {"episodes": len(episodes), "solved_at_start": float(np.mean(solved))}
    out.update({f"median_{k}": float(np.median(v)) for k, v in errors.items()})
    return out


def format_goals(summary: dict[str, Any]) -> str:
    """One line for :func:`describe_goals`' summary."""
    parts = [
        f"{k.removeprefix('median_')} {v:.3g}"
        for k, v in summary.items()
        if k.startswith("median_")
    ]
    medians = f", median start-goal {', '.join(parts)}" if parts else ""
    return (
        f"goals: {summary['solved_at_start']:.0%} of {summary['episodes']} episodes solved "
        f"at the start{medians}"
    )


def _stack(observations: list[Any]) -> Any:
    if isinstance(observations[0], dict):
        return {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    return np.stack(observations)


def agent_env_kwargs(agent: Any) -> dict[str, Any]:
    """Env kwargs an agent needs, from its optional attributes.

    `agent.obs_mode` ("pixels" or "state": an SB3 baseline trained on the GoalEnv
    state dict sets "state") and `agent.image_size` (the image side a pixel model
    was trained at). Agents without them (LeWM, random) get the protocol's defaults.
    """
    out: dict[str, Any] = {}
    obs_mode = getattr(agent, "obs_mode", None)
    if obs_mode is not None:
        if obs_mode not in ("pixels", "state"):
            raise ValueError(f"agent.obs_mode must be 'pixels' or 'state', got {obs_mode!r}")
        out["obs_mode"] = obs_mode
    image_size = getattr(agent, "image_size", None)
    if image_size is not None:
        out["image_size"] = int(image_size)
    return out


def _frame(env: gym.Env, obs: Any) -> np.ndarray:
    """The current frame: the pixel observation, or a rendering in state mode."""
    if isinstance(obs, dict) and "pixels" in obs:
        return obs["pixels"]
    return env.render()


def run_protocol(
    env_id: str,
    agent: Any,
    episodes: list[ProtocolEpisode],
    *,
    name: str = "agent",
    budget: int = BUDGET,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    record: bool = False,
) -> tuple[ProtocolResult, list[list[np.ndarray]]]:
    """Run `agent` on every protocol episode; return the result and, if
    `record`, the frames of each episode (start frame included).

    The envs are made with `env_kwargs`, then with what the agent itself asks for
    (see `agent_env_kwargs`): a state-based baseline gets `obs_mode="state"` envs.
    Start and goal are set through reset options either way (or the reset seed, see
    `ProtocolEpisode`), so every agent plays the same episodes; recorded frames are
    always the rendered pixels. `env_id` may be an id, `module:id` or an env build
    (`envs.build.EnvBuild` or its dict): a foreign env gets only the kwargs it takes.

    Progress: a planning agent (one with `plan_callback`, e.g. LeWM) gets a bar in
    plans per env, moved after every planner iteration, so the first batched plan
    of all episodes (minutes on a CPU) shows progress and a fair time estimate;
    other agents get a bar in env steps.
    """
    from envs.build import make_env

    kwargs = {"obs_mode": "pixels", **(env_kwargs or {}), **agent_env_kwargs(agent)}
    envs = [make_env(env_id, **kwargs) for _ in episodes]
    n = len(episodes)
    obs_list, frames = [], [[] for _ in range(n)]
    for i, (env, ep) in enumerate(zip(envs, episodes, strict=True)):
        obs, _ = reset_to_episode(env, ep, i)
        obs_list.append(obs)
        if record:
            frames[i].append(_frame(env, obs))
    active = list(range(n))
    steps = np.zeros(n, dtype=int)
    returns = np.zeros(n)
    success = np.zeros(n, dtype=bool)
    starts = np.ones(n, dtype=bool)
    uses_indices = getattr(agent, "supports_env_indices", False)
    decision_time, decisions = 0.0, 0
    t0 = time.perf_counter()
    plan_cfg = getattr(agent, "plan_config", None)
    model_cfg = getattr(agent, "model_config", None)
    per_plan = plan_cfg.receding_horizon * model_cfg.frameskip if plan_cfg and model_cfg else 0
    planning = hasattr(agent, "plan_callback") and per_plan > 0
    if planning:  # every env plans every `per_plan` steps, all at once in one batch
        total = n * math.ceil(budget / per_plan)
        bar = tqdm(
            total=total,
            desc=f"protocol {name}",
            disable=not progress,
            unit="plan",
            bar_format="{l_bar}{bar}| {n:.1f}/{total} plans [{elapsed}<{remaining}{postfix}]",
        )
        previous_callback = agent.plan_callback

        def on_iteration(iteration: int, iterations: int, envs_planned: int) -> None:
            bar.update(envs_planned / iterations)  # (envs planned) / iterations per plan

        agent.plan_callback = on_iteration
    else:
        bar = tqdm(total=budget, desc=f"protocol {name}", disable=not progress, unit="step")
    try:
        for _ in range(budget):
            if not active:
                break
            idx = active if uses_indices else list(range(n))
            tic = time.perf_counter()
            if uses_indices:
                actions, _ = agent.predict(
                    _stack([obs_list[i] for i in idx]), episode_start=starts[idx], env_indices=idx
                )
            else:
                actions, _ = agent.predict(
                    _stack([obs_list[i] for i in idx]), episode_start=starts[idx]
                )
            decision_time += time.perf_counter() - tic
            decisions += len(idx)
            starts[:] = False
            actions = np.asarray(actions)
            still = []
            for row, i in enumerate(idx):
                if i not in active:
                    continue
                obs, reward, term, trunc, info = envs[i].step(actions[row])
                obs_list[i] = obs
                steps[i] += 1
                returns[i] += float(reward)
                if record:
                    frames[i].append(_frame(envs[i], obs))
                if info.get("is_success", False):
                    success[i] = True
                if not (success[i] or term or trunc):
                    still.append(i)
            active = still
            if not planning:
                bar.update(1)
            bar.set_postfix(success=f"{success.sum()}/{n}")
    finally:
        if planning:
            agent.plan_callback = previous_callback
    if planning:
        bar.update(bar.total - bar.n)  # plans of episodes that ended early never run
    bar.close()
    for env in envs:
        env.close()
    seconds = time.perf_counter() - t0
    to_success = steps[success]
    result = ProtocolResult(
        agent=name,
        episodes=n,
        successes=int(success.sum()),
        success_rate=float(success.mean()),
        mean_steps=float(steps.mean()),
        mean_steps_to_success=float(to_success.mean()) if len(to_success) else None,
        mean_return=float(returns.mean()),
        seconds=seconds,
        decision_latency_ms=1000.0 * decision_time / max(1, decisions),
        per_episode=[
            {
                "episode": ep.episode,
                "start_step": ep.start_step,
                "success": bool(s),
                "steps": int(k),
                "return": float(r),
            }
            for ep, s, k, r in zip(episodes, success, steps, returns, strict=True)
        ],
    )
    return result, frames
