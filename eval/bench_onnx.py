"""`lewm bench onnx`: onnxruntime (OnnxAgent) vs torch (WorldModelAgent), same process.

For one trained agent (a checkpoint folder or `zoo:NAME`), exported to a
temporary folder, times with 1 and 2 threads:

- "policy": milliseconds per action of the policy head acting alone, over a
  stream of `predict` calls on one env (every call returns an action; a block
  boundary also encodes the new frame and asks the head);
- "cem-prior" (policy-prior CEM 30 x 2) or "cem" (30 x 2, for a model without a
  head): seconds per decision, `predict` right after `reset` (the frame is
  encoded and a whole plan made; the goal's embedding is kept).

The two runtimes alternate within each round, so both see the same machine load.
Also reports the installed size of a torch-free deployment (numpy, onnxruntime
and what onnxruntime requires) against the whole environment, from the installed
distributions' file lists.

    lewm bench onnx zoo:cube --planners policy,cem-prior
    lewm bench onnx zoo:tworoom --planners cem
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lewm_agent.agent import WorldModelAgent
from lewm_agent.export import export_agent
from lewm_agent.onnx_agent import OnnxAgent

SETTINGS: dict[str, dict[str, Any]] = {
    "policy": {"planner": "policy"},
    "cem-prior": {"planner": "cem-prior", "samples": 30, "iterations": 2, "elites": 3},
    "cem": {"planner": "cem", "samples": 30, "iterations": 2, "elites": 3},
}
"""The settings timed, as in `eval.bench_quality` (cem-prior-30x2, cem-30x2, policy)."""

DEPLOY_DISTRIBUTIONS = ("onnxruntime", "numpy")


def _frames(size: int, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


def _time_actions(agent: Any, frames: np.ndarray, goal: np.ndarray) -> float:
    """Milliseconds per `predict` over a stream of frames (after one warm-up call)."""
    agent.reset()
    agent.predict({"pixels": frames[0], "goal": goal})
    tic = time.perf_counter()
    for px in frames[1:]:
        agent.predict({"pixels": px, "goal": goal})
    return 1000 * (time.perf_counter() - tic) / (len(frames) - 1)


def _time_decision(agent: Any, frames: np.ndarray, goal: np.ndarray) -> float:
    """Seconds per decision: `predict` right after `reset`, median over the frames."""
    agent.predict({"pixels": frames[0], "goal": goal})  # warm-up, goal encoded
    times = []
    for px in frames[1:]:
        agent.reset()
        tic = time.perf_counter()
        agent.predict({"pixels": px, "goal": goal})
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def bench_onnx(
    run: str | os.PathLike,
    planners: Sequence[str] = ("policy", "cem-prior"),
    threads: Sequence[int] = (1, 2),
    rounds: int = 3,
    actions: int = 200,
    decisions: int = 5,
) -> dict[str, Any]:
    """Per planner and thread count: torch and onnxruntime timings (medians over rounds)."""
    unknown = [p for p in planners if p not in SETTINGS]
    if unknown:
        raise ValueError(f"unknown planners {unknown}; choose from {sorted(SETTINGS)}")
    torch_threads = torch.get_num_threads()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lewm-bench-onnx-") as tmp:
        export = export_agent(run, Path(tmp) / "export")
        for planner in planners:
            settings = SETTINGS[planner]
            t_agent = WorldModelAgent.load(run, device="cpu", **settings)
            size = t_agent.model_config.image_size
            frames = _frames(size, actions + 1 if planner == "policy" else decisions + 1)
            goal = _frames(size, 1, seed=1)[0]
            timer: Callable[..., float] = _time_actions if planner == "policy" else _time_decision
            for n in threads:
                o_agent = OnnxAgent.load(export, threads=n, **settings)
                runs: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
                for _ in range(rounds):
                    torch.set_num_threads(n)
                    runs["torch"].append(timer(t_agent, frames, goal))
                    runs["onnxruntime"].append(timer(o_agent, frames, goal))
                torch.set_num_threads(torch_threads)
                t_med, o_med = (statistics.median(runs[k]) for k in ("torch", "onnxruntime"))
                rows.append(
                    {
                        "planner": planner,
                        "settings": settings,
                        "threads": n,
                        "unit": "ms per action" if planner == "policy" else "s per decision",
                        "torch": t_med,
                        "onnxruntime": o_med,
                        "speedup": t_med / o_med,
                        "rounds": runs,
                    }
                )
    return {"run": str(run), "rows": rows, "install_mb": install_sizes()}


def _distribution_bytes(name: str) -> int:
    dist = metadata.distribution(name)
    return sum(
        (f.size or 0) if f.size else _file_size(dist.locate_file(f)) for f in dist.files or []
    )


def _file_size(path: Any) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def _requirements(name: str) -> set[str]:
    """`name` and the distributions it requires, transitively (no extras)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        dist = metadata.distribution(todo.pop())
        key = dist.metadata["Name"].lower()
        if key in seen:
            continue
        seen.add(key)
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            req_name = req.split(";")[0].split("[")[0]
            for sep in "<>=!~ (":
                req_name = req_name.split(sep)[0]
            try:
                metadata.distribution(req_name.strip())
            except metadata.PackageNotFoundError:
                continue
            todo.append(req_name.strip())
    return seen


def install_sizes() -> dict[str, Any]:
    """Installed MB of a torch-free deployment (numpy + onnxruntime and their requirements)
    vs every distribution of this environment."""
    deploy = set().union(*(_requirements(n) for n in DEPLOY_DISTRIBUTIONS))
    every = {d.metadata["Name"].lower() for d in metadata.distributions()}
    mb = lambda names: sum(_distribution_bytes(n) for n in names) / 2**20  # noqa: E731
    return {
        "deploy_distributions": sorted(deploy),
        "deploy": round(mb(deploy), 1),
        "torch": round(mb({"torch"}), 1),
        "environment": round(mb(every), 1),
        "python": sys.version.split()[0],
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"ONNX vs torch, {result['run']}",
        "",
        "| planner | threads | unit | torch | onnxruntime | speed-up |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['planner']} | {r['threads']} | {r['unit']} | {r['torch']:.4g} | "
            f"{r['onnxruntime']:.4g} | {r['speedup']:.2f}x |"
        )
    s = result["install_mb"]
    lines += [
        "",
        f"installed: numpy + onnxruntime ({', '.join(s['deploy_distributions'])}) "
        f"{s['deploy']} MB; torch alone {s['torch']} MB; this environment {s['environment']} MB",
    ]
    return "\n".join(lines)
