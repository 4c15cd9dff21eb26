"""ONNX export and the torch-free OnnxAgent: parity with the torch agent, hashes, SB3."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import envs  # noqa: F401, E402
from lewm_agent import WorldModelAgent  # noqa: E402
from lewm_agent.config import PlanConfig, get_preset, replace  # noqa: E402
from lewm_agent.cost_head import CostHead, CostHeadConfig  # noqa: E402
from lewm_agent.data import ActionNormalizer  # noqa: E402
from lewm_agent.model import LeWM  # noqa: E402
from lewm_agent.onnx_agent import (  # noqa: E402
    ExportError,
    OnnxAgent,
    white_or_coloured_noise,
)
from lewm_agent.policy_head import PolicyHead, PolicyHeadConfig, model_digest  # noqa: E402
from tests.helpers import TEST_IMAGE  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PLAN = PlanConfig(samples=24, iterations=3, elites=4, horizon=3, receding_horizon=2)


def _tiny_agent(planner: str = "cem", **plan: object) -> WorldModelAgent:
    """The `test` preset's model with history 3, a policy head and a cost head, random
    weights; `plan`: PlanConfig fields."""
    torch.manual_seed(0)
    cfg = replace(get_preset("test").model, history=3)
    model = LeWM(cfg).eval()
    with torch.no_grad():
        # adaLN-zero initialises the action modulation to zero: every plan would cost the
        # same and the search's choice among ties would test nothing.
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.1)
        for m in model.modules():  # BatchNorm statistics other than the identity
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    normalizer = ActionNormalizer(mean=[0.1, -0.2], std=[0.5, 0.4])
    agent = WorldModelAgent(
        model,
        normalizer,
        np.array([-1.0, -1.0]),
        np.array([1.0, 1.0]),
        replace(PLAN, planner=planner, **plan),
        env_id="lewm/TwoRoom-v0",
        device="cpu",
    )
    head = PolicyHead(cfg.embed_dim, cfg.action_block_dim, PolicyHeadConfig(hidden=32, layers=2))
    agent.policy_head = head.eval()
    agent.policy_head_meta = {"model_digest": model_digest(model)}
    cost = CostHead(cfg.embed_dim, CostHeadConfig(hidden=32, layers=2))
    agent.controller.cost_head = cost.eval()
    agent.cost_head_meta = {"model_digest": model_digest(model)}
    return agent


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """(the tiny agent's checkpoint folder, its export folder)."""
    base = tmp_path_factory.mktemp("onnx")
    agent = _tiny_agent()
    run = agent.save(base / "run")
    return run, agent.export(base / "export")


@pytest.fixture(scope="module")
def zoo_exports(tmp_path_factory):
    """export(name) -> the export folder of zoo:name, made once per module."""
    from lewm_agent.export import export_agent

    made: dict[str, Path] = {}

    def export(name: str) -> Path:
        if name not in made:
            made[name] = export_agent("zoo:" + name, tmp_path_factory.mktemp(name) / "export")
        return made[name]

    return export


def _shipped_with_head() -> list[str]:
    """The zoo models that ship a policy head (their planner acts with it)."""
    from lewm_agent import zoo
    from lewm_agent.policy_head import has_policy_head

    return [n for n in zoo.names() if has_policy_head(zoo.folder("zoo:" + n))]


def _observations(size: int, n: int, seed: int = 0) -> list[dict]:
    """Blocky random frames (8 px cells), a new goal every 7 steps."""
    rng = np.random.default_rng(seed)

    def frame():
        cells = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
        return np.kron(cells, np.ones((8, 8, 1), dtype=np.uint8))  # (size, size, 3)

    out, goal = [], None
    for i in range(n):
        goal = frame() if i % 7 == 0 else goal
        out.append({"pixels": frame(), "goal": goal})
    return out


def _torch_noise(agent: WorldModelAgent, seeds: list[int]):
    """An OnnxAgent noise_fn drawing the torch planner's noise from torch generators."""
    gens = [torch.Generator().manual_seed(s) for s in seeds]

    def noise(rngs, shape):
        return agent.planner.noise(gens[: len(rngs)], shape).numpy()

    return noise


# ------------------------------------------------------------------------ torch-free
def test_runtime_loads_and_acts_without_torch(tiny_export):
    """A fresh interpreter: load, 10 predicts (planner, head, learned cost), and torch
    never imported."""
    _, export = tiny_export
    code = f"""
import sys
import numpy as np
from lewm_agent import OnnxAgent
plans = [
    {{"planner": "cem-prior"}},
    {{"planner": "policy"}},
    {{"planner": "cem", "cost": "latent+learned", "cost_horizon_sum": True}},
]
for plan in plans:
    agent = OnnxAgent.load({str(export)!r}, **plan)
    rng = np.random.default_rng(0)
    goal = rng.integers(0, 255, ({TEST_IMAGE}, {TEST_IMAGE}, 3), dtype=np.uint8)
    for _ in range(10):
        px = rng.integers(0, 255, ({TEST_IMAGE}, {TEST_IMAGE}, 3), dtype=np.uint8)
        action, state = agent.predict({{"pixels": px, "goal": goal}})
        assert action.shape == (2,) and state is None and np.isfinite(action).all()
print("torch" in sys.modules, "lewm_agent.agent" in sys.modules)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"], out.stdout


def test_export_writes_graphs_and_hashes(tiny_export):
    _, export = tiny_export
    meta = json.loads((export / "agent.json").read_text())
    assert set(meta["files"]["predictor"]) == {"1", "2", "3"}
    assert meta["files"]["policy_head"] == "policy_head.onnx"
    assert meta["files"]["cost_head"] == "cost_head.onnx"
    assert set(meta["sha256"]) == {
        "agent.json",
        "cost_head.onnx",
        "encoder.onnx",
        "policy_head.onnx",
        "predictor_t1.onnx",
        "predictor_t2.onnx",
        "predictor_t3.onnx",
    }
    assert meta["model"]["history"] == 3 and meta["plan"]["samples"] == PLAN.samples
    plan = meta["plan"]
    assert (plan["cost"], plan["cost_weight"], plan["cost_horizon_sum"]) == ("latent", 1.0, False)


def test_export_of_a_folder_holds_its_cost_head_and_cost(tmp_path):
    """`lewm export RUN`: the folder's cost head is exported whatever cost the run plans
    with, and the run's cost settings are the export's defaults."""
    from lewm_agent.export import export_agent

    run = _tiny_agent(cost="latent+learned", cost_weight=0.25, cost_horizon_sum=True).save(
        tmp_path / "run"
    )
    export = export_agent(run, tmp_path / "export")
    meta = json.loads((export / "agent.json").read_text())
    assert meta["files"]["cost_head"] == "cost_head.onnx" and "cost_head.onnx" in meta["sha256"]
    plan = meta["plan"]
    assert (plan["cost"], plan["cost_weight"], plan["cost_horizon_sum"]) == (
        "latent+learned",
        0.25,
        True,
    )
    onnx = OnnxAgent.load(export)
    assert onnx.plan_config.cost == "latent+learned" and onnx.plan_config.cost_horizon_sum
    plain = export_agent(WorldModelAgent.load(run, cost="latent"), tmp_path / "plain")
    assert (plain / "cost_head.onnx").is_file()  # loaded with another cost: still exported


def test_export_refuses_a_non_empty_folder(tiny_export, tmp_path):
    run, _ = tiny_export
    (tmp_path / "x.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        WorldModelAgent.load(run).export(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_edited_description_is_refused(tiny_export, tmp_path):
    import shutil

    _, export = tiny_export
    copy = Path(shutil.copytree(export, tmp_path / "copy"))
    meta = json.loads((copy / "agent.json").read_text())
    meta["action_high"] = [5.0, 5.0]  # wider bounds than the env's
    (copy / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(ExportError, match="edited after export"):
        OnnxAgent.load(copy)


@pytest.mark.parametrize("graph", ["predictor_t2.onnx", "cost_head.onnx"])
@pytest.mark.parametrize("damage", ["tamper", "delete"])
def test_changed_or_missing_graph_is_refused(tiny_export, tmp_path, damage, graph):
    import shutil

    _, export = tiny_export
    copy = Path(shutil.copytree(export, tmp_path / "copy"))
    target = copy / graph
    if damage == "tamper":
        data = bytearray(target.read_bytes())
        data[-10] ^= 0xFF
        target.write_bytes(bytes(data))
        match = "does not match its SHA-256"
    else:
        target.unlink()
        match = "is missing"
    with pytest.raises(ExportError, match=match):
        OnnxAgent.load(copy)


def test_planner_needing_a_head_is_refused_without_one(tmp_path):
    agent = _tiny_agent()
    agent.policy_head = None
    export = agent.export(tmp_path / "export")
    with pytest.raises(ExportError, match="needs a policy head"):
        OnnxAgent.load(export, planner="policy")
    OnnxAgent.load(export, planner="cem")  # the search alone needs no head


def test_a_cost_the_export_does_not_hold_is_refused(tmp_path):
    """An export without a cost-head graph: a learned cost must not silently become latent."""
    agent = _tiny_agent()
    agent.controller.cost_head = None
    export = agent.export(tmp_path / "export")
    assert json.loads((export / "agent.json").read_text())["files"]["cost_head"] is None
    for cost in ("learned", "latent+learned"):
        with pytest.raises(ExportError, match=re.escape(f"cost '{cost}' needs a cost head")):
            OnnxAgent.load(export, cost=cost)
    OnnxAgent.load(export, cost_horizon_sum=True)  # the latent cost needs no head
    # An agent whose own plan needs the head it lacks is refused before anything is written.
    agent.plan_config = replace(agent.plan_config, cost="learned")
    with pytest.raises(ValueError, match="needs a cost head"):
        agent.export(tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


# ------------------------------------------------------------------------ parity
def test_graphs_match_the_torch_model(tiny_export):
    """Encoder, every predictor window and the head agree with torch to float rounding."""
    run, export = tiny_export
    agent = WorldModelAgent.load(run, device="cpu")
    onnx = OnnxAgent.load(export)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (5, TEST_IMAGE, TEST_IMAGE, 3), dtype=np.uint8)
    z_t = agent._encode(frames)  # (5, D)
    np.testing.assert_allclose(onnx.encode(frames), z_t.numpy(), atol=1e-4)
    plan = torch.from_numpy(rng.standard_normal((5, 3, 10)).astype(np.float32))  # (5, H, fs*A)
    ctx = z_t[:, None].repeat(1, 2, 1)  # (5, 2, D)
    past = torch.from_numpy(rng.standard_normal((5, 1, 10)).astype(np.float32))
    with torch.no_grad():
        want = agent.model.rollout(ctx, past, plan)[:, -1]  # windows of 2, then 3, then 3
    got = onnx.rollout(ctx.numpy(), past.numpy(), plan.numpy())
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)
    goal = z_t.flip(0)
    np.testing.assert_allclose(
        onnx.policy_blocks(z_t.numpy(), goal.numpy(), 7.0),
        agent.policy_blocks(z_t, goal, 7.0).numpy(),
        atol=1e-4,
    )


@pytest.mark.parametrize("cost", ["latent", "learned", "latent+learned"])
@pytest.mark.parametrize("blocks", [1, 3])
def test_plan_cost_matches_the_controllers(tiny_export, cost, blocks):
    """`OnnxAgent.plan_cost` on the same predicted embeddings equals `Controller.plan_cost`
    (the final block's, or every block's as `cost_horizon_sum` scores them)."""
    run, export = tiny_export
    kw = {"cost": cost, "cost_weight": 0.5}
    agent = WorldModelAgent.load(run, device="cpu", **kw)
    onnx = OnnxAgent.load(export, **kw)
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 255, (6, TEST_IMAGE, TEST_IMAGE, 3), dtype=np.uint8)
    plan = torch.from_numpy(rng.standard_normal((6, 3, 10)).astype(np.float32))  # (6, H, fs*A)
    with torch.no_grad():
        z = agent._encode(frames)  # (6, D)
        embs = agent.model.rollout(z[:, None], None, plan)[:, -blocks:]  # (6, K, D)
        goal = z.flip(0)  # (6, D)
        want = agent.controller.plan_cost(embs, goal).numpy()  # (6,)
    got = onnx.plan_cost(embs.numpy(), goal.numpy())
    assert got.shape == want.shape == (6,) and got.dtype == np.float32
    # Steps are tens per block: relative where large, absolute near zero.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert np.ptp(want) > 1e-3  # the embeddings differ in cost: the check compares something


def test_a_trained_cost_head_through_lewm_export(tiny_agent_dir, tworoom_data, tmp_path):
    """A head fitted with `fit_cost_head` on a trained run, exported by the CLI: the
    same env steps as torch, at the goal (z = goal) as away from it."""
    from lewm_agent.cli import main

    agent = WorldModelAgent.load(tiny_agent_dir, device="cpu")
    head = {"steps": 30, "hidden": 32, "batch_size": 32, "pred_pool": 256}
    agent.fit_cost_head(tworoom_data, progress=False, **head)
    run = agent.save(tmp_path / "run")
    assert main(["export", str(run), "--out", str(tmp_path / "export")]) == 0
    onnx = OnnxAgent.load(tmp_path / "export", cost="learned")
    frames = np.stack([o["pixels"] for o in _observations(TEST_IMAGE, 8, seed=4)])
    with torch.no_grad():
        z = agent._encode(frames)  # (8, D)
        goal = torch.cat([z[:4], z[4:].flip(0)])  # the first four at their goal
        want = agent.controller.cost_head.distance(z, goal).numpy()  # (8,)
    got = onnx.cost_steps(z.numpy(), goal.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def _assert_same_actions(torch_agent, onnx_agent, observations, atol):
    """Both agents act on the same observations: equal actions, in normalised units."""
    std = torch_agent._std
    for i, obs in enumerate(observations):
        want, _ = torch_agent.predict(obs)
        got, _ = onnx_agent.predict(obs)
        diff = np.abs((got - want) / std).max()
        assert diff <= atol, f"step {i}: actions differ by {diff} (normalised)"


def test_policy_head_parity_on_a_tiny_run(tiny_export):
    run, export = tiny_export
    obs = _observations(TEST_IMAGE, 12)
    _assert_same_actions(
        WorldModelAgent.load(run, planner="policy", device="cpu"),
        OnnxAgent.load(export, planner="policy"),
        obs,
        1e-4,
    )


def test_the_zoo_models_ship_policy_heads():
    assert {"tworoom", "reacher", "cube"} <= set(_shipped_with_head())


@pytest.mark.parametrize("name", _shipped_with_head())
def test_policy_head_parity_on_the_zoo(zoo_exports, name):
    torch_agent = WorldModelAgent.load("zoo:" + name, planner="policy", device="cpu")
    obs = _observations(torch_agent.model_config.image_size, 12)
    onnx_agent = OnnxAgent.load(zoo_exports(name), planner="policy")
    _assert_same_actions(torch_agent, onnx_agent, obs, 1e-4)


@pytest.mark.parametrize(("planner", "atol"), [("cem", 1e-4), ("cem-prior", 1e-4), ("mppi", 1e-2)])
def test_search_picks_the_same_plan_given_the_same_noise(tiny_export, planner, atol):
    """Through several replans, warm starts and a growing context (history 3).

    CEM keeps the same elites, so its plan matches to float rounding; MPPI's
    softmax over costs rescaled by their span amplifies that rounding (~1e-3, as
    between batch sizes of the torch agent), so its bar is the batching test's.
    """
    run, export = tiny_export
    torch_agent = WorldModelAgent.load(run, planner=planner, device="cpu")
    onnx_agent = OnnxAgent.load(export, planner=planner)
    onnx_agent.noise_fn = _torch_noise(torch_agent, [torch_agent.plan_config.seed])
    _assert_same_actions(torch_agent, onnx_agent, _observations(TEST_IMAGE, 25), atol)


@pytest.mark.parametrize("horizon_sum", [False, True])
def test_search_with_the_learned_cost_picks_the_same_plan(tiny_export, horizon_sum):
    """CEM scored by "latent+learned" (weighted so both parts count), same seed and noise:
    the torch agent's plans; and the learned part changes what the search picks."""
    run, export = tiny_export
    kw = {"planner": "cem", "cost_weight": 0.01, "cost_horizon_sum": horizon_sum}
    obs = _observations(TEST_IMAGE, 25)
    torch_agent = WorldModelAgent.load(run, device="cpu", cost="latent+learned", **kw)
    onnx_agent = OnnxAgent.load(export, cost="latent+learned", **kw)
    onnx_agent.noise_fn = _torch_noise(torch_agent, [torch_agent.plan_config.seed])
    _assert_same_actions(torch_agent, onnx_agent, obs, 1e-4)
    latent = WorldModelAgent.load(run, device="cpu", cost="latent", **kw)
    both = WorldModelAgent.load(run, device="cpu", cost="latent+learned", **kw)
    diff = max(np.abs(latent.predict(o)[0] - both.predict(o)[0]).max() for o in obs[:6])
    assert diff > 1e-3, "the learned cost changed no plan: the parity above tests nothing new"


@pytest.mark.parametrize(
    ("name", "planner"),
    [("tworoom", "cem"), ("reacher", "cem"), ("tworoom", "cem-prior"), ("cube", "cem-prior")],
)
def test_search_parity_on_the_zoo(zoo_exports, name, planner):
    """The shipped models (coloured noise, beta 2) at a small budget: the same plans."""
    plan = {"planner": planner, "samples": 30, "iterations": 2, "elites": 5}
    torch_agent = WorldModelAgent.load("zoo:" + name, device="cpu", **plan)
    onnx_agent = OnnxAgent.load(zoo_exports(name), **plan)
    onnx_agent.noise_fn = _torch_noise(torch_agent, [torch_agent.plan_config.seed])
    obs = _observations(torch_agent.model_config.image_size, 12)
    _assert_same_actions(torch_agent, onnx_agent, obs, 1e-4)


@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_numpy_colouring_is_the_planners(beta):
    """Given the planner's white draws, numpy's colouring gives the planner's noise."""
    from lewm_agent.onnx_agent import colour_noise
    from lewm_agent.planning import make_planner

    low, high = -torch.ones(10), torch.ones(10)
    planner = make_planner(replace(PLAN, noise_beta=beta), low, high, step_dim=2)
    want = planner.noise([torch.Generator().manual_seed(4)], (24, 3, 10))[0]  # (S, H, A)
    white = torch.randn((24, 2, 15), generator=torch.Generator().manual_seed(4)).numpy()
    got = colour_noise(white, beta).transpose(0, 2, 1).reshape(24, 3, 10)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)


