"""`lewm bench gpu`: ms per `paper` training step and s per `paper` CEM plan on this machine.

Run by `make gpu-check` after the `gpu` tests. On CUDA it times, with the weights
in float32 and the arithmetic under bf16 autocast (the training loop's and the
agent's precision there):

- one training step of the `paper` preset (ViT-tiny p14 at 224 px, predictor 6 x
  16 heads, history 3) at the paper's batch of 128 windows of 4 frames: the loop's
  step (forward under autocast, MSE + SIGReg with its directions drawn on the CPU,
  backward, gradient clip, AdamW). The batch is made once on the device, so the
  figure is the step's compute, not data loading;
- one CEM plan of the `paper` preset for one env, the paper's 300 samples x 30
  iterations over a horizon of 5 blocks, through the rollout the agent uses on
  that device (the paper: about 1 s per plan on one L40S).

Each figure is the median of `repeats` runs after `warmup` untimed ones, with
`torch.cuda.synchronize()` before and after each. The weights are random: time
does not depend on them.

Without CUDA the same code runs on the CPU in float32 at a reduced, stated size
(batch 1, CEM 30 x 1), and the output says what was skipped and why; the
command still exits 0, so `make gpu-check` can run anywhere.

    lewm bench gpu --json outputs/bench/gpu.json
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eval.bench import steady_state_inputs
from lewm_agent.agent import WorldModelAgent
from lewm_agent.config import get_preset, replace
from lewm_agent.data import ActionNormalizer
from lewm_agent.device import autocast_context, resolve_device
from lewm_agent.model import LeWM
from lewm_agent.sigreg import SIGReg

PAPER_BATCH = 128
"""The paper's training batch (windows of history + 1 frames)."""


@dataclass(frozen=True)
class Sizes:
    """How much one run of the benchmark times."""

    batch: int
    """Training windows per step."""
    samples: int | None
    """CEM samples per iteration (None: the preset's)."""
    iterations: int | None
    """CEM iterations per plan (None: the preset's)."""
    train_repeats: int
    plan_repeats: int
    warmup: int
    """Untimed runs of each before the timed ones."""


FULL = Sizes(PAPER_BATCH, None, None, train_repeats=10, plan_repeats=5, warmup=3)
"""On CUDA: the paper's batch and the preset's CEM (300 x 30 for `paper`)."""
# On a 2-core CPU a paper step takes seconds per window and a CEM iteration of 300
# samples 5-12 s, so a reduced size stands in there.
REDUCED = Sizes(1, 30, 1, train_repeats=1, plan_repeats=2, warmup=1)
"""Elsewhere: what runs in well under a minute on a 2-core CPU."""


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn: Callable[[], Any], dev: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls of `fn` after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(dev)
        start = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - start)
    return times


def device_description(dev: torch.device) -> dict[str, Any]:
    """Name and software of the device the figures were measured on."""
    out: dict[str, Any] = {"device": str(dev), "torch": torch.__version__}
    if dev.type == "cuda":
        out["name"] = torch.cuda.get_device_name(dev)
        out["cuda"] = torch.version.cuda
        out["capability"] = ".".join(map(str, torch.cuda.get_device_capability(dev)))
    else:
        out["name"] = platform.processor() or platform.machine()
        out["threads"] = torch.get_num_threads()
        out["load_average_1min"] = os.getloadavg()[0]
    return out


def _precision(dev: torch.device) -> str:
    with autocast_context(dev):
        mixed = torch.is_autocast_enabled(dev.type)
    return "bfloat16 autocast, float32 weights" if mixed else "float32"


