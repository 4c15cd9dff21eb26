"""What the trainer reads from a dataset: `ActionNormalizer` and `WindowSampler`.

Kept with the dataset types they index (episode arrays, frame offsets); the model,
the planner and the checkpoint use the normaliser, the trainer samples the windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .format import DatasetError
from .reader import Dataset


# ---------------------------------------------------------------------------------------
# action normalisation
# ---------------------------------------------------------------------------------------
class ActionNormalizer:
    """Per-dimension standardisation of actions: ``(a - mean) / std``.

    Dimensions whose std is below ``min_std`` (constant in the data) get ``std = 1``
    (scikit-learn's convention): dividing by a tiny std would turn any action the data
    never showed (a planner sample, another policy's action) into a huge network input,
    while a constant dimension carries no information to rescale anyway.

    ``normalize``/``denormalize`` accept numpy arrays or torch tensors whose last
    dimension is ``A`` or a multiple of it (flattened frameskip blocks ``(..., k*A)``).
    """

    min_std: float = 1e-6

    def __init__(self, mean: Sequence[float] | np.ndarray, std: Sequence[float] | np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)  # (A,)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)  # (A,)
        if self.mean.shape != self.std.shape or self.mean.size == 0:
            raise ValueError(f"mean and std must be equal-length 1-D, got {mean} / {std}")
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.std))):
            raise ValueError("mean and std must be finite")
        if np.any(self.std <= 0):
            raise ValueError(f"std must be positive, got {self.std}")

    @classmethod
    def fit(cls, actions: np.ndarray) -> ActionNormalizer:
        """Fit on actions ``(N, A)`` (e.g. ``np.concatenate([e.actions for e in dataset])``)."""
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] == 0:
            raise ValueError(f"actions must be (N >= 1, A), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("actions contain NaN or inf")
        std = a.std(axis=0)  # (A,)
        std = np.where(std < cls.min_std, 1.0, std)
        return cls(a.mean(axis=0), std)

    @property
    def action_dim(self) -> int:
        return int(self.mean.size)

    def _stats(self, x: Any) -> tuple[Any, Any]:
        last = x.shape[-1]
        if last % self.action_dim:
            raise ValueError(
                f"last dimension {last} is not a multiple of action_dim {self.action_dim}"
            )
        reps = last // self.action_dim
        mean, std = np.tile(self.mean, reps), np.tile(self.std, reps)  # (last,)
        if type(x).__module__.startswith("torch"):
            import torch

            return (
                torch.as_tensor(mean, dtype=x.dtype, device=x.device),
                torch.as_tensor(std, dtype=x.dtype, device=x.device),
            )
        return mean, std

    def normalize(self, actions: Any) -> Any:
        """Env units -> normalised units, same type/shape as the input."""
        if isinstance(actions, list | tuple):
            actions = np.asarray(actions, dtype=np.float32)
        mean, std = self._stats(actions)
        return (actions - mean) / std

    def denormalize(self, actions: Any) -> Any:
        """Normalised units -> env units (not clipped: clip to the env bounds yourself)."""
        if isinstance(actions, list | tuple):
            actions = np.asarray(actions, dtype=np.float32)
        mean, std = self._stats(actions)
        return actions * std + mean

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-able form (saved with a checkpoint)."""
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActionNormalizer:
        return cls(d["mean"], d["std"])

    def __repr__(self) -> str:
        return f"ActionNormalizer(mean={self.mean.tolist()}, std={self.std.tolist()})"


# ---------------------------------------------------------------------------------------
# window sampler
# ---------------------------------------------------------------------------------------
class WindowSampler:
    """Uniform random training windows: ``num_frames`` frames ``frameskip`` steps apart.

    For a window starting at step ``t`` of an episode:
    frame ``k`` = ``pixels[t + k*frameskip]`` and action block ``k`` =
    ``actions[t + k*frameskip : t + (k+1)*frameskip]`` flattened to ``(frameskip*A,)``,
    for ``k = 0 .. num_frames-1``; only starts where every block fits
    (``t + num_frames*frameskip <= T``) are valid. Episodes too short for one window
    are skipped. Each valid (episode, t) pair is equally likely.
    """

    def __init__(self, dataset: Dataset, *, num_frames: int, frameskip: int, seed: int) -> None:
        if num_frames < 1 or frameskip < 1:
            raise ValueError(
                f"num_frames and frameskip must be >= 1, got {num_frames}, {frameskip}"
            )
        self.dataset = dataset
        self.num_frames = int(num_frames)
        self.frameskip = int(frameskip)
        self.rng = np.random.default_rng(seed)
        span = self.num_frames * self.frameskip
        lengths = np.array([len(e) for e in dataset.episodes], dtype=np.int64)  # (E,)
        counts = np.maximum(lengths - span + 1, 0)  # valid starts per episode, (E,)
        self._cum = np.cumsum(counts)  # (E,)
        self.num_windows = int(self._cum[-1]) if len(counts) else 0
        if self.num_windows == 0:
            longest = int(lengths.max()) if len(lengths) else 0
            raise DatasetError(
                f"no episode is long enough for a window of {num_frames} frames x frameskip "
                f"{frameskip} (needs >= {span} steps, longest has {longest}); lower "
                "num_frames/frameskip or record longer episodes"
            )
        # Actions of all episodes in one array (small) so gathers are one fancy index.
        self._actions = np.concatenate([e.actions for e in dataset.episodes])  # (N_act, A)
        self._act_off = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)  # (E,)
        self._states = np.concatenate([e.states for e in dataset.episodes])  # (N_frames, S)
        self._state_off = self._act_off + np.arange(len(lengths))  # (E,) T+1 rows per episode
        if dataset.frames is not None and dataset.frame_offsets is not None:
            self._frame_off: np.ndarray | None = np.asarray(dataset.frame_offsets, np.int64)
        else:
            self._frame_off = None  # memory-mapped episodes: gather per window
        self._k = np.arange(self.num_frames, dtype=np.int64) * self.frameskip  # (F,)

    def sample_indices(
        self, batch_size: int, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Uniform valid ``(episode_index, start_step)`` pairs, two int64 arrays ``(B,)``.

        ``rng`` replaces the sampler's own stream for this call: training derives one
        generator per step from ``(seed, step)`` so a batch is a pure function of its
        step (exact resume, identical global batches on every rank, prefetch-safe).
        """
        j = (rng or self.rng).integers(0, self.num_windows, size=batch_size)  # (B,)
        ep = np.searchsorted(self._cum, j, side="right")  # (B,)
        before = np.where(ep > 0, self._cum[ep - 1], 0)  # windows in earlier episodes
        return ep, j - before

    def all_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Every valid ``(episode_index, start_step)`` pair, in order (for full evaluation)."""
        counts = np.diff(np.concatenate([[0], self._cum]))  # (E,)
        ep = np.repeat(np.arange(len(counts)), counts)  # (N,)
        starts = np.arange(self.num_windows) - np.repeat(self._cum - counts, counts)  # (N,)
        return ep, starts

    def gather(self, episode: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows at given indices: pixels uint8 ``(B, F, H, W, 3)``, actions float32 ``(B, F, fs*A)``."""
        ep = np.asarray(episode, dtype=np.int64)
        t = np.asarray(start, dtype=np.int64)
        rel = t[:, None] + self._k[None, :]  # (B, F) frame index within the episode
        if self._frame_off is not None:
            pixels = self.dataset.frames[self._frame_off[ep][:, None] + rel]  # (B, F, H, W, 3)
        else:
            eps = self.dataset.episodes
            pixels = np.stack([eps[e].pixels[rel[i]] for i, e in enumerate(ep)])  # (B, F, H, W, 3)
        return pixels, self.gather_actions(ep, t)

    def gather_actions(self, episode: np.ndarray, start: np.ndarray) -> np.ndarray:
        """The windows' action blocks alone, float32 ``(B, F, fs*A)`` (no pixels read)."""
        ep = np.asarray(episode, dtype=np.int64)
        rel = np.asarray(start, dtype=np.int64)[:, None] + self._k[None, :]  # (B, F)
        steps = rel[:, :, None] + np.arange(self.frameskip)[None, None, :]  # (B, F, fs)
        actions = self._actions[self._act_off[ep][:, None, None] + steps]  # (B, F, fs, A)
        return actions.reshape(len(ep), self.num_frames, -1).astype(np.float32, copy=False)

    def gather_states(self, episode: np.ndarray, start: np.ndarray) -> np.ndarray:
        """States of the window frames, float32 ``(B, F, S)`` (for probes and debugging)."""
        ep = np.asarray(episode, dtype=np.int64)
        rel = np.asarray(start, dtype=np.int64)[:, None] + self._k[None, :]  # (B, F)
        return self._states[self._state_off[ep][:, None] + rel]  # (B, F, S)

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """A random batch: pixels uint8 ``(B, F, H, W, 3)``, actions float32 ``(B, F, fs*A)``."""
        return self.gather(*self.sample_indices(batch_size))

    def __len__(self) -> int:
        return self.num_windows
