"""`make bench-suite`: LeWM vs stable-baselines3 on Two-Room, Push-T, Reacher and Cube, resumable.

Per env, in order (each stage is skipped when its output is complete and newer
than what it was made from, like make):

1. collect  reward-free data with the env's data policy (scripted, expert or oracle) -> ROOT/data/suite/<env>
2. lewm     train LeWM on it (preset `cpu`)                        -> ROOT/runs/suite/<env>/lewm
   gcbc     goal-conditioned behaviour cloning on the SAME data     -> ROOT/runs/suite/<env>/gcbc
3. ppo, sac, ppo-pixels: SB3 baselines on the dense reward           -> ROOT/runs/suite/<env>/<name>
4. compare  every agent on the same 50 protocol episodes             -> ROOT/outputs/suite/<env>/
5. videos   one mp4 + one grid mp4 per agent                         -> ROOT/outputs/suite/<env>/videos/

then ROOT/outputs/suite/results.md: one table per env with the budgets that produced
it, and a verdict line per env (is LeWM at or above GCBC on the same data, and every
reward-trained baseline?).
Kill it at any point and run it again: finished stages are skipped, a stage cut
short is redone (collection tops up the missing episodes), and a stage reruns
when an upstream output changed (e.g. retrained LeWM -> new comparison).

The per-env budgets are the plans of `eval.suite_plans` (`lewm suite --show`).

Each stage is a call to the library function that owns the job (`envs.collect.collect`,
`WorldModelAgent.fit`, `agents.gcbc.train_gcbc`, `agents.baselines.train_baseline`,
`eval.compare.compare`, `eval.video.agent_videos`); this module holds the make-like
bookkeeping around them and the summary.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eval.suite_plans import SUITE_PLANS, EnvPlan
from lewm_agent.atomic import atomic_write_json, atomic_write_text
from lewm_agent.heldout import trained_holdout

STAGES: tuple[str, ...] = (
    "collect",
    "lewm",
    "gcbc",
    "ppo",
    "sac",
    "ppo-pixels",
    "compare",
    "videos",
)
BASELINES: tuple[str, ...] = ("ppo", "sac", "ppo-pixels")


@dataclass(frozen=True)
class Paths:
    """Where one env's stages write."""

    data: Path
    runs: Path
    out: Path

    @classmethod
    def of(cls, root: Path, slug: str) -> Paths:
        return cls(
            root / "data" / "suite" / slug,
            root / "runs" / "suite" / slug,
            root / "outputs" / "suite" / slug,
        )

    def agent(self, name: str) -> Path:
        return self.runs / name


# ------------------------------------------------------------------ completeness markers
def _episode_count(data: Path) -> int:
    return len(list((data / "episodes").glob("*.npz"))) if (data / "episodes").is_dir() else 0


def _marker(stage: str, p: Paths) -> Path:
    """The file whose existence (and mtime) says a stage finished."""
    if stage == "collect":
        return p.data / "meta.json"
    if stage == "lewm":
        return p.agent("lewm") / "stats.json"
    if stage in BASELINES:
        return p.agent(stage) / "baseline.json"
    if stage == "gcbc":
        return p.agent("gcbc") / "gcbc.json"
    if stage == "compare":
        return p.out / "results.json"
    if stage == "videos":
        return p.out / "videos" / "done.json"
    raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")


def _upstream(stage: str, agents: Sequence[str]) -> list[str]:
    if stage in ("lewm", "gcbc", "ppo-pixels", "ppo", "sac"):
        return ["collect"] if stage in ("lewm", "gcbc") else []
    if stage in ("compare", "videos"):
        return ["collect"] + [a for a in agents if a in ("lewm", "gcbc", *BASELINES)]
    return []


def stage_done(stage: str, plan: EnvPlan, p: Paths) -> bool:
    """Whether a stage's output is complete and newer than every upstream output."""
    marker = _marker(stage, p)
    if not marker.is_file():
        return False
    if stage == "collect" and _episode_count(p.data) < plan.episodes:
        return False
    if stage == "lewm":
        folder = p.agent("lewm")
        if not all((folder / f).is_file() for f in ("config.json", "model.safetensors")):
            return False
        from lewm_agent.policy_head import HEAD_WEIGHTS_FILE  # torch: only when needed

        if plan.needs_policy_head and not (folder / HEAD_WEIGHTS_FILE).is_file():
            return False  # a checkpoint from before the plan asked for the head
    if stage in BASELINES and not (p.agent(stage) / "model.zip").is_file():
        return False
    if stage == "gcbc" and not (p.agent("gcbc") / "gcbc.safetensors").is_file():
        return False
    if stage == "compare":
        got = json.loads(marker.read_text())
        if list(got) != list(plan.agents) or any(
            r.get("episodes") != plan.eval_episodes for r in got.values()
        ):
            return False
    mtime = marker.stat().st_mtime
    return all(
        _marker(u, p).is_file() and _marker(u, p).stat().st_mtime <= mtime
        for u in _upstream(stage, plan.agents)
    )