def bench_train_step(
    preset: str, batch: int, dev: torch.device, warmup: int, repeats: int, seed: int = 0
) -> dict[str, Any]:
    """Median ms of one optimisation step of `preset` at `batch` windows on `dev`.

    The step of `lewm_agent.train.loop._optimisation_step`, on a batch already on
    the device: SIGReg directions from a CPU generator, the loss under the device's
    autocast, backward, clip, AdamW.
    """
    p = get_preset(preset)
    mcfg, tcfg = p.model, p.train
    torch.manual_seed(seed)
    model = LeWM(mcfg).to(dev).train()
    sigreg = SIGReg(tcfg.sigreg_directions, tcfg.sigreg_knots).to(dev)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay, fused=False
    )
    frames, size = mcfg.history + 1, mcfg.image_size
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (batch, frames, size, size, 3), dtype=torch.uint8, generator=g)
    pixels = pixels.to(dev)  # (B, T, H, W, 3)
    actions = torch.randn(batch, frames, mcfg.action_block_dim, generator=g).to(dev)  # (B, T, A)
    losses: list[torch.Tensor] = []
    steps = [0]

    def step() -> None:
        directions = torch.Generator().manual_seed(steps[0])
        steps[0] += 1
        with autocast_context(dev):
            out = model.loss(pixels, actions, sigreg, tcfg.sigreg_weight, generator=directions)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
        optimizer.step()
        losses.append(out["loss"].detach())

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = _timed(step, dev, warmup, repeats)
    ms = statistics.median(times) * 1e3
    row: dict[str, Any] = {
        "preset": preset,
        "batch": batch,
        "frames": frames,
        "image_size": size,
        "parameters": sum(q.numel() for q in model.parameters()),
        "precision": _precision(dev),
        "warmup": warmup,
        "repeats": repeats,
        "ms_per_step": ms,
        "all_ms": [t * 1e3 for t in times],
        "windows_per_second": batch / (ms / 1e3),
        "loss_finite": bool(torch.isfinite(torch.stack(losses)).all()),
        "weights_float32": all(q.dtype == torch.float32 for q in model.parameters()),
    }
    if dev.type == "cuda":
        row["peak_memory_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return row


def bench_plan(
    preset: str,
    dev: torch.device,
    warmup: int,
    repeats: int,
    samples: int | None = None,
    iterations: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Median seconds of one CEM plan of `preset` for one env on `dev`."""
    p = get_preset(preset)
    overrides: dict[str, Any] = {"planner": "cem"}
    if samples is not None:
        overrides["samples"] = samples
    if iterations is not None:
        overrides["iterations"] = iterations
    plan_cfg = replace(p.plan, **overrides)
    torch.manual_seed(seed)
    a = p.model.action_dim
    agent = WorldModelAgent(
        LeWM(p.model).eval(),
        ActionNormalizer(np.zeros(a), np.ones(a)),
        -np.ones(a),
        np.ones(a),
        plan_cfg,
        device=dev,
    )
    inputs = {
        k: v.to(dev) if v is not None else None
        for k, v in steady_state_inputs(agent, envs=1, seed=seed).items()
    }
    shapes: list[tuple[int, ...]] = []

    def plan() -> None:
        gens = [torch.Generator(device=dev).manual_seed(seed)]  # the agent's own kind
        result = agent.plan_latent(inputs["z_ctx"], inputs["past"], inputs["goal"], gens)
        shapes.append(tuple(result.actions.shape))

    times = _timed(plan, dev, warmup, repeats)
    seconds = statistics.median(times)
    return {
        "preset": preset,
        "planner": "cem",
        "samples": plan_cfg.samples,
        "iterations": plan_cfg.iterations,
        "horizon": plan_cfg.horizon,
        "history": p.model.history,
        "envs": 1,
        "rollout": type(agent.controller.rollout).__name__,
        "precision": _precision(dev),
        "warmup": warmup,
        "repeats": repeats,
        "seconds_per_plan": seconds,
        "all_seconds": times,
        "seconds_per_iteration": seconds / plan_cfg.iterations,
        "plan_shape": list(shapes[-1]),
    }


def bench_gpu(
    device: str = "auto",
    *,
    preset: str = "paper",
    batch: int | None = None,
    samples: int | None = None,
    iterations: int | None = None,
    repeats: int | None = None,
    warmup: int | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time a training step and a CEM plan of `preset`; the paper's sizes on CUDA.

    On another device the sizes default to `REDUCED` and `skipped` says what was
    not run and why. Any size given here replaces the default (and is reported).
    """
    dev = resolve_device(device)
    full = dev.type == "cuda"
    sizes = FULL if full else REDUCED
    batch = batch or sizes.batch
    samples = samples or sizes.samples
    iterations = iterations or sizes.iterations
    warm = sizes.warmup if warmup is None else warmup
    train_repeats = repeats or sizes.train_repeats
    plan_repeats = repeats or sizes.plan_repeats
    info = device_description(dev)
    result: dict[str, Any] = {"device": info, "skipped": []}
    if not full:
        why = "CUDA not available" if device == "auto" else f"device {dev} asked for"
        if torch.version.cuda is None:
            why += f" (torch {torch.__version__} is a CPU-only build)"
        plan_cfg = get_preset(preset).plan
        result["skipped"].append(
            f"the full size (training batch {PAPER_BATCH}, the {preset} preset's CEM "
            f"{plan_cfg.samples} x {plan_cfg.iterations}) under bf16 autocast: {why}; "
            f"ran a reduced size on {dev} in float32 instead"
        )
    extra = f", CUDA {info['cuda']}" if full else f", {info['threads']} threads"
    echo(f"device: {info['name']} ({dev}), torch {info['torch']}{extra}")

    step = bench_train_step(preset, batch, dev, warm, train_repeats)
    result["train_step"] = step
    mem = f", peak memory {step['peak_memory_mb']:.0f} MB" if "peak_memory_mb" in step else ""
    echo(
        f"{preset} training step: batch {step['batch']} x {step['frames']} frames at "
        f"{step['image_size']} px, {step['precision']}: {step['ms_per_step']:.1f} ms "
        f"(median of {step['repeats']} after {step['warmup']} warm-up), "
        f"{step['windows_per_second']:.3g} windows/s{mem}"
    )
    plan = bench_plan(preset, dev, warm, plan_repeats, samples=samples, iterations=iterations)
    result["plan"] = plan
    echo(
        f"{preset} CEM plan: {plan['samples']} samples x {plan['iterations']} iterations, "
        f"horizon {plan['horizon']}, 1 env, {plan['precision']} ({plan['rollout']}): "
        f"{plan['seconds_per_plan']:.3f} s (median of {plan['repeats']} after "
        f"{plan['warmup']} warm-up), {plan['seconds_per_iteration'] * 1e3:.1f} ms per iteration"
        + ("; the paper: about 1 s per plan on one L40S" if full else "")
    )
    for line in result["skipped"]:
        echo(f"skipped: {line}")
    return result
