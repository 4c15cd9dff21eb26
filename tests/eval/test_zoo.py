"""The model zoo: fp16 conversion, loading by name or by a copied folder, shipped
episodes, damage, regression.

The regression tests run every shipped zoo model on the first 10 of its shipped
protocol episodes with the planner its config.json holds (the one its card records)
and fail below the card's threshold (Two-Room: at least 9/10 whatever the card
says), so a regression in the planner, the rollout, the encoder or the checkpoint
format shows up in `make test`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from eval import zoo as ezoo
from eval import zoo_card
from lewm_agent import WorldModelAgent, zoo
from lewm_agent.checkpoint import WEIGHTS_FILE, CheckpointError, load_checkpoint
from tests.helpers.zoo import add_to_new_zoo

# Two-Room must keep at least 9/10, whatever its card says.
HARD_FLOORS = {"tworoom": 9}
SHIPPED = zoo.names()


# ------------------------------------------------------------------ conversion
def test_float16_conversion_halves_the_file_and_loads_as_float32(tiny_agent_dir, tmp_path):
    out = ezoo.convert(tiny_agent_dir, tmp_path / "half", "float16")
    with safe_open(str(out / WEIGHTS_FILE), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    assert torch.int64 in dtypes  # BatchNorm's batch counter keeps its integer dtype
    full = (tiny_agent_dir / WEIGHTS_FILE).stat().st_size
    assert (out / WEIGHTS_FILE).stat().st_size < 0.6 * full

    half_model, _, _ = load_checkpoint(out)
    full_model, _, _ = load_checkpoint(tiny_agent_dir)
    assert all(p.dtype == torch.float32 for p in half_model.parameters())  # upcast at load
    x = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        za, zb = half_model.encode(x), full_model.encode(x)
    assert torch.allclose(za, zb, atol=5e-2 * zb.abs().max().item())
    assert not torch.equal(za, zb)  # it really was rounded


def test_convert_rejects_unknown_dtype(tiny_agent_dir, tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        ezoo.convert(tiny_agent_dir, tmp_path / "x", "int8")


# -------------------------------------------------------------- a zoo of one
@pytest.fixture(scope="module")
def tiny_zoo(tiny_agent_dir, tworoom_data, tmp_path_factory):
    """A zoo folder holding the tiny test agent as zoo:tiny (4 protocol episodes)."""
    train_cmd = "WorldModelAgent.fit(preset='test', steps=40)"
    root = tmp_path_factory.mktemp("zoo")
    return add_to_new_zoo(root, tiny_agent_dir, "tiny", tworoom_data, train_cmd=train_cmd)


@pytest.fixture
def in_tiny_zoo(tiny_zoo, monkeypatch):
    monkeypatch.setenv(zoo.ROOT_ENV, str(tiny_zoo))
    return tiny_zoo


def test_add_writes_card_episodes_and_hashes(in_tiny_zoo, tworoom_data, tiny_agent_dir):
    from eval.protocol import sample_episodes
    from lewm_agent.data import load_dataset

    card = zoo_card.read_card("tiny")
    assert card["card_version"] == zoo_card.CARD_VERSION
    assert card["dtype"] in ("float16", "float32")
    assert set(card["results"]) == {"float16", "float32"}
    for res in card["results"].values():
        assert res["episodes"] == 4 and len(res["per_episode"]) == 4
        lo, hi = res["success_ci95"]
        assert 0 <= lo <= res["success_rate"] <= hi <= 1
    assert card["size_bytes"]["float16"] < card["size_bytes"]["float32"]
    assert set(card["files"]) == set(ezoo.HASHED_FILES)
    # The card records the planner the shipped config.json holds, and its plan.
    config = json.loads((in_tiny_zoo / "tiny" / "config.json").read_text())
    assert card["planner"] == config["plan"]["planner"] == "cem"
    assert card["plan"] == config["plan"]
    assert (in_tiny_zoo / "tiny" / "README.md").is_file()
    assert not [p for p in in_tiny_zoo.iterdir() if p.name.startswith(".")]  # temp removed

    # The shipped episodes are bit for bit what `lewm eval --data` draws.
    _, heldout = load_dataset(tworoom_data).split(0.1)
    want = sample_episodes(heldout, n=4, seed=42)
    from eval.zoo import protocol_episodes

    got = protocol_episodes("zoo:tiny", n=4)
    for g, w in zip(got, want, strict=True):
        assert (g.episode, g.start_step) == (w.episode, w.start_step)
        assert np.array_equal(g.start_state, w.start_state)
        assert np.array_equal(g.goal_state, w.goal_state)
        assert g.start_state.dtype == np.float32
    # A prefix of the shipped episodes = a shorter draw (sample_episodes draws in order).
    assert [e.start_step for e in protocol_episodes("zoo:tiny", n=2)] == [
        e.start_step for e in sample_episodes(heldout, n=2, seed=42)
    ]
    with pytest.raises(ValueError, match="ships 4"):
        protocol_episodes("zoo:tiny", n=5)
    with pytest.raises(ValueError, match="seed 42"):
        protocol_episodes("zoo:tiny", n=2, seed=1)


def test_load_by_name_from_any_directory(in_tiny_zoo, tmp_path, monkeypatch, tiny_agent_dir):
    monkeypatch.chdir(tmp_path)
    agent = WorldModelAgent.load("zoo:tiny", device="cpu")
    ref = WorldModelAgent.load(tiny_agent_dir, device="cpu")
    assert agent.env_id == ref.env_id == "lewm/TwoRoom-v0"
    assert agent.plan_config == ref.plan_config
    assert all(p.dtype == torch.float32 for p in agent.model.parameters())


def test_default_zoo_is_found_from_the_source_tree(monkeypatch, tmp_path):
    monkeypatch.delenv(zoo.ROOT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert zoo.zoo_root() == Path(__file__).resolve().parents[2] / "zoo"


def test_unknown_name_lists_the_available_ones(in_tiny_zoo):
    with pytest.raises(zoo.ZooError, match=r"no zoo model named 'nope'.*available: zoo:tiny"):
        WorldModelAgent.load("zoo:nope")
    for bad in ("zoo:", "zoo:../tiny", "zoo:.add-x"):
        with pytest.raises(zoo.ZooError, match="no zoo model"):
            zoo.folder(bad)


def test_cli_list_and_eval_without_data(in_tiny_zoo, capsys):
    from lewm_agent.cli import main

    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "| lewm/TwoRoom-v0 | zoo:tiny |" in out and "card.json" in out
    assert main(["zoo", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "zoo:tiny" and rows[0]["episodes"] == 4
    # No --data: the shipped episodes are used.
    assert main(["eval", "--agent", "zoo:tiny", "--episodes", "2", "--device", "cpu"]) == 0
    assert "| lewm |" in capsys.readouterr().out
    assert main(["eval", "--agent", "zoo:tiny", "--episodes", "9", "--device", "cpu"]) == 1
    assert "ships 4 protocol episodes" in capsys.readouterr().err
    assert main(["eval", "--agent", "zoo:nope", "--device", "cpu"]) == 1
    assert "available: zoo:tiny" in capsys.readouterr().err


def test_eval_of_a_folder_still_needs_data(tiny_agent_dir):
    from lewm_agent.cli import main

    with pytest.raises(SystemExit, match="needs --data"):
        main(["eval", "--agent", str(tiny_agent_dir), "--episodes", "1", "--device", "cpu"])


# -------------------------------------------------------------------- damage
@pytest.fixture
def damaged_zoo(tiny_zoo, tmp_path, monkeypatch):
    """A private copy of the tiny zoo, for tests that break its files."""
    root = tmp_path / "zoo"
    shutil.copytree(tiny_zoo, root)
    monkeypatch.setenv(zoo.ROOT_ENV, str(root))
    return root / "tiny"


def test_a_flipped_byte_in_the_weights_is_a_clear_error(damaged_zoo):
    weights = damaged_zoo / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the middle of the tensor data
    weights.write_bytes(bytes(data))
    # safetensors alone would load this silently; the checkpoint's own SHA-256 does not,
    # and neither does the card's.
    with pytest.raises(
        CheckpointError, match=r"model.safetensors is truncated or corrupt: its SHA"
    ):
        WorldModelAgent.load("zoo:tiny")
    with pytest.raises(zoo.ZooError, match=r"model.safetensors has SHA-256 .*damaged"):
        ezoo.verify("zoo:tiny")


def test_a_truncated_weights_file_is_a_clear_error(damaged_zoo):
    weights = damaged_zoo / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        WorldModelAgent.load("zoo:tiny")
    with pytest.raises(zoo.ZooError, match=r"bytes, its card records .*truncated"):
        ezoo.verify("zoo:tiny")


@pytest.mark.parametrize("name", ["config.json", "stats.json", "episodes.json"])
def test_edited_or_missing_side_files_are_caught(damaged_zoo, name):
    path = damaged_zoo / name
    path.write_text(path.read_text().replace("1", "2", 1))
    with pytest.raises(zoo.ZooError, match=name):
        ezoo.verify("zoo:tiny")
    if name == "episodes.json":  # not part of the model: checked where it is read
        with pytest.raises(zoo.ZooError, match="differs from the SHA-256 its card"):
            zoo.read_episodes("zoo:tiny")
    else:
        with pytest.raises(CheckpointError, match=name):  # its hash, or the edited field
            WorldModelAgent.load("zoo:tiny")
    path.unlink()
    with pytest.raises(zoo.ZooError, match=f"{name} is missing"):
        ezoo.verify("zoo:tiny")


def test_a_card_of_another_version_is_refused(damaged_zoo):
    card_path = damaged_zoo / zoo.CARD_FILE
    card = json.loads(card_path.read_text())
    card["card_version"] = 2
    card_path.write_text(json.dumps(card))
    with pytest.raises(zoo.ZooError, match="card_version 2, this lewm-agent reads 3"):
        ezoo.verify("zoo:tiny")


def test_a_card_that_disagrees_with_its_config_is_refused(damaged_zoo):
    """The card records the planner; config.json holds it. A card naming another
    planner does not change what the model acts with, and `verify` reports it."""
    card_path = damaged_zoo / zoo.CARD_FILE
    card = json.loads(card_path.read_text())
    card["planner"] = "mppi"
    card_path.write_text(json.dumps(card))
    assert WorldModelAgent.load("zoo:tiny").plan_config.planner == "cem"
    with pytest.raises(zoo.ZooError, match="card records planner 'mppi'.*holds 'cem'"):
        ezoo.verify("zoo:tiny")


# ------------------------------------------------------------ a copied folder
def _actions(agent: WorldModelAgent, env_id: str, steps: int = 7) -> np.ndarray:
    """The agent's actions over `steps` steps of two envs from fixed seeds: (steps, 2, A)."""
    import gymnasium as gym

    import envs  # noqa: F401

    made = [gym.make(env_id, image_size=agent.model_config.image_size) for _ in range(2)]
    obs = [e.reset(seed=s)[0] for s, e in enumerate(made)]
    out = []
    for _ in range(steps):
        batch = {k: np.stack([o[k] for o in obs]) for k in ("pixels", "goal")}
        actions, _ = agent.predict(batch)
        out.append(actions)
        obs = [e.step(a)[0] for e, a in zip(made, actions, strict=True)]
    return np.stack(out)


