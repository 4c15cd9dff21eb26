"""Recorder overhead: `lewm bench recorder [--rounds N] [--envs ID ...] [--uncompressed] [--json PATH]`.

The same env and data policy, in one process, with and without RecordEpisodes.
Variants, run interleaved on identical seeded episodes (the order rotates every
round) so that the machine's background load hits them alike:

  state   physics + policy only (obs_mode="state", no frames at all)
  render  state + env.render() after every reset and step (what any pixel dataset needs)
  record  RecordEpisodes(state env): render + copy + compress + fsync + index,
          written on its background thread (the default)
  inline  the same with RecordEpisodes(background=False)
  buffer  RecordEpisodes with EpisodeWriter.write stubbed out: the wrapper's per-step
          bookkeeping (frame and state copies into the episode arrays, action clip)
          without any file

`--uncompressed` records with RecordEpisodes(compress=False) (stored, memory-mappable
npz members) instead of the default level-1 deflate.

The recorder's overhead is `record / render - 1` in process CPU time (all threads,
user + system): on a shared machine wall time is inflated by waiting for time
slices, CPU time much less. Wall-clock frames/s are reported too. Per variant the
median over rounds; `write_cpu_ms_per_episode` is the CPU time spent inside
EpisodeWriter.write (on whichever thread runs it), from a timing wrapper.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402, F401  (registers the lewm/* ids)
from envs.scripted import make_data_policy  # noqa: E402
from envs.spec import env_spec  # noqa: E402
from envs.wrappers import RecordEpisodes  # noqa: E402
from lewm_agent.data import EpisodeWriter  # noqa: E402

EPISODES = {"lewm/TwoRoom-v0": 20, "lewm/PushT-v0": 3, "lewm/Reacher-v0": 4}
"""The bench's own budget: episodes per round for each env it times (~1-2 k frames)."""
VARIANTS = ("state", "render", "record", "inline", "buffer")


class _WriteTimer:
    """Wraps EpisodeWriter.write to sum its wall and thread-CPU seconds (restored on exit).

    With ``stub=True`` the wrapped write only validates and returns a path (no file).
    """

    def __init__(self, stub: bool = False) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self._orig = EpisodeWriter.write
        self._stub = stub

    def __enter__(self) -> _WriteTimer:
        def stub(writer: EpisodeWriter, pixels: Any, actions: Any, states: Any, *_: Any) -> Path:
            writer._validate(pixels, actions, states)
            return writer.root

        orig = stub if self._stub else self._orig

        def timed(writer: EpisodeWriter, *args: Any, **kwargs: Any) -> Path:
            t, c = time.perf_counter(), time.thread_time()
            try:
                return orig(writer, *args, **kwargs)
            finally:
                self.wall += time.perf_counter() - t
                self.cpu += time.thread_time() - c

        EpisodeWriter.write = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        EpisodeWriter.write = self._orig  # type: ignore[method-assign]


def run(
    env_id: str, variant: str, episodes: int, out: Path, compress: bool = True
) -> dict[str, float]:
    """Wall and process-CPU seconds for `episodes` seeded heuristic-policy episodes."""
    env: gym.Env = gym.make(
        env_id, obs_mode="state", image_size=64, **env_spec(env_id).collection_kwargs
    )
    if variant in ("record", "inline", "buffer"):
        env = RecordEpisodes(
            env, out, collector="scripted", background=variant == "record", compress=compress
        )
    policy = make_data_policy("scripted", env_id, env.action_space, seed=0)
    frames = 0
    with _WriteTimer(stub=variant == "buffer") as timer:
        t0, c0 = time.perf_counter(), time.process_time()
        for ep in range(episodes):
            obs, _ = env.reset(seed=ep)
            if variant == "render":
                env.render()
            frames += 1
            start, done = True, False
            while not done:
                action, _ = policy.predict(obs, episode_start=np.array([start]))
                start = False
                obs, _, term, trunc, _ = env.step(action)
                if variant == "render":
                    env.render()
                frames += 1
                done = term or trunc
        env.close()  # waits for a background write and flushes the index
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if variant in ("record", "inline"):
        meta = json.loads((out / "meta.json").read_text())
        assert meta["num_episodes"] == episodes, f"index has {meta['num_episodes']} episodes"
    return {
        "wall": wall,
        "cpu": cpu,
        "frames": frames,
        "write_wall": timer.wall,
        "write_cpu": timer.cpu,
    }


