"""Cost screen: how well each plan cost ranks outcomes, on predicted and on true embeddings.

The planning ceiling (:mod:`eval.ceiling`) removes the model and asks what a cost
and a search can reach over exact dynamics. This screen asks the complementary
question without any planning: given a start frame, the action blocks a held-out
trajectory really took (one plan horizon of them) and a goal frame, does the plan
cost put the outcomes closest to the goal first?

For each pair it scores, with the agent's own `Controller.plan_cost`,

- the model's PREDICTED final embedding (the encoder on the start frame, then the
  predictor over the true actions: what the planner sees), and
- the TRUE final embedding (the encoder on the frame the env really reached: a
  perfect predictor),

against the goal frame's embedding, and ranks them against the env's state cost
between the reached state and the goal state (Push-T: the block-pose error; see
`eval.ceiling.make_cost`). The Spearman rank correlations split a cost's loss in
two: "true" is the cost's own geometry, "true" minus "predicted" is what the
model's prediction error costs it. Goals are frames ``goal_offsets`` env steps
after the reached one (negative: before), so a pair's answer is not simply zero.

States are read only to score, never by the agent: the costs see pixels only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from eval.ceiling import COSTS, CostConfig, make_cost
from lewm_agent.heldout import heldout_files, trained_holdout

__all__ = ["screen_costs"]

SCREEN_COSTS: tuple[str, ...] = ("latent", "learned", "latent+learned")
"""The plan costs screened by default (the learned ones only where the run has a cost head)."""


def _push_t_displacements(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(pusher px / 100, block px / 100, block angle rad) between states a and b (N, 10)."""
    ang = a[:, 4].astype(np.float64) - b[:, 4]
    return np.column_stack(
        [
            np.hypot(a[:, 0] - b[:, 0], a[:, 1] - b[:, 1]) / 100.0,
            np.hypot(a[:, 2] - b[:, 2], a[:, 3] - b[:, 3]) / 100.0,
            np.abs(np.arctan2(np.sin(ang), np.cos(ang))),
        ]
    )  # (N, 3)


SENSITIVITY_TERMS: dict[str, tuple[tuple[str, ...], Any]] = {
    "lewm/PushT-v0": (
        ("pusher_per_100px", "block_per_100px", "angle_per_rad"),
        _push_t_displacements,
    ),
}
"""Per env: the state displacements a cost's sensitivity is measured against, and their function."""


