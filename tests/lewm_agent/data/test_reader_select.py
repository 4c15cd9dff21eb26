"""Loading part of a dataset: `load_dataset(files=...)`, `episode_steps` from headers, and
the protocol's pairs read from the held-out files alone."""

from __future__ import annotations

import numpy as np
import pytest

from lewm_agent.data import DatasetError, load_dataset
from lewm_agent.data.reader import episode_steps
from lewm_agent.heldout import heldout_files, load_heldout


def test_only_the_named_files_are_loaded(tworoom_data) -> None:
    full = load_dataset(tworoom_data)
    held = heldout_files(tworoom_data, 0.1)
    part = load_dataset(tworoom_data, files=list(reversed(held)))  # order: the folder's
    assert [e.name for e in part.episodes] == [p.name for p in held]
    by_name = {e.name: e for e in full.episodes}
    for e in part.episodes:
        np.testing.assert_array_equal(e.pixels, by_name[e.name].pixels)
        np.testing.assert_array_equal(e.actions, by_name[e.name].actions)
    assert part.frames is not None and len(part.frames) == sum(len(e) + 1 for e in part.episodes)
    with pytest.raises(DatasetError, match="holds no episode file.*nope.npz"):
        load_dataset(tworoom_data, files=["nope.npz"])


def test_episode_steps_from_headers_match_the_loaded_actions(tworoom_data) -> None:
    full = load_dataset(tworoom_data)
    steps = episode_steps(tworoom_data)
    assert list(steps) == [e.name for e in full.episodes]
    assert list(steps.values()) == [len(e.actions) for e in full.episodes]


def test_protocol_pairs_from_the_held_out_files_equal_the_full_split(tworoom_data) -> None:
    from eval.compare import protocol_episodes
    from eval.protocol import sample_episodes

    eps, counts = protocol_episodes(tworoom_data, n=6, seed=3)
    dataset, train, heldout = load_heldout(tworoom_data, 0.1, require=True)
    want = sample_episodes(heldout, n=6, seed=3)
    assert [(e.episode, e.start_step) for e in eps] == [(e.episode, e.start_step) for e in want]
    for a, b in zip(eps, want, strict=True):
        np.testing.assert_array_equal(a.start_state, b.start_state)
        np.testing.assert_array_equal(a.goal_state, b.goal_state)
    assert counts == {
        "data_env_steps": dataset.num_steps,
        "train_env_steps": train.num_steps,
    }
