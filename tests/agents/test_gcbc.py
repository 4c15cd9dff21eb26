"""GCBC: trains on the reward-free data, predicts with the SB3 signature, saves without pickle."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from agents import make, training_info
from agents.gcbc import META_FILE, WEIGHTS_FILE, GCBCAgent, train_gcbc
from tests.helpers import TEST_IMAGE

SMALL = {"channels": (8, 16, 32), "embed_dim": 32, "hidden": 64, "batch_size": 16}


@pytest.fixture(scope="module")
def gcbc_agent(tworoom_data):
    return train_gcbc(tworoom_data, steps=80, lr=1e-3, progress=False, device="cpu", **SMALL)


def _obs(n=None, seed=0):
    envs_ = [gym.make("lewm/TwoRoom-v0", image_size=TEST_IMAGE) for _ in range(n or 1)]
    obs = [e.reset(seed=seed + i)[0] for i, e in enumerate(envs_)]
    if n is None:
        return obs[0], envs_[0]
    return {k: np.stack([o[k] for o in obs]) for k in obs[0]}, envs_


def test_gcbc_loss_falls_on_predictable_actions(tmp_path):
    from agents.gcbc import GCBCNet, _Triples, gcbc_loss
    from lewm_agent.data import load_dataset
    from tests.helpers.synthetic import write_drift_dataset

    data = load_dataset(write_drift_dataset(tmp_path / "drift"))
    agent = train_gcbc(data, steps=150, lr=1e-3, progress=False, device="cpu", **SMALL)
    split, _ = data.split(0.1)
    triples = _Triples(split, agent.normalizer, agent.config)
    torch.manual_seed(agent.config.seed)
    untrained = GCBCNet(agent.config, 2)  # the same initial weights
    before, after = gcbc_loss(untrained, triples), gcbc_loss(agent.net, triples)
    assert after < 0.5 * before, (before, after)
    assert agent.training_stats["heldout_loss"] < 0.8 * before  # unseen episodes too


def test_gcbc_training_is_reward_free(gcbc_agent):
    info = training_info(gcbc_agent)
    assert info["reward_used"] is False and info["train_env_steps"] > 0


def test_gcbc_predict_has_the_sb3_signature_and_stays_in_bounds(gcbc_agent):
    obs, env = _obs()
    space = env.action_space
    gcbc_agent.reset()
    for _ in range(7):
        action, state = gcbc_agent.predict(obs, state=None, episode_start=None, deterministic=True)
        assert state is None and action.shape == space.shape and action.dtype == np.float32
        assert space.contains(action)
        obs, *_ = env.step(action)
    batch, envs_ = _obs(3, seed=5)
    actions, _ = gcbc_agent.predict(batch, episode_start=np.ones(3, dtype=bool))
    assert actions.shape == (3, 2)
    assert np.all(actions >= space.low) and np.all(actions <= space.high)
    # The batch entry i equals a fresh single-env prediction for observation i.
    for i in range(3):
        single = {k: v[i] for k, v in batch.items()}
        gcbc_agent.reset()
        np.testing.assert_allclose(gcbc_agent.predict(single)[0], actions[i], atol=1e-5)


def test_gcbc_executes_blocks_open_loop_and_episode_start_replans(gcbc_agent, monkeypatch):
    calls = []
    forward = gcbc_agent.net.forward
    monkeypatch.setattr(
        gcbc_agent.net, "forward", lambda p, g: calls.append(len(p)) or forward(p, g)
    )
    obs, env = _obs()
    gcbc_agent.reset()
    for _ in range(6):
        gcbc_agent.predict(obs)
    assert calls == [1, 1]  # one forward pass per block of frameskip = 5 steps
    gcbc_agent.predict(obs, episode_start=np.array([True]))
    assert calls == [1, 1, 1]


def test_gcbc_save_load_round_trip_without_pickle(gcbc_agent, tmp_path):
    folder = gcbc_agent.save(tmp_path / "gcbc")
    assert sorted(p.name for p in folder.iterdir()) == sorted([WEIGHTS_FILE, META_FILE])
    meta = json.loads((folder / META_FILE).read_text())  # plain JSON
    assert meta["config"]["frameskip"] == 5 and meta["training"]["reward_used"] is False
    from safetensors.torch import load_file

    assert all(isinstance(v, torch.Tensor) for v in load_file(str(folder / WEIGHTS_FILE)).values())
    again = make("gcbc", path=folder)
    assert isinstance(again, GCBCAgent)
    obs, _ = _obs(seed=9)
    gcbc_agent.reset()
    np.testing.assert_array_equal(gcbc_agent.predict(obs)[0], again.predict(obs)[0])


def test_gcbc_registry_trains_when_not_saved_and_errors_are_clear(tworoom_data, tmp_path):
    with pytest.raises(ValueError, match="data"):
        make("gcbc", path=tmp_path / "nothing")
    agent = make("gcbc", path=tmp_path / "g", data=tworoom_data, steps=2, progress=False, **SMALL)
    assert GCBCAgent.is_saved(tmp_path / "g") and agent.config.steps == 2
    with pytest.raises(ValueError, match="image_size"):
        agent.predict(
            {"pixels": np.zeros((64, 64, 3), np.uint8), "goal": np.zeros((64, 64, 3), np.uint8)}
        )
    single = train_gcbc(tworoom_data, steps=2, frameskip=1, progress=False, device="cpu", **SMALL)
    obs, _ = _obs()
    assert single.predict(obs)[0].shape == (2,)


def test_compare_trains_gcbc_once_on_the_data_then_loads_it(tworoom_data, tmp_path):
    from eval.compare import load_agents

    kw = {"baselines_dir": tmp_path, "data": tworoom_data, "budgets": {"gcbc": 2}}
    first = load_agents(["gcbc"], "lewm/TwoRoom-v0", progress=False, **kw)["gcbc"]
    assert GCBCAgent.is_saved(tmp_path / "gcbc") and first.config.steps == 2
    again = load_agents(["gcbc"], "lewm/TwoRoom-v0", train_missing=False, **kw)["gcbc"]
    assert again.training_stats["seconds"] == first.training_stats["seconds"]  # loaded
    with pytest.raises(FileNotFoundError, match="gcbc"):
        load_agents(["gcbc"], "lewm/TwoRoom-v0", baselines_dir=tmp_path / "x", train_missing=False)


def test_suite_verdict_says_whether_lewm_beats_gcbc():
    from eval.suite import _verdict

    row = {"successes": 30, "success_rate": 0.6, "train_env_steps": 1000, "reward_used": False}
    table = {"lewm": row, "gcbc": {**row, "successes": 40, "success_rate": 0.8}}
    line = _verdict("lewm/TwoRoom-v0", table)
    assert "**below** gcbc (60% vs 80%, the same reward-free data)" in line
    table["gcbc"] = {**row, "successes": 10, "success_rate": 0.2}
    assert "at or above gcbc (60% vs 20%" in _verdict("lewm/TwoRoom-v0", table)
