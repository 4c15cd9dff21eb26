"""The data policy of ``lewm/Reacher-v0``: smooth random torques for coverage.

A world model only learns the physics it sees, so this policy sweeps the joint space
rather than reaching a goal. It acts on a single or batched observation and keeps one
process state per env; ``episode_start`` redraws the matching entries.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from envs.common import BatchedPolicy, batch_info, episode_starts

__all__ = ["ReacherOU"]


class ReacherOU(BatchedPolicy):
    """Smoothed random torques for ``lewm/Reacher-v0`` (Ornstein-Uhlenbeck process).

    ``x <- x - theta * x + sigma * N(0, 1)`` per env step, clipped to [-1, 1]. The
    correlation time 1/theta makes the arm sweep through large joint-space arcs
    (white noise would only jitter in place), which is what covers the joint space.

    Args:
        theta: mean reversion per step (0.15 -> ~7-step correlation).
        sigma: noise scale per step (stationary std sigma / sqrt(2 theta - theta^2)).
        seed: seed of the policy's own random generator.
    """

    def __init__(self, theta: float = 0.15, sigma: float = 0.3, seed: int | None = None) -> None:
        if not 0.0 < theta <= 1.0:
            raise ValueError(f"theta must be in (0, 1], got {theta}")
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.theta, self.sigma = float(theta), float(sigma)
        self.rng = np.random.default_rng(seed)
        self._x = np.zeros((0, 2))
        self._stationary_std = self.sigma / math.sqrt(2 * self.theta - self.theta**2)

    def reset(self, indices: np.ndarray | None = None) -> None:
        """Redraw the process of the given envs (all if ``None``) from its stationary law."""
        idx = np.arange(len(self._x)) if indices is None else np.asarray(indices)
        self._x[idx] = self.rng.normal(0.0, self._stationary_std, size=(np.size(idx), 2))

    def _actions(
        self, observation: Any, episode_start: np.ndarray | None, deterministic: bool
    ) -> tuple[np.ndarray, bool]:
        """Next torques; the observation only sets the batch size (``deterministic`` ignored:
        the randomness is the point of a data policy)."""
        n, batched = batch_info(observation)
        if n != len(self._x):
            self._x = np.zeros((n, 2))
            self.reset()
        starts = np.flatnonzero(episode_starts(episode_start, n))
        if starts.size:
            self.reset(starts)
        self._x += -self.theta * self._x + self.sigma * self.rng.normal(size=self._x.shape)
        return self._x, batched  # predict clips a copy
