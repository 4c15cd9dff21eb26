"""Physics in the latent space, on real environments: probes, surprise, straightness.

The env-dependent half of :mod:`lewm_agent.probe` (which knows tensors only):

- which state columns are which quantity, per env (:func:`physics_spec`);
- perturbed episodes re-rendered from edited states through the env's own
  ``render_state`` (the contract every env keeps): a **teleport** (the object jumps
  to a far legal position at step ``k`` and the recorded actions are replayed from
  there through the env's physics, so the rest of the episode is a legal trajectory
  continuing from the new place) and a **colour change** (frames from step ``k`` on
  show the object in another colour, states untouched);
- reports with PNGs, and ``main(argv)``::

    python -m eval.physics state runs/tw1 --data data/demo-tworoom
    python -m eval.physics surprise runs/tw1 --data data/demo-tworoom
    python -m eval.physics straightness runs/tw1 --init --data data/demo-tworoom

Colour change without touching the env: the envs draw with module-level colour
constants, and mutating those would change every other env instance in the process.
Instead the object is re-coloured in image space, exactly: each frame is
``background + alpha * (colour - background)`` per pixel (anti-aliased drawing), the
background is recovered by rendering the same state with the object moved to three
far-apart places and taking the per-pixel median, so ``alpha`` can be solved for and
the pixel redrawn with the new colour (anti-aliasing preserved). Re-colouring with
the old colour gives the original frame back (tested).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lewm_agent.data import ActionNormalizer, Dataset, Episode, load_dataset
from lewm_agent.heldout import load_heldout, trained_holdout
from lewm_agent.probe import (
    PairedTest,
    ProbeResult,
    WorldModelLike,
    encode_frames,
    load_model,
    model_dims,
    paired_test,
    parse_quantity_spec,
    probe_episodes,
    state_targets,
    straightness,
    straightness_over_checkpoints,
    surprise_curve,
)

PERTURBATIONS = ("teleport", "colour")


# ---------------------------------------------------------------------------------------
# per-env knowledge
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PhysicsSpec:
    """What the physics tools need to know about one env's states and drawing."""

    quantities: Mapping[str, int | str]
    """Probe targets: name -> state column, or "angle:c" (sin/cos targets)."""
    teleport_columns: tuple[int, int]
    """State columns (x, y) of the object a teleport moves."""
    min_jump: float
    """A teleport moves the object at least this far (state units)."""
    is_legal: Callable[[np.ndarray], bool]
    """Whether a full state is a legal configuration (used to place teleports)."""
    recolor_columns: tuple[int, int]
    """State columns (x, y) of the object the colour change recolours."""
    recolor_radius: float
    """Size of that object (state units): background renders keep it this far away."""
    old_color: tuple[int, int, int]
    new_color: tuple[int, int, int]


def _two_room_spec() -> PhysicsSpec:
    from envs import two_room

    def legal(state: np.ndarray) -> bool:
        return two_room.is_legal_position(float(state[0]), float(state[1]))

    return PhysicsSpec(
        quantities={"agent_x": 0, "agent_y": 1},
        teleport_columns=(0, 1),
        min_jump=0.3,
        is_legal=legal,
        recolor_columns=(0, 1),
        recolor_radius=two_room.AGENT_RADIUS,
        old_color=tuple(two_room.AGENT_COLOR),  # type: ignore[arg-type]
        new_color=(40, 90, 220),  # blue instead of red
    )


def _push_t_spec() -> PhysicsSpec:
    from envs import push_t

    margin = push_t.WALL + push_t.BLOCK_RADIUS

    def legal(state: np.ndarray) -> bool:
        bx, by = float(state[2]), float(state[3])
        inside = margin <= bx <= push_t.WORLD_SIZE - margin and margin <= by <= (
            push_t.WORLD_SIZE - margin
        )
        if not inside:
            return False
        clear = push_t.distance_to_block(
            np.asarray(state[:2], np.float64), state[2:5].astype(np.float64)
        )
        return bool(np.all(clear > push_t.PUSHER_RADIUS + 5.0))

    return PhysicsSpec(
        quantities={
            "pusher_x": 0,
            "pusher_y": 1,
            "block_x": 2,
            "block_y": 3,
            "block_angle": "angle:4",
        },
        teleport_columns=(2, 3),  # the block jumps
        min_jump=120.0,
        is_legal=legal,
        recolor_columns=(0, 1),  # the pusher changes colour
        recolor_radius=push_t.PUSHER_RADIUS,
        old_color=push_t.PUSHER_RGB,
        new_color=(220, 50, 40),
    )


