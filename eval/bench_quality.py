"""`python -m eval.bench planning-quality`: success against compute, planner by planner.

For each planner setting, the same trained agent plays the same paper-protocol
episodes (held-out start/goal pairs of the dataset, `eval.compare`'s helpers),
ONE episode at a time, so every decision is what a single-env gym loop pays:

- success rate (with its 95% Wilson interval);
- median seconds per decision (one planning call for one env; the policy alone:
  one forward pass of its head), and ms per action (every `predict`, encoding
  included, per env step);
- rollouts per decision (candidate action sequences pushed through the predictor;
  0 for the policy alone) and per env step.

The settings (`SETTINGS`) are the paper's CEM 300 x 30, the `cpu` preset's
300 x 10, a cheap 150 x 5, CEM that replans every block warm-started with 2
iterations, MPPI 300 x 10, CEM with the policy prior at 1/4 and 1/10 of
300 x 10's rollouts, and the policy head alone. Rows that need a policy head are
skipped (with a note) when the checkpoint has none (`lewm train-policy RUN --data DATA`).

Writes JSON `{"env", "rows": [{"planner", "success_rate", "seconds_per_decision",
"rollouts_per_decision", ...}]}` and a PNG (success against seconds per decision,
log x, Wilson intervals).

    python -m eval.bench planning-quality --agent runs/tworoom --data data/tworoom \\
        --episodes 50 --json outputs/bench/quality-tworoom.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SETTINGS: dict[str, dict[str, Any]] = {
    "cem-300x30": {"planner": "cem", "samples": 300, "iterations": 30, "elites": 30},
    "cem-300x10": {"planner": "cem", "samples": 300, "iterations": 10, "elites": 30},
    "cem-150x5": {"planner": "cem", "samples": 150, "iterations": 5, "elites": 15},
    # Replan after every block from the shifted plan with 2 iterations (the first plan
    # of an episode is cold: 10): the same rollouts per env step as 300 x 10 every 5 blocks.
    "cem-warm-300x2-every-block": {
        "planner": "cem",
        "samples": 300,
        "iterations": 10,
        "warm_iterations": 2,
        "elites": 30,
        "receding_horizon": 1,
    },
    "mppi-300x10": {"planner": "mppi", "samples": 300, "iterations": 10, "elites": 30},
    # 150 x 5 = 750 and 60 x 5 = 300 rollouts: 1/4 and 1/10 of 300 x 10's 3000.
    "cem-prior-150x5": {"planner": "cem-prior", "samples": 150, "iterations": 5, "elites": 15},
    "cem-prior-60x5": {"planner": "cem-prior", "samples": 60, "iterations": 5, "elites": 6},
    "policy": {"planner": "policy"},
}
"""Planner settings: PlanConfig overrides on top of the checkpoint's own plan config."""

REFERENCE = "cem-300x10"
"""The setting the others are compared with (the `cpu` preset's planner)."""


def _median_weighted(records: list[dict[str, float]], key: str) -> float | None:
    values = [r[key] for r in records for _ in range(int(r["envs"]))]
    return statistics.median(values) if values else None


