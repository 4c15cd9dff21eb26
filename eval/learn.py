"""Evaluation inside `agents.learn`: protocol success after each round.

`agents.learn.learn` sits below this floor and takes evaluation as a callable;
`protocol_eval_fn` is that callable for the paper protocol on a fixed set of
start/goal pairs (`learn_eval_episodes`: a dataset's held-out split, a zoo model's
shipped episodes or an episodes.json), so every round is scored on the same pairs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lewm_agent.agent import WorldModelAgent
from lewm_agent.config import replace

from .protocol import ProtocolEpisode, run_protocol

EVAL_PLAN: dict[str, Any] = {"samples": 60, "iterations": 5, "elites": 6}
"""CEM 60 x 5: 100% (50/50) on Two-Room with the zoo model, like CEM 300 x 10, at a
tenth of the rollouts (docs/results/planning.md); an evaluation after every round
must stay cheap on a CPU."""


def learn_eval_episodes(
    source: str | os.PathLike[str], n: int = 50, seed: int = 42
) -> list[ProtocolEpisode]:
    """The protocol's pairs from a dataset folder's held-out split (10%, as `lewm train`
    holds out), or the first `n` shipped in `zoo:NAME`, a model folder or episodes.json."""
    from lewm_agent.zoo import EPISODES_FILE, is_zoo_ref

    from .ceiling import protocol_episodes
    from .zoo import protocol_episodes as shipped

    path = Path(source)
    if not is_zoo_ref(source) and path.is_dir() and not (path / EPISODES_FILE).is_file():
        # The held-out files' states and actions only: the pixels are not needed here.
        return protocol_episodes(path, n=n, seed=seed)
    return shipped(str(source), n=n, seed=seed)


def protocol_eval_fn(
    env: str | Mapping[str, Any],
    episodes: list[ProtocolEpisode],
    *,
    plan_overrides: Mapping[str, Any] | None = None,
    results: list[dict[str, Any]] | None = None,
) -> Callable[[WorldModelAgent], float]:
    """`eval_fn(agent) -> success rate` on `episodes`, planning with the agent's plan
    config updated by `plan_overrides` (default `EVAL_PLAN`); each round's full
    `ProtocolResult` dict is appended to `results` when given."""
    overrides = dict(EVAL_PLAN if plan_overrides is None else plan_overrides)

    def evaluate(agent: WorldModelAgent) -> float:
        plan = replace(agent.plan_config, **overrides)
        player = WorldModelAgent(
            agent.model,
            agent.normalizer,
            agent.action_low,
            agent.action_high,
            plan,
            device=agent.device,
        )
        result, _ = run_protocol(
            env,
            player,
            episodes,
            name="learn eval",
            env_kwargs={"image_size": agent.model_config.image_size},
            progress=False,
        )
        if results is not None:
            results.append(result.to_dict())
        return float(result.success_rate)

    return evaluate


# ------------------------------------------------------------------------ the results file
def learn_curve(
    run: str | os.PathLike[str], eval_results: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One point per finished round of a learn run: env steps, episodes, coverage,
    train loss and (with the round's `ProtocolResult` dicts) successes and Wilson CI."""
    from agents.learn import read_log
    from lewm_agent.stats import wilson_interval

    points = []
    for i, row in enumerate(read_log(run)):
        p: dict[str, Any] = {
            "round": int(row["round"]),
            "env_steps": int(row["env_steps"]),
            "episodes": int(row["episodes"]),
            "policy": row["policy"],
            "train_loss": _num(row["train_loss"]),
            "coverage": _num(row["coverage"]),
            "round_coverage": _num(row["round_coverage"]),
            "success_rate": _num(row["success"]),
        }
        if eval_results is not None and i < len(eval_results):
            r = eval_results[i]
            lo, hi = wilson_interval(int(r["successes"]), int(r["episodes"]))
            p.update(successes=int(r["successes"]), eval_episodes=int(r["episodes"]))
            p.update(ci95=[round(lo, 4), round(hi, 4)], mean_steps=r.get("mean_steps"))
        points.append(p)
    return points


def _num(text: str) -> float | None:
    return None if text in ("", None) else float(text)


