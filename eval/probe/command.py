"""`lewm probe state|surprise|straightness`: each experiment with typed arguments, its
printed summary and its report files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.probe.experiments import load, run_probes, run_straightness, run_surprise
from eval.probe.plots import format_p
from eval.probe.state import parse_quantity_spec


def parse_colour(text: str) -> tuple[int, int, int]:
    """`"R,G,B"` -> (R, G, B), each in 0..255."""
    parts = [int(v) for v in text.split(",")]
    if len(parts) != 3 or not all(0 <= v <= 255 for v in parts):
        raise ValueError(f"--colour must be R,G,B with values in 0..255, got {text!r}")
    return parts[0], parts[1], parts[2]


def _default_out(checkpoint: str) -> Path:
    return Path("outputs") / "physics" / Path(checkpoint).name


def probe_straightness(
    checkpoints: Sequence[str],
    data: str,
    *,
    out: str | Path | None = None,
    episodes: int = 100,
    include_init: bool = False,
    stride: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """`lewm probe straightness`: latent straightness of each checkpoint; prints a table."""
    out = Path(out) if out else _default_out(checkpoints[-1])
    report = run_straightness(
        list(checkpoints),
        data,
        out,
        episodes=episodes,
        include_init=include_init,
        stride=stride,
        seed=seed,
    )
    print(f"{'true state path':>24}  straightness {report['state_path']:.4f}")
    for r in report["checkpoints"]:
        print(
            f"{r['label']:>24}  straightness {r['straightness']:.4f} (std {r['std']:.3f}, "
            f"{r['pairs']} pairs)"
        )
    print(f"wrote {out / 'straightness.json'} and {out / 'straightness.png'}")
    return report


def probe_state(
    checkpoint: str,
    data: str,
    *,
    out: str | Path | None = None,
    quantities: str | None = None,
    kinds: Sequence[str] = ("linear", "mlp"),
    max_train_frames: int = 20_000,
    mlp_steps: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """`lewm probe state`: linear / MLP probes of state quantities; prints their scores.

    `quantities`: e.g. "agent_x=0,agent_y=1" (None: the env spec's)."""
    out = Path(out) if out else _default_out(checkpoint)
    rep = run_probes(
        load(checkpoint, data),
        out,
        quantities=parse_quantity_spec(quantities) if quantities else None,
        kinds=list(kinds),
        max_train_frames=max_train_frames,
        mlp_steps=mlp_steps,
        seed=seed,
    )
    for kind, r in rep["probes"].items():
        cells = "  ".join(f"{n}: r={r['r'][n]:.4f} mse={r['mse'][n]:.3g}" for n in r["names"])
        print(f"{kind:>7} probe  {cells}")
    print(f"wrote {out / 'probe.json'} and {out / 'probe_scatter.png'}")
    return rep


def probe_surprise(
    checkpoint: str,
    data: str,
    *,
    out: str | Path | None = None,
    episodes: int = 100,
    perturbations: Sequence[str] = ("teleport", "colour"),
    colour: tuple[int, int, int] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """`lewm probe surprise`: surprise at teleport / colour-change edits; prints the tests."""
    out = Path(out) if out else _default_out(checkpoint)
    rep = run_surprise(
        load(checkpoint, data),
        out,
        episodes=episodes,
        kinds=list(perturbations),
        new_color=colour,
        seed=seed,
    )
    for kind, r in rep["perturbations"].items():
        print(f"{kind} (n={r['episodes']} episodes): median ratio, one-sided p (sign-flip, t-test)")
        for key, what in (
            ("test_vs_before", "at k vs before k"),
            ("test_vs_original", "at k vs original at k"),
            ("test_vs_after", "at k vs after the edit"),
            ("test_after_vs_original", "after vs original after"),
        ):
            t = r[key]
            print(f"  {what:>24}: x{t['median_ratio']:.2f}  {format_p(t)}")
    print(
        f"wrote {out / 'surprise.json'}, {out / 'surprise.png'}, {out / 'perturbation_frames.png'}"
    )
    return rep