def run_setting(
    run: str | os.PathLike[str],
    env_id: str,
    episodes: list[Any],
    overrides: dict[str, Any],
    *,
    name: str,
    budget: int,
    device: str = "cpu",
    bar: Any = None,
) -> dict[str, Any]:
    """One planner setting on `episodes`, one episode at a time; returns its row."""
    from lewm_agent import WorldModelAgent

    from .compare import wilson_interval
    from .protocol import run_protocol

    agent = WorldModelAgent.load(run, device=device, **overrides)
    env_kwargs = {"image_size": agent.model_config.image_size}
    agent.decisions = []
    successes, steps, predict_seconds, wall = 0, 0, 0.0, time.perf_counter()
    for ep in episodes:
        result, _ = run_protocol(
            env_id, agent, [ep], name=name, budget=budget, env_kwargs=env_kwargs, progress=False
        )
        successes += result.successes
        steps += int(result.mean_steps)  # one episode: its length
        predict_seconds += result.decision_latency_ms / 1000 * result.mean_steps
        if bar is not None:
            bar.update(1)
            bar.set_postfix(planner=name, success=f"{successes}/{len(episodes)}")
    decisions = agent.decisions
    n_dec = sum(int(d["envs"]) for d in decisions)
    rollouts = sum(d["rollouts"] * d["envs"] for d in decisions)
    lo, hi = wilson_interval(successes, len(episodes))
    pc = agent.plan_config
    return {
        "planner": name,
        "plan_config": {k: getattr(pc, k) for k in sorted(set(overrides) | {"noise_beta"})},
        "episodes": len(episodes),
        "successes": successes,
        "success_rate": successes / len(episodes),
        "success_ci95": [lo, hi],
        "seconds_per_decision": _median_weighted(decisions, "seconds"),
        "mean_seconds_per_decision": (
            sum(d["seconds"] * d["envs"] for d in decisions) / n_dec if n_dec else None
        ),
        "rollouts_per_decision": rollouts / n_dec if n_dec else 0.0,
        "decisions": n_dec,
        "env_steps": steps,
        "rollouts_per_env_step": rollouts / max(1, steps),
        "ms_per_action": 1000 * predict_seconds / max(1, steps),
        "wall_seconds": time.perf_counter() - wall,
    }


