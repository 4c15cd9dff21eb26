"""The latent policy head: training on frozen embeddings, files, acting alone and as a prior."""

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from lewm_agent import CheckpointError, WorldModelAgent
from lewm_agent.policy_head import (
    HEAD_CONFIG_FILE,
    HEAD_WEIGHTS_FILE,
    PolicyHead,
    PolicyHeadConfig,
    _triples,
    has_policy_head,
)
from tests.helpers import TEST_IMAGE
from tests.helpers.agents import assert_batched_predict_equals_per_env

HEAD = {"steps": 150, "hidden": 64, "batch_size": 64}


@pytest.fixture(scope="module")
def head_agent_dir(tiny_agent_dir, tworoom_data, tmp_path_factory):
    """The tiny Two-Room agent with a policy head, saved to its own folder."""
    agent = WorldModelAgent.load(tiny_agent_dir)
    agent.fit_policy_head(tworoom_data, progress=False, **HEAD)
    return agent.save(tmp_path_factory.mktemp("head") / "agent")


def _env():
    return gym.make("lewm/TwoRoom-v0", image_size=TEST_IMAGE)


def _fixed_loss(head, triples, seed=1):
    z, g, k, target = triples.sample(np.random.default_rng(seed), 1024)
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(head(z, g, k), target))


def test_policy_head_loss_falls_on_a_tiny_dataset(tmp_path):
    from lewm_agent.data import load_dataset
    from tests.helpers.synthetic import write_drift_dataset

    data = load_dataset(write_drift_dataset(tmp_path / "drift"))
    agent = WorldModelAgent.fit(data, preset="test", steps=60, progress=False)
    meta = agent.fit_policy_head(data, progress=False, **HEAD)
    split, _ = data.split(0.1)
    triples = _triples(
        split, agent.model, agent.normalizer, 5, 50, torch.device("cpu"), progress=False
    )
    torch.manual_seed(0)  # the head's initial weights (PolicyHeadConfig.seed)
    untrained = PolicyHead(agent.model_config.embed_dim, 10, PolicyHeadConfig(hidden=64))
    before, after = _fixed_loss(untrained, triples), _fixed_loss(agent.policy_head, triples)
    assert after < 0.5 * before, (before, after)
    assert meta["training"]["heldout_loss"] < 0.8 * before  # unseen episodes too


def test_policy_head_is_saved_beside_the_model_without_pickle(head_agent_dir, tiny_agent_dir):
    assert has_policy_head(head_agent_dir) and not has_policy_head(tiny_agent_dir)
    meta = json.loads((head_agent_dir / HEAD_CONFIG_FILE).read_text())
    assert meta["config"]["hidden"] == 64 and meta["block_dim"] == 10
    assert meta["training"]["final_loss"] < meta["training"]["first_loss"]
    from safetensors.torch import load_file

    tensors = load_file(str(head_agent_dir / HEAD_WEIGHTS_FILE))
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    a = WorldModelAgent.load(head_agent_dir, planner="policy")
    b = WorldModelAgent.load(head_agent_dir, planner="policy")
    for (ka, va), (kb, vb) in zip(
        a.policy_head.state_dict().items(), b.policy_head.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)
    obs, _ = _env().reset(seed=2)
    np.testing.assert_array_equal(a.predict(obs)[0], b.predict(obs)[0])


def test_policy_alone_one_forward_pass_per_block_and_in_bounds(head_agent_dir, monkeypatch):
    agent = WorldModelAgent.load(head_agent_dir, planner="policy")
    calls, steps_left = [], []
    forward = agent.policy_head.forward

    def spy(z, g, s):
        calls.append(len(z))
        steps_left.append(float(s))
        return forward(z, g, s)

    monkeypatch.setattr(agent.policy_head, "forward", spy)
    env = _env()
    obs, _ = env.reset(seed=0)
    agent.decisions = []
    for _ in range(11):
        action, state = agent.predict(obs)
        assert state is None and env.action_space.contains(action)
        obs, *_ = env.step(action)
    assert calls == [1, 1, 1]  # steps 0, 5 and 10: one block of frameskip 5 each
    assert steps_left == [5.0, 5.0, 5.0]  # default: reach the goal within the block
    assert [d["rollouts"] for d in agent.decisions] == [0, 0, 0]


