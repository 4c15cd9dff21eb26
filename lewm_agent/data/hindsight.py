"""Hindsight goals: the (start, goal) pairs a goal-conditioned imitator regresses on.

Reward-free data has no goals, so any frame later in the same episode serves as
one: from a start step ``t`` whose whole action block of ``frameskip`` steps lies
in the episode, the goal is the frame ``k = 1..max_offset`` env steps later
(``k <= T - t``, so the goal frame exists). Both goal-conditioned learners, the
GCBC baseline (pixels) and the latent policy head (frozen embeddings), draw their
pairs here, so for the same seed they regress on the same pairs.

Pure numpy: the sampler returns indices; each learner gathers its own inputs
(frames, embeddings) and targets (action blocks) with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["HindsightBatch", "HindsightSampler"]


@dataclass(frozen=True)
class HindsightBatch:
    """B drawn (start, goal) pairs, as indices into the sampler's episodes."""

    start: np.ndarray
    """(B,) index of the start among the sampler's valid starts (rows of `action_rows`)."""
    episode: np.ndarray
    """(B,) episode of each pair."""
    t: np.ndarray
    """(B,) start step in its episode."""
    k: np.ndarray
    """(B,) env steps from the start to the goal frame, in 1..min(max_offset, T - t)."""
    frame: np.ndarray
    """(B,) row of the start frame in the episodes' frames concatenated (T + 1 each)."""
    action_rows: np.ndarray
    """(B, frameskip) rows of the start's action block in the episodes' actions concatenated."""

    @property
    def goal_frame(self) -> np.ndarray:
        """(B,) row of the goal frame in the concatenated frames."""
        return self.frame + self.k


class HindsightSampler:
    """Draws hindsight (start, goal) pairs over episodes of the given lengths.

    Args:
        lengths: actions per episode (T; an episode has T + 1 frames), in dataset order.
        frameskip: env steps per action block; a start needs its whole block in the episode.
        max_offset: the farthest goal, in env steps after the start.
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, frameskip: int, max_offset: int):
        lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)  # (E,)
        if frameskip < 1 or max_offset < 1:
            raise ValueError(
                f"frameskip and max_offset must be >= 1, got {frameskip} and {max_offset}"
            )
        if np.any(lengths < 0):
            raise ValueError(f"episode lengths must be >= 0, got {lengths.min()}")
        self.frameskip, self.max_offset = int(frameskip), int(max_offset)
        starts = np.maximum(lengths - frameskip + 1, 0)  # (E,) valid starts per episode
        if starts.sum() == 0:
            raise ValueError(
                f"no episode has a whole action block of {frameskip} steps "
                f"(longest: {lengths.max(initial=0)}): lower frameskip or record longer episodes"
            )
        self.episode = np.repeat(np.arange(len(lengths)), starts)  # (N,)
        first = np.concatenate([[0], np.cumsum(starts)[:-1]])  # (E,) first start of each episode
        self.t = np.arange(len(self.episode)) - first[self.episode]  # (N,)
        frame_off = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])  # (E,)
        action_off = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # (E,)
        self.frame = frame_off[self.episode] + self.t  # (N,)
        self.action_rows = (action_off[self.episode] + self.t)[:, None] + np.arange(frameskip)[
            None, :
        ]  # (N, fs)
        # the goal frame t + k must exist: k <= T - t
        self.room = np.minimum(max_offset, lengths[self.episode] - self.t)  # (N,)

    def __len__(self) -> int:
        """Number of valid starts."""
        return len(self.episode)

    def sample(self, rng: np.random.Generator, size: int) -> HindsightBatch:
        """`size` pairs: a uniform start, then a uniform goal offset within its room."""
        i = rng.integers(0, len(self), size=size)  # (B,)
        k = 1 + (rng.random(size) * self.room[i]).astype(np.int64)  # (B,) in 1..room
        return HindsightBatch(
            start=i,
            episode=self.episode[i],
            t=self.t[i],
            k=k,
            frame=self.frame[i],
            action_rows=self.action_rows[i],
        )