def sensitivity(
    cost: np.ndarray, a: np.ndarray, b: np.ndarray, env_id: str
) -> dict[str, float] | None:
    """Least squares of `cost` (N,) on the displacements between states a and b (N, S) plus a
    constant: how much the cost grows per unit of each (issue 11's measure); None for an env
    without terms. A cost that tracks success weighs the block and its angle, not the pusher."""
    if env_id not in SENSITIVITY_TERMS:
        return None
    names, terms = SENSITIVITY_TERMS[env_id]
    x = terms(np.asarray(a, np.float64), np.asarray(b, np.float64))  # (N, k)
    x = np.column_stack([x, np.ones(len(x))])  # (N, k + 1)
    w = np.linalg.lstsq(x, np.asarray(cost, np.float64), rcond=None)[0]  # (k + 1,)
    return {name: float(v) for name, v in zip(names, w[:-1], strict=True)}


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """scipy's Spearman, not `cost_head.spearman`: state costs tie (a block that did not
    move), and tied ranks must be averaged, not ordered by position."""
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def _pairs(
    files: Sequence[os.PathLike[str] | str],
    n: int,
    steps: int,
    goal_offsets: tuple[int, int],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """`n` (start, reached, goal) triples from held-out episode files.

    Returns frames (n, H, W, 3) uint8 for "start", "reached", "goal", states (n, S)
    for "reached_state", "goal_state", and the true actions (n, steps, A)."""
    lo, hi = goal_offsets
    per_file = max(1, -(-n // len(files)))
    out: dict[str, list[np.ndarray]] = {
        k: [] for k in ("start", "reached", "goal", "reached_state", "goal_state", "actions")
    }
    for path in files:
        with np.load(path, allow_pickle=False) as z:
            pixels, states, actions = z["pixels"], z["states"], z["actions"]
        last = len(actions)  # frames 0..last
        if last < steps:
            continue
        t = rng.integers(0, last - steps + 1, per_file)  # (k,) start frames
        g = np.clip(t + steps + rng.integers(lo, hi + 1, per_file), 0, last)  # (k,)
        out["start"].append(pixels[t])
        out["reached"].append(pixels[t + steps])
        out["goal"].append(pixels[g])
        out["reached_state"].append(states[t + steps])
        out["goal_state"].append(states[g])
        out["actions"].append(np.stack([actions[s : s + steps] for s in t]))
    if not out["start"]:
        raise ValueError(f"no held-out episode has {steps} steps (one plan horizon)")
    return {k: np.concatenate(v)[:n] for k, v in out.items()}


def screen_costs(
    agent_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    costs: Sequence[str] | None = None,
    pairs: int = 4000,
    goal_offsets: tuple[int, int] = (-20, 60),
    state_cost: str | None = None,
    seed: int = 0,
    batch: int = 256,
) -> dict[str, Any]:
    """Rank correlation of each plan cost with the env's state cost, predicted vs true.

    Args:
        agent_path: a checkpoint folder or zoo:NAME (its plan horizon sets the steps).
        data: the dataset the agent was trained on; its held-out episodes are used.
        costs: `PlanConfig.cost` values (default: "latent", plus "learned" and
            "latent+learned" when the run has a cost head).
        pairs: number of (start, reached, goal) triples.
        goal_offsets: goal frame = reached frame + an offset drawn in [lo, hi] env steps.
        state_cost: the ceiling's state cost to rank against (default: the env's first).
        seed: seed of the draw.
    """
    from lewm_agent.agent import WorldModelAgent
    from lewm_agent.cost_head import has_cost_head
    from lewm_agent.heads import embed_frames
    from lewm_agent.zoo import resolve

    if pairs < 10:
        raise ValueError(f"pairs must be >= 10 for a rank correlation, got {pairs}")
    if goal_offsets[0] > goal_offsets[1]:
        raise ValueError(f"goal_offsets must be (lo, hi) with lo <= hi, got {goal_offsets}")
    path = resolve(agent_path)
    with_head = has_cost_head(path)
    wanted = list(costs) if costs else [c for c in SCREEN_COSTS if with_head or c == "latent"]
    if not with_head and any(c != "latent" for c in wanted):
        raise ValueError(
            f"{agent_path}: costs {wanted} need a cost head; train one with "
            f"`lewm train-cost {agent_path} --data DATA` or screen only 'latent'"
        )
    agent = WorldModelAgent.load(
        path, device="cpu", cost="latent+learned" if with_head else "latent"
    )
    env_id = agent.env_id
    names = COSTS.get(env_id)
    if names is None:
        raise ValueError(f"no state cost to rank against for {env_id!r}; envs: {sorted(COSTS)}")
    state_cost = state_cost or names[0]
    score = make_cost(env_id, CostConfig(name=state_cost))

    cfg, mcfg = agent.plan_config, agent.model_config
    fs, a_dim = mcfg.frameskip, mcfg.action_dim
    steps = cfg.horizon * fs
    rng = np.random.default_rng(seed)
    files = heldout_files(data, trained_holdout(path))
    p = _pairs(files, pairs, steps, goal_offsets, rng)
    n = len(p["start"])

    # Normalised action blocks, as the planner proposes them: (n, H, fs*A).
    mean = np.asarray(agent.normalizer.mean, dtype=np.float32)  # (A,)
    std = np.asarray(agent.normalizer.std, dtype=np.float32)  # (A,)
    acts = (p["actions"] - mean) / std  # (n, steps, A)
    plans = torch.from_numpy(acts.reshape(n, cfg.horizon, fs * a_dim).astype(np.float32))
    device = torch.device("cpu")
    z_start, z_true, z_goal = (
        embed_frames(agent.model, p[k], device, batch) for k in ("start", "reached", "goal")
    )  # (n, D) each
    with torch.inference_mode():
        z_pred = torch.cat(
            [
                agent.model.rollout(z_start[i : i + batch, None], None, plans[i : i + batch])[:, -1]
                for i in range(0, n, batch)
            ]
        )  # (n, D): the predictor's final embedding over the true actions
    truth = np.array(
        [score(p["reached_state"][i : i + 1], p["goal_state"][i])[0] for i in range(n)]
    )  # (n,) state cost of what the env reached

    rows = []
    base_cfg = agent.controller.cfg
    for name in wanted:
        agent.controller.cfg = replace(base_cfg, cost=name)
        with torch.inference_mode():
            c_pred = agent.controller.plan_cost(z_pred[:, None], z_goal).numpy()  # (n,)
            c_true = agent.controller.plan_cost(z_true[:, None], z_goal).numpy()  # (n,)
        rows.append(
            {
                "cost": name,
                "spearman_predicted": _spearman(c_pred, truth),
                "spearman_true": _spearman(c_true, truth),
                "sensitivity_true": sensitivity(
                    c_true, p["reached_state"], p["goal_state"], env_id
                ),
            }
        )
    agent.controller.cfg = base_cfg
    pred_err = float((z_pred - z_true).square().sum(-1).mean())
    spread = float((z_true - z_goal).square().sum(-1).mean())
    return {
        "agent": str(agent_path),
        "env": env_id,
        "state_cost": state_cost,
        "pairs": n,
        "steps": steps,
        "goal_offsets": list(goal_offsets),
        "seed": seed,
        "prediction_error": pred_err,
        "goal_spread": spread,
        "rows": rows,
    }
