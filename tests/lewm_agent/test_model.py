"""LeWM architecture against the paper's reference, shapes, rollout and training."""

import numpy as np
import pytest
import torch

from lewm_agent.config import get_preset, replace
from lewm_agent.model import LeWM
from lewm_agent.train import train
from tests.helpers.synthetic import moving_square_dataset

# Reference counts (REFERENCE.md): encoder 5.5M, predictor transformer 10.8M,
# each projector 0.79M, action embedder 0.16M, total 18.0M.
REFERENCE = {
    "encoder": 5.5e6,
    "predictor": 10.8e6,
    "encoder_projector": 0.79e6,
    "predictor_projector": 0.79e6,
    "action_embedder": 0.16e6,
    "total": 18.0e6,
}


def test_paper_preset_matches_reference_part_by_part():
    cfg = get_preset("paper").model
    assert (cfg.image_size, cfg.encoder, cfg.vit_patch, cfg.embed_dim) == (224, "vit", 14, 192)
    assert (cfg.pred_depth, cfg.pred_heads, cfg.pred_head_dim, cfg.pred_mlp) == (6, 16, 64, 2048)
    counts = LeWM(cfg).parameter_counts()
    for part, ref in REFERENCE.items():
        assert abs(counts[part] - ref) / ref < 0.05, (part, counts[part], ref)


def test_adaln_modulation_starts_at_zero():
    model = LeWM(get_preset("test").model)
    for block in model.predictor.blocks:
        assert block.modulation.weight.abs().sum() == 0 and block.modulation.bias.abs().sum() == 0


def test_encode_checks_image_size():
    model = LeWM(get_preset("test").model).eval()
    with pytest.raises(ValueError, match="image_size=32"):
        model.encode(torch.zeros(2, 64, 64, 3, dtype=torch.uint8))


def test_rollout_matches_teacher_forced_prediction():
    """With the true predicted embeddings fed back, rollout == step-by-step predict."""
    cfg = get_preset("test").model  # history 2
    model = LeWM(cfg).eval()
    torch.manual_seed(0)
    for block in model.predictor.blocks:  # make actions matter
        torch.nn.init.normal_(block.modulation.weight, std=0.1)
    z0 = torch.randn(3, 1, cfg.embed_dim)
    plan = torch.randn(3, 3, cfg.action_block_dim)
    with torch.no_grad():
        out = model.rollout(z0, None, plan)  # (3, 3, D)
        z1 = model.predict(z0, plan[:, :1])[:, -1]
        torch.testing.assert_close(out[:, 0], z1)
        z2 = model.predict(torch.stack([z0[:, 0], z1], 1), plan[:, :2])[:, -1]
        torch.testing.assert_close(out[:, 1], z2)
        z3 = model.predict(torch.stack([z1, z2], 1), plan[:, 1:3])[:, -1]  # window slides
        torch.testing.assert_close(out[:, 2], z3)


def test_training_lowers_prediction_loss_without_collapse(tmp_path):
    data = moving_square_dataset(tmp_path / "data")
    p = get_preset("test")
    result = train(
        data,
        p.model,
        replace(p.train, steps=300, log_every=10),
        progress=False,
        log_dir=tmp_path / "run",
    )
    log = result.log
    # The embedding spreads out while training (SIGReg), so compare the prediction
    # error relative to the embedding variance: the scale-free part of the loss.
    rel = [r["pred_loss"] / r["emb_std"] ** 2 for r in log]
    first, last = np.mean(rel[1:4]), np.mean(rel[-3:])
    assert last < 0.3 * first, (first, last)
    assert log[-1]["emb_std"] > 0.3  # SIGReg keeps the embedding spread out
    assert (tmp_path / "run" / "train_log.csv").read_text().count("\n") == len(log) + 1


def test_training_without_sigreg_collapses_more(tmp_path):
    """The regulariser is what keeps the spread: lambda=0 shrinks the embeddings."""
    data = moving_square_dataset(tmp_path / "data", episodes=6)
    p = get_preset("test")
    cfg = replace(p.train, steps=150)
    with_reg = train(data, p.model, cfg, progress=False).log[-1]["emb_std"]
    without = train(data, p.model, replace(cfg, sigreg_weight=0.0), progress=False).log[-1][
        "emb_std"
    ]
    assert without < with_reg
