"""Wrappers: reward-free episode recording, and pixels + goal image for any env.

- :class:`RecordEpisodes` records finished episodes into the lewm dataset format.
- :class:`PixelGoal` turns any Gymnasium env with ``render_mode="rgb_array"`` into
  the ``{"pixels", "goal"}`` observation that :class:`lewm_agent.WorldModelAgent`
  plans on, so the agent works on envs this package did not write.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from lewm_agent.data import EpisodeWriter

__all__ = [
    "PixelGoal",
    "RecordEpisodes",
    "resize_image",
    "simulator_state",
    "warn_unless_state_restores",
]

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


_UINT8 = np.dtype(np.uint8)
_FIRST_BUFFER_FRAMES = 128  # episode buffer rows when the env has no time limit (it doubles)
_FIRST_BUFFER_BYTES = 64 << 20  # cap on the first pixel buffer (a huge time limit)


class _EpisodeBuffer:
    """Preallocated arrays one episode is recorded into: row ``t`` holds step ``t``.

    ``pixels`` uint8 ``(cap, H, W, 3)``, ``states`` float32 ``(cap, S)``, ``actions``
    float32 ``(cap, *action_shape)`` (``actions[t]`` is applied to state ``t``, so its
    last row stays unused). :meth:`grow` doubles ``cap`` and keeps the recorded rows.
    """

    __slots__ = ("actions", "pixels", "states")

    def __init__(
        self, cap: int, frame_shape: tuple[int, ...], action_shape: tuple[int, ...], state_dim: int
    ) -> None:
        self.pixels = np.empty((cap, *frame_shape), np.uint8)
        self.actions = np.empty((cap, *action_shape), np.float32)
        self.states = np.empty((cap, state_dim), np.float32)

    def fits(
        self, frame_shape: tuple[int, ...], action_shape: tuple[int, ...], state_dim: int
    ) -> bool:
        return (
            self.pixels.shape[1:] == frame_shape
            and self.actions.shape[1:] == action_shape
            and self.states.shape[1] == state_dim
        )

    def grow(self) -> None:
        for name in self.__slots__:
            old = getattr(self, name)
            new = np.empty((2 * len(old), *old.shape[1:]), old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)


class RecordEpisodes(gym.Wrapper):
    """Record finished episodes (frames, actions, simulator states) into a dataset folder.

    Per step it keeps the frame (``obs["pixels"]`` when the observation is a dict
    with pixels, as from the lewm envs or :class:`PixelGoal`, else ``env.render()``,
    which must be uint8 ``(H, W, 3)``), the action actually applied (clipped to the
    action space's bounds) and the state from :func:`simulator_state`:
    ``info["state"]`` when the env provides it, else ``[qpos, qvel]`` for MuJoCo
    envs, else the flattened non-image observation. No rewards are stored: the world
    model is trained reward-free.

    An episode is written (via :class:`lewm_agent.data.EpisodeWriter`, crash-safely)
    only when it ends with ``terminated`` or ``truncated``; an unfinished episode at
    ``reset()`` or ``close()`` is dropped, so the dataset never holds a partial
    trajectory. After ``max_episodes`` episodes it stops recording but still works as
    a plain pass-through wrapper. The writer is created lazily on the first write, in
    the process that steps the env, so this wrapper works inside ``AsyncVectorEnv``
    workers (give each worker its own ``prefix``).

    Each step is copied straight into preallocated episode arrays (sized from the
    env's ``max_episode_steps`` when it has one, doubled when an episode outgrows
    them); the writer gets views of the recorded rows, and the next episode records
    into a second set of arrays, so a write in flight never sees its frames
    overwritten. That bookkeeping costs ~5 us per step (~0.5-0.7 ms of CPU per
    100-step 64 px Two-Room episode, was ~1.8 ms with a copy per frame plus
    ``np.stack``). Writing the episode costs more: ~3.5-4 ms of CPU on the writer's
    thread (zlib level 1 ~1.5-2 ms, one CRC pass, two ``fsync`` calls) and, on a
    busy machine, as much again indirectly, against only ~10 ms for the Two-Room env
    and its scripted policy (Push-T and Reacher: < 15% in total); see
    ``python -m eval.bench recorder`` and ``outputs/collection/README.md``.

    Writing happens on one background thread (``background=True``) while the env
    keeps stepping: a write is mostly waiting on two ``fsync`` calls (episode file,
    folder) plus zlib level 1, both of which release the GIL; ``meta.json``'s index
    is merged at most once a second (see :class:`~lewm_agent.data.EpisodeWriter`).
    That hides the write's wall time from the stepping loop, not its CPU: with no
    idle core (2 shared cores here) ``background=False`` measured 1-4 ms less
    process CPU per Two-Room episode. At most one write is in flight (the next
    finished episode waits for it), so memory stays bounded, a write error is
    re-raised at the next ``step`` / ``reset`` / ``close``, and a crash loses at
    most the episode in flight and the one being written (never visible
    half-written). ``close()`` (or :meth:`flush`) waits for the pending write and
    then brings ``meta.json``'s index up to date, and so does the write that fills
    the ``max_episodes`` quota.

    Args:
        env: a Gymnasium env with a ``Box`` action space (see above for the state).
        path: dataset folder (created or appended to).
        collector: description of the data policy, stored in ``meta.json``.
        frameskip: training hint stored in ``meta.json``.
        prefix: episode file name prefix (unique per concurrent writer).
        max_episodes: stop recording after this many written episodes (None: never).
        compress: compressed ``.npz`` (default) or uncompressed (memory-mappable).
        background: write episodes on a background thread (default) or inline.
        state_fn: ``state_fn(env) -> 1-D array``, the state to record instead of
            :func:`simulator_state`'s. A state from ``state_fn`` or from the flattened
            observation is checked once, at the first reset: a second instance of the
            env (``gym.make(env.spec)``) reset with ``options={state_option: state}``
            must show the same frame, else a warning says so.
        state_option: the reset option under which the env takes a state.
        env_build: how the env was built (:meth:`envs.build.EnvBuild.to_dict`), stored
            in ``meta.json`` as ``"env_build"`` so other commands can rebuild the env.
    """

    def __init__(
        self,
        env: gym.Env,
        path: str | os.PathLike[str],
        *,
        collector: str = "unknown",
        frameskip: int = 5,
        prefix: str = "",
        max_episodes: int | None = None,
        compress: bool = True,
        background: bool = True,
        state_fn: StateFn | None = None,
        state_option: str = "state",
        env_build: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(env)
        if not isinstance(env.action_space, gym.spaces.Box):
            raise TypeError(f"RecordEpisodes needs a Box action space, got {env.action_space}")
        if max_episodes is not None and max_episodes < 0:
            raise ValueError(f"max_episodes must be >= 0 or None, got {max_episodes}")
        self.path = os.fspath(path)
        self.collector = collector
        self.frameskip = frameskip
        self.prefix = prefix
        self.max_episodes = max_episodes
        self.compress = compress
        self.background = background
        self.state_fn = state_fn
        self.state_option = state_option
        self.env_build = env_build
        self._state_checked = False
        self.episodes_written = 0
        """Finished episodes handed to the writer (the last may still be in flight)."""
        self._writer: EpisodeWriter | None = None
        self._executor: ThreadPoolExecutor | None = None  # one thread, made on first write
        self._pending: Future[Any] | None = None  # the write in flight
        # Two sets of episode arrays: [0] records the next episode, [1] was handed to
        # the last write (free again once _wait() returned).
        self._buffers: list[_EpisodeBuffer | None] = [None, None]
        self._buf: _EpisodeBuffer | None = None  # None: not recording this episode
        self._t = 0  # actions recorded in this episode (rows 0.._t of pixels/states)
        self._frame_shape: tuple[int, ...] | None = None  # of this episode's frames
        self._state_shape: tuple[int, ...] = ()  # (S,) of this episode's states
        self._low = self._high = np.zeros(0, np.float32)  # this episode's action bounds

    @property
    def recording(self) -> bool:
        """Whether more episodes will be written (the quota is not reached yet)."""
        return self.max_episodes is None or self.episodes_written < self.max_episodes

    # ---- gymnasium API -------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        self._check_pending()
        obs, info = self.env.reset(seed=seed, options=options)
        self._drop()  # an unfinished episode is never written
        if self.recording:
            self._start(obs, info)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        pending = self._pending
        if pending is not None and pending.done():
            self._wait()  # re-raises a failed background write
        obs, reward, terminated, truncated, info = self.env.step(action)
        buf = self._buf
        if buf is not None:
            t = self._t
            if t + 1 == len(buf.pixels):
                buf.grow()
            # The action as float32 (broadcast like np.clip would); the clip to the
            # bounds happens once per episode, in _write.
            buf.actions[t] = action
            buf.pixels[t + 1] = self._frame(obs)
            state = info.get("state") if isinstance(info, dict) and self.state_fn is None else None
            if type(state) is np.ndarray and state.shape == self._state_shape:
                buf.states[t + 1] = state  # fast path: the lewm env contract
            else:
                buf.states[t + 1] = self._state(info, obs)
            self._t = t + 1
            if terminated or truncated:
                self._write(bool(terminated), bool(truncated))
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self._drop()
        try:
            self.flush()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
            self._buffers = [None, None]
            super().close()

    def flush(self) -> None:
        """Wait until every finished episode is on disk and in ``meta.json``'s index.

        Re-raises a failed write; the index is updated even then (the episodes written
        before the failure are complete).
        """
        try:
            self._wait()
        finally:
            if self._writer is not None:
                self._writer.flush()

    # ---- internals -----------------------------------------------------------------------
    def _wait(self) -> None:
        """Wait for the write in flight (re-raises its error); the index may still lag."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _check_pending(self) -> None:
        """Surface a failed background write without waiting for a running one."""
        if self._pending is not None and self._pending.done():
            self._wait()

    def _drop(self) -> None:
        self._buf, self._t = None, 0

    def _start(self, obs: Any, info: dict[str, Any]) -> None:
        """Begin recording an episode at its first observation."""
        space = self.env.action_space
        frame = self._frame(obs, first=True)
        state = self._raw_state(info, obs)  # (S,)
        if not self._state_checked:
            self._state_checked = True  # once per wrapper: it costs a second env instance
            self._check_state(state, frame, info)
        self._state_shape = state.shape
        self._low = np.asarray(space.low, dtype=np.float32)
        self._high = np.asarray(space.high, dtype=np.float32)
        buf = self._buffers[0]
        if buf is None or not buf.fits(frame.shape, space.shape, state.shape[0]):
            spec = self.env.spec
            steps = getattr(spec, "max_episode_steps", None)
            cap = steps + 1 if isinstance(steps, int) and steps > 0 else _FIRST_BUFFER_FRAMES
            cap = max(2, min(cap, _FIRST_BUFFER_BYTES // max(1, frame.nbytes)))
            buf = _EpisodeBuffer(cap, frame.shape, space.shape, state.shape[0])
            self._buffers[0] = buf
        buf.pixels[0] = frame
        buf.states[0] = state
        self._buf, self._t = buf, 0

    def _frame(self, obs: Any, first: bool = False) -> np.ndarray:
        """This step's frame, checked (not copied: the caller copies it into the buffer)."""
        if isinstance(obs, dict) and "pixels" in obs:
            frame = np.asarray(obs["pixels"])
        else:
            frame = self.env.render()
        if type(frame) is np.ndarray and frame.dtype is _UINT8 and frame.shape == self._frame_shape:
            return frame  # (H, W, 3), same as this episode's first frame
        if not (
            isinstance(frame, np.ndarray)
            and frame.dtype == np.uint8
            and frame.ndim == 3
            and frame.shape[2] == 3
        ):
            desc = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else repr(frame)
            raise TypeError(
                "RecordEpisodes needs uint8 (H, W, 3) frames from obs['pixels'] or "
                f"env.render() (render_mode='rgb_array'), got {desc}"
            )
        if first:
            self._frame_shape = frame.shape
        elif frame.shape != self._frame_shape:
            raise ValueError(
                f"frame shape changed within an episode: {frame.shape}, the episode's first "
                f"frame was {self._frame_shape}"
            )
        return frame

    def _raw_state(self, info: dict[str, Any], obs: Any) -> np.ndarray:
        if self.state_fn is not None:
            return np.asarray(self.state_fn(self.env), dtype=np.float32).reshape(-1).copy()
        return simulator_state(self.env, info, obs)

    def _check_state(self, state: np.ndarray, frame: np.ndarray, info: dict[str, Any]) -> None:
        """Round-trip check of a state this wrapper made up (see ``state_fn``)."""
        if self.state_fn is not None:
            source = "state_fn"
        elif "state" in info:
            return  # the env's own full state (the lewm env contract)
        elif hasattr(getattr(self.env.unwrapped, "data", None), "qpos"):
            return  # MuJoCo [qpos, qvel]: restorable with set_state by construction
        else:
            source = "observation"
        spec = self.env.spec
        second: list[gym.Env] = []

        def make_second() -> gym.Env:
            if spec is None:
                raise RuntimeError("the env has no spec to make a second instance from")
            second.append(gym.make(spec))
            return second[0]

        def frame_of(env: gym.Env, obs: Any) -> np.ndarray:
            if isinstance(obs, dict) and "pixels" in obs:
                return np.asarray(obs["pixels"])
            return env.render()

        try:
            warn_unless_state_restores(
                self.env,
                make_second,
                state,
                frame,
                frame_of,
                state_option=self.state_option,
                source=source,
            )
        finally:
            for env in second:
                env.close()

    def _state(self, info: dict[str, Any], obs: Any) -> np.ndarray:
        """This step's state (``state_fn`` or :func:`simulator_state`), checked against the episode's."""
        state = self._raw_state(info, obs)
        if state.shape != self._state_shape:
            raise ValueError(
                f"state shape changed within an episode: {state.shape}, the episode's first "
                f"state was {self._state_shape}"
            )
        return state

    def _write(self, terminated: bool, truncated: bool) -> None:
        buf, t = self._buf, self._t
        assert buf is not None
        self._drop()
        # Views of the recorded rows (no copy); the applied action is the clipped one.
        pixels = buf.pixels[: t + 1]  # (T+1, H, W, 3)
        actions = np.clip(buf.actions[:t], self._low, self._high, out=buf.actions[:t])  # (T, A)
        states = buf.states[: t + 1]  # (T+1, S)
        if self._writer is None:
            space = self.env.action_space
            spec = self.env.spec
            self._writer = EpisodeWriter(
                self.path,
                env_id=spec.id if spec is not None else type(self.env.unwrapped).__name__,
                image_size=int(pixels.shape[1]),
                action_low=space.low,
                action_high=space.high,
                state_dim=int(states.shape[1]),
                collector=self.collector,
                frameskip=self.frameskip,
                prefix=self.prefix,
                compress=self.compress,
                env_build=self.env_build,
            )
        self._wait()  # at most one write in flight: the other buffer set is free now
        if self.background:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="RecordEpisodes")
            self._pending = self._executor.submit(
                self._writer.write, pixels, actions, states, terminated, truncated
            )
        else:
            self._writer.write(pixels, actions, states, terminated, truncated)
        # The next episode records into the other set; this one belongs to the write
        # until the next _write's _wait().
        self._buffers = [self._buffers[1], buf]
        self.episodes_written += 1
        if not self.recording:
            self.flush()  # the quota's last episode: on disk when the count says so
            self._buffers = [None, None]  # no more episodes: free the arrays


# ---------------------------------------------------------------------------------------
# PixelGoal: any env -> {"pixels", "goal"}
# ---------------------------------------------------------------------------------------
_MJ_CAMERA_FIELDS = ("type", "fixedcamid", "trackbodyid", "distance", "azimuth", "elevation")


def _match_mujoco_camera(src: gym.Env, dst: gym.Env) -> None:
    """Give ``dst``'s offscreen MuJoCo camera the pose of ``src``'s (no-op for other envs).

    Gymnasium's MuJoCo renderer aims its free camera at the median geom position *at
    the first render*, so two instances of one env that first render in different
    states look at different points (Reacher-v5: a visible shift of the whole scene). Copying the
    live env's camera makes the goal image exactly the live frame at the goal state.
    """
    try:
        cam_src = src.unwrapped.mujoco_renderer._get_viewer("rgb_array").cam  # type: ignore[attr-defined]
        cam_dst = dst.unwrapped.mujoco_renderer._get_viewer("rgb_array").cam  # type: ignore[attr-defined]
    except Exception:  # not a gymnasium MuJoCo env, or another renderer version
        return
    for name in _MJ_CAMERA_FIELDS:
        setattr(cam_dst, name, getattr(cam_src, name))
    cam_dst.lookat[:] = cam_src.lookat


GoalFn = Callable[[gym.Env], np.ndarray]
"""``goal_fn(env) -> uint8 (H, W, 3)`` goal image, called after each reset."""
GoalStateFn = Callable[[gym.Env, gym.Env], None]
"""``goal_state_fn(goal_env, env)`` puts ``goal_env`` (a private second instance) in
the goal state; ``env`` is the live env, just reset, to read the episode's target from."""
StateFn = Callable[[gym.Env], Any]
"""``state_fn(env) -> 1-D array``: the full state of the env, recorded as ``info["state"]``."""


class PixelGoal(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Any Gymnasium env -> observations ``{"pixels", "goal"}``, uint8 ``(S, S, 3)`` each.

    The world-model agent sees only images: the current frame and a goal image. This
    wrapper makes both from an env's own renderer, so the agent works on envs that
    have no notion of a goal image (gymnasium's ``Reacher-v5``, any MuJoCo or classic
    control env). ``pixels`` is ``env.render()`` resized to ``image_size`` (area
    average when shrinking; see :func:`resize_image`). Render small for speed, and
    for gymnasium's MuJoCo envs give a fixed camera: their default free camera aims
    at the median geom position of the *first* rendered state, so recording and
    evaluation processes would see slightly different views. For example
    ``gym.make("Reacher-v5", render_mode="rgb_array", width=128, height=128,
    default_camera_config={"trackbodyid": -1, "lookat": np.zeros(3),
    "distance": 0.5, "elevation": -90.0})`` (top-down).

    The goal image comes from, per episode (checked at every ``reset``, in order):

    1. ``goal_fn(env)``: any image, e.g. a stored photo of the solved task or a
       rendering your code makes.
    2. ``goal_state_fn(goal_env, env)``: the wrapper keeps a second instance of the
       env (``gym.make(env.spec)`` when the env has a spec, else ``copy.deepcopy``),
       resets it (seeded from this wrapper's seed), lets ``goal_state_fn`` put it in
       the goal state (for MuJoCo: ``goal_env.unwrapped.set_state(qpos, qvel)``), and
       renders it. Same renderer, same camera: the goal image is exactly what the
       current frame looks like once the agent is there.
    3. the last image given to :meth:`set_goal` (a fixed goal for every episode).

    ``set_goal(image)`` also replaces the goal of the running episode (from the next
    observation on). A reset with no source at all raises, rather than hand the
    agent a blank goal it would silently plan toward.

    ``info["state"]`` is added when the env does not give one: ``state_fn(env)`` when
    given, else :func:`simulator_state` (``[qpos, qvel]`` for MuJoCo envs, else the
    flattened raw observation), so :class:`RecordEpisodes` can wrap this wrapper and
    record any env in the lewm dataset format; the raw observation itself is dropped.
    A flattened observation is often not the whole state (gym-pusht's
    ``pixels_agent_pos`` has the agent but not the block), so at the first reset a
    state from ``state_fn`` or from the observation is checked once on the second
    instance: ``reset(options={state_option: state})`` must show the same frame, else
    a warning says so (the evaluation protocol restarts episodes from recorded states).

    Reset options ``{"state": s, "goal_state": g}`` (the evaluation protocol's) work
    when the env restores a state through a reset option: ``state`` is passed as
    ``options[state_option]``, and the goal image is the frame of the second instance
    reset to ``g`` (it takes precedence over the sources above for that episode).

    Args:
        env: a Gymnasium env made with ``render_mode="rgb_array"``.
        goal_fn: per-episode goal image function (source 1).
        image_size: side ``S`` of the square output images.
        goal_state_fn: per-episode goal state function (source 2).
        state_fn: ``state_fn(env) -> 1-D array``, the state recorded at every step.
        frame_from: ``"render"`` (``env.render()``) or ``"obs"`` (the observation's
            ``"pixels"``, or the observation itself if it is an image): e.g. gym-pusht's
            96 px observation instead of its 680 px rendering with overlays.
        state_option: the reset option under which the env takes a state (``"state"``
            for the lewm contract; gym-pusht: ``"reset_to_state"``).
        goal_optional: an episode without a goal source gets a black goal image
            instead of an error (for recording data, where goals are not stored).
        check_state: check the state round trip at the first reset (see above).
    """

    def __init__(
        self,
        env: gym.Env,
        goal_fn: GoalFn | None = None,
        image_size: int = 64,
        *,
        goal_state_fn: GoalStateFn | None = None,
        state_fn: StateFn | None = None,
        frame_from: str = "render",
        state_option: str = "state",
        goal_optional: bool = False,
        check_state: bool = True,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self,
            goal_fn=goal_fn,
            image_size=image_size,
            goal_state_fn=goal_state_fn,
            state_fn=state_fn,
            frame_from=frame_from,
            state_option=state_option,
            goal_optional=goal_optional,
            check_state=check_state,
        )
        super().__init__(env)
        if env.render_mode != "rgb_array":
            raise ValueError(
                f"PixelGoal needs an env made with render_mode='rgb_array', got "
                f"render_mode={env.render_mode!r}: gym.make(id, render_mode='rgb_array')"
            )
        if not isinstance(image_size, (int, np.integer)) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        if goal_fn is not None and goal_state_fn is not None:
            raise ValueError("give goal_fn or goal_state_fn, not both")
        if frame_from not in ("render", "obs"):
            raise ValueError(f"frame_from must be 'render' or 'obs', got {frame_from!r}")
        if frame_from == "obs" and goal_state_fn is not None:
            raise ValueError(
                "goal_state_fn's goal frame is goal_env.render(), which frame_from='obs' does "
                "not use: give goal_fn, or frame_from='render'"
            )
        self.image_size = int(image_size)
        self.goal_fn = goal_fn
        self.goal_state_fn = goal_state_fn
        self.state_fn = state_fn
        self.frame_from = frame_from
        self.state_option = str(state_option)
        self.goal_optional = bool(goal_optional)
        self.check_state = bool(check_state)
        self._state_checked = False
        img = gym.spaces.Box(0, 255, shape=(self.image_size, self.image_size, 3), dtype=np.uint8)
        self.observation_space = gym.spaces.Dict({"pixels": img, "goal": img})
        self._goal: np.ndarray | None = None  # (S, S, 3) goal of the running episode
        self._fixed_goal: np.ndarray | None = None  # (S, S, 3) from set_goal
        self._goal_env: gym.Env | None = None
        self._goal_rng = np.random.default_rng()

    # ---- goals ---------------------------------------------------------------------------
    @property
    def goal(self) -> np.ndarray | None:
        """A copy of the current goal image ``(S, S, 3)`` (None before the first goal)."""
        return None if self._goal is None else self._goal.copy()

    def set_goal(self, image: np.ndarray) -> None:
        """Use ``image`` (uint8 ``(H, W, 3)``, any size) as the goal from now on.

        It replaces the running episode's goal at once and stays the goal of later
        episodes unless a ``goal_fn`` / ``goal_state_fn`` recomputes one at reset.
        """
        self._fixed_goal = self._resized(image, "set_goal image")
        self._goal = self._fixed_goal

    @property
    def goal_env(self) -> gym.Env:
        """The private second env instance that ``goal_state_fn`` drives (made on first use)."""
        if self._goal_env is None:
            self._goal_env = self._make_goal_env()
        return self._goal_env

    def _make_goal_env(self) -> gym.Env:
        # A fresh instance from the spec owns its own renderer (an OpenGL context for
        # MuJoCo), which a deep copy of a live renderer may not survive; deepcopy is
        # the fallback for envs built without gym.make.
        first: Exception | None = None  # why gym.make failed, reported if deepcopy fails too
        if self.env.spec is not None:
            try:
                return gym.make(self.env.spec)
            except Exception as e:
                first = e
        try:
            return copy.deepcopy(self.env)
        except Exception as e:
            raise RuntimeError(
                "PixelGoal(goal_state_fn=...) needs a second instance of the env: "
                f"gym.make(env.spec) failed ({first!r}) and copy.deepcopy failed ({e!r}); "
                "pass goal_fn instead and render the goal yourself"
            ) from e

    def _episode_goal(self, goal_state: Any = None) -> np.ndarray:
        if goal_state is not None:  # the protocol's goal: the frame at that state
            obs, _ = self.goal_env.reset(options={self.state_option: goal_state})
            _match_mujoco_camera(self.env, self.goal_env)
            return self._frame_of(self.goal_env, obs, "goal_env")
        if self.goal_fn is not None:
            return self._resized(self.goal_fn(self.env), "goal_fn(env)")
        if self.goal_state_fn is not None:
            genv = self.goal_env
            genv.reset(seed=int(self._goal_rng.integers(2**31 - 1)))
            self.goal_state_fn(genv, self.env)
            _match_mujoco_camera(self.env, genv)  # the live camera exists: reset rendered
            return self._resized(genv.render(), "goal_env.render()")
        if self._fixed_goal is not None:
            return self._fixed_goal
        if self.goal_optional:
            return np.zeros((self.image_size, self.image_size, 3), np.uint8)
        raise RuntimeError(
            "PixelGoal has no goal for this episode: pass goal_fn or goal_state_fn, "
            "or call set_goal(image) before reset()"
        )

    # ---- gymnasium API -------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        options = dict(options) if options else None
        goal_state = options.get("goal_state") if options else None
        if options and "state" in options and self.state_option != "state":
            options[self.state_option] = options.pop("state")  # the env's own option name
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:  # the goal env's resets follow this wrapper's seed
            self._goal_rng = np.random.default_rng(seed)
        pixels = self._frame_of(self.env, obs)  # the live env first: its camera is the reference
        self._goal = self._episode_goal(goal_state)
        source = self._state_source(info)
        info = self._info(info, obs)
        if goal_state is not None:
            info = {**info, "goal_state": np.asarray(goal_state, dtype=np.float32)}
        if self.check_state and not self._state_checked:
            self._state_checked = True  # once: it costs a reset of the second instance
            self._check_state_round_trip(info.get("state"), pixels, source)
        return {"pixels": pixels, "goal": self._goal.copy()}, info

    def step(
        self, action: Any
    ) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        assert self._goal is not None  # reset() always sets one
        observation = {"pixels": self._frame_of(self.env, obs), "goal": self._goal.copy()}
        return observation, reward, terminated, truncated, self._info(info, obs)

    def close(self) -> None:
        if self._goal_env is not None:
            self._goal_env.close()
            self._goal_env = None
        super().close()

    # ---- internals -----------------------------------------------------------------------
    def _resized(self, image: Any, what: str) -> np.ndarray:
        img = np.asarray(image) if image is not None else None
        if img is None or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            desc = "None" if img is None else f"{img.dtype} {img.shape}"
            raise ValueError(f"{what} must be a uint8 (H, W, 3) RGB image, got {desc}")
        return resize_image(img, self.image_size)  # (S, S, 3)

    def _frame_of(self, env: gym.Env, obs: Any, name: str = "env") -> np.ndarray:
        """The frame of ``env`` (this one or the goal env) after it returned ``obs``."""
        if self.frame_from == "render":
            return self._resized(env.render(), f"{name}.render()")  # (S, S, 3)
        if isinstance(obs, dict):
            if "pixels" not in obs:
                raise ValueError(
                    f"PixelGoal(frame_from='obs') needs an observation with 'pixels', got keys "
                    f"{sorted(obs)}; use frame_from='render'"
                )
            obs = obs["pixels"]
        return self._resized(obs, f"{name}'s observation pixels")  # (S, S, 3)

    def _state_source(self, info: dict[str, Any]) -> str:
        """Where info['state'] comes from: state_fn | info | mujoco | observation."""
        if self.state_fn is not None:
            return "state_fn"
        if "state" in info:
            return "info"
        data = getattr(self.env.unwrapped, "data", None)
        if data is not None and hasattr(data, "qpos") and hasattr(data, "qvel"):
            return "mujoco"
        return "observation"

    def _info(self, info: dict[str, Any], obs: Any) -> dict[str, Any]:
        if self.state_fn is not None:
            state = np.asarray(self.state_fn(self.env), dtype=np.float32).reshape(-1)
            return {**info, "state": state}  # (S,)
        if "state" in info:
            return info
        try:
            state = simulator_state(self.env, info, obs)
        except KeyError:
            return info  # nothing to add; RecordEpisodes will say what is missing
        return {**info, "state": state}

    def _check_state_round_trip(self, state: Any, frame: np.ndarray, source: str) -> None:
        """Warn when ``reset(options={state_option: state})`` does not show ``frame`` again.

        Only for states this wrapper made up (``state_fn`` or the flattened
        observation): an env's own ``info["state"]`` keeps the env contract, and
        MuJoCo's ``[qpos, qvel]`` restores through ``set_state`` by construction.
        """
        if state is None or source not in ("state_fn", "observation"):
            return
        warn_unless_state_restores(
            self.env,
            lambda: self.goal_env,
            state,
            frame,
            lambda env, obs: self._frame_of(env, obs, "the second instance"),
            state_option=self.state_option,
            source=source,
            who="PixelGoal",
        )
