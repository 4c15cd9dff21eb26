"""`lewm data rerender`: the same episodes drawn at another size from their states."""

from __future__ import annotations

import numpy as np
import pytest

from envs.collect import collect
from envs.rerender import rerender_dataset
from lewm_agent.cli import main as lewm_main
from lewm_agent.data import load_dataset


@pytest.fixture(scope="module")
def pusht_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("pt") / "data"
    collect(
        "lewm/PushT-v0",
        "scripted",
        3,
        out,
        workers=1,
        seed=5,
        env_kwargs={"max_episode_steps": 12},
        progress=False,
    )
    return out


def test_same_size_reproduces_the_recorded_pixels(pusht_data, tmp_path):
    out = rerender_dataset(pusht_data, tmp_path / "same", image_size=64, progress=False)
    a, b = load_dataset(pusht_data), load_dataset(out)
    assert [e.name for e in a] == [e.name for e in b]
    for ea, eb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ea.pixels, eb.pixels)
        np.testing.assert_array_equal(ea.actions, eb.actions)
        np.testing.assert_array_equal(ea.states, eb.states)


def test_new_size_keeps_episodes_and_split(pusht_data, tmp_path):
    assert (
        lewm_main(
            [
                "data",
                "rerender",
                str(pusht_data),
                "--out",
                str(tmp_path / "big"),
                "--image-size",
                "96",
            ]
        )
        == 0
    )
    a, b = load_dataset(pusht_data), load_dataset(tmp_path / "big")
    assert b.image_size == 96 and b.meta["image_size"] == 96
    assert b.meta["env_build"] == a.meta["env_build"]
    assert [e.name for e in a.split(0.34)[1]] == [e.name for e in b.split(0.34)[1]]
    for ea, eb in zip(a, b, strict=True):
        assert eb.pixels.shape == (len(ea) + 1, 96, 96, 3)
        np.testing.assert_array_equal(ea.states, eb.states)
        # the same scene: downsampled to 64 px it is close to the recorded frame
        small = eb.pixels[:, ::3, ::3].astype(float).mean()
        assert abs(small - ea.pixels.astype(float).mean()) < 10


def test_refuses_a_non_empty_destination(pusht_data, tmp_path):
    dst = tmp_path / "taken"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        rerender_dataset(pusht_data, dst, image_size=96, progress=False)
    assert (dst / "keep.txt").read_text() == "mine"
