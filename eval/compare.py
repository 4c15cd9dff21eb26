"""Run several agents on the SAME protocol episodes and report them side by side.

Writes `results.json` (machine-readable) and `results.md` (a table with 95%
Wilson intervals, which stay honest at 0% and 100% and for 50 episodes).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .protocol import BUDGET, ProtocolEpisode, ProtocolResult, run_protocol


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% (by default) Wilson score interval of a binomial proportion."""
    if n <= 0:
        raise ValueError("wilson_interval needs n >= 1")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


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


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """A markdown table of `results_dict` output."""
    lines = [
        "| agent | success | 95% CI | mean steps | steps to success | mean return | ms / decision |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lo, hi = r["success_ci95"]
        to_succ = r["mean_steps_to_success"]
        lines.append(
            f"| {name} | {100 * r['success_rate']:.0f}% ({r['successes']}/{r['episodes']}) "
            f"| {100 * lo:.0f}-{100 * hi:.0f}% | {r['mean_steps']:.1f} "
            f"| {'-' if to_succ is None else f'{to_succ:.1f}'} | {r['mean_return']:.2f} "
            f"| {r['decision_latency_ms']:.1f} |"
        )
    return "\n".join(lines)


def write_results(
    results: dict[str, dict[str, Any]], out_dir: str | Path, header: str = ""
) -> tuple[Path, Path]:
    """Write results.json and results.md into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text((header + "\n\n" if header else "") + markdown_table(results) + "\n")
    return json_path, md_path
