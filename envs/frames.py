"""Frame and state helpers shared by the wrappers: image resize, an env's simulator state."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import gymnasium as gym
import numpy as np

_IMAGE_KEYS = ("pixels", "goal")


# ---------------------------------------------------------------------------------------
# helpers: image resize, simulator state of an arbitrary env
# ---------------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _resize_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse weights resampling one image axis from ``n_in`` to ``n_out`` pixels.

    Returns ``(index, weight)``, both ``(n_out, K)``: output pixel ``i`` is
    ``sum_k weight[i, k] * input[index[i, k]]``. Downscaling is an exact area
    average (each output pixel is the mean of the input area it covers, fractional
    pixels weighted by overlap), so thin features such as a Reacher arm keep their
    mass instead of aliasing away as with point sampling. Upscaling is bilinear with
    pixel centres at ``i + 0.5`` and clamped edges (``align_corners=False``).

    Taps rather than a dense matmul: a few gathers and multiply-adds, no BLAS call,
    whose thread pool behaves badly on a busy 2-core machine (a 480 -> 64 px dense
    resize measured 40 ms there, the taps 10 ms, and most envs can render small).
    """
    w = np.zeros((n_out, n_in), dtype=np.float64)  # dense first: simple and exact
    if n_out <= n_in:  # area average
        scale = n_in / n_out
        for i in range(n_out):
            lo, hi = i * scale, (i + 1) * scale
            for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), n_in)):
                w[i, j] = min(hi, j + 1) - max(lo, j)
        w /= scale
    else:  # bilinear
        x = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
        j0 = np.floor(x).astype(int)
        j1 = np.minimum(j0 + 1, n_in - 1)
        w[np.arange(n_out), j0] += 1.0 - (x - j0)
        w[np.arange(n_out), j1] += x - j0
    k = int((w > 0).sum(axis=1).max())
    index = np.zeros((n_out, k), dtype=np.intp)
    weight = np.zeros((n_out, k), dtype=np.float32)
    for i in range(n_out):
        nz = np.flatnonzero(w[i])
        index[i, : nz.size] = nz
        weight[i, : nz.size] = w[i, nz]
    return index, weight