def test_numpy_noise_matches_the_planners_statistics():
    rngs = [np.random.default_rng(0), np.random.default_rng(1)]
    white = white_or_coloured_noise(rngs, (400, 5, 10), 2, 0.0)
    coloured = white_or_coloured_noise(rngs, (400, 5, 10), 2, 2.0)
    assert white.shape == coloured.shape == (2, 400, 5, 10)
    assert abs(white.std() - 1) < 0.05 and abs(coloured[0].std() - 1) < 0.05
    # Coloured noise moves the same way from one env step to the next; white does not.
    steps = coloured[0].reshape(400, 25, 2)
    corr = np.corrcoef(steps[:, :-1].ravel(), steps[:, 1:].ravel())[0, 1]
    assert corr > 0.5
    assert not np.allclose(white[0], white[1])


# ------------------------------------------------------------------------ batching and SB3
def test_batched_predict_equals_per_env(tiny_export):
    _, export = tiny_export
    observations = _observations(TEST_IMAGE, 3, seed=5)
    batch = {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    for planner in ("policy", "cem"):
        batched, _ = OnnxAgent.load(export, planner=planner).predict(batch)
        assert batched.shape == (3, 2)
        for i, obs in enumerate(observations):
            single = OnnxAgent.load(export, planner=planner, seed=i).predict(obs)[0]
            np.testing.assert_allclose(batched[i], single, atol=1e-4)
        assert np.abs(batched[0] - batched[1]).max() > 1e-3


def test_env_indices_act_for_a_subset_of_the_tracked_envs(tiny_export):
    """Env 2 alone, given a new goal, plans what it plans inside the batch of 3."""
    _, export = tiny_export
    obs = _observations(TEST_IMAGE, 3, seed=3)
    first = {k: np.stack([o[k] for o in obs]) for k in obs[0]}
    second = {k: v.copy() for k, v in first.items()}
    second["goal"][2] = _observations(TEST_IMAGE, 1, seed=9)[0]["goal"]  # env 2 replans
    together = OnnxAgent.load(export, planner="cem")
    subset = OnnxAgent.load(export, planner="cem")
    together.predict(first)
    subset.predict(first)
    want = together.predict(second)[0][2]
    got = subset.predict({k: v[2:] for k, v in second.items()}, env_indices=[2])[0][0]
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="distinct non-negative"):
        subset.predict(second, env_indices=[0, 0, 1])


