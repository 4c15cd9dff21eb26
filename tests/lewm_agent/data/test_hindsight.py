"""HindsightSampler: the (start, goal) pairs both goal-conditioned imitators draw."""

import numpy as np
import pytest

from lewm_agent.data import HindsightSampler

LENGTHS = [3, 40, 7, 0, 120, 5, 2]  # episodes shorter than a block have no start


def test_every_pair_stays_inside_its_episode():
    fs, max_offset = 5, 50
    s = HindsightSampler(LENGTHS, fs, max_offset)
    assert len(s) == sum(max(t - fs + 1, 0) for t in LENGTHS)
    b = s.sample(np.random.default_rng(0), 5000)
    lengths = np.asarray(LENGTHS)[b.episode]
    assert np.all(b.t + fs <= lengths)  # the whole action block is in the episode
    assert np.all((b.k >= 1) & (b.k <= np.minimum(max_offset, lengths - b.t)))
    assert b.k.max() == max_offset  # the farthest goal is drawn
    frame_off = np.concatenate([[0], np.cumsum(np.asarray(LENGTHS) + 1)[:-1]])
    action_off = np.concatenate([[0], np.cumsum(LENGTHS)[:-1]])
    np.testing.assert_array_equal(b.frame, frame_off[b.episode] + b.t)
    np.testing.assert_array_equal(b.goal_frame, frame_off[b.episode] + b.t + b.k)
    np.testing.assert_array_equal(
        b.action_rows, (action_off[b.episode] + b.t)[:, None] + np.arange(fs)
    )
    assert set(np.unique(b.episode)) == {1, 2, 4, 5}  # every episode with a start


def test_same_seed_same_pairs_and_every_start_reachable():
    s = HindsightSampler(LENGTHS, 1, 3)
    a, b = (s.sample(np.random.default_rng(4), 3000) for _ in range(2))
    for name in ("start", "episode", "t", "k", "frame", "action_rows"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert len(np.unique(a.start)) == len(s)


def test_no_whole_block_is_a_clear_error():
    with pytest.raises(ValueError, match="no episode has a whole action block of 5 steps"):
        HindsightSampler([3, 4], 5, 50)
    with pytest.raises(ValueError, match="frameskip and max_offset must be >= 1"):
        HindsightSampler([10], 0, 50)
