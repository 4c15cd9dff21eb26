"""The report of `lewm bench planning-quality`: a markdown table of its rows and a
chart of success against seconds per decision (log x, Wilson intervals).

`eval.bench_quality` measures; this module only formats the report it returns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def quality_chart(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Success (%) against seconds per decision (log x) with Wilson intervals.

    x is the interleaved timing (`timed_seconds_per_decision`: every setting under the
    same load) where it was measured, filled markers; else the protocol run's median
    (hollow markers: measured minutes apart, under whatever load the machine had then).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [
        r
        for r in report["rows"]
        if r.get("timed_seconds_per_decision") or r["seconds_per_decision"]
    ]
    if not rows:
        raise ValueError("no row with a measured seconds per decision to plot")
    fig = Figure(figsize=(8.5, 5.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)

    def point(r: dict[str, Any]) -> tuple[float, float]:
        """(seconds per decision, success %) where the row is drawn."""
        seconds = r.get("timed_seconds_per_decision") or r["seconds_per_decision"]
        return seconds, 100 * r["success_rate"]

    rows = sorted(rows, key=point)  # by x: a label looks right, at the points after it
    for k, r in enumerate(rows):
        timed = r.get("timed_seconds_per_decision")
        x, y = point(r)
        lo, hi = (100 * v for v in r["success_ci95"])
        name = r["planner"]
        colour = (
            "#c0392b"
            if "prior" in name
            else "#27ae60"
            if name.startswith("policy")
            else "#2c6fbb"
            if name.startswith("cem")
            else "#8e44ad"
        )
        ax.errorbar(
            [x],
            [y],
            yerr=[[max(0.0, y - lo)], [max(0.0, hi - y)]],
            fmt="o",
            color=colour,
            mfc=colour if timed else "white",
            capsize=4,
            lw=1.2,
        )
        # Label beside its own point, at its height: on the right, or on the left when
        # a point to the right (within ~a label's width, 3.5x on the log axis) sits at
        # about the same height, where the label would cover it or read as its label.
        left = any(ox / x < 3.5 and abs(oy - y) < 6 for ox, oy in map(point, rows[k + 1 :]))
        ax.annotate(
            f"{name} ({r['rollouts_per_decision']:.0f})",
            (x, y),
            textcoords="offset points",
            xytext=(-6, -3) if left else (6, -3),
            ha="right" if left else "left",
            fontsize=6.5,
            color=colour,
        )
    ax.set_xscale("log")
    ax.set_xlabel(
        "seconds per decision, one env (log); filled: interleaved timing, hollow: protocol run"
    )
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 110)
    ax.grid(alpha=0.3, which="both")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    load = report.get("timing_load_average_1min")
    ax.set_title(
        f"{report['env']}: success vs compute, {report['episodes']} protocol episodes "
        f"(95% Wilson; rollouts per decision in brackets"
        + (f"; timing at load {load:.1f}" if load is not None else "")
        + ")",
        fontsize=8.5,
    )
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def markdown(report: dict[str, Any]) -> str:
    """The rows as a markdown table (plus the interleaved timing when it was run)."""
    timed = any("timed_seconds_per_decision" in r for r in report["rows"])
    head = (
        "| planner | success | 95% CI | mean steps | s / decision (median) "
        "| rollouts / decision | rollouts / env step | ms / action |"
    )
    rule = "|---|---|---|---|---|---|---|---|"
    if timed:
        head += " interleaved s / decision | vs cem-300x10 | interleaved ms / action |"
        rule += "---|---|---|"
    lines = [head, rule]
    for r in report["rows"]:
        lo, hi = r["success_ci95"]
        spd = r["seconds_per_decision"]
        line = (
            f"| {r['planner']} | {100 * r['success_rate']:.0f}% ({r['successes']}/{r['episodes']}) "
            f"| {100 * lo:.0f}-{100 * hi:.0f}% | {r['env_steps'] / r['episodes']:.1f} "
            f"| {'-' if spd is None else f'{spd:.4f}'} "
            f"| {r['rollouts_per_decision']:.0f} | {r['rollouts_per_env_step']:.1f} "
            f"| {r['ms_per_action']:.2f} |"
        )
        if timed:
            t, ratio = r.get("timed_seconds_per_decision"), r.get("timed_seconds_vs_reference")
            ms = r.get("timed_ms_per_action")
            line += (
                f" {'-' if t is None else f'{t:.4f}'} | {'-' if ratio is None else f'{ratio:.3f}'} "
                f"| {'-' if ms is None else f'{ms:.2f}'} |"
            )
        lines.append(line)
    return "\n".join(lines)
