"""`RecordEpisodes`: records finished episodes, reward-free, into the lewm dataset format."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from envs.frames import StateFn, simulator_state, warn_unless_state_restores
from lewm_agent.data import EpisodeWriter

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
    ``lewm bench recorder`` and ``outputs/collection/README.md``.

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