# ------------------------------------------------------------------ the stages
def _data_steps(p: Paths) -> int:
    return int(json.loads((p.data / "meta.json").read_text())["num_steps"])


def _replace_when_done(folder: Path, train: Callable[[Path], Any]) -> Any:
    """`train(tmp)` writes into a fresh `<folder>.partial`, which then replaces `folder`:
    a stage cut short never leaves a half-written folder under the final name."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    result = train(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return result


def stage_collect(plan: EnvPlan, p: Paths, progress: bool) -> dict[str, Any]:
    """`envs.collect.collect` of the missing episodes (a crash loses the ones in flight)."""
    from envs.collect import collect

    missing = plan.episodes - _episode_count(p.data)
    if missing > 0:
        collect(  # seed None: continues the folder's seeds, so a top-up adds fresh episodes
            plan.env_id,
            plan.policy,
            missing,
            p.data,
            workers=plan.workers,
            image_size=plan.image_size,
            env_kwargs=plan.env_kwargs or None,
            progress=progress,
        )
    (p.data / "meta.json").touch()  # the marker is fresh even when nothing was missing
    return {"episodes": _episode_count(p.data), "env_steps": _data_steps(p)}


def stage_lewm(plan: EnvPlan, p: Paths, progress: bool) -> dict[str, Any]:
    """`WorldModelAgent.fit` (and `fit_policy_head` when the plan acts with the head)."""
    from lewm_agent import WorldModelAgent

    def train(tmp: Path) -> Any:
        agent = WorldModelAgent.fit(
            p.data,
            preset=plan.lewm_preset,
            steps=plan.lewm_steps,
            train_overrides=plan.train_overrides or None,
            model_overrides=plan.model_overrides or None,
            log_dir=tmp,
            progress=progress,
            plan_overrides=plan.plan_overrides or None,
        )
        head = agent.fit_policy_head(p.data, progress=progress) if plan.needs_policy_head else None
        agent.save(tmp)  # the head, when there is one, is saved with the model
        return agent, head

    agent, head = _replace_when_done(p.agent("lewm"), train)
    return {
        "seconds": agent.training_stats.get("seconds"),
        "steps": agent.training_stats.get("steps"),
        "policy_head_seconds": head["training"]["seconds"] if head else None,
    }


def stage_gcbc(plan: EnvPlan, p: Paths, progress: bool) -> dict[str, Any]:
    """`agents.gcbc.train_gcbc` on the same data and training split as LeWM."""
    from agents.gcbc import train_gcbc

    kw: dict[str, Any] = {"steps": plan.gcbc_steps} if plan.gcbc_steps else {}
    agent = _replace_when_done(
        p.agent("gcbc"),
        lambda tmp: train_gcbc(
            p.data,
            save_to=tmp,
            progress=progress,
            holdout_fraction=plan.train_overrides.get("holdout_fraction", 0.1),
            train_episodes=plan.train_overrides.get("train_episodes", 0),
            **kw,
        ),
    )
    return {k: agent.training_stats.get(k) for k in ("seconds", "steps", "env_steps")}


def stage_baseline(name: str, plan: EnvPlan, p: Paths, progress: bool) -> dict[str, Any]:
    """`agents.baselines.train_baseline` at the plan's budget (default: the data's env steps)."""
    from agents.baselines import parse_baseline_name, train_baseline

    algo, obs_mode = parse_baseline_name(name)
    steps = {"ppo": plan.ppo_steps, "sac": plan.sac_steps, "ppo-pixels": plan.ppo_pixels_steps}[
        name
    ]
    if steps is None:
        steps = _data_steps(p)  # an equal number of env steps as LeWM's data
    folder = p.agent(name)
    shutil.rmtree(folder, ignore_errors=True)  # a half-saved folder is never reused
    agent = train_baseline(
        plan.env_id,
        algo,
        obs_mode,
        total_timesteps=steps,
        image_size=plan.image_size,
        save_to=folder,
        progress=progress,
    )
    return dict(agent.training_stats)


def _trained_agents_and_episodes(
    plan: EnvPlan, p: Paths, seed: int, n: int
) -> tuple[dict[str, Any], list[Any], dict[str, int]]:
    """The suite's trained agents (`eval.compare.load_agents`, nothing trained here) and
    the first `n` protocol episodes from the held-out split LeWM was trained without."""
    from eval.compare import load_agents, protocol_episodes

    agents = load_agents(
        plan.agents,
        plan.env_id,
        lewm=p.agent("lewm"),
        baselines_dir=p.runs,
        train_missing=False,
        seed=seed,
        image_size=plan.image_size,
        device="cpu",
        data=p.data,
        planner=plan.lewm_planner,
    )
    # LeWM's checkpoint carries its plan overrides and the holdout it was trained with.
    holdout = trained_holdout(agents.get("lewm"))
    episodes, counts = protocol_episodes(p.data, n=n, seed=seed, holdout=holdout)
    return agents, episodes, counts


def stage_compare(plan: EnvPlan, p: Paths, progress: bool, seed: int) -> dict[str, Any]:
    """`eval.compare.compare` of the trained agents, written by `eval.compare_report.write_results`."""
    from agents import training_info
    from eval.compare import compare
    from eval.compare_report import results_dict, write_results

    agents, episodes, counts = _trained_agents_and_episodes(plan, p, seed, plan.eval_episodes)
    results = compare(
        plan.env_id,
        agents,
        episodes,
        budget=plan.budget,
        env_kwargs={"image_size": plan.image_size},
        progress=progress,
    )
    extra = {}
    for name, agent in agents.items():
        info = training_info(agent)
        if name == "lewm":  # exact: the steps of the training split it learned from
            info["train_env_steps"] = counts["train_env_steps"]
            info["data_env_steps"] = counts["data_env_steps"]
        extra[name] = info
    table = results_dict(results, extra)
    header = (
        f"### {plan.env_id}: {len(episodes)} protocol episodes (goal 25 steps ahead, "
        f"{plan.budget}-step budget, seed {seed})"
    )
    write_results(table, p.out, header=header, title=f"{plan.env_id}, {len(episodes)} episodes")
    return {name: r["success_rate"] for name, r in table.items()}


def stage_videos(plan: EnvPlan, p: Paths, seed: int) -> dict[str, Any]:
    """`eval.video.agent_videos` per agent: the first episode and a grid of `video_episodes`."""
    from eval.video import agent_videos

    agents, episodes, _ = _trained_agents_and_episodes(plan, p, seed, plan.video_episodes)
    written = []
    for name, agent in agents.items():
        written += agent_videos(
            plan.env_id,
            agent,
            name,
            episodes,
            p.out / "videos",
            env_kwargs={"image_size": plan.image_size},
            budget=plan.budget,
        )
    marker = _marker("videos", p)
    atomic_write_json(marker, [str(w) for w in written])
    return {"videos": len(written)}


# ------------------------------------------------------------------ the summary
def _verdict(env_id: str, table: dict[str, dict[str, Any]]) -> str:
    """One sentence: is LeWM at or above GCBC and every reward-trained baseline, at what budgets."""
    if "lewm" not in table:
        return "LeWM not evaluated."
    lewm = table["lewm"]
    lewm_steps = lewm.get("train_env_steps")
    parts = []
    if "gcbc" in table:  # the same reward-free data, no world model
        g = table["gcbc"]
        relation = "at or above" if lewm["successes"] >= g["successes"] else "**below**"
        parts.append(
            f"{relation} gcbc ({100 * lewm['success_rate']:.0f}% vs "
            f"{100 * g['success_rate']:.0f}%, the same reward-free data)"
        )
    for name, r in table.items():
        if not r.get("reward_used"):
            continue
        relation = (
            "at or above" if lewm["successes"] >= r["successes"] else "**below**"
        )  # point estimates; the intervals are in the table
        steps = r.get("train_env_steps")
        budget = (
            "equal env steps"
            if steps and lewm_steps and abs(steps - lewm_steps) <= 0.15 * lewm_steps
            else f"{steps:,} vs LeWM's {lewm_steps:,} env steps"
            if steps and lewm_steps
            else "unknown budget"
        )
        parts.append(
            f"{relation} {name} ({100 * lewm['success_rate']:.0f}% vs "
            f"{100 * r['success_rate']:.0f}%, {budget})"
        )
    return (
        f"{env_id}: LeWM is " + "; ".join(parts) + "." if parts else "No baseline to compare with."
    )


def write_summary(root: Path, presets: dict[str, EnvPlan], preset_name: str) -> Path:
    """ROOT/outputs/suite/results.md: one section per env, from its results.json."""
    from eval.compare_report import CHART_FILE, markdown_table

    lines = [
        "# LeWM vs stable-baselines3 (`make bench-suite`)",
        "",
        f"Preset `{preset_name}`. Paper protocol: start and goal (25 steps later) from "
        "held-out trajectories, 50-step budget, success = the env's own test; 95% Wilson "
        "intervals. LeWM never sees a reward; the SB3 baselines train on the env's dense "
        "reward with random start/goal pairs from `env.reset()`.",
        "",
    ]
    for slug, plan in presets.items():
        p = Paths.of(root, slug)
        res_path = p.out / "results.json"
        if not res_path.is_file():
            lines += [f"### {plan.env_id}", "", "not run yet", ""]
            continue
        table = json.loads(res_path.read_text())
        n = next(iter(table.values()))["episodes"]
        budgets = ", ".join(
            f"{name} {r['train_env_steps']:,}"
            for name, r in table.items()
            if r.get("train_env_steps")
        )
        lines += [
            f"### {plan.env_id} ({n} episodes)",
            "",
            f"Data: {plan.episodes} episodes of the {plan.policy} data policy; LeWM preset "
            f"`{plan.lewm_preset}`"
            + (f", {plan.lewm_steps} steps" if plan.lewm_steps else "")
            + (f", planner `{plan.lewm_planner}`" if plan.lewm_planner else "")
            + f". Env steps for training: {budgets}.",
            "",
            markdown_table(table),
            "",
            _verdict(plan.env_id, table),
            "",
            f"![{slug}]({slug}/{CHART_FILE})",
            "",
        ]
    out = root / "outputs" / "suite" / "results.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "\n".join(lines))
    return out


# ------------------------------------------------------------------ driver
def run_suite(
    root: str | os.PathLike[str] = ".",
    preset: str = "full",
    envs_: Sequence[str] | None = None,
    *,
    stages: Sequence[str] | None = None,
    videos: bool = True,
    seed: int = 42,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, str]]:
    """Run (or resume) the suite; returns ``{env: {stage: "done" | "skipped"}}``.

    Args:
        root: folder holding data/, runs/ and outputs/ (the repo root by default).
        preset: a name of SUITE_PLANS ("full" or "test").
        envs_: env slugs to run (default: every env of the plan).
        stages: run only these stages (their upstream outputs must exist).
        videos: write the videos stage.
        overrides: EnvPlan field overrides applied to every env (e.g. smaller budgets).
    """
    import envs  # noqa: F401

    if preset not in SUITE_PLANS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(SUITE_PLANS)}")
    plans = dict(SUITE_PLANS[preset])
    if overrides:
        plans = {k: replace(v, **overrides) for k, v in plans.items()}
    chosen = list(envs_ or plans)
    for slug in chosen:
        if slug not in plans:
            raise ValueError(f"unknown env {slug!r}; choose from {sorted(plans)}")
    wanted = set(stages or STAGES)
    bad = wanted - set(STAGES)
    if bad:
        raise ValueError(f"unknown stages {sorted(bad)}; stages are {STAGES}")
    root = Path(root)
    report: dict[str, dict[str, str]] = {}
    for slug in chosen:
        plan = plans[slug]
        p = Paths.of(root, slug)
        for d in (p.runs, p.out):
            d.mkdir(parents=True, exist_ok=True)
        status: dict[str, str] = {}
        todo = [
            s
            for s in STAGES
            if s in wanted
            and (s not in ("lewm", "gcbc", *BASELINES) or s in plan.agents)
            and (s != "videos" or videos)
        ]
        for stage in todo:
            if stage_done(stage, plan, p):
                status[stage] = "skipped"
                log(f"[suite] {slug}: {stage} is complete, skipping")
                continue
            log(f"[suite] {slug}: {stage} ...")
            t0 = time.perf_counter()
            if stage == "collect":
                info = stage_collect(plan, p, progress)
            elif stage == "lewm":
                info = stage_lewm(plan, p, progress)
            elif stage == "gcbc":
                info = stage_gcbc(plan, p, progress)
            elif stage in BASELINES:
                info = stage_baseline(stage, plan, p, progress)
            elif stage == "compare":
                info = stage_compare(plan, p, progress, seed)
            else:
                info = stage_videos(plan, p, seed)
            seconds = time.perf_counter() - t0
            status[stage] = "done"
            _log_stage(p, stage, seconds, info)
            log(f"[suite] {slug}: {stage} done in {seconds:.0f} s")
        report[slug] = status
    summary = write_summary(root, {k: plans[k] for k in plans}, preset)
    log(f"[suite] wrote {summary}")
    return report


def _log_stage(p: Paths, stage: str, seconds: float, info: dict[str, Any]) -> None:
    """Append the stage's wall time and facts to ROOT/outputs/suite/<env>/stages.json."""
    path = p.out / "stages.json"
    log = json.loads(path.read_text()) if path.is_file() else {}
    log[stage] = {"seconds": seconds, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **info}
    atomic_write_json(path, log, default=str)
