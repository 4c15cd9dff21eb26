"""The learned planning cost: it orders pairs by temporal distance, its files are bound
to the model and hashed, and the planner uses it when `PlanConfig.cost` asks for it."""

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from lewm_agent import CheckpointError, WorldModelAgent
from lewm_agent.checkpoint import HASHES_KEY
from lewm_agent.config import PlanConfig
from lewm_agent.cost_head import (
    COST_CONFIG_FILE,
    COST_FILES,
    COST_WEIGHTS_FILE,
    CostHead,
    CostHeadConfig,
    _pairs,
    has_cost_head,
    heldout_check,
    replace_pred,
    target_of,
)
from lewm_agent.data import load_dataset
from lewm_agent.validation import ConfigError

HEAD = {"steps": 300, "hidden": 64, "batch_size": 64}
MODEL_STEPS = 200
"""The session's tiny agent trains 40 steps, too few for an embedding that tells the
rooms' positions apart; 200 steps of the `test` preset take a few seconds."""
SPEARMAN_FLOOR = 0.45
"""Held-out rank correlation of the head's distance with the steps between the frames
(pairs 1..max_gap apart). This setting reaches 0.55-0.66 over three model seeds and two
head seeds (the latent distance of the same model: about 0.67, as Two-Room's embedding
already tracks position); an untrained head of the same shape: -0.15 to 0.42, so the
test also asks the fit to beat the untrained head by UNTRAINED_MARGIN."""
UNTRAINED_MARGIN = 0.2


@pytest.fixture(scope="module")
def cost_agent(tworoom_data):
    agent = WorldModelAgent.fit(tworoom_data, preset="test", steps=MODEL_STEPS, progress=False)
    meta = agent.fit_cost_head(tworoom_data, progress=False, **HEAD)
    assert meta is agent.cost_head_meta and agent.controller.cost_head is not None
    return agent


@pytest.fixture(scope="module")
def cost_agent_dir(cost_agent, tmp_path_factory):
    return cost_agent.save(tmp_path_factory.mktemp("cost") / "agent")


def _heldout_pairs(agent, data):
    split = load_dataset(data).split(0.1)[1]
    cfg = replace_pred(CostHeadConfig())
    return _pairs(
        split,
        agent.model,
        agent.normalizer,
        cfg,
        np.random.default_rng(0),
        torch.device("cpu"),
        False,
    )


def test_learned_cost_orders_heldout_pairs_by_temporal_distance(cost_agent, tworoom_data):
    head = cost_agent.controller.cost_head
    held = _heldout_pairs(cost_agent, tworoom_data)
    _, rho = heldout_check(head, held, seed=7)
    assert rho > SPEARMAN_FLOOR, rho
    assert cost_agent.cost_head_meta["training"]["heldout_spearman"] > SPEARMAN_FLOOR
    torch.manual_seed(0)
    _, rho_untrained = heldout_check(CostHead(head.embed_dim, head.cfg).eval(), held, seed=7)
    assert rho > rho_untrained + UNTRAINED_MARGIN, (rho, rho_untrained)
    # distance is in env steps, >= 0, and a frame is near itself
    z = held.emb[:64]
    d_self = head.distance(z, z)
    d_far = head.distance(z, held.emb[64:128].flip(0))
    assert (d_self >= 0).all() and d_self.mean() < d_far.mean()


def test_target_is_a_clipped_log_of_the_steps() -> None:
    t = target_of(np.array([0, 1, 64, 500]), 64)
    assert t[0] == 0 and 0 < t[1] < t[2] and t[2] == pytest.approx(1.0) == t[3]


def test_cost_head_round_trip_and_hashes(cost_agent, cost_agent_dir):
    assert has_cost_head(cost_agent_dir)
    hashes = json.loads((cost_agent_dir / "config.json").read_text())[HASHES_KEY]
    assert set(COST_FILES) <= set(hashes)
    meta = json.loads((cost_agent_dir / COST_CONFIG_FILE).read_text())
    assert meta["config"]["hidden"] == 64 and meta["model_digest"]
    loaded = WorldModelAgent.load(cost_agent_dir, cost="learned")
    a, b = cost_agent.controller.cost_head, loaded.controller.cost_head
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    z = torch.randn(5, a.embed_dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.distance(z, z.flip(0)), b.distance(z, z.flip(0)))


