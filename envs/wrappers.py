"""Wrappers: reward-free episode recording into the lewm dataset format."""

from __future__ import annotations

import os
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from lewm_agent.data import EpisodeWriter


class RecordEpisodes(gym.Wrapper):
    """Record finished episodes (frames, actions, simulator states) into a dataset folder.

    Per step it keeps the frame (``obs["pixels"]`` when the observation is a dict
    with pixels, else ``env.render()``, which must be uint8 ``(H, W, 3)``), the action
    actually applied (clipped to the action space's bounds) and ``info["state"]``.
    No rewards are stored: the world model is trained reward-free.

    An episode is written (via :class:`lewm_agent.data.EpisodeWriter`, crash-safely)
    only when it ends with ``terminated`` or ``truncated``; an unfinished episode at
    ``reset()`` or ``close()`` is dropped, so the dataset never holds a partial
    trajectory. After ``max_episodes`` episodes it stops recording but still works as
    a plain pass-through wrapper. The writer is created lazily on the first write, in
    the process that steps the env, so this wrapper works inside ``AsyncVectorEnv``
    workers (give each worker its own ``prefix``).

    Args:
        env: a Gymnasium env with a ``Box`` action space and ``info["state"]``.
        path: dataset folder (created or appended to).
        collector: description of the data policy, stored in ``meta.json``.
        frameskip: training hint stored in ``meta.json``.
        prefix: episode file name prefix (unique per concurrent writer).
        max_episodes: stop recording after this many written episodes (None: never).
        compress: compressed ``.npz`` (default) or uncompressed (memory-mappable).
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
        self.episodes_written = 0
        self._writer: EpisodeWriter | None = None
        self._frames: list[np.ndarray] | None = None  # None: not recording this episode
        self._actions: list[np.ndarray] = []
        self._states: list[np.ndarray] = []

    @property
    def recording(self) -> bool:
        """Whether more episodes will be written (the quota is not reached yet)."""
        return self.max_episodes is None or self.episodes_written < self.max_episodes

    # ---- gymnasium API -------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._drop()  # an unfinished episode is never written
        if self.recording:
            self._frames = [self._frame(obs)]
            self._states = [self._state(info)]
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._frames is not None:
            space = self.env.action_space
            a = np.clip(np.asarray(action, dtype=np.float32), space.low, space.high)
            self._actions.append(a.reshape(space.shape))  # (A,)
            self._frames.append(self._frame(obs))
            self._states.append(self._state(info))
            if terminated or truncated:
                self._write(bool(terminated), bool(truncated))
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self._drop()
        super().close()

    # ---- internals -----------------------------------------------------------------------
    def _drop(self) -> None:
        self._frames, self._actions, self._states = None, [], []

    def _frame(self, obs: Any) -> np.ndarray:
        if isinstance(obs, dict) and "pixels" in obs:
            frame = np.asarray(obs["pixels"])
        else:
            frame = self.env.render()
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
        return frame.copy()  # (H, W, 3)

    @staticmethod
    def _state(info: dict[str, Any]) -> np.ndarray:
        if "state" not in info:
            raise KeyError("RecordEpisodes needs info['state'] (the full simulator state)")
        return np.asarray(info["state"], dtype=np.float32).reshape(-1).copy()  # (S,)

    def _write(self, terminated: bool, truncated: bool) -> None:
        assert self._frames is not None
        pixels = np.stack(self._frames)  # (T+1, H, W, 3)
        actions = np.stack(self._actions)  # (T, A)
        states = np.stack(self._states)  # (T+1, S)
        self._drop()
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
            )
        self._writer.write(pixels, actions, states, terminated, truncated)
        self.episodes_written += 1