_SPECS: dict[str, Callable[[], PhysicsSpec]] = {
    "lewm/TwoRoom-v0": _two_room_spec,
    "lewm/PushT-v0": _push_t_spec,
}


def physics_spec(env_id: str) -> PhysicsSpec:
    """The :class:`PhysicsSpec` of a registered env id (clear error for unknown ones)."""
    if env_id not in _SPECS:
        raise ValueError(
            f"no physics spec for env {env_id!r}; known: {sorted(_SPECS)} "
            "(add one to eval/physics.py: quantities, teleport and colour columns)"
        )
    return _SPECS[env_id]()


def make_env(env_id: str, image_size: int) -> Any:
    """The unwrapped env (no time limit or order checks: we replay recorded actions)."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers lewm/*)

    return gym.make(env_id, image_size=image_size, render_mode="rgb_array").unwrapped


def render_states(env: Any, states: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` frames of ``(N, S)`` states via ``env.render_state``."""
    return np.stack([env.render_state(s) for s in states])


def resimulate(env: Any, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """States ``(T+1, S)`` reached by replaying ``actions (T, A)`` from ``state``."""
    env.reset(seed=0, options={"state": np.asarray(state)})
    out = [np.asarray(state, dtype=np.float32)]
    for a in actions:
        _obs, _r, _term, _trunc, info = env.step(a)
        out.append(np.asarray(info["state"], dtype=np.float32))
    return np.stack(out)


# ---------------------------------------------------------------------------------------
# perturbations
# ---------------------------------------------------------------------------------------
@dataclass
class Perturbed:
    """An edited copy of an episode: the edit happens between frames ``step-1`` and ``step``."""

    kind: str
    step: int
    pixels: np.ndarray  # uint8 (T+1, H, W, 3)
    states: np.ndarray  # float32 (T+1, S)
    detail: dict[str, Any]


def teleport(
    env: Any,
    episode: Episode,
    step: int,
    spec: PhysicsSpec,
    rng: np.random.Generator,
    bounds: tuple[np.ndarray, np.ndarray],
    tries: int = 1000,
) -> Perturbed:
    """Jump the object to a far legal place at ``step``; replay the recorded actions from there.

    Args:
        bounds: ``(low, high)`` of the teleport columns (e.g. over the dataset), where
            candidates are drawn uniformly; the first legal one at least
            ``spec.min_jump`` away is used.
    """
    t_len = len(episode)
    if not 1 <= step <= t_len:
        raise ValueError(f"step must be in [1, {t_len}], got {step}")
    cols = list(spec.teleport_columns)
    here = episode.states[step, cols].astype(np.float64)
    lo, hi = (np.asarray(b, dtype=np.float64) for b in bounds)
    for _ in range(tries):
        cand = rng.uniform(lo, hi)
        if np.linalg.norm(cand - here) < spec.min_jump:
            continue
        state = episode.states[step].copy()
        state[cols] = cand
        state = state.astype(np.float32)
        if spec.is_legal(state):
            break
    else:
        raise RuntimeError(
            f"no legal position at least {spec.min_jump} away from {here.tolist()} in {tries} "
            "tries; lower PhysicsSpec.min_jump"
        )
    tail = resimulate(env, state, episode.actions[step:])  # (T+1-step, S)
    states = np.concatenate([episode.states[:step], tail]).astype(np.float32)
    pixels = np.concatenate([episode.pixels[:step], render_states(env, tail)])
    return Perturbed(
        "teleport",
        step,
        pixels,
        states,
        {
            "from": here.tolist(),
            "to": state[cols].tolist(),
            "jump": float(np.linalg.norm(state[cols] - here)),
        },
    )


def object_free_background(
    env: Any, state: np.ndarray, spec: PhysicsSpec, pool: np.ndarray
) -> np.ndarray:
    """The frame of ``state`` without the recoloured object: uint8 ``(H, W, 3)``.

    Renders ``state`` with the object moved to three places from ``pool`` (legal
    ``(x, y)`` positions, e.g. recorded ones) that are far from it and from each
    other; each pixel is covered by at most one of the three copies, so the per-pixel
    median is the scene behind the object.
    """
    cols = list(spec.recolor_columns)
    here = np.asarray(state[cols], dtype=np.float64)
    sep = 3.0 * spec.recolor_radius
    chosen: list[np.ndarray] = []
    for p in pool:
        if np.linalg.norm(p - here) > sep and all(np.linalg.norm(p - q) > sep for q in chosen):
            chosen.append(p)
            if len(chosen) == 3:
                break
    if len(chosen) < 3:
        raise RuntimeError("could not find 3 far-apart object positions for the background")
    frames = []
    for p in chosen:
        s = np.array(state, dtype=np.float32)
        s[cols] = p
        frames.append(env.render_state(s))
    return np.median(np.stack(frames), axis=0).astype(np.uint8)  # (H, W, 3)


def recolor(
    frame: np.ndarray,
    background: np.ndarray,
    old_color: Sequence[int],
    new_color: Sequence[int],
    tol: float = 12.0,
) -> np.ndarray:
    """Redraw the pixels of an object of ``old_color`` in ``new_color``, keeping anti-aliasing.

    Per pixel, ``frame = background + alpha * (old - background)`` is solved for the
    coverage ``alpha`` (least squares over RGB); pixels that are not on that segment
    (within ``tol``) or whose background is the object's colour are left alone.
    """
    f = frame.astype(np.float64)  # (H, W, 3)
    b = background.astype(np.float64)  # (H, W, 3)
    old = np.asarray(old_color, dtype=np.float64)
    new = np.asarray(new_color, dtype=np.float64)
    d = old - b  # (H, W, 3) direction background -> object colour
    den = (d * d).sum(-1)  # (H, W)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = np.clip(((f - b) * d).sum(-1) / den, 0.0, 1.0)  # (H, W)
    alpha = np.where(den > 100.0, alpha, 0.0)
    resid = np.linalg.norm(f - (b + alpha[..., None] * d), axis=-1)  # (H, W)
    alpha = np.where(resid <= tol, alpha, 0.0)
    out = np.where(alpha[..., None] > 0, b + alpha[..., None] * (new - b), f)  # (H, W, 3)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def colour_change(
    env: Any, episode: Episode, step: int, spec: PhysicsSpec, pool: np.ndarray
) -> Perturbed:
    """Frames from ``step`` on show the object in ``spec.new_color``; states are unchanged."""
    t_len = len(episode)
    if not 1 <= step <= t_len:
        raise ValueError(f"step must be in [1, {t_len}], got {step}")
    pixels = np.array(episode.pixels)  # (T+1, H, W, 3) a copy
    for t in range(step, t_len + 1):
        bg = object_free_background(env, episode.states[t], spec, pool)
        pixels[t] = recolor(pixels[t], bg, spec.old_color, spec.new_color)
    return Perturbed(
        "colour",
        step,
        pixels,
        np.array(episode.states),
        {"old": list(spec.old_color), "new": list(spec.new_color)},
    )


