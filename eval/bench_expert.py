"""The Push-T expert's own success and cost: `lewm bench expert [--pairs 100]`.

Random start/goal pairs from the env's own sampler, kept only when the goal pose is at
least 40 px or 30 deg from the start (a pair the task calls a real move), the expert
acting on the privileged state in goal mode with a step budget; reported: successes,
a 95% Wilson interval, the median steps to success, and wall milliseconds per env step
(expert decision + env step, on this machine and its current load).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

MIN_DISTANCE_PX = 40.0
MIN_ROTATION = math.radians(30.0)


def random_pairs(n: int, seed: int = 123) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` (start, goal) Push-T states at least 40 px or 30 deg apart (block pose)."""
    from envs.push_t import PushTEnv

    env = PushTEnv(obs_mode="state")
    rng = np.random.default_rng(seed)
    pairs = []
    while len(pairs) < n:
        _, info = env.reset(seed=int(rng.integers(1 << 30)))
        s, g = info["state"], info["goal_state"]
        dist = float(np.hypot(*(s[2:4] - g[2:4])))
        rot = abs(math.atan2(math.sin(s[4] - g[4]), math.cos(s[4] - g[4])))
        if dist >= MIN_DISTANCE_PX or rot >= MIN_ROTATION:
            pairs.append((s, g))
    return pairs


def bench_expert(
    pairs: int = 100, budget: int = 200, seed: int = 123, progress: bool = True, **expert_kw: Any
) -> dict[str, Any]:
    """Run the goal-mode expert on ``pairs`` random pairs; return the summary dict."""
    from envs.push_t import PushTEnv
    from envs.push_t_expert import PushTExpert
    from lewm_agent.stats import wilson_interval

    env = PushTEnv(obs_mode="state")
    expert = PushTExpert(targets="goal", seed=seed, **expert_kw)
    steps_to_success, env_steps, successes = [], 0, 0
    t0 = time.perf_counter()
    for start, goal in tqdm(
        random_pairs(pairs, seed), desc="expert", unit="pair", disable=not progress
    ):
        obs, _ = env.reset(options={"state": start, "goal_state": goal})
        for t in range(budget):
            action, _ = expert.predict(obs, episode_start=np.array([t == 0]), deterministic=True)
            obs, _, terminated, _, info = env.step(action)
            env_steps += 1
            if terminated:
                successes += 1
                steps_to_success.append(t + 1)
                break
    seconds = time.perf_counter() - t0
    lo, hi = wilson_interval(successes, pairs)
    return {
        "pairs": pairs,
        "budget": budget,
        "successes": successes,
        "success_rate": successes / pairs,
        "ci95": [lo, hi],
        "median_steps_to_success": float(np.median(steps_to_success)) if steps_to_success else None,
        "ms_per_env_step": 1000.0 * seconds / max(1, env_steps),
        "expert": {"candidates": expert.candidates, "speed": expert.speed, **expert_kw},
    }
