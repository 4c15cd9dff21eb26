"""`lewm bench paper-prior`: seconds per plan of the paper's CEM vs the policy prior.

Times one plan of one env for the `paper` preset (ViT, predictor of 6 x 16 heads,
history 3) with the paper's CEM 300 x 30 and with the policy-prior CEM at the
budgets `eval.bench_quality` measures (150 x 5, 60 x 5, 30 x 2), in interleaved
rounds so every row sees the same load, with the fp32 matmul peak measured before
each round. The weights are random (seconds do not depend on them; the head is an
untrained `PolicyHead` of the default size): this measures cost only. Which budget
keeps success is what `lewm bench planning-quality` measures on trained
models.

    lewm bench paper-prior --rounds 3 --json outputs/bench/paper_prior.json
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from tqdm import tqdm

from eval.bench import make_agent, matmul_peak_gflops, steady_state_inputs
from eval.bench_quality import SETTINGS as QUALITY_SETTINGS
from lewm_agent.policy_head import PolicyHead, PolicyHeadConfig

# The rows of `eval.bench_quality` that matter here, with their exact settings.
SETTINGS: dict[str, dict[str, Any]] = {
    name: QUALITY_SETTINGS[name]
    for name in ("cem-300x30", "cem-prior-150x5", "cem-prior-60x5", "cem-prior-30x2")
}
REFERENCE = "cem-300x30"


def bench_paper_prior(preset: str = "paper", rounds: int = 3, progress: bool = True) -> dict:
    """Median seconds per single-env plan of each setting and its ratio to CEM 300 x 30."""
    agents = {}
    for name, overrides in SETTINGS.items():
        agent = make_agent(preset, **overrides)
        cfg = agent.model_config
        agent.policy_head = PolicyHead(
            cfg.embed_dim, cfg.action_block_dim, PolicyHeadConfig()
        ).eval()
        agents[name] = agent
    inputs = steady_state_inputs(next(iter(agents.values())), envs=1)

    def once(agent: Any) -> float:
        gens = [torch.Generator().manual_seed(0)]
        start = time.perf_counter()
        agent.plan_latent(inputs["z_ctx"], inputs["past"], inputs["goal"], gens)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    peaks = []
    bar = tqdm(total=(rounds + 1) * len(agents), desc="plans", disable=not progress)
    for r in range(rounds + 1):  # round 0 is the warm-up, not recorded
        if r:
            peaks.append(matmul_peak_gflops(repeats=5))
        for name, agent in agents.items():
            seconds = once(agent)
            if r:
                times[name].append(seconds)
            bar.update()
    bar.close()
    ref = statistics.median(times[REFERENCE])
    rows = [
        {
            "planner": name,
            "rollouts_per_plan": SETTINGS[name]["samples"] * SETTINGS[name]["iterations"],
            "seconds_per_plan": statistics.median(t),
            "all_seconds": t,
            "ratio_to_reference": statistics.median(t) / ref,
        }
        for name, t in times.items()
    ]
    return {"preset": preset, "reference": REFERENCE, "peak_gflops": peaks, "rows": rows}