SB3_AGENTS: tuple[str, ...] = ("ppo", "sac", "ppo-pixels")
"""The suite's reward-trained stable-baselines3 agents shown beside a learn curve."""


def sb3_points(suite: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The suite's SB3 agents (a `lewm suite` JSON) as points at their training env steps.

    They learn from the env's reward on the suite's own 50 protocol episodes, so they
    are a reference, not the same evaluation as a learn curve."""
    from lewm_agent.stats import wilson_interval

    out = []
    for name in SB3_AGENTS:
        r = suite.get("results", {}).get(name)
        if not r or not r.get("train_env_steps"):
            continue
        lo, hi = wilson_interval(r["successes"], r["episodes"])
        out.append(
            {
                "label": f"{name.upper()} (reward, suite)",
                "env_steps": int(r["train_env_steps"]),
                "successes": int(r["successes"]),
                "episodes": int(r["episodes"]),
                "success_rate": r["successes"] / r["episodes"],
                "ci95": [round(lo, 4), round(hi, 4)],
                "source": suite.get("source", "lewm suite"),
            }
        )
    return out


def plot_learn(result: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Success vs env steps (the learn curve, with 95% Wilson bars, beside the reference
    points of `result["references"]`) and the map coverage per round (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    has_coverage = any(
        p.get("coverage") is not None for c in result["curves"].values() for p in c
    )  # an env without positions (Push-T's logger records none): one panel
    fig = Figure(figsize=(9, 3.6) if has_coverage else (5.6, 3.6))
    FigureCanvasAgg(fig)
    if has_coverage:
        ax, cov = fig.subplots(1, 2, sharex=True, gridspec_kw={"width_ratios": [3, 2]})
    else:
        ax, cov = fig.subplots(1, 1), None
    for name, curve in result["curves"].items():
        xs = [p["env_steps"] for p in curve]
        ys = [100 * p["success_rate"] for p in curve]
        err = [
            [100 * (p["success_rate"] - p["ci95"][0]) for p in curve],
            [100 * (p["ci95"][1] - p["success_rate"]) for p in curve],
        ]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=name)
        covered = [
            (p["env_steps"], 100 * p["coverage"]) for p in curve if p["coverage"] is not None
        ]
        if covered and cov is not None:
            cov.plot(*zip(*covered, strict=True), marker="o", label=name)
    for ref in result.get("references", []):
        lo, hi = ref["ci95"]
        rate = ref["success_rate"]
        ax.errorbar(
            [ref["env_steps"]],
            [100 * rate],
            yerr=[[100 * (rate - lo)], [100 * (hi - rate)]],
            marker="s",
            linestyle="none",
            capsize=3,
            label=ref["label"],
        )
        if ref.get("coverage") is not None and cov is not None:
            cov.plot([ref["env_steps"]], [100 * ref["coverage"]], marker="s", linestyle="none")
    for point in result.get("sb3", []):  # reward-trained references: open triangles
        lo, hi = point["ci95"]
        rate = point["success_rate"]
        ax.errorbar(
            [point["env_steps"]],
            [100 * rate],
            yerr=[[100 * (rate - lo)], [100 * (hi - rate)]],
            marker="^",
            markerfacecolor="none",
            linestyle="none",
            capsize=3,
            label=point["label"],
        )
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:.0f}k"))
    ax.set_xlim(left=0)
    ax.set_xlabel("env steps")
    ax.set_ylabel("protocol success (%)")
    lows = [p["ci95"][0] for c in result["curves"].values() for p in c]
    lows += [r["ci95"][0] for r in [*result.get("references", []), *result.get("sb3", [])]]
    # Zoom in when every interval is above 50%: the differences live near the top.
    ax.set_ylim(50 if lows and min(lows) >= 0.55 else -3, 102)
    ax.set_title(result.get("title", "success vs env steps"), fontsize=9)
    ax.legend(fontsize=7, loc="best")
    if cov is not None:
        cov.set_xlabel("env steps")
        cov.set_ylabel("map cells visited (%)")
        cov.set_ylim(0, 103)
        cov.set_title("coverage (10 x 10 grid of positions)", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    return out