def test_tampered_or_missing_cost_files_are_refused(cost_agent_dir, tiny_agent_dir, tmp_path):
    with pytest.raises(CheckpointError, match="lewm train-cost RUN --data DATA"):
        WorldModelAgent.load(tiny_agent_dir, cost="learned")
    for name in COST_FILES:
        bad = tmp_path / f"tampered-{name}"
        shutil.copytree(cost_agent_dir, bad)
        raw = bytearray((bad / name).read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (bad / name).write_bytes(bytes(raw))
        with pytest.raises(CheckpointError, match="corrupt"):
            WorldModelAgent.load(bad, cost="learned")
        gone = tmp_path / f"missing-{name}"
        shutil.copytree(cost_agent_dir, gone)
        (gone / name).unlink()
        with pytest.raises(CheckpointError, match="missing"):
            WorldModelAgent.load(gone, cost="learned")


def test_a_head_of_another_model_is_refused(cost_agent_dir, tmp_path):
    stale = WorldModelAgent.load(cost_agent_dir, cost="learned")
    with torch.no_grad():
        stale.model.enc_proj.fc2.bias.add_(0.1)  # a "retrained" model
    stale.save(tmp_path / "stale")  # the head keeps the digest of the old model
    with pytest.raises(CheckpointError, match="another world model.*lewm train-cost"):
        WorldModelAgent.load(tmp_path / "stale", cost="learned")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = WorldModelAgent.load(tmp_path / "stale", cost="latent")
    assert plain.controller.cost_head is None
    assert any("another world model" in str(w.message) for w in caught)


def _plan(agent, seed=0):
    d, h = agent.model_config.embed_dim, agent.model_config.history
    g = torch.Generator().manual_seed(1)
    z_ctx, goal = torch.randn(2, h, d, generator=g), torch.randn(2, d, generator=g)
    past = torch.randn(2, h - 1, 10, generator=g) if h > 1 else None
    gens = [torch.Generator().manual_seed(seed + i) for i in range(2)]
    return agent.plan_latent(z_ctx, past, goal, gens)


@pytest.mark.parametrize("cost", ["learned", "latent+learned"])
@pytest.mark.parametrize("horizon_sum", [False, True])
def test_planning_with_the_learned_cost(cost_agent_dir, cost, horizon_sum):
    kw = {"samples": 32, "elites": 4, "iterations": 3}
    latent = WorldModelAgent.load(cost_agent_dir, **kw)
    learned = WorldModelAgent.load(cost_agent_dir, cost=cost, cost_horizon_sum=horizon_sum, **kw)
    a, b = _plan(latent), _plan(learned)
    assert torch.isfinite(b.actions).all() and torch.isfinite(b.cost).all()
    assert (b.actions >= learned._low_n).all() and (b.actions <= learned._high_n).all()
    assert not torch.equal(a.actions, b.actions)
    if cost == "learned" and not horizon_sum:  # the best plan's cost is env steps
        assert (b.cost >= 0).all() and (b.cost < 10 * CostHeadConfig().max_gap).all()


def test_learned_cost_needs_a_head_attached(cost_agent_dir):
    agent = WorldModelAgent.load(cost_agent_dir, cost="learned")
    agent.controller.cost_head = None
    with pytest.raises(ValueError, match="lewm train-cost"):
        _plan(agent)


def test_validation_rejects_bad_cost_settings() -> None:
    with pytest.raises(ConfigError, match="PlanConfig.cost must be one of"):
        PlanConfig(cost="euclid")
    with pytest.raises(ConfigError, match="cost_weight"):
        PlanConfig(cost_weight=-1.0)
    with pytest.raises(ConfigError, match="far_fraction"):
        CostHeadConfig(far_fraction=1.5)
    with pytest.raises(ConfigError, match="max_gap"):
        CostHeadConfig(max_gap=0)


def test_cli_train_cost_writes_the_files(tiny_agent_dir, tworoom_data, tmp_path, capsys):
    from lewm_agent.cli import build_parser, main

    run = tmp_path / "run"
    shutil.copytree(tiny_agent_dir, run)
    weights = (run / "model.safetensors").read_bytes()
    assert main(["train-cost", str(run), "--data", str(tworoom_data), "--steps", "5"]) == 0
    assert has_cost_head(run) and "saved cost head" in capsys.readouterr().out
    assert (run / "model.safetensors").read_bytes() == weights
    hashes = json.loads((run / "config.json").read_text())[HASHES_KEY]
    assert {COST_WEIGHTS_FILE, COST_CONFIG_FILE} <= set(hashes)
    agent = WorldModelAgent.load(run, cost="learned")
    assert agent.cost_head_meta["training"]["log"][-1]["step"] == 4
    args = build_parser().parse_args(["eval", "--agent", str(run), "--cost", "learned"])
    assert args.plan_cost == "learned"


def test_predicted_pairs_cover_near_and_far_goals(cost_agent, tworoom_data):
    """The predicted starts are paired with goals at or after the frame they stand for,
    near ones and, with far pairs, ones beyond max_gap (clipped targets)."""
    split = load_dataset(tworoom_data).split(0.1)[0]
    cfg = CostHeadConfig(pred_pool=512, far_fraction=0.5)
    pairs = _pairs(
        split, cost_agent.model, cost_agent.normalizer, cfg, np.random.default_rng(0),
        torch.device("cpu"), False,
    )  # fmt: skip
    z, goal_rows, steps = pairs.pred
    assert z.shape == (512, cost_agent.model_config.embed_dim) and torch.isfinite(z).all()
    assert (steps >= 0).all() and (steps < cfg.max_gap).any() and (steps > cfg.max_gap).any()
    assert (goal_rows < len(pairs.emb)).all()