def test_a_copied_zoo_folder_acts_like_its_zoo_name(in_tiny_zoo, tmp_path):
    copy = tmp_path / "elsewhere" / "tiny"
    shutil.copytree(in_tiny_zoo / "tiny", copy)
    by_name = WorldModelAgent.load("zoo:tiny", device="cpu")
    by_copy = WorldModelAgent.load(copy, device="cpu")
    assert by_copy.plan_config == by_name.plan_config
    np.testing.assert_array_equal(
        _actions(by_copy, "lewm/TwoRoom-v0"), _actions(by_name, "lewm/TwoRoom-v0")
    )
    # Its shipped episodes come with it: `lewm eval --agent COPY` needs no --data.
    assert zoo.ref_of(copy) == str(copy) and zoo.ref_of("zoo:tiny") == "zoo:tiny"
    shipped, copied = zoo.read_episodes("zoo:tiny"), zoo.read_episodes(copy)
    for a, b in zip(shipped["episodes"], copied["episodes"], strict=True):
        assert a["start_step"] == b["start_step"]
        assert np.array_equal(a["start_state"], b["start_state"])


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "stats.json"])
def test_a_tampered_file_in_a_copied_folder_is_refused(in_tiny_zoo, tmp_path, name):
    copy = tmp_path / "copy"
    shutil.copytree(in_tiny_zoo / "tiny", copy)
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=name):
        WorldModelAgent.load(copy)


