"""`lewm bench planning-quality`: success against compute, planner by planner.

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
300 x 10's rollouts (and plain CEM at the same budgets, the control), and the
policy head alone. Rows that need a policy head are
skipped (with a note) when the checkpoint has none (`lewm train-policy RUN --data DATA`).

Writes JSON `{"env", "rows": [{"planner", "success_rate", "seconds_per_decision",
"rollouts_per_decision", ...}]}` and a PNG (success against seconds per decision,
log x, Wilson intervals).

    lewm bench planning-quality --agent runs/tworoom --data data/tworoom \\
        --episodes 50 --json outputs/bench/quality-tworoom.json [--workers 2 --threads 1]

The table and the chart are `eval.bench_quality_report`.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lewm_agent.atomic import atomic_write_json

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
    # The controls: plain CEM at the prior rows' budgets (does the prior matter?), and
    # both at 30 x 2 = 60 rollouts (1/50).
    "cem-60x5": {"planner": "cem", "samples": 60, "iterations": 5, "elites": 6},
    "cem-prior-30x2": {"planner": "cem-prior", "samples": 30, "iterations": 2, "elites": 3},
    "cem-30x2": {"planner": "cem", "samples": 30, "iterations": 2, "elites": 3},
    "policy": {"planner": "policy"},
    # The head alone asked to reach the goal in 25 steps (the horizon) at every block.
    "policy-steps-left-25": {"planner": "policy", "policy_steps_left": 25},
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
    from lewm_agent.stats import wilson_interval

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
        "mean_steps": steps / len(episodes),
        "rollouts_per_env_step": rollouts / max(1, steps),
        "ms_per_action": 1000 * predict_seconds / max(1, steps),
        "wall_seconds": time.perf_counter() - wall,
    }


def time_decisions(
    run: str | os.PathLike[str],
    env_id: str,
    episodes: list[Any],
    names: Sequence[str],
    *,
    repeats: int = 5,
    device: str = "cpu",
) -> dict[str, dict[str, Any]]:
    """Seconds of one decision per setting, the settings interleaved round by round.

    On a shared machine the protocol rows run minutes apart under different loads;
    here every round times each setting once, on the start frame of the same protocol
    episode, so the settings' medians (and their ratios) see the same conditions.
    The decision timed is the first of an episode (a cold plan), except for settings
    with `warm_iterations`, where it is the first replan (warm-started). Also times
    `predict` per env step over the steps run (encoding included).
    """
    import gymnasium as gym
    import numpy as np

    from lewm_agent import WorldModelAgent

    agents = {n: WorldModelAgent.load(run, device=device, **SETTINGS[n]) for n in names}
    size = next(iter(agents.values())).model_config.image_size
    env = gym.make(env_id, image_size=size)
    out: dict[str, dict[str, Any]] = {n: {"seconds": [], "ms_per_action": []} for n in names}
    for r in range(repeats):
        ep = episodes[r % len(episodes)]
        options = {"state": ep.start_state, "goal_state": ep.goal_state}
        for name, agent in agents.items():
            obs, _ = env.reset(seed=r, options=options)
            agent.decisions = []
            t = time.perf_counter()
            pc = agent.plan_config
            steps = agent.model_config.frameskip  # one block: the decision, then its queue
            if pc.warm_iterations > 0:  # ...or up to the first (warm) replan
                steps = steps * pc.receding_horizon + 1
            for i in range(steps):
                action, _ = agent.predict(obs, episode_start=np.array([i == 0]))
                obs, *_ = env.step(action)
            out[name]["ms_per_action"].append(1000 * (time.perf_counter() - t) / steps)
            out[name]["seconds"].append(agent.decisions[-1]["seconds"])
    env.close()
    return {
        n: {
            "timed_seconds_per_decision": statistics.median(v["seconds"]),
            "timed_ms_per_action": statistics.median(v["ms_per_action"]),
            "timed_repeats": repeats,
        }
        for n, v in out.items()
    }


def planning_quality(
    run: str | os.PathLike[str],
    data: str | os.PathLike[str] | None = None,
    *,
    episodes: int = 50,
    planners: Sequence[str] | None = None,
    seed: int = 42,
    budget: int = 50,
    env_id: str | None = None,
    device: str = "cpu",
    progress: bool = True,
    episodes_per_planner: dict[str, int] | None = None,
    json_path: str | os.PathLike[str] | None = None,
    resume: bool = False,
    timing_repeats: int = 0,
    timing: Sequence[str] | None = None,
    workers: int = 1,
    threads: int = 1,
) -> dict[str, Any]:
    """Run the settings named in `planners` (default: all of SETTINGS) and return the report.

    The episodes come from `data`'s held-out split or, without `data`, from the ones
    the checkpoint folder `run` ships (a zoo model's).

    `episodes_per_planner` caps the episodes of slow rows (the first N of the same list).
    With `json_path` the report is rewritten after every row (a killed run keeps its
    finished rows); `resume` reuses the rows of that file made with the same agent,
    data, seed, budget, plan settings and number of episodes. `timing_repeats` > 0
    adds `time_decisions` figures (`timed_*`) to the rows named in `timing` (all).
    `workers` > 1 plays the rows in that many processes of `threads` torch threads
    each, the most expensive rows first (on a loaded 2-core CPU two 1-thread
    processes finish sooner than one with 2 threads); their seconds are then measured
    beside each other, so compare them through the interleaved timing.
    """
    from tqdm.auto import tqdm

    import envs  # noqa: F401  (registers lewm/*)
    from lewm_agent.checkpoint import load_checkpoint
    from lewm_agent.planning import uses_policy
    from lewm_agent.policy_head import has_policy_head

    from .compare import agent_episodes

    _, config, _ = load_checkpoint(run)
    env_id = env_id or (config.get("env") or {}).get("env_id")
    if not env_id:
        raise SystemExit("the checkpoint does not name its env: pass --env ID")
    holdout = float((config.get("train") or {}).get("holdout_fraction", 0.1))
    eps, _ = agent_episodes(run, data, n=episodes, seed=seed, holdout=holdout)
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
    n_eps = {n: min(len(eps), caps.get(n, len(eps))) for n in names}  # episodes per row
    report: dict[str, Any] = {
        "env": env_id,
        "agent": str(run),
        "data": str(data) if data is not None else str(Path(run) / "episodes.json"),
        "episodes": len(eps),
        "seed": seed,
        "budget": budget,
        "load_average_1min_start": os.getloadavg()[0],
        "skipped": skipped,
        "rows": [],
    }
    import torch

    report["threads"] = torch.get_num_threads()
    done: dict[str, dict[str, Any]] = {}
    if resume and json_path is not None and Path(json_path).is_file():
        old = json.loads(Path(json_path).read_text())
        same = all(old.get(k) == report[k] for k in ("env", "agent", "data", "seed", "budget"))
        for r in old.get("rows", []) if same else []:
            name = r.get("planner")
            if (
                name in n_eps
                and r.get("episodes") == n_eps[name]
                and r.get("settings") == SETTINGS.get(name)
            ):
                done[name] = r
        if done:
            print(f"resume: reusing the rows of {json_path} for {sorted(done)}")
    report["workers"] = workers
    todo = [n for n in names if n not in done]
    bar = tqdm(
        total=sum(n_eps.values()), desc="planning-quality", disable=not progress, unit="episode"
    )
    bar.update(sum(n_eps[n] for n in done))

    def finish(name: str, row: dict[str, Any]) -> None:
        """Record a finished row (in `names` order in the report) and write the JSON."""
        row["settings"] = SETTINGS[name]
        done[name] = row
        report["rows"] = [done[n] for n in names if n in done]
        if json_path is not None:  # after every row: a killed run keeps what it finished
            _write_json(json_path, {**report, "complete": False})
        tqdm.write(
            f"{name}: {row['successes']}/{row['episodes']} success, "
            f"{row['seconds_per_decision'] or 0:.4f} s/decision, "
            f"{row['rollouts_per_decision']:.0f} rollouts/decision, "
            f"{row['ms_per_action']:.2f} ms/action"
        )

    try:
        if workers > 1 and len(todo) > 1:
            rows_of = {n: eps[: n_eps[n]] for n in todo}
            _run_rows_in_workers(
                rows_of, run, env_id, budget, device, workers, threads, bar, finish
            )
        else:
            for name in todo:
                row = run_setting(
                    run,
                    env_id,
                    eps[: n_eps[name]],
                    SETTINGS[name],
                    name=name,
                    budget=budget,
                    device=device,
                    bar=bar,
                )
                finish(name, row)
    finally:
        bar.close()
    report["rows"] = [done[n] for n in names if n in done]  # resumed rows too
    report["load_average_1min_end"] = os.getloadavg()[0]
    if timing_repeats > 0 and report["rows"]:
        timed = [r["planner"] for r in report["rows"] if r["planner"] in (timing or names)]
        print(f"timing {timed} interleaved, {timing_repeats} rounds ...")
        report["timing_load_average_1min"] = os.getloadavg()[0]
        for name, t in time_decisions(
            run, env_id, eps, timed, repeats=timing_repeats, device=device
        ).items():
            next(r for r in report["rows"] if r["planner"] == name).update(t)
    report["complete"] = True
    ref = next((r for r in report["rows"] if r["planner"] == REFERENCE), None)
    if ref is not None:
        for r in report["rows"]:
            r["rollouts_vs_reference"] = (
                r["rollouts_per_decision"] / ref["rollouts_per_decision"]
                if ref["rollouts_per_decision"]
                else None
            )
            if r.get("timed_seconds_per_decision") and ref.get("timed_seconds_per_decision"):
                r["timed_seconds_vs_reference"] = (
                    r["timed_seconds_per_decision"] / ref["timed_seconds_per_decision"]
                )
            lo, hi = ref["success_ci95"]
            r["success_within_reference_ci"] = bool(r["success_rate"] >= lo)
    return report


def _row_cost(name: str, episodes: int) -> float:
    """Rollouts a row will push through the predictor, roughly (its scheduling key)."""
    st = SETTINGS[name]
    return episodes * st.get("samples", 0) * st.get("iterations", 0) / st.get("receding_horizon", 1)


def _row_in_worker(
    run: str, env_id: str, episodes: list[Any], name: str, budget: int, device: str, threads: int
) -> dict[str, Any]:
    """One row in a worker process (module-level: the spawn start method pickles it)."""
    import torch

    import envs  # noqa: F401  (registers lewm/* in the fresh process)

    torch.set_num_threads(threads)
    return run_setting(
        run, env_id, episodes, SETTINGS[name], name=name, budget=budget, device=device
    )


def _run_rows_in_workers(
    rows_of: dict[str, list[Any]],
    run: str | os.PathLike[str],
    env_id: str,
    budget: int,
    device: str,
    workers: int,
    threads: int,
    bar: Any,
    finish: Any,
) -> None:
    """Play each row (name -> its episodes) in `workers` spawned processes;
    `finish(name, row)` as each ends.

    Spawned, not forked: the parent has torch loaded (and maybe its thread pool
    started), which a forked child must not inherit.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    order = sorted(rows_of, key=lambda n: -_row_cost(n, len(rows_of[n])))  # longest first
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(order)), mp_context=ctx) as pool:
        futures = {
            pool.submit(_row_in_worker, str(run), env_id, rows_of[n], n, budget, device, threads): n
            for n in order
        }
        for fut in as_completed(futures):
            name = futures[fut]
            finish(name, fut.result())  # a worker's error is raised here, with its row
            bar.update(len(rows_of[name]))


def _write_json(path: str | os.PathLike[str], obj: dict[str, Any]) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, obj)


__all__ = ["SETTINGS", "planning_quality", "run_setting"]