def quality_chart(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Success (%) against median seconds per decision (log x) with Wilson intervals."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in report["rows"] if r.get("seconds_per_decision")]
    if not rows:
        raise ValueError("no row with a measured seconds per decision to plot")
    fig = Figure(figsize=(7.5, 4.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for r in rows:
        x, y = r["seconds_per_decision"], 100 * r["success_rate"]
        lo, hi = (100 * v for v in r["success_ci95"])
        name = r["planner"]
        colour = (
            "#c0392b"
            if "prior" in name
            else "#27ae60"
            if name == "policy"
            else "#2c6fbb"
            if name.startswith("cem")
            else "#8e44ad"
        )
        ax.errorbar(
            [x],
            [y],
            yerr=[[max(0.0, y - lo)], [max(0.0, hi - y)]],
            fmt="o",
            color=colour,
            capsize=4,
            lw=1.2,
        )
        ax.annotate(
            f"{name}\n{r['rollouts_per_decision']:.0f} rollouts",
            (x, y),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=7,
        )
    ax.set_xscale("log")
    ax.set_xlabel("median seconds per decision (one env, log scale)")
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 110)
    ax.grid(alpha=0.3, which="both")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(
        f"{report['env']}: success vs compute, {report['episodes']} protocol episodes (95% Wilson)",
        fontsize=9,
    )
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def markdown(report: dict[str, Any]) -> str:
    """The rows as a markdown table."""
    lines = [
        "| planner | success | 95% CI | s / decision (median) | rollouts / decision "
        "| rollouts / env step | ms / action |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lo, hi = r["success_ci95"]
        spd = r["seconds_per_decision"]
        lines.append(
            f"| {r['planner']} | {100 * r['success_rate']:.0f}% ({r['successes']}/{r['episodes']}) "
            f"| {100 * lo:.0f}-{100 * hi:.0f}% | {'-' if spd is None else f'{spd:.4f}'} "
            f"| {r['rollouts_per_decision']:.0f} | {r['rollouts_per_env_step']:.1f} "
            f"| {r['ms_per_action']:.2f} |"
        )
    return "\n".join(lines)


def planning_quality(
    run: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    episodes: int = 50,
    planners: Sequence[str] | None = None,
    seed: int = 42,
    budget: int = 50,
    env_id: str | None = None,
    device: str = "cpu",
    progress: bool = True,
    episodes_per_planner: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Run the settings named in `planners` (default: all of SETTINGS) and return the report.

    `episodes_per_planner` caps the episodes of slow rows (the first N of the same list).
    """
    from tqdm.auto import tqdm

    import envs  # noqa: F401  (registers lewm/*)
    from lewm_agent.checkpoint import load_checkpoint
    from lewm_agent.planning import uses_policy
    from lewm_agent.policy_head import has_policy_head

    from .compare import protocol_episodes

    _, config, _ = load_checkpoint(run)
    env_id = env_id or (config.get("env") or {}).get("env_id")
    if not env_id:
        raise SystemExit("the checkpoint does not name its env: pass --env ID")
    holdout = float((config.get("train") or {}).get("holdout_fraction", 0.1))
    eps, _ = protocol_episodes(data, n=episodes, seed=seed, holdout=holdout)
    names = list(planners or SETTINGS)
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown planner settings {unknown}; choose from {list(SETTINGS)}")
    skipped = []
    if not has_policy_head(run):
        skipped = [n for n in names if uses_policy(SETTINGS[n]["planner"])]
        if skipped:
            print(
                f"note: {run} has no policy head, skipping {skipped}; train one with "
                f"`lewm train-policy {run} --data {data}`"
            )
        names = [n for n in names if n not in skipped]
    caps = episodes_per_planner or {}
    total = sum(min(len(eps), caps.get(n, len(eps))) for n in names)
    report: dict[str, Any] = {
        "env": env_id,
        "agent": str(run),
        "data": str(data),
        "episodes": len(eps),
        "seed": seed,
        "budget": budget,
        "load_average_1min_start": os.getloadavg()[0],
        "skipped": skipped,
        "rows": [],
    }
    import torch

    report["threads"] = torch.get_num_threads()
    bar = tqdm(total=total, desc="planning-quality", disable=not progress, unit="episode")
    try:
        for name in names:
            n = min(len(eps), caps.get(name, len(eps)))
            row = run_setting(
                run,
                env_id,
                eps[:n],
                SETTINGS[name],
                name=name,
                budget=budget,
                device=device,
                bar=bar,
            )
            report["rows"].append(row)
            tqdm.write(
                f"{name}: {row['successes']}/{row['episodes']} success, "
                f"{row['seconds_per_decision'] or 0:.4f} s/decision, "
                f"{row['rollouts_per_decision']:.0f} rollouts/decision, "
                f"{row['ms_per_action']:.2f} ms/action"
            )
    finally:
        bar.close()
    report["load_average_1min_end"] = os.getloadavg()[0]
    ref = next((r for r in report["rows"] if r["planner"] == REFERENCE), None)
    if ref is not None:
        for r in report["rows"]:
            r["rollouts_vs_reference"] = (
                r["rollouts_per_decision"] / ref["rollouts_per_decision"]
                if ref["rollouts_per_decision"]
                else None
            )
            lo, hi = ref["success_ci95"]
            r["success_within_reference_ci"] = bool(r["success_rate"] >= lo)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    for k, v in (("SDL_VIDEODRIVER", "dummy"), ("SDL_AUDIODRIVER", "dummy"), ("MUJOCO_GL", "egl")):
        os.environ.setdefault(k, v)
    p = argparse.ArgumentParser(
        prog="python -m eval.bench planning-quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--agent", required=True, help="checkpoint folder (with a policy head)")
    p.add_argument("--data", required=True, help="the dataset it was trained on")
    p.add_argument("--env", default=None, help="env id (default: the checkpoint's)")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--budget", type=int, default=50)
    p.add_argument(
        "--planners",
        default=",".join(SETTINGS),
        help=f"comma list of {', '.join(SETTINGS)}",
    )
    p.add_argument(
        "--cap",
        default="",
        help="fewer episodes for slow rows, e.g. cem-300x30=20 (the first N of the same list)",
    )
    p.add_argument("--json", default="outputs/bench/planning-quality.json")
    p.add_argument("--png", default=None, help="default: the JSON path with .png")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(list(argv) if argv is not None else None)
    if args.episodes < 1:
        raise SystemExit("--episodes must be >= 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    caps = {}
    for item in filter(None, (c.strip() for c in args.cap.split(","))):
        key, _, value = item.partition("=")
        caps[key] = int(value)
    report = planning_quality(
        args.agent,
        args.data,
        episodes=args.episodes,
        planners=[n.strip() for n in args.planners.split(",") if n.strip()],
        seed=args.seed,
        budget=args.budget,
        env_id=args.env,
        device=args.device,
        progress=not args.no_progress,
        episodes_per_planner=caps,
    )
    json_path = Path(args.json)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    png = quality_chart(report, args.png or json_path.with_suffix(".png"))
    print()
    print(markdown(report))
    print(f"\nwrote {json_path}, {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["SETTINGS", "planning_quality", "quality_chart", "markdown", "run_setting"]