def resize_image(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a uint8 ``(H, W, 3)`` image to ``(size, size, 3)`` (or ``(h, w, 3)``).

    Separable area average when shrinking, bilinear when enlarging (numpy only: no
    OpenCV or PIL dependency). An integer-factor shrink is exactly the block mean
    (rounded). The input is returned unchanged (copied) when it already has the size.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        desc = f"{img.dtype} {img.shape}"
        raise ValueError(f"resize_image needs a uint8 (H, W, 3) image, got {desc}")
    h_out, w_out = (size, size) if isinstance(size, (int, np.integer)) else size
    if h_out < 1 or w_out < 1:
        raise ValueError(f"size must be positive, got {size}")
    h, w = img.shape[:2]
    h_out, w_out = int(h_out), int(w_out)
    if (h, w) == (h_out, w_out):
        return img.copy()
    if h % h_out == 0 and w % w_out == 0:  # integer shrink: block mean in integers
        fy, fx = h // h_out, w // w_out
        acc = np.zeros((h_out, w_out, 3), dtype=np.uint32)
        for dy in range(fy):  # fy * fx strided adds: no float, no big temporaries
            for dx in range(fx):
                acc += img[dy::fy, dx::fx]
        n = fy * fx
        return ((acc + n // 2) // n).astype(np.uint8)  # rounded mean, (h_out, w_out, 3)
    iy, wy = _resize_taps(h, h_out)  # (h_out, Ky)
    ix, wx = _resize_taps(w, w_out)  # (w_out, Kx)
    rows = np.zeros((h_out, w, 3), dtype=np.float32)
    for k in range(iy.shape[1]):  # one gathered row set per tap (uint8 * f32 -> f32)
        rows += wy[:, k, None, None] * img[iy[:, k]]  # (h_out, W, 3)
    out = np.zeros((h_out, w_out, 3), dtype=np.float32)
    for k in range(ix.shape[1]):
        out += wx[None, :, k, None] * rows[:, ix[:, k]]  # (h_out, w_out, 3)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def simulator_state(env: gym.Env, info: dict[str, Any], observation: Any = None) -> np.ndarray:
    """The float32 1-D state vector recorded for a step, from the best source available.

    In order: ``info["state"]`` (the lewm env contract: the full simulator state);
    for MuJoCo envs (``env.unwrapped.data`` has ``qpos`` and ``qvel``) the
    concatenation ``[qpos, qvel]`` (restorable with ``env.unwrapped.set_state``, up to
    float32 rounding); else the flattened non-image part of ``observation`` (arrays
    other than the ``pixels`` / ``goal`` images), which for most envs is the
    proprioceptive state. The dataset only uses states for probes and for the
    evaluation protocol's goals, never for training, so an approximate state is fine.

    Raises:
        KeyError: no source applies (e.g. a pure-pixel env without ``info["state"]``).
    """
    if "state" in info:
        return np.asarray(info["state"], dtype=np.float32).reshape(-1).copy()  # (S,)
    data = getattr(env.unwrapped, "data", None)
    if data is not None and hasattr(data, "qpos") and hasattr(data, "qvel"):
        qpos = np.asarray(data.qpos, dtype=np.float32).reshape(-1)
        qvel = np.asarray(data.qvel, dtype=np.float32).reshape(-1)
        return np.concatenate([qpos, qvel])  # (nq + nv,)
    if observation is not None:
        if isinstance(observation, dict):
            parts = [
                np.asarray(v, dtype=np.float32).reshape(-1)
                for k, v in sorted(observation.items())
                if k not in _IMAGE_KEYS and np.asarray(v).dtype != np.uint8
            ]
        elif np.asarray(observation).dtype != np.uint8:
            parts = [np.asarray(observation, dtype=np.float32).reshape(-1)]
        else:
            parts = []
        if parts:
            return np.concatenate(parts)  # (S,)
    raise KeyError(
        "no simulator state to record: the env gives no info['state'], is not a MuJoCo env "
        "(env.unwrapped.data.qpos/qvel) and has no non-image observation; add "
        "info['state'] in a wrapper"
    )


def warn_unless_state_restores(
    env: gym.Env,
    second: Callable[[], gym.Env],
    state: Any,
    frame: np.ndarray,
    frame_of: Callable[[gym.Env, Any], np.ndarray],
    *,
    state_option: str = "state",
    source: str = "state_fn",
    who: str = "RecordEpisodes",
) -> bool | None:
    """Check one state round trip; warn (and return False) if the frame is not restored.

    ``second()`` gives another instance of the env; it is reset with
    ``options={state_option: state}`` and its frame (``frame_of(env, obs)``) compared
    with ``frame``, the frame the state was recorded with. Returns True when restored,
    False when not, None when it could not be checked (a warning says why).
    """
    name = getattr(env.spec, "id", None) or type(env.unwrapped).__name__
    what = (
        "state_fn(env)"
        if source == "state_fn"
        else f"the flattened non-image observation ({np.size(state)} numbers; the env gives "
        "no info['state'])"
    )
    fix = (
        "pass state_fn=... returning the full simulator state (and state_option=... naming "
        "the reset option that restores it)"
    )
    option = f"reset(options={{{state_option!r}: state}})"
    try:
        other = second()
        obs, _ = other.reset(options={state_option: state})
        again = frame_of(other, obs)
    except Exception as e:  # the env takes no state at reset, or cannot be made twice
        warnings.warn(
            f"{who} on {name}: cannot check that the recorded state ({what}) restores the "
            f"frame: {option} failed ({e!r}). The evaluation protocol restarts episodes from "
            f"recorded states: {fix}, or evaluate on episodes sampled from the env "
            "(lewm eval --episodes-from env)",
            UserWarning,
            stacklevel=4,
        )
        return None
    if again.shape != frame.shape:
        again = resize_image(again, frame.shape[:2])
    differ = float(np.mean(np.abs(again.astype(np.int16) - frame).max(axis=-1) > 16))
    if differ > 0.002:  # a few pixels of tolerance for renderers' rounding
        warnings.warn(
            f"{who} on {name}: the recorded state ({what}) does not restore the frame: "
            f"{option} shows a different frame ({100 * differ:.1f}% of pixels differ), so the "
            f"recorded states miss part of the scene and the evaluation protocol cannot "
            f"restart episodes from them: {fix}",
            UserWarning,
            stacklevel=4,
        )
        return False
    return True


GoalFn = Callable[[gym.Env], np.ndarray]
"""``goal_fn(env) -> uint8 (H, W, 3)`` goal image, called after each reset."""
GoalStateFn = Callable[[gym.Env, gym.Env], None]
"""``goal_state_fn(goal_env, env)`` puts ``goal_env`` (a private second instance) in
the goal state; ``env`` is the live env, just reset, to read the episode's target from."""
StateFn = Callable[[gym.Env], Any]
"""``state_fn(env) -> 1-D array``: the full state of the env, recorded as ``info["state"]``."""
