"""Speed benchmarks: `lewm bench planning|recorder|expert|planning-quality [--json PATH]`.

recorder: the dataset recorder's CPU overhead per env (see eval/bench_recorder.py).

expert: the Push-T expert's success and cost on random pairs (eval/bench_expert.py).

planning-quality: success rate, seconds and rollouts per decision of each planner
setting on the same protocol episodes (see eval/bench_quality.py).

planning: seconds per CEM plan for the `paper` and `cpu` presets (median of
repeats after a warm-up), the FLOPs one plan performs (counted by torch's
FlopCounterMode over the real rollout, not estimated), the achieved GFLOP/s,
this machine's fp32 matmul peak measured in the same run, their ratio, and
the cost of planning for 1, 4 and 16 envs at once.

Numbers are medians of one run on a possibly shared machine: quote them with
the load they were measured under.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from lewm_agent.agent import WorldModelAgent
from lewm_agent.config import get_preset, replace
from lewm_agent.data import ActionNormalizer
from lewm_agent.model import LeWM


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """fp32 GFLOP/s of an (n x n) @ (n x n) matmul into a preallocated output."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def make_agent(preset: str, seed: int = 0, **plan_overrides: Any) -> WorldModelAgent:
    """A randomly initialised agent of a preset (speed does not depend on the weights)."""
    p = get_preset(preset)
    torch.manual_seed(seed)
    model = LeWM(p.model).eval()
    a = p.model.action_dim
    normalizer = ActionNormalizer(np.zeros(a), np.ones(a))
    plan = replace(p.plan, **plan_overrides)
    return WorldModelAgent(model, normalizer, -np.ones(a), np.ones(a), plan, device="cpu")


def steady_state_inputs(agent: WorldModelAgent, envs: int, seed: int = 0) -> dict[str, Any]:
    """Latent inputs of a plan mid-episode: a full `history` window of context."""
    cfg = agent.model_config
    g = torch.Generator().manual_seed(seed)
    h = cfg.history
    return {
        "z_ctx": torch.randn(envs, h, cfg.embed_dim, generator=g),
        "past": torch.randn(envs, h - 1, cfg.action_block_dim, generator=g) if h > 1 else None,
        "goal": torch.randn(envs, cfg.embed_dim, generator=g),
    }


def time_plan(
    agent: WorldModelAgent,
    envs: int,
    repeats: int,
    peaks: list[float] | None = None,
    on_plan: Callable[[], None] | None = None,
) -> tuple[float, list[float]]:
    """Median seconds of one batched plan for `envs` envs (after one warm-up plan).

    With `peaks`, the matmul peak is measured right before every timed plan and
    appended to it, so plan and peak see the same state of a shared machine.
    `on_plan()` is called after each plan, the warm-up included (progress bars).
    """
    inputs = steady_state_inputs(agent, envs)

    def once() -> float:
        gens = [torch.Generator().manual_seed(i) for i in range(envs)]
        t = time.perf_counter()
        agent.plan_latent(inputs["z_ctx"], inputs["past"], inputs["goal"], gens)
        seconds = time.perf_counter() - t
        if on_plan is not None:
            on_plan()
        return seconds

    once()
    times = []
    for _ in range(repeats):
        if peaks is not None:
            peaks.append(matmul_peak_gflops(repeats=5))
        times.append(once())
    return statistics.median(times), times


def count_plan_flops(agent: WorldModelAgent, envs: int = 1) -> int:
    """FLOPs of one plan, counted on the real rollout for one iteration, times iterations."""
    inputs = steady_state_inputs(agent, envs)
    one_iter = replace(agent.plan_config, iterations=1)
    probe = WorldModelAgent(
        agent.model, agent.normalizer, agent.action_low, agent.action_high, one_iter, device="cpu"
    )
    with FlopCounterMode(display=False) as counter:
        probe.plan_latent(
            inputs["z_ctx"],
            inputs["past"],
            inputs["goal"],
            [torch.Generator().manual_seed(0) for _ in range(envs)],
        )
    return counter.get_total_flops() * agent.plan_config.iterations


def bench_planning(
    repeats: int,
    presets: list[str],
    env_counts: list[int],
    scaling_preset: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Time plans of each preset and of 1 / 4 / 16 envs together; returns the figures.

    `progress`: a tqdm bar in plans (each preset: a warm-up, `repeats` timed plans and
    one FLOP-counting iteration; each env count: a warm-up and max(3, repeats // 2)).
    """
    from tqdm.auto import tqdm

    scaling_repeats = max(3, repeats // 2)
    total = len(presets) * (repeats + 2) + len(env_counts) * (scaling_repeats + 1)
    bar = tqdm(total=total, desc="bench planning", unit="plan", disable=not progress)
    # The matmul peak is measured right before every timed plan and the ratio uses
    # the median of those peaks and the median plan time: on a shared machine both
    # then see the same conditions (a single peak taken in a quiet moment, or the
    # max of two, would make the ratio depend on luck rather than on the rollout).
    out: dict[str, Any] = {
        "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
    }
    all_peaks: list[float] = []
    for preset in presets:
        bar.set_description(f"bench planning: {preset} preset")
        agent = make_agent(preset)
        peaks: list[float] = []
        seconds, times = time_plan(agent, 1, repeats, peaks=peaks, on_plan=lambda: bar.update(1))
        flops = count_plan_flops(agent)
        bar.update(1)
        all_peaks += peaks
        peak = statistics.median(peaks)
        achieved = flops / seconds / 1e9
        pc = agent.plan_config
        out[preset] = {
            "plan": f"{pc.planner} {pc.samples} x {pc.iterations}, horizon {pc.horizon}, "
            f"history {agent.model_config.history}",
            "seconds_per_plan": seconds,
            "all_seconds": times,
            "tflop_per_plan": flops / 1e12,
            "achieved_gflops": achieved,
            "matmul_peak_gflops": peak,
            "all_peaks_gflops": peaks,
            "peak_ratio": achieved / peak,
        }
        tqdm.write(
            f"{preset:>6}: {out[preset]['plan']}: {seconds:.3f} s/plan, "
            f"{flops / 1e12:.3f} TFLOP, {achieved:.1f} GFLOP/s = {achieved / peak:.2f} of "
            f"peak {peak:.1f} (median of {len(peaks)} measured between the plans, "
            f"range {min(peaks):.0f}-{max(peaks):.0f})"
        )
    out["matmul_peak_gflops"] = statistics.median(all_peaks) if all_peaks else None
    scaling = {}
    agent = make_agent(scaling_preset)
    for n in env_counts:
        bar.set_description(f"bench planning: {n} envs together")
        scaling[str(n)] = time_plan(agent, n, scaling_repeats, on_plan=lambda: bar.update(1))[0]
        tqdm.write(
            f"   {scaling_preset} preset, {n:>2} envs planned together: {scaling[str(n)]:.3f} s"
        )
    bar.close()
    out["scaling_preset"] = scaling_preset
    out["scaling_seconds"] = scaling
    if "1" in scaling and "16" in scaling:
        out["envs16_over_envs1"] = scaling["16"] / scaling["1"]
        print(f"   16 envs / 1 env = {out['envs16_over_envs1']:.2f}x")
    return out
