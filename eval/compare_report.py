"""The comparison's report: results as JSON, a markdown table with 95% Wilson
intervals and a success-rate bar chart.

`eval.compare` runs the agents; this module only formats what it returns. The
intervals stay honest at 0% and 100% and for 50 episodes; the table adds what each
agent's training cost (wall time, env steps, whether it saw the reward) when the
results carry it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lewm_agent.atomic import atomic_write_json, atomic_write_text
from lewm_agent.stats import wilson_interval

from .protocol import ProtocolResult

TRAINING_KEYS: tuple[str, ...] = ("train_seconds", "train_env_steps", "reward_used")
"""Per-agent fields (from `extra`) that the table shows as training-cost columns."""


def results_dict(
    results: dict[str, ProtocolResult], extra: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """JSON-able results with the Wilson interval added; `extra` merges per-agent fields."""
    out = {}
    for name, r in results.items():
        lo, hi = wilson_interval(r.successes, r.episodes)
        out[name] = {**r.to_dict(), "success_ci95": [lo, hi], **(extra or {}).get(name, {})}
    return out


def _fmt_seconds(x: Any) -> str:
    if x is None:
        return "-"
    x = float(x)
    return f"{x:.0f} s" if x < 120 else f"{x / 60:.1f} min"


def _fmt_steps(x: Any) -> str:
    return "-" if x is None else f"{int(x):,}"


def _fmt_reward(x: Any) -> str:
    return "-" if x is None else ("yes" if x else "no")


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """A markdown table of `results_dict` output.

    Training-cost columns (wall time, env steps used for training, reward used)
    appear when any agent has them (`extra` fields named in `TRAINING_KEYS`).
    """
    training = any(k in r for r in results.values() for k in TRAINING_KEYS)
    head = (
        "| agent | success | 95% CI | mean steps | steps to success | mean return | ms / decision |"
    )
    rule = "|---|---|---|---|---|---|---|"
    if training:
        head += " train wall time | env steps for training | reward used |"
        rule += "---|---|---|"
    lines = [head, rule]
    for name, r in results.items():
        lo, hi = r["success_ci95"]
        to_succ = r["mean_steps_to_success"]
        line = (
            f"| {name} | {100 * r['success_rate']:.0f}% ({r['successes']}/{r['episodes']}) "
            f"| {100 * lo:.0f}-{100 * hi:.0f}% | {r['mean_steps']:.1f} "
            f"| {'-' if to_succ is None else f'{to_succ:.1f}'} | {r['mean_return']:.2f} "
            f"| {r['decision_latency_ms']:.1f} |"
        )
        if training:
            line += (
                f" {_fmt_seconds(r.get('train_seconds'))} "
                f"| {_fmt_steps(r.get('train_env_steps'))} "
                f"| {_fmt_reward(r.get('reward_used'))} |"
            )
        lines.append(line)
    return "\n".join(lines)


def write_results(
    results: dict[str, dict[str, Any]],
    out_dir: str | Path,
    header: str = "",
    *,
    footer: str = "",
    chart: bool = True,
    title: str = "",
) -> tuple[Path, Path]:
    """Write results.json, results.md and (if `chart`) success.png into `out_dir`.

    Returns the JSON and markdown paths (the chart is `out_dir / CHART_FILE`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    atomic_write_json(json_path, results)
    body = (header + "\n\n" if header else "") + markdown_table(results) + "\n"
    if chart:
        bar_chart(results, out / CHART_FILE, title=title or header.lstrip("# "))
        body += f"\n![success rates with 95% Wilson intervals]({CHART_FILE})\n"
    if footer:
        body += "\n" + footer.rstrip() + "\n"
    atomic_write_text(md_path, body)
    return json_path, md_path


CHART_FILE = "success.png"

_LEWM_COLOUR = "#c0392b"
_REWARD_COLOUR = "#2c6fbb"
_OTHER_COLOUR = "#8a8a8a"


def bar_chart(results: dict[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Success-rate bars with 95% Wilson error bars, one per agent (matplotlib Agg).

    Each bar is labelled with its rate and k/n; the tick label says what the agent's
    training cost (env steps, reward or not) when `results` carries it. Colours:
    red = LeWM (reward-free world model), blue = trained on the reward, grey = others.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results:
        raise ValueError("bar_chart needs at least one agent's results")
    names = list(results)
    rates = [100 * results[n]["success_rate"] for n in names]
    lo = [100 * results[n]["success_ci95"][0] for n in names]
    hi = [100 * results[n]["success_ci95"][1] for n in names]
    # Clamped at 0: at 0% or 100% the interval's edge equals the rate up to rounding.
    err = [
        [max(0.0, r - a) for r, a in zip(rates, lo, strict=True)],  # below each bar
        [max(0.0, b - r) for r, b in zip(rates, hi, strict=True)],  # above
    ]
    colours = []
    ticks = []
    for n in names:
        r = results[n]
        if n.startswith("lewm"):
            colours.append(_LEWM_COLOUR)
        elif r.get("reward_used"):
            colours.append(_REWARD_COLOUR)
        else:
            colours.append(_OTHER_COLOUR)
        tick = n
        steps = r.get("train_env_steps")
        if steps:
            tick += f"\n{_short_steps(steps)} env steps"
        if r.get("reward_used") is not None and (steps or r.get("reward_used")):
            tick += "\nreward" if r["reward_used"] else "\nno reward"
        ticks.append(tick)

    width = max(4.5, 1.25 * len(names) + 1.5)
    fig = Figure(figsize=(width, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = list(range(len(names)))
    ax.bar(x, rates, color=colours, width=0.62, zorder=2)
    ax.errorbar(x, rates, yerr=err, fmt="none", ecolor="black", capsize=6, lw=1.3, zorder=3)
    for xi, n, r, top in zip(x, names, rates, hi, strict=True):
        k, m = results[n]["successes"], results[n]["episodes"]
        ax.text(xi, min(top + 2.5, 104), f"{r:.0f}%\n{k}/{m}", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, ticks, fontsize=9)
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("success rate (%)")
    ax.grid(axis="y", alpha=0.3, zorder=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title((title + "\n" if title else "") + "success with 95% Wilson interval", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _short_steps(n: int) -> str:
    n = int(n)
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.0f}k"
    return str(n)
