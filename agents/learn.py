"""`learn`: a world-model agent that gathers its own reward-free data, in rounds.

    agent = agents.learn.learn("lewm/TwoRoom-v0", 100_000, out="runs/learn-tworoom")

Each round (a) acts in `n_envs` copies of the env with the exploration policy,
recording finished episodes with `envs.wrappers.RecordEpisodes` into the run's own
dataset folder `OUT/data/round-NNN/`; (b) continues training the world model from
the current weights on everything recorded so far (`lewm_agent.train.train` with
`init_weights`, the action normaliser of the first round kept); (c) saves the agent
to `OUT/checkpoints/round-NNN/`, appends a row to `OUT/learn_log.csv` (env steps,
episodes, train loss, coverage, success when `eval_fn` is given) and only then marks
the round finished in `OUT/learn_state.json`. The first round acts randomly (or, with
`data`, trains on that dataset without acting).

Exploration ("frontier", reward-free): the agent embeds a sample of its recorded
frames, keeps the least-visited ones by k-nearest-neighbour distance in latent space
(`lewm_agent.explore`) as goal images, and alternates segments of cheap batched CEM
toward such a goal (with Gaussian action noise) and segments of random actions
(Go-Explore's go-then-explore). The env's own goal (`obs["goal"]`) is never used, so
any env with pixels (a lewm env, or a foreign one through `PixelGoal`) works. With
`ExploreConfig.goal_space="slow"` the least-visited frames are found, and planned
toward, in the embedding's slowest linear features (refitted each round): on Push-T
the full embedding's novelty is mostly a new pusher position, the slow features'
a new pose of the block.

Resume: calling `learn` again with the same `out` and settings continues after the
last finished round; an unfinished round's episodes, checkpoint and log row are
removed first. `total_timesteps` may grow between calls (to extend a run).

The loop sits on the agents floor because recording is the envs floor's job;
evaluation (the eval floor) comes in as `eval_fn`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from lewm_agent.agent import WorldModelAgent
from lewm_agent.atomic import atomic_write_json, atomic_write_text
from lewm_agent.config import get_preset, replace
from lewm_agent.data import Dataset, Episode, load_dataset, read_meta
from lewm_agent.heads import split_frames
from lewm_agent.train import train
from lewm_agent.validation import ConfigError

from .exploration import Actor, ExploreConfig, FrontierActor, RandomActor, frontier_goals

__all__ = [
    "EXPLORATIONS",
    "LOG_COLUMNS",
    "Coverage",
    "ExploreConfig",
    "default_coverage",
    "learn",
]

EXPLORATIONS: tuple[str, ...] = ("frontier", "random")
"""`exploration` values: planning toward frontier goals, or random actions throughout."""

CONFIG_FILE = "learn.json"
STATE_FILE = "learn_state.json"
LOG_FILE = "learn_log.csv"
_DEFAULT_EPISODE_STEPS = 1000
"""Time limit given to an env that has none (its episodes must end to be recorded)."""
LOG_COLUMNS: tuple[str, ...] = (
    "round",
    "env_steps",
    "episodes",
    "round_env_steps",
    "round_episodes",
    "policy",
    "train_loss",
    "pred_loss",
    "coverage",
    "round_coverage",
    "success",
    "act_seconds",
    "train_seconds",
    "eval_seconds",
)
"""The columns of `learn_log.csv`, one row per finished round (empty: not measured)."""


@dataclass(frozen=True)
class Coverage:
    """Share of a coarse grid over two state columns that the recorded states visit.

    For logging only: the agent never sees it.
    """

    columns: tuple[int, int]
    low: float
    high: float
    cells: int = 10
    """Grid cells per side."""

    def __call__(self, states: np.ndarray) -> float:
        """states (N, S) -> share of the cells x cells grid holding at least one state."""
        if len(states) == 0:
            return 0.0
        xy = np.asarray(states, np.float64)[:, list(self.columns)]  # (N, 2)
        cell = np.floor((xy - self.low) / (self.high - self.low) * self.cells).astype(np.int64)
        cell = np.clip(cell, 0, self.cells - 1)  # (N, 2)
        visited = np.unique(cell[:, 0] * self.cells + cell[:, 1])
        return float(len(visited)) / self.cells**2


def default_coverage(env_id: str) -> Coverage | None:
    """The coverage grid of an env whose state holds a position in known bounds.

    Two-Room: the agent's (x, y) in the unit square, 10 x 10 cells (every cell holds
    legal positions). Other envs: None (no coverage column).
    """
    if env_id == "lewm/TwoRoom-v0":
        return Coverage(columns=(0, 1), low=0.0, high=1.0, cells=10)
    return None


# ------------------------------------------------------------------------------ the loop
def learn(
    env: str | Mapping[str, Any] | Any,
    total_timesteps: int,
    *,
    out: str | os.PathLike[str],
    steps_per_round: int = 20_000,
    train_steps_per_round: int | None = None,
    preset: str = "cpu",
    n_envs: int = 8,
    exploration: str = "frontier",
    explore: ExploreConfig | None = None,
    data: str | os.PathLike[str] | None = None,
    coverage: Coverage | None = None,
    eval_fn: Callable[[WorldModelAgent], float] | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
    seed: int = 0,
    progress_bar: bool = True,
    device: str | torch.device = "auto",
) -> WorldModelAgent:
    """Act, record, train, repeat until `total_timesteps` env steps; returns the agent.

    Args:
        env: an env id (`lewm/TwoRoom-v0`, `module:id`), an `envs.build.EnvBuild` or
            its dict; `n_envs` copies are made with the preset's image size.
        total_timesteps: env steps to act in all. Rounds record whole episodes only, so
            each ends a little below its share; the round that leaves less than half a
            round's steps acts all that is left (`_round_quota`), and once what is left
            cannot hold one episode (the env's time limit) no further round starts: a
            round spends a whole training pass and evaluation however few its steps.
        out: the run folder (created; an existing run with the same settings resumes).
        steps_per_round: env steps acted per round (split over the `n_envs` copies).
        train_steps_per_round: optimiser steps per round (default: the preset's).
        preset: model, training and planning preset (`lewm_agent.config.PRESETS`).
        exploration: "frontier" (plan toward least-visited recorded frames, mixed with
            noise and random segments) or "random" (random actions every round).
        explore: the frontier exploration's settings.
        data: a recorded dataset the first round trains on instead of acting.
        coverage: a grid over state columns to log the share visited (default:
            `default_coverage(env id)`).
        eval_fn: `eval_fn(agent) -> success rate in [0, 1]`, called after each round.
        callback: `callback(info) -> False to stop` after each finished round; `info`
            holds round, env_steps, episodes, row, agent, goal_frames, out.
        seed: seeds the resets, the random actions, the planner and the training.
        progress_bar: a bar over env steps (and the training bars).
        device: where the model trains and plans.
    Raises:
        ConfigError: a bad argument, an env without pixels, or `out` holding another
            run; raised before anything is created or written.
    """
    explore = explore or ExploreConfig()
    run = _settle(
        env, total_timesteps, out, steps_per_round, train_steps_per_round, preset, n_envs,
        exploration, explore, data, coverage, seed,
    )  # fmt: skip
    return _Loop(run, eval_fn, callback, progress_bar, device).run()


@dataclass(frozen=True)
class _Run:
    """The settled arguments of a run (`config` is what `learn.json` holds)."""

    out: Path
    total_timesteps: int
    build: Any  # envs.build.EnvBuild
    image_size: int
    config: dict[str, Any]
    explore: ExploreConfig
    coverage: Coverage | None
    episode_steps: int
    """The env's time limit: the most env steps one recorded episode takes."""

    @property
    def preset(self) -> str:
        return str(self.config["preset"])


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _settle(
    env: Any,
    total_timesteps: Any,
    out: str | os.PathLike[str],
    steps_per_round: Any,
    train_steps_per_round: Any,
    preset: str,
    n_envs: Any,
    exploration: str,
    explore: ExploreConfig,
    data: str | os.PathLike[str] | None,
    coverage: Coverage | None,
    seed: int,
) -> _Run:
    """Every check of the arguments, env and run folder; creates and writes nothing."""
    from envs.build import EnvBuild, EnvBuildError

    total = _positive_int("total_timesteps", total_timesteps)
    per_round = _positive_int("steps_per_round", steps_per_round)
    envs_n = _positive_int("n_envs", n_envs)
    if exploration not in EXPLORATIONS:
        raise ConfigError(f"unknown exploration {exploration!r}; choose one of {EXPLORATIONS}")
    try:
        p = get_preset(preset)
    except (KeyError, ValueError) as e:
        raise ConfigError(str(e)) from e
    train_steps = _positive_int(
        "train_steps_per_round",
        p.train.steps if train_steps_per_round is None else train_steps_per_round,
    )
    if isinstance(env, gym.Env):
        raise ConfigError(
            "learn makes its own env copies to record them: pass the env id "
            "(`module:id` for a third-party env) or an envs.build.EnvBuild, not an env instance"
        )
    try:
        build = EnvBuild.coerce(env)
        build.check()
    except (EnvBuildError, ValueError, TypeError) as e:
        raise ConfigError(f"cannot build env {env!r}: {e}") from e
    image_size = p.model.image_size
    probe = _make_env(build, image_size)
    try:
        _check_pixels(probe, build.id, image_size)
        episode_steps = _episode_steps(probe)
    finally:
        probe.close()
    data_path = None
    if data is not None:
        data_path = Path(data).resolve()
        try:
            meta = read_meta(data_path)
        except Exception as e:
            raise ConfigError(f"data {data}: not a recorded dataset ({e})") from e
        if int(meta["image_size"]) != image_size:
            raise ConfigError(
                f"data {data} has {meta['image_size']} px frames but preset {preset!r} "
                f"works at {image_size} px; record it with --image-size {image_size}"
            )
    cov = coverage if coverage is not None else default_coverage(build.id)
    config = {
        "env": build.to_dict(),
        "preset": preset,
        "steps_per_round": per_round,
        "train_steps_per_round": train_steps,
        "n_envs": envs_n,
        "exploration": exploration,
        "explore": dataclasses.asdict(explore),
        "data": str(data_path) if data_path else None,
        "coverage": dataclasses.asdict(cov) if cov else None,
        "seed": int(seed),
    }
    config = json.loads(json.dumps(config))  # as it reads back from learn.json
    root = Path(out)
    if root.exists():
        saved_path = root / CONFIG_FILE
        if not saved_path.is_file():
            if not root.is_dir() or any(root.iterdir()):
                raise ConfigError(
                    f"{root} exists and is not a learn run (no {CONFIG_FILE}); "
                    "choose a new --out folder"
                )
        else:
            saved = json.loads(saved_path.read_text())
            diffs = [
                f"{k}: {saved.get(k)!r} -> {config[k]!r}"
                for k in config
                if saved.get(k) != config[k]
            ]
            if diffs:
                raise ConfigError(
                    f"{root} holds a learn run with other settings ({'; '.join(diffs)}); "
                    "pass the same settings to continue it, or choose a new --out folder"
                )
    return _Run(root, total, build, image_size, config, explore, cov, episode_steps)


def _make_env(build: Any, image_size: int) -> gym.Env:
    """One env copy as collection makes it (the spec's collection kwargs, e.g. Two-Room's
    episodes that run past the goal), with pixel observations."""
    import envs  # noqa: F401  (registers the lewm ids)
    from envs.spec import find_env_spec

    spec = find_env_spec(build.id)
    try:
        env = build.make(
            obs_mode="pixels",
            image_size=image_size,
            wrapper_overrides={"goal_optional": True},
            **(dict(spec.collection_kwargs) if spec is not None else {}),
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(f"cannot make {build.id}: {e}") from e
    if env.spec is None or env.spec.max_episode_steps is None:
        # Only finished episodes are recorded: an env without a time limit gets one.
        env = gym.wrappers.TimeLimit(env, _DEFAULT_EPISODE_STEPS)
    return env


def _round_quota(left: int, steps_per_round: int) -> int:
    """Env steps the next round may act, with `left` of the budget still to act.

    Rounds fall short of their share by up to one episode (only whole episodes are
    recorded), so a fixed share would leave a few hundred steps for a round of their
    own; a remainder under half a round is acted by the round before it instead."""
    return left if left < steps_per_round * 3 // 2 else steps_per_round


def _episode_steps(env: gym.Env) -> int:
    """The time limit of a `_make_env` copy (the most steps one episode takes)."""
    limit = env.spec.max_episode_steps if env.spec is not None else None
    return int(limit or _DEFAULT_EPISODE_STEPS)


def _check_pixels(env: gym.Env, env_id: str, image_size: int) -> None:
    space = env.observation_space
    pixels = space.spaces.get("pixels") if isinstance(space, gym.spaces.Dict) else None
    if (
        not isinstance(pixels, gym.spaces.Box)
        or pixels.dtype != np.uint8
        or tuple(pixels.shape) != (image_size, image_size, 3)
    ):
        raise ConfigError(
            f"env {env_id} has no {image_size}x{image_size}x3 uint8 'pixels' observation "
            f"(its observation space: {space}); wrap it in envs.wrappers.PixelGoal "
            "(a `module:id` env gets it by default)"
        )
    if not isinstance(env.action_space, gym.spaces.Box):
        raise ConfigError(f"env {env_id} needs a Box action space, got {env.action_space}")


class _Loop:
    """One run's rounds: its folders, the data recorded so far and the current agent."""

    def __init__(
        self,
        run: _Run,
        eval_fn: Callable[[WorldModelAgent], float] | None,
        callback: Callable[[dict[str, Any]], bool | None] | None,
        progress: bool,
        device: str | torch.device,
    ) -> None:
        self.run_ = run
        self.cfg = run.config
        self.eval_fn = eval_fn
        self.callback = callback
        self.progress = progress
        self.device = device
        self.out = run.out
        self.data: Dataset | None = None
        self.agent: WorldModelAgent | None = None

    # ---------------------------------------------------------------- folders and state
    def _round_dir(self, r: int) -> Path:
        return self.out / "data" / f"round-{r:03d}"

    def _checkpoint(self, r: int) -> Path:
        return self.out / "checkpoints" / f"round-{r:03d}"

    def _start(self) -> dict[str, Any]:
        """Create or reopen the run; drop what an unfinished round left behind."""
        self.out.mkdir(parents=True, exist_ok=True)
        if not (self.out / CONFIG_FILE).is_file():
            atomic_write_json(self.out / CONFIG_FILE, self.cfg)
        state_path = self.out / STATE_FILE
        state = (
            json.loads(state_path.read_text())
            if state_path.is_file()
            else {"rounds": 0, "env_steps": 0, "episodes": 0}
        )
        done = int(state["rounds"])
        for parent in (self.out / "data", self.out / "checkpoints", self.out / "train"):
            for d in sorted(parent.glob("round-*")) if parent.is_dir() else []:
                if int(d.name.split("-")[1]) >= done:
                    shutil.rmtree(d)
        rows = self._rows()
        self._write_rows([r for r in rows if int(r["round"]) < done])
        return state

    def _rows(self) -> list[dict[str, str]]:
        path = self.out / LOG_FILE
        if not path.is_file():
            return []
        with path.open(newline="") as f:
            return list(csv.DictReader(f))

    def _write_rows(self, rows: list[dict[str, Any]]) -> None:
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow({k: row.get(k, "") for k in LOG_COLUMNS})
        atomic_write_text(self.out / LOG_FILE, buf.getvalue())

    # ------------------------------------------------------------------------ the run
    def run(self) -> WorldModelAgent:
        state = self._start()
        done = int(state["rounds"])
        if self.cfg["data"] is not None:
            self.data = _append(None, load_dataset(self.cfg["data"]), "start/")
        for r in range(done):
            self._add_data(self._round_dir(r))
        if done > 0:
            self.agent = WorldModelAgent.load(self._checkpoint(done - 1), device=self.device)
        total = self.run_.total_timesteps
        bar = tqdm(
            total=total,
            initial=min(total, int(state["env_steps"])),
            desc="learn (env steps)",
            unit="step",
            disable=not self.progress,
        )
        try:
            while int(state["env_steps"]) < total:
                left = total - int(state["env_steps"])
                if done > 0 and left < self.run_.episode_steps:
                    tqdm.write(
                        f"learn: {left} env steps of the budget left, fewer than one "
                        f"episode ({self.run_.episode_steps} steps): no further round"
                    )
                    break
                state, stop = self._round(done, state, bar)
                done += 1
                if stop:
                    break
        finally:
            bar.close()
        if self.agent is None:
            raise ConfigError(f"{self.out}: no round has finished (is total_timesteps > 0?)")
        return self.agent

    def _round(self, r: int, state: dict[str, Any], bar: tqdm) -> tuple[dict[str, Any], bool]:
        cfg = self.cfg
        folder = self._round_dir(r)
        t0 = time.perf_counter()
        goal_frames = None
        if r == 0 and cfg["data"] is not None:
            policy, steps, episodes = "data", 0, 0
        else:
            quota = _round_quota(
                self.run_.total_timesteps - int(state["env_steps"]), cfg["steps_per_round"]
            )
            actor: Actor
            if self.agent is None or cfg["exploration"] == "random":
                actor, policy = RandomActor(cfg["seed"] * 1000 + r), "random"
            else:
                assert self.data is not None
                goal_frames, goal_cost = frontier_goals(
                    self.agent, self.data, self.run_.explore, cfg["seed"], r
                )
                actor = FrontierActor(
                    self.agent, goal_frames, self.run_.explore, cfg["seed"], r, goal_cost
                )
                policy = "frontier"
            steps, episodes = _act(self.run_, folder, quota, actor, cfg["seed"] + 7919 * r, bar)
            self._add_data(folder)
        act_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        result = self._train(r)
        train_s = time.perf_counter() - t0
        self.agent = WorldModelAgent.from_train_result(
            result,
            get_preset(cfg["preset"]).plan,
            self.device,
            learn={"round": r, "env_steps": int(state["env_steps"]) + steps, "run": str(self.out)},
        )
        self.agent.save(self._checkpoint(r))

        t0 = time.perf_counter()
        success = self.eval_fn(self.agent) if self.eval_fn is not None else None
        eval_s = time.perf_counter() - t0
        final = result.log[-1] if result.log else {}
        cov = self.run_.coverage
        row: dict[str, Any] = {
            "round": r,
            "env_steps": int(state["env_steps"]) + steps,
            "episodes": int(state["episodes"]) + episodes,
            "round_env_steps": steps,
            "round_episodes": episodes,
            "policy": policy,
            "train_loss": _fmt(final.get("loss")),
            "pred_loss": _fmt(final.get("pred_loss")),
            "coverage": _fmt(cov(self._states(None)) if cov else None),
            "round_coverage": _fmt(cov(self._states(folder)) if cov and steps else None),
            "success": _fmt(success),
            "act_seconds": _fmt(act_s),
            "train_seconds": _fmt(train_s),
            "eval_seconds": _fmt(eval_s if self.eval_fn else None),
        }
        self._write_rows([*self._rows(), row])
        state = {"rounds": r + 1, "env_steps": row["env_steps"], "episodes": row["episodes"]}
        atomic_write_json(self.out / STATE_FILE, state)  # the round is finished from here on
        tqdm.write(
            f"learn round {r}: {row['env_steps']} env steps, {row['episodes']} episodes, "
            f"loss {row['train_loss']}, coverage {row['coverage'] or '-'}, "
            f"success {row['success'] or '-'}"
        )
        stop = False
        if self.callback is not None:
            info = {
                "round": r,
                "env_steps": row["env_steps"],
                "episodes": row["episodes"],
                "row": row,
                "agent": self.agent,
                "goal_frames": goal_frames,
                "out": self.out,
            }
            stop = self.callback(info) is False
        return state, stop

    # ------------------------------------------------------------------ data and model
    def _add_data(self, folder: Path) -> None:
        if not (folder / "episodes").is_dir():
            return  # a round that recorded nothing
        self.data = _append(self.data, load_dataset(folder), f"{folder.name}/")

    def _states(self, folder: Path | None) -> np.ndarray:
        """Recorded states (N, S): of every round, or of one round's folder."""
        assert self.data is not None
        eps = [
            e
            for e in self.data.episodes
            if not e.name.startswith("start/") and (folder is None or e.name.startswith(f"{folder.name}/"))
        ]  # fmt: skip
        return np.concatenate([e.states for e in eps]) if eps else np.zeros((0, 2), np.float32)

    def _train(self, r: int) -> Any:
        cfg = self.cfg
        if self.data is None or len(self.data) == 0:
            raise ConfigError(
                f"round {r} recorded no finished episode: raise steps_per_round above "
                "n_envs x the env's episode length"
            )
        p = get_preset(cfg["preset"])
        train_cfg = replace(
            p.train,
            steps=cfg["train_steps_per_round"],
            holdout_fraction=0.0,  # evaluation uses its own episodes (eval_fn)
            seed=cfg["seed"] + r,
            warmup_steps=min(p.train.warmup_steps, max(1, cfg["train_steps_per_round"] // 4)),
        )
        return train(
            self.data,
            p.model,
            train_cfg,
            log_dir=self.out / "train" / f"round-{r:03d}",
            device=self.device,
            progress=self.progress,
            checkpoint_every=0,
            plot=False,
            init_weights=self.agent.model.state_dict() if self.agent is not None else None,
            normalizer=self.agent.normalizer if self.agent is not None else None,
        )


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{float(v):.6g}"


def _append(base: Dataset | None, new: Dataset, prefix: str) -> Dataset:
    """`base`'s episodes then `new`'s (named `prefix` + file name), the frames copied
    into one array so that training gathers windows from one buffer."""
    if base is not None:
        for key in ("action_dim", "image_size"):
            if int(new.meta[key]) != int(base.meta[key]):
                raise ConfigError(
                    f"the recorded datasets disagree on {key}: {base.meta[key]} vs {new.meta[key]}"
                )
    old = [] if base is None else [base]
    frames = np.concatenate([*(split_frames(d) for d in old), split_frames(new)])  # (N, H, W, 3)
    episodes, offsets, pos = [], [], 0
    for d, pre in [*((d, "") for d in old), (new, prefix)]:
        for e in d.episodes:
            n = len(e) + 1
            view = frames[pos : pos + n]  # (T+1, H, W, 3)
            episodes.append(
                Episode(pre + e.name, view, e.actions, e.states, e.terminated, e.truncated)
            )
            offsets.append(pos)
            pos += n
    return Dataset(dict((base or new).meta), episodes, frames, offsets)


# ----------------------------------------------------------------------------- acting
def _act(
    run: _Run, folder: Path, quota: int, actor: Actor, seed: int, bar: tqdm
) -> tuple[int, int]:
    """Act `quota` env steps over the env copies, recording finished episodes into
    `folder`; a copy that reached its share finishes its episode, then stops.
    Returns (env steps taken, episodes recorded)."""
    from envs.wrappers import RecordEpisodes

    n = run.config["n_envs"]
    frameskip = get_preset(run.preset).model.frameskip
    envs = [
        RecordEpisodes(
            _make_env(run.build, run.image_size),
            folder,
            collector=f"learn:{run.config['exploration']}",
            frameskip=frameskip,
            prefix=f"w{i}-",
            env_build=run.build.to_dict(),
        )
        for i in range(n)
    ]
    # A copy starts an episode only while the steps taken plus those the running
    # episodes may still take leave room for a whole one (the time limit), so a round
    # ends near its quota without cutting episodes (only finished ones are recorded).
    length = run.episode_steps
    in_episode = np.zeros(n, np.int64)  # (n,) steps of each copy's running episode
    taken = episodes = 0
    live: list[int] = []
    obs: dict[int, Any] = {}

    def may_start(others: list[int]) -> bool:
        """Whether a copy may start an episode while `others` run theirs: when a whole
        episode fits, or (a quota under one episode) as the round's first."""
        reserved = taken + sum(max(length - int(in_episode[k]), 0) for k in others)
        return reserved + length <= quota or (reserved == 0 and quota > 0)

    try:
        for i in range(n):
            if not may_start(live):
                break
            obs[i] = envs[i].reset(seed=seed + i)[0]
            actor.start(i)
            live.append(i)
        space = envs[0].action_space
        while live:
            actions = actor.act([obs[i] for i in live], live, space)  # (k, A)
            still = []
            for j, i in enumerate(live):
                obs[i], _, terminated, truncated, _ = envs[i].step(actions[j])
                taken += 1
                in_episode[i] += 1
                bar.update(1)
                if terminated or truncated:
                    episodes += 1
                    in_episode[i] = 0
                    if not may_start([k for k in live if k != i]):
                        continue
                    obs[i] = envs[i].reset()[0]
                    actor.start(i)
                still.append(i)
            live = still
    finally:
        for e in envs:
            e.close()  # waits for the last write and indexes the folder
    return taken, episodes


def read_log(out: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a run's `learn_log.csv` (one per finished round)."""
    path = Path(out) / LOG_FILE
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))