# ---------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------
@dataclass
class Loaded:
    """A checkpoint with what the physics tools need from it and its dataset."""

    model: Any
    config: dict[str, Any]
    normalizer: ActionNormalizer
    env_id: str
    train: Dataset
    test: Dataset


def load(checkpoint: str | os.PathLike[str], data: str | os.PathLike[str]) -> Loaded:
    """Load a checkpoint and split its dataset the way training did (held-out = last episodes)."""
    from lewm_agent.checkpoint import load_checkpoint

    model, config, stats = load_checkpoint(checkpoint)
    if "action_normalizer" not in stats:
        raise ValueError(f"{checkpoint}: stats.json has no action_normalizer; re-save the agent")
    normalizer = ActionNormalizer.from_dict(stats["action_normalizer"])
    dataset = load_dataset(data)
    if dataset.image_size != model.cfg.image_size:
        raise ValueError(
            f"dataset {data} has {dataset.image_size} px frames, the model takes "
            f"{model.cfg.image_size} px; use the dataset the model was trained on"
        )
    _, train, test = load_heldout(dataset, trained_holdout(config))
    env_id = (config.get("env") or {}).get("env_id") or dataset.meta["env_id"]
    return Loaded(model, config, normalizer, env_id, train, test)


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


# ---------------------------------------------------------------------------------------
# experiments
# ---------------------------------------------------------------------------------------
def run_probes(
    loaded: Loaded,
    out: str | os.PathLike[str],
    *,
    quantities: Mapping[str, int | str] | None = None,
    kinds: Sequence[str] = ("linear", "mlp"),
    max_train_frames: int | None = 20_000,
    mlp_steps: int = 500,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit probes on training episodes, score on held-out ones; write probe.json + probe_scatter.png."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = quantities or physics_spec(loaded.env_id).quantities
    t0 = time.perf_counter()
    results = probe_episodes(
        loaded.model,
        loaded.train.episodes,
        loaded.test.episodes,
        spec,
        kinds=kinds,
        max_train_frames=max_train_frames,
        mlp_steps=mlp_steps,
        seed=seed,
        progress=progress,
    )
    report = {
        "env_id": loaded.env_id,
        "quantities": dict(spec),
        "train_episodes": len(loaded.train),
        "test_episodes": len(loaded.test),
        "seconds": time.perf_counter() - t0,
        "probes": {k: r.to_dict() for k, r in results.items()},
    }
    (out / "probe.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_probes(results, out / "probe_scatter.png")
    return report


def _aligned(curve: np.ndarray, k: int, window: int) -> np.ndarray:
    """``curve[k-window : k+window+1]`` padded with NaN outside the episode."""
    out = np.full(2 * window + 1, np.nan)
    lo, hi = max(k - window, 0), min(k + window + 1, len(curve))
    out[lo - (k - window) : hi - (k - window)] = curve[lo:hi]
    return out


def surprise_experiment(
    model: WorldModelLike,
    normalizer: ActionNormalizer,
    env: Any,
    episodes: Sequence[Episode],
    spec: PhysicsSpec,
    *,
    kinds: Sequence[str] = PERTURBATIONS,
    seed: int = 0,
    window: int = 20,
    history: int | None = None,
    frameskip: int | None = None,
    progress: bool = False,
) -> tuple[dict[str, dict[str, Any]], dict[str, Perturbed]]:
    """Surprise of original vs perturbed episodes, with paired tests across episodes.

    Per episode a perturbation step ``k`` is drawn uniformly from
    ``[2*frameskip*history, T - 2*frameskip]`` (room for unperturbed context before and
    for the aftermath). Paired one-sided tests over episodes (one pair per episode):

    - ``test_vs_before`` (the headline): surprise at ``k`` vs the mean surprise of the
      unperturbed steps before ``k`` in the same episode;
    - ``test_vs_original``: surprise at ``k`` vs the ORIGINAL episode's surprise at
      ``k`` (same context, same step: a control for "step k was hard anyway");
    - ``test_vs_after``: surprise at ``k`` vs the mean surprise once the whole context
      is past the edit (``t >= k + frameskip*history``). It separates the EVENT from
      a lasting change of appearance: after a colour change every later frame is
      off-distribution, which raises surprise without anything impossible happening;
    - ``test_after_vs_original``: that aftermath vs the original's same steps.

    Returns (per-kind report dicts, the first episode's perturbations for pictures).
    """
    for kind in kinds:
        if kind not in PERTURBATIONS:
            raise ValueError(f"unknown perturbation {kind!r}; choose from {PERTURBATIONS}")
    h, fs = model_dims(model, history, frameskip)
    rng = np.random.default_rng(seed)
    all_states = np.concatenate([e.states for e in episodes])  # (N, S)
    tc = list(spec.teleport_columns)
    bounds = (all_states[:, tc].min(axis=0), all_states[:, tc].max(axis=0))
    pool = all_states[rng.permutation(len(all_states))[:2000]][:, list(spec.recolor_columns)]
    pool = pool.astype(np.float64)
    k_lo = 2 * fs * h
    per_kind: dict[str, dict[str, list[Any]]] = {
        k: {
            "at": [],
            "before": [],
            "orig_at": [],
            "after": [],
            "orig_after": [],
            "al_p": [],
            "al_o": [],
            "steps": [],
        }
        for k in kinds
    }
    examples: dict[str, dict[str, Any]] = {}
    first: dict[str, Perturbed] = {}
    used = 0
    for ep in tqdm(episodes, desc="surprise", unit="episode", disable=not progress):
        t_len = len(ep)
        k_hi = t_len - 2 * fs
        if k_hi < k_lo:
            continue  # too short for context before and aftermath after
        used += 1
        k = int(rng.integers(k_lo, k_hi + 1))
        z0 = encode_frames(model, ep.pixels)  # (T+1, D)
        s0 = surprise_curve(
            model, None, ep.actions, normalizer=normalizer, history=h, frameskip=fs, embeddings=z0
        )
        for kind in kinds:
            if kind == "teleport":
                p = teleport(env, ep, k, spec, rng, bounds)
            else:
                p = colour_change(env, ep, k, spec, pool)
            # Frames before k are untouched: reuse their embeddings, encode the rest.
            z1 = np.concatenate([z0[:k], encode_frames(model, p.pixels[k:])])  # (T+1, D)
            s1 = surprise_curve(
                model,
                None,
                ep.actions,
                normalizer=normalizer,
                history=h,
                frameskip=fs,
                embeddings=z1,
            )  # (T+1,) the recorded actions drive both versions
            acc = per_kind[kind]
            acc["at"].append(s1[k])
            acc["before"].append(np.nanmean(s1[fs:k]))
            acc["orig_at"].append(s0[k])
            after = slice(k + fs * h, t_len + 1)  # context entirely after the edit
            acc["after"].append(np.nanmean(s1[after]))
            acc["orig_after"].append(np.nanmean(s0[after]))
            acc["al_p"].append(_aligned(s1, k, window))
            acc["al_o"].append(_aligned(s0, k, window))
            acc["steps"].append(k)
            if kind not in examples:
                examples[kind] = {
                    "original": s0.tolist(),
                    "perturbed": s1.tolist(),
                    "step": k,
                    "episode": ep.name,
                    **p.detail,
                }
                first[kind] = p
    if used < 2:
        raise ValueError(f"need at least 2 episodes longer than {k_lo + 2 * fs} steps, got {used}")
    reports: dict[str, dict[str, Any]] = {}
    for kind, acc in per_kind.items():
        vs_before: PairedTest = paired_test(np.array(acc["at"]), np.array(acc["before"]), seed=seed)
        vs_orig: PairedTest = paired_test(np.array(acc["at"]), np.array(acc["orig_at"]), seed=seed)
        after: PairedTest = paired_test(
            np.array(acc["after"]), np.array(acc["orig_after"]), seed=seed
        )
        vs_after: PairedTest = paired_test(np.array(acc["at"]), np.array(acc["after"]), seed=seed)
        reports[kind] = {
            "episodes": used,
            "test_vs_before": vs_before.to_dict(),
            "test_vs_original": vs_orig.to_dict(),
            "test_after_vs_original": after.to_dict(),
            "test_vs_after": vs_after.to_dict(),
            "example": examples[kind],
            "aligned_perturbed": np.array(acc["al_p"]).tolist(),
            "aligned_original": np.array(acc["al_o"]).tolist(),
            "steps": acc["steps"],
        }
    return reports, first


def run_surprise(
    loaded: Loaded,
    out: str | os.PathLike[str],
    *,
    episodes: int = 100,
    kinds: Sequence[str] = PERTURBATIONS,
    new_color: tuple[int, int, int] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Surprise experiment on held-out episodes; writes surprise.json and PNGs.

    ``new_color`` overrides the env spec's colour for the colour change.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = physics_spec(loaded.env_id)
    if new_color is not None:
        spec = dataclasses.replace(spec, new_color=tuple(int(c) for c in new_color))
    env = make_env(loaded.env_id, loaded.model.cfg.image_size)
    eps = loaded.test.episodes[:episodes]
    t0 = time.perf_counter()
    reports, first = surprise_experiment(
        loaded.model, loaded.normalizer, env, eps, spec, kinds=kinds, seed=seed, progress=progress
    )
    plot_surprise(reports, out / "surprise.png")
    ex_name = next(iter(reports.values()))["example"]["episode"]
    ex = next(e for e in eps if e.name == ex_name)
    plot_perturbation_frames(ex.pixels, first, out / "perturbation_frames.png")
    summary = {
        "env_id": loaded.env_id,
        "seconds": time.perf_counter() - t0,
        "history": loaded.model.cfg.history,
        "frameskip": loaded.model.cfg.frameskip,
        "colours": {"old": list(spec.old_color), "new": list(spec.new_color)},
        "perturbations": {
            k: {key: v for key, v in r.items() if not key.startswith("aligned")}
            for k, r in reports.items()
        },
    }
    (out / "surprise.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run_straightness(
    checkpoints: Sequence[str | os.PathLike[str]],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    episodes: int = 100,
    include_init: bool = False,
    stride: int | None = None,
    holdout_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Straightness of each checkpoint (and optionally its untrained init) on held-out episodes.

    ``checkpoints`` may be checkpoint folders, training snapshots
    (``OUT/train_state/step-N``) or run folders (see ``lewm_agent.probe.load_model``),
    in the order to plot them. Returns (and writes to straightness.json)
    ``{"checkpoints": rows, "state_path": x, ...}`` where ``state_path`` is the
    straightness of the true state quantities along the same frames.
    """
    import torch

    from lewm_agent.model import LeWM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not checkpoints:
        raise ValueError("give at least one checkpoint folder")
    loaded = [(Path(c).name, *load_model(c)) for c in checkpoints]
    cfg = loaded[0][1].cfg
    dataset = load_dataset(data)
    if dataset.image_size != cfg.image_size:
        raise ValueError(
            f"dataset {data} has {dataset.image_size} px frames, the model takes "
            f"{cfg.image_size} px; use the dataset the model was trained on"
        )
    test = load_heldout(dataset, holdout_fraction).heldout
    items: list[Any] = []
    if include_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            items.append(("init", LeWM(cfg).eval()))
    for name, model, steps in loaded:
        items.append((name + (f" @{steps}" if steps is not None else ""), model))
    eps = test.episodes[:episodes]
    rows = straightness_over_checkpoints(items, eps, stride=stride, progress=progress)
    for row, (_n, _m, steps) in zip(rows[1:] if include_init else rows, loaded, strict=True):
        row["steps"] = steps
    if include_init:
        rows[0]["steps"] = 0
    # Reference: the same measure on the probed state quantities themselves (the
    # physical path's own straightness at the same stride).
    s = stride if stride is not None else cfg.frameskip
    env_id = dataset.meta["env_id"]
    quantities = physics_spec(env_id).quantities
    paths = [state_targets(e.states[::s], quantities)[1] for e in eps]  # each (T/s, Q)
    report = {
        "env_id": env_id,
        "episodes": len(eps),
        "stride": s,
        "state_path": straightness(paths),
        "checkpoints": rows,
    }
    (out / "straightness.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_straightness(rows, out / "straightness.png", state_path=report["state_path"])
    return report


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------
def _parse_colour(text: str) -> tuple[int, int, int]:
    parts = [int(v) for v in text.split(",")]
    if len(parts) != 3 or not all(0 <= v <= 255 for v in parts):
        raise ValueError(f"--colour must be R,G,B with values in 0..255, got {text!r}")
    return parts[0], parts[1], parts[2]


def _default_out(checkpoint: str) -> Path:
    return Path("outputs") / "physics" / Path(checkpoint).name


def main(argv: Sequence[str] | None = None, prog: str = "python -m eval.physics") -> int:
    """``python -m eval.physics state|surprise|straightness CHECKPOINT... --data DIR``.

    ``state`` was called ``probe`` (still accepted).
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Probes, surprise and temporal straightness of a trained LeWM checkpoint.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", required=True, help="the dataset folder the model was trained on")
        p.add_argument("--out", default=None, help="report folder (default outputs/physics/<run>)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")

    p = sub.add_parser(
        "state",
        aliases=["probe"],
        help="linear / MLP probes of state quantities (positions, angles) from the embedding",
        description="Fit linear / MLP probes from the embeddings of training frames to "
        "state quantities (positions, angles) and score them on held-out frames. "
        "(Called `probe` before; that name still works.)",
    )
    p.add_argument("checkpoint")
    common(p)
    p.add_argument(
        "--quantities",
        default=None,
        help='e.g. "agent_x=0,agent_y=1" or "block_angle=angle:4" (default: the env\'s spec)',
    )
    p.add_argument("--kinds", default="linear,mlp")
    p.add_argument("--max-train-frames", type=int, default=20_000)
    p.add_argument("--mlp-steps", type=int, default=500, help="optimiser steps of the MLP probe")

    p = sub.add_parser("surprise", help="surprise of teleport / colour-change perturbations")
    p.add_argument("checkpoint")
    common(p)
    p.add_argument("--episodes", type=int, default=100, help="held-out episodes to perturb")
    p.add_argument("--perturb", default="teleport,colour")
    p.add_argument(
        "--colour", default=None, help="new object colour R,G,B (default: the env spec's)"
    )

    p = sub.add_parser("straightness", help="latent straightness over checkpoints")
    p.add_argument("checkpoints", nargs="+")
    common(p)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--init", action="store_true", help="also measure the untrained model")
    p.add_argument(
        "--stride", type=int, default=None, help="env steps between frames (default frameskip)"
    )

    args = parser.parse_args(argv)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    if args.command == "straightness":
        out = Path(args.out) if args.out else _default_out(args.checkpoints[-1])
        report = run_straightness(
            args.checkpoints,
            args.data,
            out,
            episodes=args.episodes,
            include_init=args.init,
            stride=args.stride,
            seed=args.seed,
        )
        print(f"{'true state path':>24}  straightness {report['state_path']:.4f}")
        for r in report["checkpoints"]:
            print(
                f"{r['label']:>24}  straightness {r['straightness']:.4f} (std {r['std']:.3f}, {r['pairs']} pairs)"
            )
        print(f"wrote {out / 'straightness.json'} and {out / 'straightness.png'}")
        return 0

    out = Path(args.out) if args.out else _default_out(args.checkpoint)
    loaded = load(args.checkpoint, args.data)
    if args.command in ("state", "probe"):
        quantities = parse_quantity_spec(args.quantities) if args.quantities else None
        rep = run_probes(
            loaded,
            out,
            quantities=quantities,
            kinds=[k.strip() for k in args.kinds.split(",") if k.strip()],
            max_train_frames=args.max_train_frames,
            mlp_steps=args.mlp_steps,
            seed=args.seed,
        )
        for kind, r in rep["probes"].items():
            cells = "  ".join(f"{n}: r={r['r'][n]:.4f} mse={r['mse'][n]:.3g}" for n in r["names"])
            print(f"{kind:>7} probe  {cells}")
        print(f"wrote {out / 'probe.json'} and {out / 'probe_scatter.png'}")
        return 0
    rep = run_surprise(
        loaded,
        out,
        episodes=args.episodes,
        kinds=[k.strip() for k in args.perturb.split(",") if k.strip()],
        new_color=_parse_colour(args.colour) if args.colour else None,
        seed=args.seed,
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
