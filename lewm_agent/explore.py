"""Frontier goals for reward-free exploration: the least-visited of the agent's own frames.

The agent embeds a sample of the frames it has recorded and scores each by its
k-nearest-neighbour distance in latent space (a density estimate: a frame far from
its neighbours lies where the data is thin). Goals are drawn from the highest-scoring
share of that sample, so the planner is sent toward the edges of what it has seen.
Only recorded frames are candidates: the env's own goals are never needed.

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
