"""The PNG reports of `lewm probe`: probe scores, surprise curves, frames, straightness."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eval.probe.perturb import Perturbed
from eval.probe.state import ProbeResult


# ---------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------
def _figure(w: float, h: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=110, layout="constrained")


def plot_probes(
    results: Mapping[str, ProbeResult], path: str | os.PathLike[str], *, max_points: int = 3000
) -> Path:
    """Scatter of true vs predicted held-out values: one row per probe kind, one panel per quantity."""
    kinds = list(results)
    names = results[kinds[0]].names
    fig = _figure(3.0 * len(names), 3.0 * len(kinds))
    axes = fig.subplots(len(kinds), len(names), squeeze=False)
    rng = np.random.default_rng(0)
    for i, kind in enumerate(kinds):
        res = results[kind]
        n = len(res.y_true)
        idx = rng.choice(n, size=min(n, max_points), replace=False)
        for j, name in enumerate(names):
            ax = axes[i, j]
            yt, yp = res.y_true[idx, j], res.y_pred[idx, j]
            ax.scatter(yt, yp, s=3, alpha=0.3, color="tab:blue", rasterized=True)
            lo, hi = float(min(yt.min(), yp.min())), float(max(yt.max(), yp.max()))
            ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--")
            ax.set_title(
                f"{kind}: {name}\nr={res.r[name]:.3f}  mse={res.mse[name]:.2g}", fontsize=9
            )
            ax.set_xlabel("true", fontsize=8)
            ax.set_ylabel("predicted", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(f"held-out probes ({results[kinds[0]].n_test} frames)", fontsize=10)
    path = Path(path)
    fig.savefig(path)
    return path


def format_p(test: Mapping[str, Any]) -> str:
    """``p_perm`` (shown as a bound at the Monte-Carlo floor) and ``p_t``, for titles and logs."""
    floor = 1.0 / (test["permutations"] + 1)
    perm = (
        f"p_perm<={floor:.0e}"
        if test["p_perm"] <= floor * (1 + 1e-9)
        else f"p_perm={test['p_perm']:.2g}"
    )
    return f"{perm}, p_t={test['p_t']:.2g}"


def plot_surprise(
    reports: Mapping[str, dict[str, Any]], path: str | os.PathLike[str], *, window: int = 20
) -> Path:
    """Per perturbation: one example episode's curves and the curves aligned at the perturbation.

    Left: original vs perturbed surprise along one episode, the perturbation step
    marked. Right: median (and interquartile band) across episodes of surprise at
    ``t - k`` for ``-window <= t - k <= window``.
    """
    kinds = list(reports)
    fig = _figure(11.0, 3.2 * len(kinds))
    axes = fig.subplots(len(kinds), 2, squeeze=False)
    for i, kind in enumerate(kinds):
        rep = reports[kind]
        ex = rep["example"]
        ax = axes[i, 0]
        t = np.arange(len(ex["original"]))
        ax.plot(t, ex["original"], label="original", color="tab:gray")
        ax.plot(t, ex["perturbed"], label=kind, color="tab:red")
        ax.axvline(
            ex["step"], color="black", ls="--", lw=0.8, label=f"perturbation (step {ex['step']})"
        )
        ax.set_yscale("log")
        ax.set_xlabel("env step t (target frame)")
        ax.set_ylabel("surprise (latent MSE)")
        ax.set_title(f"{kind}: one held-out episode", fontsize=10)
        ax.legend(fontsize=8)
        ax = axes[i, 1]
        rel = np.arange(-window, window + 1)
        for key, colour, label in (
            ("aligned_original", "tab:gray", "original"),
            ("aligned_perturbed", "tab:red", kind),
        ):
            a = np.asarray(rep[key], dtype=np.float64)  # (E, 2*window+1)
            med = np.nanmedian(a, axis=0)
            q1, q3 = np.nanpercentile(a, [25, 75], axis=0)
            ax.plot(rel, med, color=colour, label=f"{label} (median)")
            ax.fill_between(rel, q1, q3, color=colour, alpha=0.2)
        ax.axvline(0, color="black", ls="--", lw=0.8)
        ax.set_yscale("log")
        test = rep["test_vs_before"]
        ax.set_title(
            f"{kind}: {test['n']} episodes aligned at the perturbation\n"
            f"surprise at k vs before: x{test['median_ratio']:.1f}, {format_p(test)}",
            fontsize=9,
        )
        ax.set_xlabel("t - k (env steps)")
        ax.set_ylabel("surprise (latent MSE)")
        ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path)
    return path


def plot_perturbation_frames(
    original: np.ndarray, perturbed: Mapping[str, Perturbed], path: str | os.PathLike[str]
) -> Path:
    """Frames k-1, k, k+5 of the original and of each perturbed version (a visual check)."""
    rows = ["original", *perturbed]
    fig = _figure(7.0, 2.3 * len(rows))
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for i, name in enumerate(rows):
        p = perturbed[name] if name != "original" else None
        k = (p or next(iter(perturbed.values()))).step
        frames = original if p is None else p.pixels
        for j, t in enumerate((k - 1, k, min(k + 5, len(frames) - 1))):
            ax = axes[i, j]
            ax.imshow(frames[t], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}: frame {t}", fontsize=9)
    path = Path(path)
    fig.savefig(path)
    return path


def plot_straightness(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    state_path: float | None = None,
) -> Path:
    """Mean cosine of consecutive latent velocities per checkpoint (error bar: std error).

    Reference lines: the true state path's straightness (if given) and -0.5, the
    value for independent noise (``cov(z1 - z0, z2 - z1) = -var(z)``), which is what
    an embedding that ignores the motion looks like.
    """
    fig = _figure(max(4.0, 1.2 * len(rows) + 2), 3.2)
    ax = fig.subplots()
    labels = [str(r["label"]).replace(" @", "\n@") for r in rows]
    y = [r["straightness"] for r in rows]
    err = [r["std"] / np.sqrt(max(r["pairs"], 1)) for r in rows]
    x = np.arange(len(rows))
    ax.errorbar(x, y, yerr=err, marker="o", capsize=3)
    for xi, yi in zip(x, y, strict=True):
        ax.annotate(f"{yi:.3f}", (xi, yi), textcoords="offset points", xytext=(6, 4), fontsize=8)
    if state_path is not None:
        ax.axhline(
            state_path,
            color="tab:green",
            ls="--",
            lw=1,
            label=f"true state path ({state_path:.3f})",
        )
    ax.axhline(-0.5, color="tab:gray", ls=":", lw=1, label="independent noise (-0.5)")
    ax.axhline(0.0, color="tab:gray", ls="-", lw=0.5, label="random walk (0)")
    ax.legend(fontsize=7, loc="best")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("mean cos(v_t, v_t+1)")
    stride = rows[0].get("stride") if rows else None
    ax.set_title(
        "temporal straightness of latent trajectories"
        + (f"\n(frames {stride} env step{'s' if stride != 1 else ''} apart)" if stride else ""),
        fontsize=10,
    )
    ax.margins(x=0.2, y=0.15)
    path = Path(path)
    fig.savefig(path)
    return path
