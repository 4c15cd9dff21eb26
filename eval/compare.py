"""Run several agents on the SAME protocol episodes and report them side by side.

Writes `results.json` (machine-readable), `results.md` (a table with 95% Wilson
intervals, which stay honest at 0% and 100% and for 50 episodes, plus what each
agent's training cost: wall time, environment steps, whether it saw the reward)
and `success.png` (bars with the intervals).

    lewm compare --env lewm/TwoRoom-v0 --agents lewm,ppo,sac,random \
        --lewm runs/tworoom --data data/tworoom --episodes 50 --seed 42 --out outputs/compare-tworoom

`--lewm`, `--data` and `--baselines` default to the folders `make bench-suite` writes
(runs/suite/<env>/lewm, data/suite/<env>, runs/suite/<env>). Baselines (`ppo`, `sac`,
`ppo-pixels`) are loaded from `--baselines DIR/<name>` when saved there, else trained on the env's dense reward at the `--*-steps` budgets and
saved (SB3's zip), so a second run only evaluates. `gcbc` (behaviour cloning on the
same reward-free data, `agents/gcbc.py`) is loaded from `--baselines DIR/gcbc` or
trained there on `--data`'s training split.

The table, the chart and the files are `eval.compare_report`; the statistics are
`lewm_agent.stats`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lewm_agent.atomic import atomic_write_json

from .compare_report import CHART_FILE, markdown_table, results_dict, write_results
from .protocol import BUDGET, EPISODES, SEED, ProtocolEpisode, ProtocolResult, run_protocol

SHIPPED_EPISODES_FILE = "episodes.json"
"""Where a zoo model's folder keeps its protocol episodes (`lewm_agent.zoo.read_episodes`)."""


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
    from lewm_agent.data.reader import episode_steps, load_dataset
    from lewm_agent.heldout import heldout_files

    from .protocol import sample_episodes

    # Only the held-out files are read (a large dataset's frames would not fit in memory
    # twice); the step counts come from the other files' headers.
    files = heldout_files(data, holdout)
    steps = episode_steps(data)
    held_names = {f.name for f in files}
    heldout = load_dataset(data, files=files)
    counts = {
        "data_env_steps": int(sum(steps.values())),
        "train_env_steps": int(sum(t for name, t in steps.items() if name not in held_names)),
    }
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


def has_shipped_episodes(folder: str | os.PathLike[str] | None) -> bool:
    """Whether an agent folder ships its protocol episodes (a zoo model's episodes.json)."""
    return folder is not None and (Path(folder) / SHIPPED_EPISODES_FILE).is_file()


def agent_episodes(
    agent_folder: str | os.PathLike[str] | None,
    data: str | os.PathLike[str] | None,
    n: int = EPISODES,
    seed: int = SEED,
    holdout: float = 0.1,
) -> tuple[list[ProtocolEpisode], dict[str, int]]:
    """The protocol's pairs for an agent: from `data`'s held-out split (with its step
    counts, as `protocol_episodes`), or, without `data`, the first `n` of the episodes
    the agent's folder ships (a zoo model: the same pairs its dataset would give)."""
    if data is not None:
        return protocol_episodes(data, n=n, seed=seed, holdout=holdout)
    if not has_shipped_episodes(agent_folder):
        raise SystemExit(
            "no dataset given and the agent ships no protocol episodes "
            f"({agent_folder}/{SHIPPED_EPISODES_FILE}): pass --data DIR, the dataset the "
            "agent was trained on"
        )
    from .zoo import protocol_episodes as shipped_episodes

    path = Path(agent_folder) / SHIPPED_EPISODES_FILE  # type: ignore[arg-type]
    return shipped_episodes(str(path), n=n, seed=seed), {}


