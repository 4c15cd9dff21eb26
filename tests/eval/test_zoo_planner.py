"""The zoo ships a model with the planner it was measured with (and its policy head).

`lewm zoo add RUN --planner policy` writes the planner into the shipped config.json,
copies RUN's latent policy head beside the model (converted with it, its hashes in
config.json and the card) and records the planner in the card;
`WorldModelAgent.load("zoo:NAME")`, a load of the folder (or of a copy of it) and
`lewm eval --agent zoo:NAME` act with it.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from eval import zoo as ezoo
from eval import zoo_card
from lewm_agent import CheckpointError, WorldModelAgent, zoo
from lewm_agent.controllers import Controller
from lewm_agent.planning import uses_policy
from lewm_agent.policy_head import HEAD_CONFIG_FILE, HEAD_WEIGHTS_FILE
from tests.helpers.zoo import add_to_new_zoo

HEAD = {"steps": 30, "hidden": 32, "batch_size": 32}


@pytest.fixture(scope="module")
def head_run(tiny_agent_dir, tworoom_data, tmp_path_factory):
    """The tiny Two-Room agent (checkpoint planner "cem") with a tiny policy head."""
    agent = WorldModelAgent.load(tiny_agent_dir, device="cpu")
    agent.fit_policy_head(tworoom_data, progress=False, **HEAD)
    return agent.save(tmp_path_factory.mktemp("headrun") / "run")


@pytest.fixture(scope="module")
def head_zoo(head_run, tworoom_data, tmp_path_factory):
    """A zoo holding `head_run` as zoo:tinyhead, measured with planner "policy"."""
    train_cmd = "fit(preset='test', steps=40) + fit_policy_head(steps=30)"
    root = tmp_path_factory.mktemp("headzoo")
    return add_to_new_zoo(
        root, head_run, "tinyhead", tworoom_data, train_cmd=train_cmd, planner="policy"
    )


@pytest.fixture
def in_head_zoo(head_zoo, monkeypatch):
    monkeypatch.setenv(zoo.ROOT_ENV, str(head_zoo))
    return head_zoo


@pytest.fixture
def damaged(head_zoo, tmp_path, monkeypatch):
    """A private copy of the head zoo, for tests that break its files."""
    root = tmp_path / "zoo"
    shutil.copytree(head_zoo, root)
    monkeypatch.setenv(zoo.ROOT_ENV, str(root))
    return root / "tinyhead"


def test_head_file_names_match_the_policy_head_module():
    assert ezoo.HEAD_FILES == (HEAD_WEIGHTS_FILE, HEAD_CONFIG_FILE)


def test_add_with_planner_policy_ships_the_head_and_records_the_planner(in_head_zoo, head_run):
    card = zoo_card.read_card("tinyhead")
    assert card["card_version"] == zoo_card.CARD_VERSION == 3
    assert card["planner"] == "policy" and card["plan"]["planner"] == "policy"
    assert "--planner policy" in card["commands"]["zoo_add"]
    assert set(card["files"]) == {*ezoo.HASHED_FILES, *ezoo.HEAD_FILES}
    folder = in_head_zoo / "tinyhead"
    # The shipped config.json holds the planner (the run's said "cem") and lists the
    # head's hashes: the folder is self-contained.
    config = json.loads((folder / "config.json").read_text())
    assert json.loads((head_run / "config.json").read_text())["plan"]["planner"] == "cem"
    assert config["plan"]["planner"] == "policy" and config["plan"] == card["plan"]
    assert {HEAD_WEIGHTS_FILE, HEAD_CONFIG_FILE} <= set(config["sha256"])
    # The head is stored in the model's dtype and tied to the converted model.
    sizes = card["policy_head_size_bytes"]
    assert sizes["float16"] < 0.6 * sizes["float32"]
    want = {"float16": torch.float16, "float32": torch.float32}[card["dtype"]]
    with safe_open(str(folder / HEAD_WEIGHTS_FILE), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {want}
    meta = json.loads((folder / HEAD_CONFIG_FILE).read_text())
    source = json.loads((head_run / HEAD_CONFIG_FILE).read_text())
    assert meta["source_model_digest"] == source["model_digest"]
    assert meta["dtype"] == card["dtype"]
    assert meta["config"] == source["config"]
    assert card["policy_head"]["config"]["hidden"] == HEAD["hidden"]
    assert card["policy_head"]["steps"] == HEAD["steps"]
    readme = (folder / "README.md").read_text()
    assert "planner `policy`" in readme and "policy_head.safetensors" in readme


def test_load_by_name_acts_with_the_shipped_planner(in_head_zoo):
    agent = WorldModelAgent.load("zoo:tinyhead", device="cpu")
    assert agent.plan_config.planner == "policy"
    assert agent.policy_head is not None
    assert all(p.dtype == torch.float32 for p in agent.policy_head.parameters())
    # An explicit planner still wins, and plan overrides keep the shipped planner.
    assert WorldModelAgent.load("zoo:tinyhead", planner="cem").plan_config.planner == "cem"
    over = WorldModelAgent.load("zoo:tinyhead", samples=17).plan_config
    assert (over.planner, over.samples) == ("policy", 17)


def test_a_copied_zoo_folder_is_the_zoo_model(in_head_zoo, tmp_path):
    """`load(<copy of zoo/NAME>)` = `load("zoo:NAME")`: the shipped planner and head."""
    copy = tmp_path / "anywhere" / "tinyhead"
    shutil.copytree(in_head_zoo / "tinyhead", copy)
    agent = WorldModelAgent.load(copy, device="cpu")
    assert agent.plan_config == WorldModelAgent.load("zoo:tinyhead").plan_config
    assert agent.plan_config.planner == "policy" and agent.policy_head is not None
    assert WorldModelAgent.load(copy, planner="cem").plan_config.planner == "cem"


def test_a_damaged_head_in_a_copied_folder_is_refused(in_head_zoo, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(in_head_zoo / "tinyhead", copy)
    weights = copy / HEAD_WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="policy_head.safetensors is truncated or corrupt"):
        WorldModelAgent.load(copy)


def test_a_folder_outside_the_zoo_is_a_plain_checkpoint(head_run, in_head_zoo):
    assert zoo.ref_of(head_run) is None  # no shipped episodes: `lewm eval` needs --data
    assert WorldModelAgent.load(head_run, device="cpu").plan_config.planner == "cem"


def test_replay_with_the_shipped_planner_reproduces_the_card(in_head_zoo):
    """What the regression test does: the card's result comes back episode by episode."""
    import envs  # noqa: F401
    from eval.protocol import run_protocol
    from eval.zoo import protocol_episodes

    card = zoo_card.read_card("tinyhead")
    agent = WorldModelAgent.load("zoo:tinyhead", device="cpu")
    result, _ = run_protocol(
        card["env_id"],
        agent,
        protocol_episodes("zoo:tinyhead", n=4),
        env_kwargs={"image_size": agent.model_config.image_size},
        progress=False,
    )
    got = "".join("1" if e["success"] else "0" for e in result.per_episode)
    assert got == card["results"][card["dtype"]]["per_episode"]