def test_the_shipped_cube_copied_elsewhere_acts_like_zoo_cube(tmp_path, monkeypatch):
    """zoo/cube acts with its policy head; so does a copy of the folder, anywhere."""
    monkeypatch.delenv(zoo.ROOT_ENV, raising=False)
    if "cube" not in SHIPPED:
        pytest.skip("no Cube zoo model")
    copy = tmp_path / "cube"
    shutil.copytree(zoo.folder("zoo:cube"), copy)
    by_name = WorldModelAgent.load("zoo:cube", device="cpu")
    by_copy = WorldModelAgent.load(copy, device="cpu")
    assert by_name.plan_config.planner == by_copy.plan_config.planner == "policy"
    assert by_copy.plan_config == by_name.plan_config and by_copy.policy_head is not None
    np.testing.assert_array_equal(
        _actions(by_copy, "lewm/Cube-v0", 11), _actions(by_name, "lewm/Cube-v0", 11)
    )


# ------------------------------------------------------- the shipped models
def test_the_zoo_ships_two_room_and_reacher():
    assert {"tworoom", "reacher"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_match_their_card(name):
    ezoo.verify("zoo:" + name)
    card = zoo_card.read_card(name)
    assert card["dtype"] == "float16" or card["results"]["float16"]["successes"] < (
        card["results"]["float32"]["successes"] - 1
    )
    assert len(zoo.read_episodes("zoo:" + name)["episodes"]) == card["protocol"]["episodes"]


def regression_successes(name: str, episodes: int = 10) -> tuple[int, int]:
    """(successes on the first `episodes` shipped protocol episodes, threshold)."""
    import envs  # noqa: F401  (registers lewm/*)
    from eval.protocol import run_protocol
    from eval.zoo import protocol_episodes

    card = zoo_card.read_card(name)
    agent = WorldModelAgent.load("zoo:" + name, device="cpu")  # the planner config.json holds
    assert agent.plan_config.planner == card["planner"]
    result, _ = run_protocol(
        card["env_id"],
        agent,
        protocol_episodes("zoo:" + name, n=episodes),
        env_kwargs={"image_size": agent.model_config.image_size},
        progress=False,
    )
    threshold = max(card["regression"]["min_successes"], HARD_FLOORS.get(name, 0))
    return result.successes, threshold


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_still_solves_its_episodes(name):
    successes, threshold = regression_successes(name)
    assert successes >= threshold, (
        f"zoo:{name} solved {successes}/10 of its shipped protocol episodes, the card's "
        f"threshold is {threshold}: the planner, rollout, encoder or checkpoint format regressed"
    )


@pytest.mark.slow
def test_the_regression_test_fails_with_a_broken_planner(monkeypatch):
    """The regression test can fail: a controller that ignores the goal flunks it (a
    search whose cost is constant, a policy head told it already stands at the goal),
    whichever planner the card ships."""
    from lewm_agent.controllers import Controller

    if "tworoom" not in SHIPPED:
        pytest.skip("no Two-Room zoo model")

    def constant_cost(self, z_ctx, past, goal, generators, init_mean=None):
        def cost_fn(plans):
            return torch.zeros(plans.shape[0])

        return self.planner.plan(cost_fn, generators, init_mean)

    head_blocks = Controller.policy_blocks

    def goal_blind_head(self, z, goal, steps_left):
        return head_blocks(self, z, z, steps_left)  # the goal replaced by where it stands

    monkeypatch.setattr(WorldModelAgent, "plan_latent", constant_cost)
    monkeypatch.setattr(Controller, "policy_blocks", goal_blind_head)
    successes, threshold = regression_successes("tworoom")
    assert successes < threshold