def compare_agents(
    env: str,
    names: Sequence[str],
    *,
    lewm: str | os.PathLike[str] | None = None,
    data: str | os.PathLike[str] | None = None,
    episodes_from: str = "data",
    episodes: int = EPISODES,
    seed: int = SEED,
    budget: int = BUDGET,
    out: str | os.PathLike[str] | None = None,
    baselines: str | os.PathLike[str] | None = None,
    budgets: dict[str, int | None] | None = None,
    train_missing: bool = True,
    holdout: float | None = None,
    image_size: int | None = None,
    planner: str | None = None,
    device: str = "auto",
    progress: bool = True,
    resume: bool = False,
) -> dict[str, dict[str, Any]]:
    """Every agent of `names` on the same protocol episodes (`lewm compare`).

    Writes results.json, results.md and success.png into `out` (default
    outputs/compare-<env>) and returns the `results_dict` written. The episodes come
    from `data`'s held-out split (default data/suite/<env>), from the episodes a
    zoo model's folder ships when `data` is None and `lewm` has them, or from the
    env's own resets (`episodes_from="env"`). `lewm` defaults to runs/suite/<env>/lewm,
    `baselines` to runs/suite/<env>; `budgets` are the baselines' training budgets
    (env steps; gradient steps for gcbc); `train_missing=False` fails instead of
    training a missing baseline; `holdout` defaults to LeWM's; `resume` reuses
    out/per_agent/<name>.json results made on the same episodes and checkpoint.
    """
    import envs  # noqa: F401  (registers lewm/*)
    from agents import training_info

    if episodes < 1:
        raise SystemExit("--episodes must be >= 1")
    if episodes_from not in ("data", "env"):
        raise SystemExit(f"episodes_from must be 'data' or 'env', got {episodes_from!r}")
    slug = env_slug(env)
    out = Path(out or f"outputs/compare-{slug}")
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise SystemExit("--agents is empty")
    from_env = episodes_from == "env"
    if "lewm" in names and lewm is None:
        lewm = f"runs/suite/{slug}/lewm"
        if not Path(lewm).is_dir():
            raise SystemExit(f"no LeWM checkpoint at {lewm}: pass --lewm CHECKPOINT_FOLDER")
    lewm_folder = None  # the checkpoint's files (a zoo:NAME located; loading verifies them)
    if "lewm" in names:
        from lewm_agent.zoo import folder, is_zoo_ref

        lewm_folder = folder(str(lewm)) if is_zoo_ref(lewm) else Path(lewm)
        if not (lewm_folder / "config.json").is_file():
            raise SystemExit(
                f"no LeWM checkpoint at {lewm} (no config.json there): pass --lewm "
                "CHECKPOINT_FOLDER (what `lewm train --out` wrote) or zoo:NAME (`lewm zoo list`)"
            )
    shipped = (
        not from_env
        and data is None
        and lewm_folder is not None
        and has_shipped_episodes(lewm_folder)
    )
    if not from_env and not shipped:
        data = data or f"data/suite/{slug}"
        if not (Path(data) / "meta.json").is_file():
            raise SystemExit(
                f"no dataset at {data}: the protocol's start/goal pairs come from the "
                "held-out episodes of a recorded dataset (the one LeWM was trained on); pass "
                "--data DIR, run `make bench-suite` first, or sample the pairs from the env "
                "itself with --episodes-from env"
            )
    data_meta: dict[str, Any] = {}
    if data and (Path(data) / "meta.json").is_file():
        data_meta = json.loads((Path(data) / "meta.json").read_text())
    if data_meta.get("env_id") not in (None, env):
        raise SystemExit(f"--data {data} was recorded on {data_meta['env_id']}, not {env}")
    lewm_size = _lewm_image_size(lewm_folder)
    image_size = int(image_size or data_meta.get("image_size") or lewm_size or 64)

    t0 = time.perf_counter()
    baselines_dir = Path(baselines or f"runs/suite/{slug}")
    if holdout is None:
        holdout = _lewm_holdout(lewm_folder) if lewm_folder is not None else 0.1
    if from_env:
        from .protocol import sample_env_episodes

        eps = sample_env_episodes(env, n=episodes, seed=seed, image_size=image_size)
        counts: dict[str, int] = {}
    else:
        eps, counts = agent_episodes(lewm_folder, data, n=episodes, seed=seed, holdout=holdout)
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
            "env": env,
            "data": "env" if from_env else str(Path(data or lewm_folder).resolve()),
            "episodes": [(e.episode, e.start_step) for e in eps],
            "seed": seed,
            "budget": budget,
            "image_size": image_size,
            "planner": planner if name == "lewm" else None,
            "checkpoint_mtime": marker.stat().st_mtime if marker and marker.is_file() else None,
        }

    results: dict[str, ProtocolResult] = {}
    extra: dict[str, dict[str, Any]] = {}
    for name in names:
        f = cache / f"{name}.json"
        if resume and f.is_file():
            got = json.loads(f.read_text())
            if got.get("fingerprint") == json.loads(json.dumps(fingerprint(name))):
                results[name] = ProtocolResult(**got["result"])
                extra[name] = got["extra"]
                print(f"{name}: reusing the result in {f} (same episodes and checkpoint)")
    todo = [n for n in names if n not in results]
    agents = load_agents(
        todo,
        env,
        lewm=lewm,
        baselines_dir=baselines_dir,
        budgets=budgets,
        train_missing=train_missing,
        seed=seed,
        image_size=image_size,
        planner=planner,
        device=device,
        progress=progress,
        data=data,
        holdout=holdout,
    )
    lewm_agent = agents.get("lewm")
    if lewm_agent is not None and lewm_agent.model_config.image_size != image_size:
        raise SystemExit(
            f"LeWM works at {lewm_agent.model_config.image_size} px but --image-size/data is "
            f"{image_size}"
        )
    cache.mkdir(parents=True, exist_ok=True)
    for name, agent in agents.items():
        result = compare(
            env,
            {name: agent},
            eps,
            budget=budget,
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
            f"# {env}: {len(eps)} start/goal pairs sampled by the env's reset "
            f"(seeds {seed}-{seed + len(eps) - 1}, {budget}-step budget)"
        )
        lewm_steps = "the steps of its reward-free dataset's training split"
    elif not counts:  # a zoo model's shipped episodes: its dataset is not here
        header = (
            f"# {env}: paper protocol, the first {len(eps)} held-out start/goal pairs "
            f"{lewm} ships (goal 25 steps ahead, {budget}-step budget, seed {seed})"
        )
        lewm_steps = "the steps of its reward-free dataset's training split"
    else:
        header = (
            f"# {env}: paper protocol, {len(eps)} held-out start/goal pairs "
            f"(goal 25 steps ahead, {budget}-step budget, seed {seed})"
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
        table, out, header=header, footer=footer, title=f"{env}, {len(eps)} episodes"
    )
    print()
    print(markdown_table(table))
    print(f"\nwrote {json_path}, {md_path}, {out / CHART_FILE} ({time.perf_counter() - t0:.0f} s)")
    return table
