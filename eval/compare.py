"""Run several agents on the SAME protocol episodes and report them side by side.

Writes `results.json` (machine-readable), `results.md` (a table with 95% Wilson
intervals, which stay honest at 0% and 100% and for 50 episodes, plus what each
agent's training cost: wall time, environment steps, whether it saw the reward)
and `success.png` (bars with the intervals).

    python -m eval.compare --env lewm/TwoRoom-v0 --agents lewm,ppo,sac,random \
        --lewm runs/tworoom --data data/tworoom --episodes 50 --seed 42 --out outputs/compare-tworoom

`--lewm`, `--data` and `--baselines` default to the folders `make bench-suite` writes
(runs/suite/<env>/lewm, data/suite/<env>, runs/suite/<env>). Baselines (`ppo`, `sac`,
`ppo-pixels`) are loaded from `--baselines DIR/<name>` when saved there, else trained on the env's dense reward at the `--*-steps` budgets and
saved (SB3's zip), so a second run only evaluates. `gcbc` (behaviour cloning on the
same reward-free data, `agents/gcbc.py`) is loaded from `--baselines DIR/gcbc` or
trained there on `--data`'s training split.

Size (~650 lines, over the ~500 guide): the comparison's table, chart, agent loading
and command line share the result dicts they format; the statistics are
`lewm_agent.stats`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lewm_agent.atomic import atomic_write_json, atomic_write_text
from lewm_agent.stats import wilson_interval  # re-exported: eval.compare.wilson_interval

from .protocol import BUDGET, EPISODES, SEED, ProtocolEpisode, ProtocolResult, run_protocol

TRAINING_KEYS: tuple[str, ...] = ("train_seconds", "train_env_steps", "reward_used")
"""Per-agent fields (from `extra`) that the table shows as training-cost columns."""


def compare(
    env_id: str,
    agents: dict[str, Any],
    episodes: list[ProtocolEpisode],
    *,
    budget: int = BUDGET,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, ProtocolResult]:
    """Every agent on the same episodes; returns results keyed by agent name."""
    results = {}
    for name, agent in agents.items():
        result, _ = run_protocol(
            env_id,
            agent,
            episodes,
            name=name,
            budget=budget,
            env_kwargs=env_kwargs,
            progress=progress,
        )
        results[name] = result
    return results


def results_dict(
    results: dict[str, ProtocolResult], extra: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """JSON-able results with the Wilson interval added; `extra` merges per-agent fields."""
    out = {}
    for name, r in results.items():
        lo, hi = wilson_interval(r.successes, r.episodes)
        out[name] = {**r.to_dict(), "success_ci95": [lo, hi], **(extra or {}).get(name, {})}
    return out


def _fmt_seconds(x: Any) -> str:
    if x is None:
        return "-"
    x = float(x)
    return f"{x:.0f} s" if x < 120 else f"{x / 60:.1f} min"


def _fmt_steps(x: Any) -> str:
    return "-" if x is None else f"{int(x):,}"


def _fmt_reward(x: Any) -> str:
    return "-" if x is None else ("yes" if x else "no")


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """A markdown table of `results_dict` output.

    Training-cost columns (wall time, env steps used for training, reward used)
    appear when any agent has them (`extra` fields named in `TRAINING_KEYS`).
    """
    training = any(k in r for r in results.values() for k in TRAINING_KEYS)
    head = (
        "| agent | success | 95% CI | mean steps | steps to success | mean return | ms / decision |"
    )
    rule = "|---|---|---|---|---|---|---|"
    if training:
        head += " train wall time | env steps for training | reward used |"
        rule += "---|---|---|"
    lines = [head, rule]
    for name, r in results.items():
        lo, hi = r["success_ci95"]
        to_succ = r["mean_steps_to_success"]
        line = (
            f"| {name} | {100 * r['success_rate']:.0f}% ({r['successes']}/{r['episodes']}) "
            f"| {100 * lo:.0f}-{100 * hi:.0f}% | {r['mean_steps']:.1f} "
            f"| {'-' if to_succ is None else f'{to_succ:.1f}'} | {r['mean_return']:.2f} "
            f"| {r['decision_latency_ms']:.1f} |"
        )
        if training:
            line += (
                f" {_fmt_seconds(r.get('train_seconds'))} "
                f"| {_fmt_steps(r.get('train_env_steps'))} "
                f"| {_fmt_reward(r.get('reward_used'))} |"
            )
        lines.append(line)
    return "\n".join(lines)


def write_results(
    results: dict[str, dict[str, Any]],
    out_dir: str | Path,
    header: str = "",
    *,
    footer: str = "",
    chart: bool = True,
    title: str = "",
) -> tuple[Path, Path]:
    """Write results.json, results.md and (if `chart`) success.png into `out_dir`.

    Returns the JSON and markdown paths (the chart is `out_dir / CHART_FILE`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    atomic_write_json(json_path, results)
    body = (header + "\n\n" if header else "") + markdown_table(results) + "\n"
    if chart:
        bar_chart(results, out / CHART_FILE, title=title or header.lstrip("# "))
        body += f"\n![success rates with 95% Wilson intervals]({CHART_FILE})\n"
    if footer:
        body += "\n" + footer.rstrip() + "\n"
    atomic_write_text(md_path, body)
    return json_path, md_path


CHART_FILE = "success.png"

_LEWM_COLOUR = "#c0392b"
_REWARD_COLOUR = "#2c6fbb"
_OTHER_COLOUR = "#8a8a8a"


def bar_chart(results: dict[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Success-rate bars with 95% Wilson error bars, one per agent (matplotlib Agg).

    Each bar is labelled with its rate and k/n; the tick label says what the agent's
    training cost (env steps, reward or not) when `results` carries it. Colours:
    red = LeWM (reward-free world model), blue = trained on the reward, grey = others.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results:
        raise ValueError("bar_chart needs at least one agent's results")
    names = list(results)
    rates = [100 * results[n]["success_rate"] for n in names]
    lo = [100 * results[n]["success_ci95"][0] for n in names]
    hi = [100 * results[n]["success_ci95"][1] for n in names]
    # Clamped at 0: at 0% or 100% the interval's edge equals the rate up to rounding.
    err = [
        [max(0.0, r - a) for r, a in zip(rates, lo, strict=True)],  # below each bar
        [max(0.0, b - r) for r, b in zip(rates, hi, strict=True)],  # above
    ]
    colours = []
    ticks = []
    for n in names:
        r = results[n]
        if n.startswith("lewm"):
            colours.append(_LEWM_COLOUR)
        elif r.get("reward_used"):
            colours.append(_REWARD_COLOUR)
        else:
            colours.append(_OTHER_COLOUR)
        tick = n
        steps = r.get("train_env_steps")
        if steps:
            tick += f"\n{_short_steps(steps)} env steps"
        if r.get("reward_used") is not None and (steps or r.get("reward_used")):
            tick += "\nreward" if r["reward_used"] else "\nno reward"
        ticks.append(tick)

    width = max(4.5, 1.25 * len(names) + 1.5)
    fig = Figure(figsize=(width, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = list(range(len(names)))
    ax.bar(x, rates, color=colours, width=0.62, zorder=2)
    ax.errorbar(x, rates, yerr=err, fmt="none", ecolor="black", capsize=6, lw=1.3, zorder=3)
    for xi, n, r, top in zip(x, names, rates, hi, strict=True):
        k, m = results[n]["successes"], results[n]["episodes"]
        ax.text(xi, min(top + 2.5, 104), f"{r:.0f}%\n{k}/{m}", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, ticks, fontsize=9)
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("success rate (%)")
    ax.grid(axis="y", alpha=0.3, zorder=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title((title + "\n" if title else "") + "success with 95% Wilson interval", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _short_steps(n: int) -> str:
    n = int(n)
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.0f}k"
    return str(n)


# ------------------------------------------------------------------------------ agents
def env_slug(env_id: str) -> str:
    """Short folder name of an env id: ``lewm/TwoRoom-v0`` -> ``tworoom``."""
    base = env_id.rsplit("/", 1)[-1]
    return re.sub(r"-v\d+$", "", base).replace("-", "").lower()


def load_agents(
    names: Sequence[str],
    env_id: str,
    *,
    lewm: str | os.PathLike[str] | None = None,
    baselines_dir: str | os.PathLike[str] | None = None,
    budgets: dict[str, int | None] | None = None,
    train_missing: bool = True,
    seed: int = SEED,
    image_size: int = 64,
    planner: str | None = None,
    device: str = "auto",
    progress: bool = True,
    data: str | os.PathLike[str] | None = None,
    holdout: float = 0.1,
) -> dict[str, Any]:
    """Build the named agents (``agents.make``); train baselines that are not saved yet.

    Args:
        names: e.g. ``["lewm", "ppo", "sac", "ppo-pixels", "random", "scripted"]``.
        lewm: the LeWM checkpoint folder (needed when "lewm" is named).
        baselines_dir: baseline ``<name>`` lives in ``baselines_dir/<name>``.
        budgets: env steps per baseline name (None/missing: the default budget).
        train_missing: train (and save) a baseline that is not saved; else raise.
        seed: the random agent's and the baselines' training seed.
        image_size: image side for pixel baselines.
        data, holdout: GCBC trains on the training split of this reward-free dataset
            (the held-out fraction `holdout` is left out, as LeWM leaves it out);
            its budget is ``budgets["gcbc"]`` gradient steps (None: GCBC's default).
    """
    import agents as registry

    out: dict[str, Any] = {}
    for raw in names:
        name = raw.strip().lower().replace("_", "-")
        if not name:
            continue
        if name == "lewm":
            if lewm is None:
                raise ValueError("agent 'lewm' needs --lewm CHECKPOINT_FOLDER")
            kw: dict[str, Any] = {"path": lewm, "device": device}
            if planner:
                kw["planner"] = planner
            out[name] = registry.make("lewm", **kw)
        elif name in ("ppo", "sac", "ppo-pixels"):
            if baselines_dir is None:
                raise ValueError(f"agent {name!r} needs a baselines folder")
            from agents.baselines import SB3Agent

            folder = Path(baselines_dir) / name
            if not SB3Agent.is_saved(folder) and not train_missing:
                raise FileNotFoundError(
                    f"no saved {name} baseline in {folder}; train it first (eval.compare "
                    "without --no-train does)"
                )
            if not SB3Agent.is_saved(folder):
                steps = (budgets or {}).get(name)
                print(f"training {name} on {env_id} ({steps or 'default'} env steps) -> {folder}")
                out[name] = registry.make(
                    name,
                    path=folder,
                    env_id=env_id,
                    total_timesteps=steps,
                    seed=seed,
                    image_size=image_size,
                    progress=progress and _has_rich(),
                )
            else:
                out[name] = registry.make(name, path=folder)
        elif name == "gcbc":
            out[name] = _load_gcbc(
                baselines_dir, data, holdout, (budgets or {}).get("gcbc"), train_missing, progress
            )
        elif name == "random":
            out[name] = registry.make("random", env_id=env_id, seed=seed)
        elif name == "scripted":
            out[name] = registry.make("scripted", env_id=env_id, seed=seed)
        elif name == "expert":
            out[name] = registry.make("expert", env_id=env_id, seed=seed)
        else:
            raise ValueError(f"unknown agent {raw!r}; choose from {registry.AGENT_NAMES}")
    return out


def _load_gcbc(
    baselines_dir: str | os.PathLike[str] | None,
    data: str | os.PathLike[str] | None,
    holdout: float,
    steps: int | None,
    train_missing: bool,
    progress: bool,
) -> Any:
    """GCBC from ``baselines_dir/gcbc``, or trained there on ``data`` when missing."""
    import agents as registry
    from agents.gcbc import GCBCAgent

    if baselines_dir is None:
        raise ValueError("agent 'gcbc' needs a baselines folder")
    folder = Path(baselines_dir) / "gcbc"
    if GCBCAgent.is_saved(folder):
        return registry.make("gcbc", path=folder)
    if not train_missing or data is None:
        raise FileNotFoundError(
            f"no saved gcbc agent in {folder}; train it first (eval.compare with --data "
            "and without --no-train does)"
        )
    print(f"training gcbc on {data} ({steps or 'default'} steps, no reward) -> {folder}")
    kw: dict[str, Any] = {"holdout_fraction": holdout, "progress": progress}
    if steps:
        kw["steps"] = steps
    return registry.make("gcbc", path=folder, data=data, **kw)


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def protocol_episodes(
    data: str | os.PathLike[str],
    n: int = EPISODES,
    seed: int = SEED,
    holdout: float = 0.1,
) -> tuple[list[ProtocolEpisode], dict[str, int]]:
    """The protocol's start/goal pairs from the held-out split of dataset `data`.

    Also returns the dataset's step counts (``data_env_steps`` recorded in all,
    ``train_env_steps`` in the training split), for the report.
    """
    from lewm_agent.heldout import load_heldout

    from .protocol import sample_episodes

    dataset, train, heldout = load_heldout(data, holdout, require=True)
    counts = {"data_env_steps": int(dataset.num_steps), "train_env_steps": int(train.num_steps)}
    return sample_episodes(heldout, n=n, seed=seed), counts


def _lewm_holdout(path: str | os.PathLike[str] | None) -> float:
    """The held-out fraction a LeWM checkpoint was trained with (its config.json)."""
    from lewm_agent.heldout import trained_holdout

    return trained_holdout(path)


def _lewm_image_size(path: str | os.PathLike[str] | None) -> int | None:
    """The image side a LeWM checkpoint works at (its config.json), or None."""
    if path is None or not (Path(path) / "config.json").is_file():
        return None
    config = json.loads((Path(path) / "config.json").read_text())
    return (config.get("model") or {}).get("image_size")


def run_compare(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """`lewm eval --compare` / `python -m eval.compare` (the parser is `lewm_agent.cli`'s).

    Every agent of `args.agents` on the same protocol episodes; writes results.json,
    results.md and success.png into `args.out`; returns the `results_dict` written.
    """
    import envs  # noqa: F401  (registers lewm/*)
    from agents import training_info

    if args.episodes < 1:
        raise SystemExit("--episodes must be >= 1")
    slug = env_slug(args.env)
    out = Path(args.out or f"outputs/compare-{slug}")
    names = [n.strip() for n in args.agents.split(",") if n.strip()]
    if not names:
        raise SystemExit("--agents is empty")
    from_env = getattr(args, "episodes_from", "data") == "env"
    if not from_env:
        args.data = args.data or f"data/suite/{slug}"
        if not (Path(args.data) / "meta.json").is_file():
            raise SystemExit(
                f"no dataset at {args.data}: the protocol's start/goal pairs come from the "
                "held-out episodes of a recorded dataset (the one LeWM was trained on); pass "
                "--data DIR, run `make bench-suite` first, or sample the pairs from the env "
                "itself with --episodes-from env"
            )
    if "lewm" in names and args.lewm is None:
        args.lewm = f"runs/suite/{slug}/lewm"
        if not Path(args.lewm).is_dir():
            raise SystemExit(f"no LeWM checkpoint at {args.lewm}: pass --lewm CHECKPOINT_FOLDER")
    lewm_folder = None  # the checkpoint's files (a zoo:NAME is verified and located)
    if "lewm" in names:
        from lewm_agent.zoo import resolve

        lewm_folder = Path(resolve(args.lewm))
        if not (lewm_folder / "config.json").is_file():
            raise SystemExit(
                f"no LeWM checkpoint at {args.lewm} (no config.json there): pass --lewm "
                "CHECKPOINT_FOLDER (what `lewm train --out` wrote) or zoo:NAME (`lewm zoo list`)"
            )
    data_meta: dict[str, Any] = {}
    if args.data and (Path(args.data) / "meta.json").is_file():
        data_meta = json.loads((Path(args.data) / "meta.json").read_text())
    if data_meta.get("env_id") not in (None, args.env):
        raise SystemExit(
            f"--data {args.data} was recorded on {data_meta['env_id']}, not {args.env}"
        )
    lewm_size = _lewm_image_size(lewm_folder)
    image_size = int(args.image_size or data_meta.get("image_size") or lewm_size or 64)
    progress = not args.no_progress

    t0 = time.perf_counter()
    baselines_dir = Path(args.baselines or f"runs/suite/{slug}")
    holdout = args.holdout
    if holdout is None:
        holdout = _lewm_holdout(lewm_folder) if lewm_folder is not None else 0.1
    if from_env:
        from .protocol import sample_env_episodes

        episodes = sample_env_episodes(
            args.env, n=args.episodes, seed=args.seed, image_size=image_size
        )
        counts: dict[str, int] = {}
    else:
        episodes, counts = protocol_episodes(
            args.data, n=args.episodes, seed=args.seed, holdout=holdout
        )
    cache = out / "per_agent"

    def fingerprint(name: str) -> dict[str, Any]:
        """What an agent's cached result depends on (its checkpoint's mtime included)."""
        marker = None
        if name == "lewm":
            marker = lewm_folder / "stats.json" if lewm_folder else None
        elif name in ("ppo", "sac", "ppo-pixels"):
            marker = baselines_dir / name / "baseline.json"
        elif name == "gcbc":
            marker = baselines_dir / name / "gcbc.json"
        return {
            "env": args.env,
            "data": "env" if from_env else str(Path(args.data).resolve()),
            "episodes": [(e.episode, e.start_step) for e in episodes],
            "seed": args.seed,
            "budget": args.budget,
            "image_size": image_size,
            "planner": args.planner if name == "lewm" else None,
            "checkpoint_mtime": marker.stat().st_mtime if marker and marker.is_file() else None,
        }

    results: dict[str, ProtocolResult] = {}
    extra: dict[str, dict[str, Any]] = {}
    for name in names:
        f = cache / f"{name}.json"
        if args.resume and f.is_file():
            got = json.loads(f.read_text())
            if got.get("fingerprint") == json.loads(json.dumps(fingerprint(name))):
                results[name] = ProtocolResult(**got["result"])
                extra[name] = got["extra"]
                print(f"{name}: reusing the result in {f} (same episodes and checkpoint)")
    todo = [n for n in names if n not in results]
    agents = load_agents(
        todo,
        args.env,
        lewm=args.lewm,
        baselines_dir=baselines_dir,
        budgets={
            "ppo": args.ppo_steps,
            "sac": args.sac_steps,
            "ppo-pixels": args.ppo_pixels_steps,
            "gcbc": getattr(args, "gcbc_steps", None),
        },
        train_missing=not args.no_train,
        seed=args.seed,
        image_size=image_size,
        planner=args.planner,
        device=args.device,
        progress=progress,
        data=args.data,
        holdout=holdout,
    )
    lewm = agents.get("lewm")
    if lewm is not None and lewm.model_config.image_size != image_size:
        raise SystemExit(
            f"LeWM works at {lewm.model_config.image_size} px but --image-size/data is {image_size}"
        )
    cache.mkdir(parents=True, exist_ok=True)
    for name, agent in agents.items():
        result = compare(
            args.env,
            {name: agent},
            episodes,
            budget=args.budget,
            env_kwargs={"image_size": image_size},
            progress=progress,
        )[name]
        info = training_info(agent)
        if name == "lewm" and counts:  # exact: the steps of the training split it learned from
            info["train_env_steps"] = counts["train_env_steps"]
            info["data_env_steps"] = counts["data_env_steps"]
        results[name], extra[name] = result, info
        record = {
            "fingerprint": fingerprint(name),
            "result": result.to_dict(with_episodes=True),
            "extra": info,
        }
        f = cache / f"{name}.json"
        atomic_write_json(f, record)  # one agent at a time: resumable
    results = {n: results[n] for n in names}
    extra = {n: extra[n] for n in names}
    table = results_dict(results, extra)
    if from_env:
        header = (
            f"# {args.env}: {len(episodes)} start/goal pairs sampled by the env's reset "
            f"(seeds {args.seed}-{args.seed + len(episodes) - 1}, {args.budget}-step budget)"
        )
        lewm_steps = "the steps of its reward-free dataset's training split"
    else:
        header = (
            f"# {args.env}: paper protocol, {len(episodes)} held-out start/goal pairs "
            f"(goal 25 steps ahead, {args.budget}-step budget, seed {args.seed})"
        )
        lewm_steps = (
            "the steps of its reward-free dataset's training split "
            f"({counts['train_env_steps']:,} of {counts['data_env_steps']:,} recorded; the "
            "rest is held out for the protocol's goals)"
        )
    footer = (
        f"Env steps for training: LeWM = {lewm_steps}; SB3 baselines = env steps of "
        "online interaction with the dense reward (random start/goal pairs from env.reset); "
        "GCBC = LeWM's training split, no reward. "
        "Decision latency is wall time per predict call per env, on a shared 2-core CPU."
    )
    json_path, md_path = write_results(
        table, out, header=header, footer=footer, title=f"{args.env}, {len(episodes)} episodes"
    )
    print()
    print(markdown_table(table))
    print(f"\nwrote {json_path}, {md_path}, {out / CHART_FILE} ({time.perf_counter() - t0:.0f} s)")
    return table


if __name__ == "__main__":  # `python -m eval.compare ...` is `lewm eval --compare ...`
    from lewm_agent.cli import main

    raise SystemExit(main(command=["eval", "--compare"], prog="python -m eval.compare"))
