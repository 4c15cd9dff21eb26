"""Perturbed episodes re-rendered from edited states: a teleport and a colour change.

See `eval.probe` for how the colour change recovers the background exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eval.probe.spec import PhysicsSpec, render_states, resimulate
from lewm_agent.data import Episode


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