def test_prior_planner_uses_the_policy_and_reports_rollouts(head_agent_dir):
    agent = WorldModelAgent.load(
        head_agent_dir, planner="cem-prior", samples=16, elites=4, iterations=2
    )
    agent.decisions = []
    env = _env()
    obs, _ = env.reset(seed=0)
    action, _ = agent.predict(obs)
    assert env.action_space.contains(action)
    assert agent.decisions[0]["rollouts"] == 16 * 2 + 1  # samples x iterations + the policy's


def test_batched_equals_per_env_planning_with_the_prior(head_agent_dir):
    """As test_agent's batching test, with the policy's proposal in the sampler (MPPI
    with every sample an elite: a smooth function of the costs, see there)."""
    kw = {"planner": "mppi-prior", "samples": 32, "elites": 32, "iterations": 3}
    observations = [_env().reset(seed=s)[0] for s in (1, 2, 3)]
    assert_batched_predict_equals_per_env(head_agent_dir, observations, **kw)


def test_policy_proposal_follows_the_head_through_the_predictor(head_agent_dir):
    agent = WorldModelAgent.load(head_agent_dir, planner="cem-prior")
    g = torch.Generator().manual_seed(0)
    d = agent.model_config.embed_dim
    h = agent.model_config.history
    z_ctx, goal = torch.randn(2, h, d, generator=g), torch.randn(2, d, generator=g)
    past = torch.randn(2, h - 1, 10, generator=g) if h > 1 else None
    steps = []

    def rollout(z, p, plan):
        steps.append(plan.shape[1])
        return agent.model.rollout(z, p, plan)[:, -1]

    prop = agent.policy_proposal(z_ctx, past, goal, rollout)
    assert prop.shape == (2, agent.plan_config.horizon, 10) and steps == [1, 1, 1, 1]
    first = agent.policy_blocks(z_ctx[:, -1], goal, 25.0)
    torch.testing.assert_close(prop[:, 0], first)
    # Block k comes from the embedding one long rollout of blocks 0..k-1 predicts.
    for k, steps_left in ((1, 20.0), (2, 15.0), (4, 5.0)):
        zk = agent.model.rollout(z_ctx, past, prop[:, :k])[:, -1]
        torch.testing.assert_close(prop[:, k], agent.policy_blocks(zk, goal, steps_left))
    assert (prop >= agent._low_n).all() and (prop <= agent._high_n).all()


def test_missing_or_stale_head_is_a_clear_error(tiny_agent_dir, head_agent_dir, tmp_path):
    with pytest.raises(CheckpointError, match="train-policy"):
        WorldModelAgent.load(tiny_agent_dir, planner="policy")
    # A head left over from another world model in the same folder is not used.
    stale = WorldModelAgent.load(head_agent_dir)
    with torch.no_grad():
        stale.model.enc_proj.fc2.bias.add_(0.1)  # a "retrained" model
    stale.save(tmp_path / "stale")  # saves the head with the digest of the old model
    with pytest.raises(CheckpointError, match="another world model"):
        WorldModelAgent.load(tmp_path / "stale", planner="cem-prior")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = WorldModelAgent.load(tmp_path / "stale")
    assert plain.policy_head is None and any(
        "another world model" in str(w.message) for w in caught
    )


def test_cli_train_policy_adds_the_head_and_leaves_the_checkpoint(
    tiny_agent_dir, tworoom_data, tmp_path
):
    import shutil

    from lewm_agent.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_agent_dir, run)
    before = {f: (run / f).read_bytes() for f in ("config.json", "model.safetensors", "stats.json")}
    assert main(["train-policy", str(run), "--data", str(tworoom_data), "--steps", "5"]) == 0
    assert has_policy_head(run)
    assert {f: (run / f).read_bytes() for f in before} == before  # only the head's files added
    agent = WorldModelAgent.load(run, planner="policy")
    assert agent.policy_head_meta["training"]["log"][-1]["step"] == 4


def test_cli_train_with_policy_head(tworoom_data, tmp_path):
    from lewm_agent.cli import main

    out = tmp_path / "run"
    argv = ["train", "--data", str(tworoom_data), "--out", str(out), "--preset", "test"]
    assert main([*argv, "--steps", "3", "--policy-head", "--policy-head-steps", "4"]) == 0
    agent = WorldModelAgent.load(out, planner="cem-prior")
    assert agent.policy_head is not None
    assert agent.policy_head_meta["training"]["log"][-1]["step"] == 3
