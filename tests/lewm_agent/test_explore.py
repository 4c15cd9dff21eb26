"""Frontier goals: k-NN novelty, the draw from its top share, and the slow features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lewm_agent.explore import ProjectedDistance, frontier_indices, knn_novelty, slow_features


def test_an_isolated_embedding_is_the_most_novel() -> None:
    g = torch.Generator().manual_seed(0)
    cluster = 0.01 * torch.randn(50, 8, generator=g)  # (50, 8) many frames of one place
    loner = torch.full((1, 8), 3.0)  # (1, 8) a frame far from all of them
    z = torch.cat([cluster[:20], loner, cluster[20:]])
    novelty = knn_novelty(z, k=5, chunk=7)  # chunks smaller than N: the same answer
    assert novelty.shape == (51,)
    assert int(novelty.argmax()) == 20
    assert torch.allclose(novelty, knn_novelty(z, k=5))


def test_a_frame_is_not_its_own_neighbour() -> None:
    z = torch.tensor([[0.0], [1.0], [3.0]])
    assert knn_novelty(z, k=1).tolist() == [1.0, 1.0, 2.0]
    assert knn_novelty(z, k=10).tolist() == [2.0, 1.5, 2.5]  # k clipped to N - 1


def test_frontier_draws_only_from_the_top_share() -> None:
    scores = np.arange(100, dtype=np.float32)  # frame i has novelty i
    picks = frontier_indices(scores, 500, 0.1, np.random.default_rng(0))
    assert picks.shape == (500,)
    assert set(picks.tolist()) == set(range(90, 100))


def _two_speed_walk(
    n: int = 2000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings (n, 6) mixing a slow random walk (one latent) with fast noise (two
    latents) through a fixed random matrix; returns (z, z_next, the slow latent)."""
    g = torch.Generator().manual_seed(seed)
    slow = torch.cumsum(0.01 * torch.randn(n + 1, generator=g), dim=0)  # (n+1,)
    fast = torch.randn(n + 1, 2, generator=g)  # (n+1, 2)
    latents = torch.cat([slow[:, None], fast, 0.1 * torch.randn(n + 1, 3, generator=g)], dim=1)
    z = latents @ torch.randn(6, 6, generator=g)  # (n+1, 6) every coordinate mixes all
    return z[:-1], z[1:], slow[:-1]


def test_slow_features_recover_the_slowly_changing_latent() -> None:
    z, z_next, slow = _two_speed_walk()
    w = slow_features(z, z_next, k=1)  # (6, 1)
    assert w.shape == (6, 1)
    f = (z @ w).squeeze(1)  # (n,)
    r = torch.corrcoef(torch.stack([f, slow]))[0, 1].abs()
    assert r > 0.99
    # Unit variance and the slowest of the features: the raw coordinates change faster.
    assert abs(float(f.std()) - 1.0) < 0.05
    step = float(((z_next - z) @ w).squeeze(1).std())  # per unit of the feature's spread
    raw_steps = (z_next - z).std(dim=0) / z.std(dim=0)  # (6,) the same for each coordinate
    assert step < 0.2 * float(raw_steps.min())


def test_projected_distance_ignores_the_fast_directions() -> None:
    z, z_next, slow = _two_speed_walk()
    cost = ProjectedDistance(slow_features(z, z_next, k=1))
    goal = z[:1].expand(len(z), -1)  # (n, 6) the first frame as every frame's goal
    d = cost.distance(z, goal)  # (n,)
    assert d.shape == (len(z),)
    gap = (slow - slow[0]).square()  # (n,) the slow latent's squared gap to the goal
    assert torch.corrcoef(torch.stack([d, gap]))[0, 1] > 0.99


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: knn_novelty(torch.zeros(1, 4)), "N >= 2"),
        (lambda: knn_novelty(torch.zeros(5, 4), k=0), "k must be >= 1"),
        (lambda: frontier_indices(np.ones(4), 1, 0.0, np.random.default_rng()), "fraction"),
        (lambda: frontier_indices(np.ones(0), 1, 0.5, np.random.default_rng()), "no candidate"),
        (lambda: slow_features(torch.zeros(5, 4), torch.zeros(4, 4), 1), "same shape"),
        (lambda: slow_features(torch.randn(5, 4), torch.randn(5, 4), 0), "k must be >= 1"),
    ],
)
def test_bad_input_is_refused(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