def test_cli_eval_and_list_use_the_shipped_planner(in_head_zoo, monkeypatch, capsys):
    from lewm_agent.cli import main

    calls = {"policy": 0, "plan": 0}
    act_policy, plan = Controller.act_policy, Controller.plan

    def count_policy(self, *a, **k):
        calls["policy"] += 1
        return act_policy(self, *a, **k)

    def count_plan(self, *a, **k):
        calls["plan"] += 1
        return plan(self, *a, **k)

    monkeypatch.setattr(Controller, "act_policy", count_policy)
    monkeypatch.setattr(Controller, "plan", count_plan)
    assert main(["eval", "--agent", "zoo:tinyhead", "--episodes", "1", "--device", "cpu"]) == 0
    assert calls["policy"] > 0 and calls["plan"] == 0
    assert main(["eval", "--agent", "zoo:tinyhead", "--episodes", "1", "--planner", "cem",
                 "--device", "cpu"]) == 0  # fmt: skip
    assert calls["plan"] > 0  # --planner still wins
    capsys.readouterr()
    assert main(["zoo", "list"]) == 0
    assert "| lewm/TwoRoom-v0 | zoo:tinyhead | policy |" in capsys.readouterr().out
    assert main(["zoo", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["planner"] == "policy"


# ------------------------------------------------------------------- refusals
def test_missing_head_is_a_clear_error_before_anything_is_written(
    tiny_agent_dir, tmp_path, monkeypatch, capsys
):
    from eval.zoo import add
    from lewm_agent.cli import main

    root = tmp_path / "zoo"
    monkeypatch.setenv(zoo.ROOT_ENV, str(root))
    # The data path does not exist: the planner check comes before anything reads it.
    for planner in ("policy", "cem-prior", "mppi-prior"):
        with pytest.raises(zoo.ZooError, match=rf"lewm train-policy {tiny_agent_dir} --data DATA"):
            add(tiny_agent_dir, "nohead", tmp_path / "nodata", collect_cmd="c", train_cmd="t",
                planner=planner)  # fmt: skip
    assert not root.exists()
    argv = ["zoo", "add", str(tiny_agent_dir), "--name", "nohead", "--data", "x"]
    argv += ["--collect-cmd", "c", "--train-cmd", "t", "--planner", "policy"]
    assert main(argv) == 1
    assert "lewm train-policy" in capsys.readouterr().err
    assert not root.exists()


def test_a_head_trained_on_another_model_is_refused(head_run, tmp_path, monkeypatch):
    from eval.zoo import add

    stale = WorldModelAgent.load(head_run, device="cpu")
    with torch.no_grad():
        stale.model.enc_proj.fc2.bias.add_(0.1)  # a "retrained" model, the old head
    stale.save(tmp_path / "stale")
    monkeypatch.setenv(zoo.ROOT_ENV, str(tmp_path / "zoo"))
    with pytest.raises(zoo.ZooError, match="another world model.*train-policy"):
        add(tmp_path / "stale", "stale", tmp_path / "nodata", collect_cmd="c", train_cmd="t",
            planner="policy")  # fmt: skip
    assert not (tmp_path / "zoo").exists()


def test_a_flipped_byte_in_the_head_is_refused(damaged):
    head = damaged / HEAD_WEIGHTS_FILE
    data = bytearray(head.read_bytes())
    data[len(data) // 2] ^= 0x01
    head.write_bytes(bytes(data))
    match = "policy_head.safetensors is truncated or corrupt: its SHA-256"
    with pytest.raises(CheckpointError, match=match):
        WorldModelAgent.load("zoo:tinyhead")
    with pytest.raises(CheckpointError, match=match):
        WorldModelAgent.load("zoo:tinyhead", planner="cem")  # the folder is checked whatever acts
    with pytest.raises(zoo.ZooError, match=r"policy_head.safetensors has SHA-256 .*damaged"):
        ezoo.verify("zoo:tinyhead")


def test_an_edited_or_missing_head_config_is_refused(damaged):
    path = damaged / HEAD_CONFIG_FILE
    path.write_text(path.read_text().replace("1", "2", 1))
    with pytest.raises(zoo.ZooError, match=HEAD_CONFIG_FILE):
        ezoo.verify("zoo:tinyhead")
    with pytest.raises(CheckpointError, match=f"{HEAD_CONFIG_FILE} is truncated or corrupt"):
        WorldModelAgent.load("zoo:tinyhead")
    path.unlink()
    with pytest.raises(CheckpointError, match=f"{HEAD_CONFIG_FILE} is missing"):
        WorldModelAgent.load("zoo:tinyhead")


def test_a_card_that_needs_a_head_must_list_it(damaged):
    card_path = damaged / zoo.CARD_FILE
    card = json.loads(card_path.read_text())
    del card["files"][HEAD_WEIGHTS_FILE]
    card_path.write_text(json.dumps(card))
    with pytest.raises(zoo.ZooError, match="lists no hash for.*policy_head.safetensors"):
        ezoo.verify("zoo:tinyhead")


def test_retraining_a_listed_head_keeps_the_folder_loadable(head_zoo, tmp_path):
    """A head saved into a folder whose config.json lists it updates the listing
    (`lewm train-policy` on a copy of a zoo model), so it is not refused as damaged."""
    from lewm_agent.policy_head import save_policy_head

    copy = tmp_path / "copy"
    shutil.copytree(head_zoo / "tinyhead", copy)
    agent = WorldModelAgent.load(copy)
    with torch.no_grad():
        next(agent.policy_head.parameters()).add_(0.01)  # a "retrained" head
    save_policy_head(copy, agent.policy_head, agent.policy_head_meta)
    again = WorldModelAgent.load(copy)
    assert again.plan_config.planner == "policy"
    torch.testing.assert_close(
        next(again.policy_head.parameters()), next(agent.policy_head.parameters())
    )


@pytest.mark.parametrize("name", zoo.names())
def test_shipped_cards_record_the_planner_their_config_holds(name, monkeypatch):
    monkeypatch.delenv(zoo.ROOT_ENV, raising=False)
    card = zoo_card.read_card(name)
    config = json.loads((zoo.folder(name) / "config.json").read_text())
    assert card["card_version"] == zoo_card.CARD_VERSION
    assert card["planner"] == config["plan"]["planner"] and card["plan"] == config["plan"]
    agent = WorldModelAgent.load("zoo:" + name, device="cpu")
    assert agent.plan_config.planner == card["planner"]
    assert (agent.policy_head is not None) == uses_policy(card["planner"])
    assert f"| zoo:{name} | {card['planner']} |" in zoo_card.format_table(zoo_card.table_rows())
