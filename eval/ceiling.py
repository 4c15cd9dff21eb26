"""The planning ceiling: the agent's own planners over an env's EXACT dynamics.

A world-model agent can fail because its model predicts wrongly, because its cost
(a latent distance) ranks outcomes wrongly, or because its search does not find a
good plan. This harness removes the first: the planner (``lewm_agent.planning``'s
CEM or MPPI, with their budgets, coloured noise, a horizon in blocks of
``frameskip`` env steps, receding horizon and warm start, exactly as the agent
uses them) rolls candidate action sequences out through the env's own step
function, and a chosen cost scores the resulting STATES. What is left is the cost
and the search: a cost that the harness cannot reach with a perfect model, a
learned model cannot reach either.

It runs the paper protocol's episodes (:mod:`eval.protocol`: start and goal states
from held-out trajectories, a 50-step budget, execute ``receding_horizon`` blocks
then replan) on the real env, and reports success with a 95% Wilson interval,
mean steps and seconds per decision. :func:`expert_success` measures the env's
privileged goal expert on the same episodes, the reference rate.

Plug in an env: a :class:`Dynamics` (``rollout(state (S,), actions (N, T, A)) ->
states (N, T + 1, S)``) in :data:`DYNAMICS`, and its state costs in :data:`COSTS`.
Plans are in env action units (bounds ``[-1, 1]``); the agent plans in units
normalised by the data's action statistics, which only recentres and rescales the
sampling distribution.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np
import torch

from envs.build import make_env
from eval.checkpoint_cost import CheckpointCost
from eval.protocol import BUDGET, EPISODES, SEED, ProtocolEpisode, reset_to_episode, sample_episodes
from lewm_agent.config import PlanConfig
from lewm_agent.heldout import DEFAULT_HOLDOUT, heldout_files
from lewm_agent.planning import make_planner
from lewm_agent.stats import wilson_interval

__all__ = [
    "COSTS",
    "DYNAMICS",
    "CEILING_PLAN",
    "Cost",
    "CostConfig",
    "Dynamics",
    "PushTDynamics",
    "TwoRoomDynamics",
    "ceiling",
    "expert_success",
    "make_cost",
    "make_dynamics",
    "protocol_episodes",
]


# ---------------------------------------------------------------- dynamics
class Dynamics(Protocol):
    """An env's exact step function, batched over candidate action sequences."""

    state_dim: int
    action_dim: int

    def rollout(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """state (S,), actions (N, T, A) env units -> states (N, T + 1, S), start included."""
        ...


class PushTDynamics:
    """Push-T's physics, bit-identical to ``envs.push_t.simulate_step`` (see ``envs.push_t_batch``)."""

    state_dim = 10
    action_dim = 2

    def rollout(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        from envs.push_t_batch import rollout_exact

        return rollout_exact(np.asarray(state, dtype=np.float32), actions)  # (N, T+1, 10)


class TwoRoomDynamics:
    """Two-Room's move with wall sliding (``envs.two_room.move``), one sample at a time."""

    state_dim = 2
    action_dim = 2

    def rollout(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        from envs.two_room import STEP_SIZE, move

        acts = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)  # (N, T, 2)
        n, t = acts.shape[:2]
        out = np.empty((n, t + 1, 2), dtype=np.float32)
        out[:, 0] = np.asarray(state, dtype=np.float32)
        d = (STEP_SIZE * acts).tolist()
        for i in range(n):
            x, y = (float(v) for v in out[i, 0])
            for k in range(t):
                x, y = move(x, y, d[i][k][0], d[i][k][1])
                out[i, k + 1] = (x, y)
        return out


DYNAMICS: dict[str, Callable[[], Dynamics]] = {
    "lewm/PushT-v0": PushTDynamics,
    "lewm/TwoRoom-v0": TwoRoomDynamics,
}
"""Envs with an exact step function the harness can roll out, by env id."""


def make_dynamics(env_id: str) -> Dynamics:
    """The exact dynamics of ``env_id``; a ValueError names the envs that have one."""
    if env_id not in DYNAMICS:
        raise ValueError(
            f"{env_id!r} exposes no exact dynamics for the ceiling harness; envs with one: "
            f"{sorted(DYNAMICS)} (add a Dynamics to eval.ceiling.DYNAMICS for another env)"
        )
    return DYNAMICS[env_id]()


# ---------------------------------------------------------------- costs
class Cost(Protocol):
    """A state cost: states (N, S) and one goal state (S,) -> costs (N,)."""

    def __call__(self, states: np.ndarray, goal: np.ndarray) -> np.ndarray: ...


def _angle_error(a: np.ndarray, b: float) -> np.ndarray:
    """|a - b| wrapped to [0, pi]."""
    d = np.asarray(a, dtype=np.float64) - b
    return np.abs(np.arctan2(np.sin(d), np.cos(d)))


def push_t_block_pose(states: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """``(|d_block| / 20 px)^2 + (d_angle / (pi/9))^2``: success-shaped (< 1 inside the region's core)."""
    from envs.push_t import SUCCESS_ANGLE, SUCCESS_POS_PX

    s = np.asarray(states, dtype=np.float64)  # (N, 10)
    pos = np.hypot(s[:, 2] - goal[2], s[:, 3] - goal[3]) / SUCCESS_POS_PX  # (N,)
    ang = _angle_error(s[:, 4], float(goal[4])) / SUCCESS_ANGLE  # (N,)
    return pos**2 + ang**2


def push_t_latent_surrogate(
    weights: tuple[float, float, float],
) -> Cost:
    """A linear stand-in for a latent distance: weights per 100 px of pusher error, per
    100 px of block error and per radian of block angle error."""
    wp, wb, wa = (float(w) for w in weights)

    def cost(states: np.ndarray, goal: np.ndarray) -> np.ndarray:
        s = np.asarray(states, dtype=np.float64)  # (N, 10)
        dp = np.hypot(s[:, 0] - goal[0], s[:, 1] - goal[1]) / 100.0  # (N,)
        db = np.hypot(s[:, 2] - goal[2], s[:, 3] - goal[3]) / 100.0  # (N,)
        return wp * dp + wb * db + wa * _angle_error(s[:, 4], float(goal[4]))

    return cost


def push_t_contact(states: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Gap between the pusher's rim and the block, per 100 px (0 in contact)."""
    from envs.push_t import PUSHER_RADIUS, distance_to_block

    s = np.asarray(states, dtype=np.float64)  # (N, 10)
    gap = distance_to_block(s[:, 0:2], s[:, 2:5]) - PUSHER_RADIUS  # (N,)
    return np.maximum(gap, 0.0) / 100.0


def push_t_goal_pusher(states: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Distance of the pusher from where the goal state has it, per 100 px."""
    s = np.asarray(states, dtype=np.float64)  # (N, 10)
    return np.hypot(s[:, 0] - goal[0], s[:, 1] - goal[1]) / 100.0


def two_room_distance(states: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """``(|d| / success radius)^2`` of the agent's position."""
    from envs.two_room import SUCCESS_RADIUS

    s = np.asarray(states, dtype=np.float64)  # (N, 2)
    return (np.hypot(s[:, 0] - goal[0], s[:, 1] - goal[1]) / SUCCESS_RADIUS) ** 2


COSTS: dict[str, tuple[str, ...]] = {
    "lewm/PushT-v0": ("block_pose", "latent_surrogate"),
    "lewm/TwoRoom-v0": ("distance",),
}
"""The base costs each env offers (:class:`CostConfig.name`)."""

_SHAPING_ENVS = ("lewm/PushT-v0",)
"""Envs with a pusher and a block, where the contact and goal-pusher terms mean something."""

AGGREGATIONS: tuple[str, ...] = ("final", "blocks")


@dataclass(frozen=True)
class CostConfig:
    """What the planner minimises over a rolled-out sequence of states."""

    name: str = "block_pose"
    """Base state cost: Push-T "block_pose" or "latent_surrogate"; Two-Room "distance"."""
    over: str = "final"
    """"final": the last state only; "blocks": summed over the state at every block's end."""
    contact_weight: float = 0.0
    """Push-T: weight per 100 px of gap between the pusher and the block (a signal before contact)."""
    goal_pusher_weight: float = 0.0
    """Push-T: weight per 100 px between the pusher and the goal state's pusher."""
    surrogate_weights: tuple[float, float, float] = (33.5, 21.6, 0.93)
    """"latent_surrogate": per 100 px of pusher, per 100 px of block, per radian (issue 11's measured
    sensitivity of the learned embedding distance)."""

    def __post_init__(self) -> None:
        if self.over not in AGGREGATIONS:
            raise ValueError(
                f"CostConfig.over must be one of {list(AGGREGATIONS)}, got {self.over!r}"
            )
        if self.contact_weight < 0 or self.goal_pusher_weight < 0:
            raise ValueError("CostConfig: contact_weight and goal_pusher_weight must be >= 0")
        if len(self.surrogate_weights) != 3:
            raise ValueError(
                "CostConfig.surrogate_weights must be 3 numbers (pusher, block, angle)"
            )


def make_cost(env_id: str, cfg: CostConfig) -> Cost:
    """The state cost ``cfg`` describes for ``env_id`` (base cost plus shaping terms)."""
    names = COSTS.get(env_id)
    if names is None:
        raise ValueError(f"no ceiling costs for {env_id!r}; envs with costs: {sorted(COSTS)}")
    if cfg.name not in names:
        raise ValueError(f"unknown cost {cfg.name!r} for {env_id}; choose one of {list(names)}")
    shaped = cfg.contact_weight > 0 or cfg.goal_pusher_weight > 0
    if shaped and env_id not in _SHAPING_ENVS:
        raise ValueError(
            f"contact_weight / goal_pusher_weight need a pusher and a block; {env_id} has none"
        )
    base: Cost = {
        "block_pose": push_t_block_pose,
        "latent_surrogate": push_t_latent_surrogate(cfg.surrogate_weights),
        "distance": two_room_distance,
    }[cfg.name]
    if not shaped:
        return base

    def cost(states: np.ndarray, goal: np.ndarray) -> np.ndarray:
        c = base(states, goal)  # (N,)
        if cfg.contact_weight > 0:
            c = c + cfg.contact_weight * push_t_contact(states, goal)
        if cfg.goal_pusher_weight > 0:
            c = c + cfg.goal_pusher_weight * push_t_goal_pusher(states, goal)
        return c

    return cost


def rollout_cost(
    cost: Cost, states: np.ndarray, goal: np.ndarray, frameskip: int, over: str
) -> np.ndarray:
    """Cost of whole rollouts: states (N, T + 1, S) -> (N,), final state or every block's end."""
    n, t1, s = states.shape
    if over == "final":
        return cost(states[:, -1], goal)  # (N,)
    ends = states[:, frameskip::frameskip]  # (N, T / frameskip, S)
    k = ends.shape[1]
    return cost(ends.reshape(n * k, s), goal).reshape(n, k).sum(axis=1)


# ---------------------------------------------------------------- the harness
CEILING_PLAN = PlanConfig(
    planner="cem",
    samples=200,
    iterations=8,
    elites=20,
    horizon=5,
    receding_horizon=5,
    noise_beta=2.0,
    warm_start=True,
)
"""The harness's default search: CEM 200 x 8, coloured noise, 5 blocks, execute all 5."""


@dataclass
class _Tally:
    success: list[bool] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    plan_seconds: float = 0.0
    decisions: int = 0


def _summary(
    tally: _Tally, episodes: Sequence[ProtocolEpisode], extra: dict[str, Any]
) -> dict[str, Any]:
    n, k = len(tally.success), int(sum(tally.success))
    lo, hi = wilson_interval(k, n)
    to_success = [s for s, ok in zip(tally.steps, tally.success, strict=True) if ok]
    return {
        **extra,
        "episodes": n,
        "successes": k,
        "success_rate": k / n,
        "ci95": [lo, hi],
        "mean_steps": float(np.mean(tally.steps)),
        "mean_steps_to_success": float(np.mean(to_success)) if to_success else None,
        "per_episode": [
            {"episode": ep.episode, "start_step": ep.start_step, "success": ok, "steps": st}
            for ep, ok, st in zip(episodes, tally.success, tally.steps, strict=True)
        ],
    }


def _plan_cost(
    dynamics: Dynamics,
    state_cost: Cost,
    over: str,
    start: np.ndarray,
    goal: np.ndarray,
    horizon: int,
    frameskip: int,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The planner's cost function: plans (S, H, fs*A) -> costs (S,) through exact rollouts."""
    start = start.copy()
    a = dynamics.action_dim

    def cost_fn(plans: torch.Tensor) -> torch.Tensor:
        acts = plans.double().numpy().reshape(len(plans), horizon * frameskip, a)  # (S, H*fs, A)
        states = dynamics.rollout(start, acts)  # (S, H*fs+1, state_dim)
        c = rollout_cost(state_cost, states, goal, frameskip, over)  # (S,)
        return torch.from_numpy(np.asarray(c, dtype=np.float32))

    return cost_fn


def ceiling(
    env_id: str,
    episodes: Sequence[ProtocolEpisode],
    cost: str | CostConfig | CheckpointCost = "block_pose",
    planner: PlanConfig = CEILING_PLAN,
    *,
    frameskip: int = 5,
    budget: int = BUDGET,
    random_actions: bool = False,
    progress: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Plan with exact dynamics on every protocol episode; return the summary dict.

    Args:
        env_id: a registered env with an entry in :data:`DYNAMICS` (Push-T, Two-Room).
        episodes: protocol episodes with start and goal states (``eval.protocol``).
        cost: a :class:`CostConfig`, a base cost name (final state, no shaping), or a
            :class:`~eval.checkpoint_cost.CheckpointCost` (a checkpoint's plan cost on
            the rendered frames of the exact states).
        planner: ``"cem"`` or ``"mppi"`` with its budget; ``horizon`` and
            ``receding_horizon`` count blocks of ``frameskip`` env steps, and
            ``warm_start`` starts each replan from the unexecuted rest of the last plan.
        frameskip: env steps per planned block (the model's frameskip: 5).
        budget: env steps per episode (the protocol's 50).
        random_actions: act with uniform random actions instead of planning (the floor).
        progress: called with (episode index, its result) after each episode.

    Returns: success count and rate with a 95% Wilson interval, mean steps, seconds per
    decision (one planner call), and per-episode results.
    """
    dynamics = make_dynamics(env_id)
    if isinstance(cost, CheckpointCost):
        from eval.checkpoint_cost import checkpoint_state_cost

        over = cost.over
        state_cost, cost_desc = checkpoint_state_cost(env_id, cost)
    else:
        cfg = CostConfig(name=cost) if isinstance(cost, str) else cost
        over = cfg.over
        state_cost, cost_desc = make_cost(env_id, cfg), asdict(cfg)
    if planner.planner not in ("cem", "mppi"):
        raise ValueError(f"the ceiling harness runs 'cem' or 'mppi', got {planner.planner!r}")
    if frameskip < 1 or budget < 1:
        raise ValueError(f"frameskip and budget must be >= 1, got {frameskip} and {budget}")
    if not 1 <= planner.receding_horizon <= planner.horizon:
        raise ValueError(
            f"receding_horizon must be in [1, horizon={planner.horizon}], "
            f"got {planner.receding_horizon}"
        )
    if not episodes:
        raise ValueError("no episodes to run")
    if any(ep.start_state is None or ep.goal_state is None for ep in episodes):
        raise ValueError("the ceiling harness needs episodes with start and goal states")
    a = dynamics.action_dim
    low = torch.full((frameskip * a,), -1.0)
    high = torch.full((frameskip * a,), 1.0)
    plan_engine = make_planner(planner, low, high, step_dim=a)
    h, r = planner.horizon, planner.receding_horizon
    env = make_env(env_id, obs_mode="state")
    tally = _Tally()
    try:
        for index, ep in enumerate(episodes):
            _, info = reset_to_episode(env, ep, index)
            goal = np.asarray(info["goal_state"], dtype=np.float64)
            state = np.asarray(info["state"], dtype=np.float32)
            gen = torch.Generator().manual_seed(planner.seed + index)
            rng = np.random.default_rng(planner.seed + index)
            warm: torch.Tensor | None = None
            steps, solved = 0, False
            while steps < budget and not solved:
                if random_actions:
                    queue = rng.uniform(-1.0, 1.0, size=(r * frameskip, a))
                else:
                    cost_fn = _plan_cost(dynamics, state_cost, over, state, goal, h, frameskip)
                    tic = time.perf_counter()
                    init = warm[None] if warm is not None else None  # (1, H, fs*A)
                    result = plan_engine.plan(cost_fn, [gen], init_mean=init)
                    tally.plan_seconds += time.perf_counter() - tic
                    tally.decisions += 1
                    plan = result.actions[0]  # (H, fs*A)
                    queue = plan[:r].reshape(r * frameskip, a).double().numpy()
                    warm = (
                        torch.cat([plan[r:], torch.zeros_like(plan[:r])])
                        if planner.warm_start and r < h
                        else None
                    )
                for action in queue:
                    _, _, terminated, truncated, info = env.step(action.astype(np.float32))
                    steps += 1
                    solved = bool(info.get("is_success", False))
                    if solved or terminated or truncated or steps >= budget:
                        break
                state = np.asarray(info["state"], dtype=np.float32)
                if terminated or truncated:
                    break
            tally.success.append(solved)
            tally.steps.append(steps)
            if progress is not None:
                progress(index, {"success": solved, "steps": steps})
    finally:
        env.close()
    extra = {
        "env": env_id,
        "method": "random" if random_actions else planner.planner,
        "cost": cost_desc,
        "planner": asdict(planner),
        "frameskip": frameskip,
        "budget": budget,
        "decisions": tally.decisions,
        "seconds_per_decision": tally.plan_seconds / max(1, tally.decisions),
        "rollout_steps_per_decision": (
            0 if random_actions else plan_engine.cfg.samples * planner.iterations * h * frameskip
        ),
    }
    return _summary(tally, episodes, extra)


def expert_success(
    env_id: str, episodes: Sequence[ProtocolEpisode], *, budget: int = BUDGET, seed: int = 0
) -> dict[str, Any]:
    """The env's privileged goal expert on the same protocol episodes (the reference rate)."""
    from envs.spec import env_spec

    factory = env_spec(env_id).goal_expert
    if factory is None:
        raise ValueError(f"{env_id!r} has no goal expert (EnvSpec.goal_expert)")
    env = make_env(env_id, obs_mode="state")
    expert = factory(env.action_space, seed)
    tally = _Tally()
    try:
        for index, ep in enumerate(episodes):
            obs, _ = reset_to_episode(env, ep, index)
            steps, solved = 0, False
            while steps < budget and not solved:
                tic = time.perf_counter()
                action, _ = expert.predict(
                    obs, episode_start=np.array([steps == 0]), deterministic=True
                )
                tally.plan_seconds += time.perf_counter() - tic
                tally.decisions += 1
                obs, _, terminated, truncated, info = env.step(action)
                steps += 1
                solved = bool(info.get("is_success", False))
                if terminated or truncated:
                    break
            tally.success.append(solved)
            tally.steps.append(steps)
    finally:
        env.close()
    extra = {
        "env": env_id,
        "method": "expert",
        "budget": budget,
        "decisions": tally.decisions,
        "seconds_per_decision": tally.plan_seconds / max(1, tally.decisions),
    }
    return _summary(tally, episodes, extra)


def protocol_episodes(
    data: str | os.PathLike[str],
    n: int = EPISODES,
    seed: int = SEED,
    holdout: float = DEFAULT_HOLDOUT,
) -> list[ProtocolEpisode]:
    """The protocol's episodes of a dataset folder, as ``lewm eval --data`` draws them.

    Reads only the held-out episodes' states and actions (not their pixels, which a
    3000-episode dataset holds gigabytes of): the same files, in the same order, as
    ``load_heldout(data, holdout).heldout``, so ``sample_episodes`` draws the same pairs.
    """
    held = []
    for path in heldout_files(data, holdout):
        with np.load(path, allow_pickle=False) as z:
            held.append(SimpleNamespace(name=path.name, states=z["states"], actions=z["actions"]))
    return sample_episodes(SimpleNamespace(episodes=held), n=n, seed=seed)  # type: ignore[arg-type]
