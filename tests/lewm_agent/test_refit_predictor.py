"""A fresh predictor on a frozen encoder: the encoder is untouched, the predictor learns,
the shape options apply, bad requests are refused before any work, the CLI writes a new run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lewm_agent import WorldModelAgent
from lewm_agent.refit_predictor import PredictorRefitConfig, refit_predictor
from lewm_agent.validation import ConfigError

SMALL = {"steps": 60, "batch_size": 32, "eval_windows": 64, "eval_blocks": 3, "warmup_steps": 5}


def test_refit_keeps_the_encoder_and_trains_a_new_predictor(tiny_agent_dir, tworoom_data) -> None:
    agent = WorldModelAgent.load(tiny_agent_dir, device="cpu")
    cfg = PredictorRefitConfig(**SMALL, lr=3e-3, model={"history": 3, "pred_depth": 2})
    new, report = refit_predictor(agent, tworoom_data, cfg, progress=False, log_every=10)
    assert new.model_config.history == 3 and new.model_config.pred_depth == 2
    assert report["history"] == 3
    # the encoder and its projector are the source's, bit for bit
    old_sd, new_sd = agent.model.state_dict(), new.model.state_dict()
    frozen = [k for k in old_sd if k.startswith(("encoder.", "enc_proj."))]
    assert frozen and all(torch.equal(old_sd[k], new_sd[k]) for k in frozen)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), np.uint8))
    with torch.inference_mode():
        assert torch.equal(agent.model.encode(frames), new.model.encode(frames))
    # a new predictor that learned: the loss falls, the held-out report covers both models
    assert report["final_loss"] < 0.7 * report["first_loss"]
    held = report["heldout_rollout_error"]
    assert len(held["source"]) == len(held["refit"]) == 3
    assert all(np.isfinite(held["refit"]))
    assert new.training_stats["predictor_refit"]["history"] == 3
    # the same seed gives the same predictor
    again, _ = refit_predictor(agent, tworoom_data, cfg, progress=False)
    p1, p2 = new.model.predictor.state_dict(), again.model.predictor.state_dict()
    assert all(torch.equal(p1[k], p2[k]) for k in p1)


def test_refit_refuses_encoder_changes_and_wrong_frames(tiny_agent_dir, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"cannot change \['embed_dim'\].*encoder is frozen"):
        PredictorRefitConfig(model={"embed_dim": 64})
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        PredictorRefitConfig(steps=0)
    from envs.collect import collect

    other = tmp_path / "big"
    collect("lewm/TwoRoom-v0", "scripted", 3, other, workers=1, image_size=48)
    agent = WorldModelAgent.load(tiny_agent_dir, device="cpu")
    with pytest.raises(ConfigError, match="48 px but the model sees 32 px"):
        refit_predictor(agent, other, PredictorRefitConfig(**SMALL), progress=False)


def test_lewm_train_predictor_writes_a_new_run(tiny_agent_dir, tworoom_data, tmp_path, capsys):
    from lewm_agent.cli import main

    out = tmp_path / "refit"
    argv = ["train-predictor", str(tiny_agent_dir), "--data", str(tworoom_data)]
    assert (
        main([*argv, "--out", str(out), "--steps", "20", "--history", "2", "--threads", "1"]) == 0
    )
    said = capsys.readouterr().out
    assert "held-out rollout error per planned block" in said and "not copied" in said
    loaded = WorldModelAgent.load(out, device="cpu")
    assert loaded.model_config.history == 2
    obs = np.zeros((32, 32, 3), np.uint8)
    action, _ = loaded.predict({"pixels": obs, "goal": obs})
    assert action.shape == (2,)
    with pytest.raises(SystemExit, match="already holds a checkpoint"):
        main([*argv, "--out", str(out)])