def bench_env(
    env_id: str, episodes: int, rounds: int, tmp: Path, compress: bool = True
) -> dict[str, Any]:
    run(env_id, "render", 1, tmp / "warm")  # imports, GL context, caches
    raw: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        k = r % len(VARIANTS)
        for variant in VARIANTS[k:] + VARIANTS[:k]:
            out = tmp / f"{env_id.split('/')[1]}-{variant}-{r}"
            raw[variant].append(run(env_id, variant, episodes, out, compress))
            shutil.rmtree(out, ignore_errors=True)
    frames = raw["state"][0]["frames"]

    def med(variant: str, key: str) -> float:
        return statistics.median(x[key] for x in raw[variant])

    def over_render(variant: str, key: str) -> float:
        return med(variant, key) / med("render", key) - 1

    def paired(variant: str) -> float:
        """Median over rounds of this round's CPU ratio to its own render run."""
        return statistics.median(
            x["cpu"] / y["cpu"] - 1 for x, y in zip(raw[variant], raw["render"], strict=True)
        )

    recorders = ("record", "inline", "buffer")
    return {
        "episodes": episodes,
        "compress": compress,
        "frames": frames,
        "rounds": rounds,
        "cpu_frames_per_s": {v: frames / med(v, "cpu") for v in VARIANTS},
        "wall_frames_per_s": {v: frames / med(v, "wall") for v in VARIANTS},
        # The headline: CPU-time overhead of the recorder vs rendering alone.
        "cpu_over_render": {v: over_render(v, "cpu") for v in recorders},
        "cpu_over_render_paired": {v: paired(v) for v in recorders},
        "wall_over_render": {v: over_render(v, "wall") for v in recorders},
        "render_cpu_ms_per_frame": 1000 * med("render", "cpu") / frames,
        "write_cpu_ms_per_episode": {
            v: 1000 * med(v, "write_cpu") / episodes for v in ("record", "inline")
        },
        "write_wall_ms_per_episode": {
            v: 1000 * med(v, "write_wall") / episodes for v in ("record", "inline")
        },
        "raw": raw,
    }


def format_result(env_id: str, res: dict[str, Any]) -> str:
    c, w = res["cpu_frames_per_s"], res["wall_frames_per_s"]
    o, p, ow = res["cpu_over_render"], res["cpu_over_render_paired"], res["wall_over_render"]
    return (
        f"{env_id} ({res['episodes']} episodes, {res['frames']} frames, "
        f"{'level-1 deflate' if res['compress'] else 'uncompressed'}, medians of "
        f"{res['rounds']} rounds):\n"
        f"  CPU-time frames/s: "
        + ", ".join(f"{v} {c[v]:.0f}" for v in VARIANTS)
        + f"\n  recorder CPU overhead vs render: record {100 * o['record']:+.1f}% (paired "
        f"{100 * p['record']:+.1f}%), inline {100 * o['inline']:+.1f}%, buffer only "
        f"{100 * o['buffer']:+.1f}%\n"
        f"  wall frames/s:     "
        + ", ".join(f"{v} {w[v]:.0f}" for v in VARIANTS)
        + f"; wall overhead record {100 * ow['record']:+.1f}%, inline "
        f"{100 * ow['inline']:+.1f}%\n"
        f"  EpisodeWriter.write: {res['write_cpu_ms_per_episode']['record']:.2f} ms CPU / "
        f"{res['write_wall_ms_per_episode']['record']:.2f} ms wall per episode (background), "
        f"{res['write_cpu_ms_per_episode']['inline']:.2f} ms CPU inline; render "
        f"{res['render_cpu_ms_per_frame']:.3f} ms CPU per frame"
    )


def bench_recorder(
    env_ids: Sequence[str] = tuple(EPISODES),
    *,
    rounds: int = 3,
    episodes: int | None = None,
    compress: bool = True,
) -> dict[str, Any]:
    """`lewm bench recorder`: `bench_env` for each env (`episodes` per run, default the
    env's in EPISODES), printing each result; returns them with the load averages."""
    results: dict[str, Any] = {"load_average_1min": os.getloadavg()[0]}
    tmp = Path(tempfile.mkdtemp(prefix="lewm-bench-recorder-"))
    try:
        for env_id in env_ids:
            res = bench_env(env_id, episodes or EPISODES[env_id], rounds, tmp, compress=compress)
            results[env_id] = res
            print(format_result(env_id, res), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["load_average_1min_after"] = os.getloadavg()[0]
    return results
