"""`make demo`: the whole story on Two-Room, on a CPU, from nothing.

collect a reward-free dataset -> train LeWM (`cpu` preset) -> evaluate it with
the paper's protocol next to a random agent on the same 50 held-out episodes
-> print a table, write outputs/demo/results.json and a rollout video.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "lewm/TwoRoom-v0"


def demo(
    *,
    episodes: int = 1000,
    workers: int = 2,
    steps: int | None = None,
    eval_episodes: int = 50,
    data: str | os.PathLike[str] = "data/demo-tworoom",
    run: str | os.PathLike[str] = "runs/demo-tworoom",
    out: str | os.PathLike[str] = "outputs/demo",
    fresh: bool = False,
) -> dict[str, Any]:
    """`make demo` = `lewm demo`: record `episodes` Two-Room episodes into `data` (reused
    when complete, unless `fresh`), train LeWM (`cpu` preset, `steps` or its default)
    into `run`, evaluate it and a random agent on `eval_episodes` held-out pairs, write
    the table, timings and a video into `out`; returns the results table."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    import envs  # noqa: F401  (registers lewm/*)
    from envs.collect import collect
    from envs.scripted import RandomPolicy
    from eval.compare import compare
    from eval.compare_report import markdown_table, results_dict, write_results
    from eval.protocol import BUDGET, SEED, run_protocol, sample_episodes
    from eval.video import write_video
    from eval.video_frames import side_by_side_frames
    from lewm_agent import WorldModelAgent, load_dataset
    from lewm_agent.heldout import load_heldout, trained_holdout

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    # 1. data -------------------------------------------------------------------------
    t0 = time.perf_counter()
    data_dir = Path(data)
    have = len(list((data_dir / "episodes").glob("*.npz"))) if data_dir.is_dir() else 0
    if fresh or have < episodes:
        if data_dir.exists():
            shutil.rmtree(data_dir)
        print(f"[1/4] recording {episodes} Two-Room episodes of the noisy heuristic")
        collect(ENV_ID, "scripted", episodes, data_dir, workers=workers, seed=0)
    else:
        print(f"[1/4] reusing {have} recorded episodes in {data_dir}")
    timings["collect_s"] = time.perf_counter() - t0
    dataset = load_dataset(data_dir)
    print(f"      {len(dataset)} episodes, {dataset.num_steps} steps")

    # 2. train ------------------------------------------------------------------------
    t0 = time.perf_counter()
    print("[2/4] training LeWM (preset 'cpu')")
    agent = WorldModelAgent.fit(dataset, preset="cpu", steps=steps, log_dir=run)
    agent.save(run)
    timings["train_s"] = time.perf_counter() - t0
    agent = WorldModelAgent.load(run)  # what a user does: the saved folder is the agent

    # 3. evaluate ---------------------------------------------------------------------
    t0 = time.perf_counter()
    heldout = load_heldout(dataset, trained_holdout(agent)).heldout
    pairs = sample_episodes(heldout, n=eval_episodes, seed=SEED)
    print(
        f"[3/4] paper protocol: {len(pairs)} held-out start/goal pairs, goal 25 steps "
        f"ahead, {BUDGET}-step budget"
    )
    action_space = gym.make(ENV_ID).action_space
    agents = {"lewm": agent, "random": RandomPolicy(action_space, seed=SEED)}
    results = compare(ENV_ID, agents, pairs)
    timings["eval_s"] = time.perf_counter() - t0
    table = results_dict(results)
    table["lewm"]["train_seconds"] = agent.training_stats.get("seconds")
    table["lewm"]["train_steps"] = agent.training_stats.get("steps")
    table["lewm"]["plan"] = {
        "planner": agent.plan_config.planner,
        "samples": agent.plan_config.samples,
        "iterations": agent.plan_config.iterations,
    }

    # 4. video ------------------------------------------------------------------------
    t0 = time.perf_counter()
    print("[4/4] rollout video")
    first_success = next((i for i, e in enumerate(results["lewm"].per_episode) if e["success"]), 0)
    ep = pairs[first_success]
    _, frames = run_protocol(
        ENV_ID, WorldModelAgent.load(run), [ep], name="lewm video", record=True, progress=False
    )
    goal = gym.make(ENV_ID).unwrapped.render_state(ep.goal_state)
    video = write_video(
        side_by_side_frames(np.stack(frames[0]), goal, label="LeWM"),
        out / "tworoom_lewm.mp4",
        fps=10,
    )
    timings["video_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_all

    json_path, md_path = write_results(table, out, header=f"# Two-Room, paper protocol ({ENV_ID})")
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print()
    print(markdown_table(table))
    print()
    print("timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    print(f"wrote {json_path}, {md_path}, {video}")
    return table
