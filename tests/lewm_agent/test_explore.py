"""Frontier goals: k-NN novelty in latent space and the draw from its top share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lewm_agent.explore import frontier_indices, knn_novelty


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


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: knn_novelty(torch.zeros(1, 4)), "N >= 2"),
        (lambda: knn_novelty(torch.zeros(5, 4), k=0), "k must be >= 1"),
        (lambda: frontier_indices(np.ones(4), 1, 0.0, np.random.default_rng()), "fraction"),
        (lambda: frontier_indices(np.ones(0), 1, 0.5, np.random.default_rng()), "no candidate"),
    ],
)
def test_bad_input_is_refused(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
