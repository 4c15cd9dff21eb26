"""The paper protocol and the comparison report: intervals, ordering, same episodes."""

import json

import numpy as np
import pytest

import envs  # noqa: F401
from eval.compare import compare
from eval.compare_report import markdown_table, results_dict, write_results
from eval.protocol import GOAL_OFFSET, run_protocol, sample_episodes
from lewm_agent import load_dataset
from lewm_agent.stats import wilson_interval
from tests.helpers.agents import DoNothing, PixelOracle


@pytest.mark.parametrize(
    "k, n, lo, hi",
    [  # reference values of the Wilson score interval, z = 1.96
        (0, 50, 0.0, 0.0713),
        (50, 50, 0.9287, 1.0),
        (44, 50, 0.7620, 0.9438),
        (5, 10, 0.2366, 0.7634),
        (1, 1, 0.2065, 1.0),
    ],
)
def test_wilson_interval_known_values(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=5e-4)


def test_wilson_interval_rejects_bad_counts():
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_protocol_episodes_come_from_heldout_and_are_seeded(tworoom_data):
    _, heldout = load_dataset(tworoom_data).split(0.2)
    eps = sample_episodes(heldout, n=10, seed=42)
    again = sample_episodes(heldout, n=10, seed=42)
    assert [(e.episode, e.start_step) for e in eps] == [(e.episode, e.start_step) for e in again]
    other = sample_episodes(heldout, n=10, seed=43)
    assert [(e.episode, e.start_step) for e in eps] != [(e.episode, e.start_step) for e in other]
    names = {e.name for e in heldout.episodes}
    by_name = {e.name: e for e in heldout.episodes}
    for e in eps:
        assert e.episode in names
        np.testing.assert_array_equal(
            e.goal_state, by_name[e.episode].states[e.start_step + GOAL_OFFSET]
        )


def test_goal_image_is_the_dataset_frame_25_steps_later(tworoom_data):
    import gymnasium as gym

    _, heldout = load_dataset(tworoom_data).split(0.2)
    ep = sample_episodes(heldout, n=1, seed=0)[0]
    frames = {e.name: e.pixels for e in heldout.episodes}[ep.episode]
    env = gym.make("lewm/TwoRoom-v0", image_size=frames.shape[1])
    obs, _ = env.reset(options={"state": ep.start_state, "goal_state": ep.goal_state})
    np.testing.assert_array_equal(obs["pixels"], frames[ep.start_step])
    np.testing.assert_array_equal(obs["goal"], frames[ep.start_step + GOAL_OFFSET])


def test_compare_orders_oracle_above_do_nothing(tworoom_data, tmp_path):
    _, heldout = load_dataset(tworoom_data).split(0.2)
    eps = sample_episodes(heldout, n=12, seed=42)
    kw = {"image_size": 32}
    res = compare(
        "lewm/TwoRoom-v0",
        {"oracle": PixelOracle(), "nothing": DoNothing()},
        eps,
        env_kwargs=kw,
        progress=False,
    )
    assert res["oracle"].success_rate >= 0.9
    assert res["nothing"].success_rate < res["oracle"].success_rate
    assert res["oracle"].mean_steps_to_success < 50
    table = results_dict(res)
    json_path, md_path = write_results(table, tmp_path)
    loaded = json.loads(json_path.read_text())
    assert loaded["oracle"]["episodes"] == 12 and 0 <= loaded["nothing"]["success_rate"] <= 1
    assert "oracle" in md_path.read_text() and "| nothing |" in markdown_table(table)


def test_run_protocol_records_every_frame(tworoom_data):
    _, heldout = load_dataset(tworoom_data).split(0.2)
    eps = sample_episodes(heldout, n=2, seed=1)
    result, frames = run_protocol(
        "lewm/TwoRoom-v0",
        DoNothing(),
        eps,
        budget=7,
        env_kwargs={"image_size": 32},
        progress=False,
        record=True,
    )
    for f, e in zip(frames, result.per_episode, strict=True):
        assert len(f) == e["steps"] + 1
