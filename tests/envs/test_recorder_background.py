"""RecordEpisodes' background writer: same files as inline writes, errors surface, flush."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.wrappers import RecordEpisodes
from lewm_agent.data import EpisodeWriter, load_dataset

ENV_ID = "lewm/TwoRoom-v0"


def _record(path: Path, background: bool, episodes: int = 3) -> RecordEpisodes:
    env = RecordEpisodes(
        gym.make(ENV_ID, image_size=32, max_episode_steps=9), path, background=background
    )
    rng = np.random.default_rng(0)
    for ep in range(episodes):
        env.reset(seed=ep)
        done = False
        while not done:
            *_, term, trunc, _ = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
            done = term or trunc
    return env


def test_background_and_inline_writes_give_the_same_dataset(tmp_path: Path) -> None:
    for background in (True, False):
        _record(tmp_path / str(background), background).close()
    a, b = load_dataset(tmp_path / "True"), load_dataset(tmp_path / "False")
    assert len(a) == len(b) == 3
    for x, y in zip(a, b, strict=True):
        assert x.name == y.name
        np.testing.assert_array_equal(x.pixels, y.pixels)
        np.testing.assert_array_equal(x.actions, y.actions)
        np.testing.assert_array_equal(x.states, y.states)


def test_flush_makes_every_finished_episode_visible(tmp_path: Path) -> None:
    env = _record(tmp_path / "ds", background=True)
    env.flush()
    assert len(load_dataset(tmp_path / "ds")) == env.episodes_written == 3
    env.close()


def test_a_failed_background_write_is_raised(tmp_path: Path, monkeypatch) -> None:
    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(EpisodeWriter, "write", broken)
    env = _record(tmp_path / "ds", background=True, episodes=1)
    with pytest.raises(OSError, match="disk full"):
        env.close()
