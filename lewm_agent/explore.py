"""Frontier goals for reward-free exploration: the least-visited of the agent's own frames.

The agent embeds a sample of the frames it has recorded and scores each by its
k-nearest-neighbour distance in latent space (a density estimate: a frame far from
its neighbours lies where the data is thin). Goals are drawn from the highest-scoring
share of that sample, so the planner is sent toward the edges of what it has seen.
Only recorded frames are candidates: the env's own goals are never needed.

Goals may be chosen, and planned toward, in the embedding's slowest linear features
instead of the whole embedding (`slow_features`, linear slow-feature analysis). Where
the agent moves one thing directly every step and everything else only by contact
(Push-T's pusher and block), the full embedding's nearest neighbours and distances are
dominated by what the agent moves anyway; the slow features are what changes least
from one step to the next, so a novel slow-feature value is a novel pose of the
things the agent must push.

`agents.learn` uses it between rounds; this module sees only arrays.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def knn_novelty(z: Tensor, k: int = 10, chunk: int = 1024) -> Tensor:
    """Mean distance of each embedding to its `k` nearest other embeddings.

    Args:
        z: (N, D) embeddings, N >= 2.
        k: neighbours (clipped to N - 1).
        chunk: rows of the distance matrix computed at once (bounds memory at chunk x N).
    Returns:
        (N,) novelty scores: larger means fewer recorded frames nearby.
    """
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"knn_novelty needs (N >= 2, D) embeddings, got shape {tuple(z.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, z.shape[0] - 1)
    z = z.float()
    out = []
    for lo in range(0, z.shape[0], chunk):
        d = torch.cdist(z[lo : lo + chunk], z)  # (c, N)
        rows = torch.arange(d.shape[0], device=z.device)
        d[rows, rows + lo] = float("inf")  # a frame is not its own neighbour
        out.append(d.topk(k, dim=1, largest=False).values.mean(dim=1))  # (c,)
    return torch.cat(out)  # (N,)


def frontier_indices(
    novelty: np.ndarray | Tensor, n: int, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """`n` indices drawn uniformly (with replacement) from the top `fraction` by novelty.

    Drawing from a share instead of taking the single most novel frame spreads the
    goals over the whole frontier (and over both sides of a wall, say).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    scores = np.asarray(
        novelty.detach().cpu().numpy() if isinstance(novelty, Tensor) else novelty
    ).reshape(-1)
    if scores.size == 0:
        raise ValueError("no candidate frames to draw frontier goals from")
    top = max(1, int(round(fraction * scores.size)))
    best = np.argsort(-scores, kind="stable")[:top]  # (top,) most novel first
    return best[rng.integers(0, top, size=n)]


def slow_features(z: Tensor, z_next: Tensor, k: int, rel_eps: float = 1e-6) -> Tensor:
    """Linear slow-feature analysis: a (D, k) projection whose features change least per step.

    The features f = z @ W have unit variance (up to the mean) over the frames `z`,
    are uncorrelated, and are sorted by the variance of their one-step change
    f(z_next) - f(z), smallest first.

    Args:
        z: (N, D) embeddings of frames that each have a successor, N >= 2.
        z_next: (N, D) embeddings of those successors (the same episode, one step on).
        k: features kept (clipped to the rank of z's covariance).
        rel_eps: directions of z with variance below rel_eps x the largest are dropped
            (they cannot be whitened).
    Returns:
        (D, k) float32 projection W.
    """
    if z.ndim != 2 or z.shape != z_next.shape or z.shape[0] < 2:
        raise ValueError(
            "slow_features needs (N >= 2, D) embeddings and successors of the same shape, "
            f"got {tuple(z.shape)} and {tuple(z_next.shape)}"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x = z.double() - z.double().mean(dim=0)  # (N, D)
    evals, evecs = torch.linalg.eigh(x.T @ x / (x.shape[0] - 1))  # (D,), (D, D) ascending
    keep = evals > rel_eps * evals.max().clamp_min(1e-30)
    whiten = evecs[:, keep] / evals[keep].sqrt()  # (D, R): whitened features have unit variance
    dz = (z_next.double() - z.double()) @ whiten  # (N, R) one-step changes, whitened
    _, slow = torch.linalg.eigh(dz.T @ dz / dz.shape[0])  # (R, R), slowest change first
    return (whiten @ slow[:, : min(k, slow.shape[1])]).float()  # (D, k)


class ProjectedDistance(torch.nn.Module):
    """Squared distance after a fixed linear projection: a planning cost over chosen features.

    Duck-types the learned cost head's `distance(z, goal)` so a planner's `Controller`
    can plan toward a goal's slow features (`plan_cost` with cost "learned")."""

    def __init__(self, projection: Tensor) -> None:
        super().__init__()
        self.register_buffer("projection", projection.float())  # (D, k)

    def distance(self, z: Tensor, goal: Tensor) -> Tensor:
        """z (N, D), goal (N, D) -> (N,) squared distance of their projections."""
        return ((z.float() - goal.float()) @ self.projection).square().sum(dim=-1)  # (N,)