def test_goal_from_set_goal_and_bad_input(tiny_export):
    _, export = tiny_export
    agent = OnnxAgent.load(export, planner="policy")
    obs = _observations(TEST_IMAGE, 1)[0]
    with pytest.raises(ValueError, match="no goal"):
        agent.predict(obs["pixels"])
    agent.set_goal(obs["goal"])
    fresh = OnnxAgent.load(export, planner="policy")
    np.testing.assert_array_equal(agent.predict(obs["pixels"])[0], fresh.predict(obs)[0])
    with pytest.raises(ValueError, match="image_size=32"):
        agent.predict(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        agent.predict(obs["pixels"].astype(np.float32))


def test_evaluate_policy_runs(tiny_export):
    from stable_baselines3.common.evaluation import evaluate_policy

    _, export = tiny_export
    agent = OnnxAgent.load(export, planner="cem-prior")
    env = gym.wrappers.TimeLimit(
        gym.make("lewm/TwoRoom-v0", image_size=TEST_IMAGE).unwrapped, max_episode_steps=12
    )
    mean, std = evaluate_policy(agent, env, n_eval_episodes=3, warn=False)
    assert np.isfinite(mean) and np.isfinite(std)


CHEAP_PROTOCOL_SECONDS = 20.0
"""A card's 50-episode run under this (10 episodes, twice, a few seconds) is cheap
enough for the default run."""


def _regression_params() -> list:
    """Every shipped zoo model: in the default run where it acts with its policy head
    (milliseconds per action) in an env that steps fast (the card's own 50-episode
    wall time), else slow (a search costs seconds per decision; Cube's env is slow)."""
    from eval import zoo_card
    from lewm_agent import zoo

    def marks(name: str) -> tuple:
        card = zoo_card.read_card(name)
        cheap = (
            card["planner"] == "policy"
            and card["results"][card["dtype"]]["seconds"] < CHEAP_PROTOCOL_SECONDS
        )
        return () if cheap else (pytest.mark.slow,)

    return [pytest.param(n, marks=marks(n)) for n in zoo.names()]


@pytest.mark.parametrize("name", _regression_params())
def test_zoo_regression_episodes_through_onnx(name, zoo_exports):
    """The zoo's regression episodes (first 10 shipped), with the planner the model
    ships with, through OnnxAgent clear the card's threshold; with the policy head
    (deterministic, no sampled noise) they are the very episodes the torch agent solves."""
    from eval import zoo_card
    from eval.protocol import run_protocol
    from eval.zoo import protocol_episodes

    card = zoo_card.read_card(name)
    episodes = protocol_episodes("zoo:" + name, n=10)
    agents = {"onnx": OnnxAgent.load(zoo_exports(name))}
    if card["planner"] == "policy":  # a search draws numpy's noise here, torch's there
        agents["torch"] = WorldModelAgent.load("zoo:" + name, device="cpu")
    solved = {}
    for kind, agent in agents.items():
        result, _ = run_protocol(
            card["env_id"],
            agent,
            episodes,
            env_kwargs={"image_size": card["data"]["image_size"]},
            progress=False,
        )
        solved[kind] = [bool(e["success"]) for e in result.per_episode]
    threshold = card["regression"]["min_successes"]
    print(f"zoo:{name}: {solved} (threshold {threshold})")
    if "torch" in solved:
        assert solved["onnx"] == solved["torch"], f"zoo:{name}: OnnxAgent solved other episodes"
    assert sum(solved["onnx"]) >= threshold
