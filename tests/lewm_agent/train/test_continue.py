"""Continued training: `train(init_weights=..., normalizer=...)` starts from given
weights and keeps the given action units (what `agents.learn` does between rounds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lewm_agent.config import get_preset, replace
from lewm_agent.data import ActionNormalizer
from lewm_agent.train import train


@pytest.mark.usefixtures("one_thread")
def test_training_continues_from_given_weights_and_normalizer(tworoom_data: Path) -> None:
    p = get_preset("test")
    cfg = replace(p.train, steps=1, lr=1e-9, warmup_steps=1)
    first = train(tworoom_data, p.model, cfg, progress=False, plot=False)
    start = {k: v.clone() for k, v in first.model.state_dict().items()}
    units = ActionNormalizer(mean=[0.5, -0.5], std=[2.0, 3.0])

    other_seed = replace(cfg, seed=7)  # would draw other initial weights
    cont = train(
        tworoom_data,
        first.model_config,
        other_seed,
        progress=False,
        plot=False,
        init_weights=start,
        normalizer=units,
    )
    fresh = train(tworoom_data, first.model_config, other_seed, progress=False, plot=False)
    after, scratch = cont.model.state_dict(), fresh.model.state_dict()
    weights = [k for k in start if start[k].is_floating_point() and "running" not in k]
    # One step at lr 1e-9 barely moves them: continued = the given weights.
    assert all(torch.allclose(after[k], start[k], atol=1e-6) for k in weights)
    assert any(not torch.allclose(scratch[k], start[k], atol=1e-3) for k in weights)
    np.testing.assert_array_equal(cont.normalizer.mean, units.mean)
    np.testing.assert_array_equal(cont.normalizer.std, units.std)
    assert not np.array_equal(fresh.normalizer.std, units.std)  # fitted to the data
