"""The fast inference rollout computes exactly what LeWM.rollout computes."""

import pytest
import torch

from lewm_agent.config import ModelConfig
from lewm_agent.model import LeWM
from lewm_agent.rollout import LatentRollout


def _model(history: int, block_norms: bool = False) -> LeWM:
    cfg = ModelConfig(
        image_size=32,
        embed_dim=32,
        cnn_channels=(8, 16),
        projector_hidden=48,
        history=history,
        pred_depth=3,
        pred_heads=4,
        pred_head_dim=8,
        pred_mlp=40,
        pred_block_norms=block_norms,
        pred_norm_eps=1e-5 if block_norms else 1e-6,
    )
    torch.manual_seed(history)
    model = LeWM(cfg)
    for block in model.predictor.blocks:  # AdaLN-zero starts at 0: make actions matter
        torch.nn.init.normal_(block.modulation.weight, std=0.2)
        torch.nn.init.normal_(block.modulation.bias, std=0.2)
        if block_norms:  # non-trivial affine maps, so a skipped norm would show
            for norm in (block.attn_norm, block.mlp_norm):
                torch.nn.init.normal_(norm.weight, 1.0, 0.3)
                torch.nn.init.normal_(norm.bias, 0.0, 0.3)
    for bn in (model.pred_proj.norm,):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("block_norms", [False, True])
@pytest.mark.parametrize("history, h0", [(1, 1), (3, 1), (3, 2), (3, 3), (2, 2)])
def test_fast_rollout_equals_reference(history, h0, block_norms):
    model = _model(history, block_norms)
    cfg = model.cfg
    g = torch.Generator().manual_seed(0)
    n, horizon = 7, 5
    z = torch.randn(n, h0, cfg.embed_dim, generator=g)
    past = torch.randn(n, h0 - 1, cfg.action_block_dim, generator=g) if h0 > 1 else None
    plan = torch.randn(n, horizon, cfg.action_block_dim, generator=g)
    with torch.no_grad():
        ref = model.rollout(z, past, plan)[:, -1]
    fast = LatentRollout(model)(z, past, plan)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5)
    # Buffers are reused across calls with other batch sizes.
    fast2 = LatentRollout(model)
    fast2(z[:3], None if past is None else past[:3], plan[:3])
    torch.testing.assert_close(fast2(z, past, plan), ref, rtol=1e-4, atol=1e-5)


def test_rejects_training_mode():
    with pytest.raises(ValueError, match="eval"):
        LatentRollout(_model(1).train())


@pytest.mark.parametrize("block_norms", [False, True])
@pytest.mark.parametrize("history, h0", [(1, 1), (3, 1), (3, 2), (3, 3), (2, 2), (4, 3)])
def test_shared_context_rollout_equals_reference_on_expanded_inputs(history, h0, block_norms):
    """`repeats=S`: the context computed once per env gives what S expanded copies give."""
    model = _model(history, block_norms)
    cfg = model.cfg
    g = torch.Generator().manual_seed(1)
    envs, reps, horizon = 3, 4, 5
    z = torch.randn(envs, h0, cfg.embed_dim, generator=g)
    past = torch.randn(envs, h0 - 1, cfg.action_block_dim, generator=g) if h0 > 1 else None
    plan = torch.randn(envs * reps, horizon, cfg.action_block_dim, generator=g)
    z_rep = z.repeat_interleave(reps, dim=0)
    past_rep = past.repeat_interleave(reps, dim=0) if past is not None else None
    with torch.no_grad():
        ref = model.rollout(z_rep, past_rep, plan)[:, -1]
    fast = LatentRollout(model)
    torch.testing.assert_close(fast(z, past, plan, repeats=reps), ref, rtol=1e-4, atol=1e-5)
    # The same object stays exact for the per-row path afterwards (shared buffers).
    torch.testing.assert_close(fast(z_rep, past_rep, plan), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="repeats"):
        fast(z, past, plan, repeats=reps + 1)


def test_the_rollout_follows_the_precision_not_the_device_name(monkeypatch):
    """float32 compute gets the fast rollout; mixed precision (the device's autocast
    enabled) the reference one, since the fast one's float32 matmuls bypass autocast."""
    import lewm_agent.rollout as rollout_module
    from lewm_agent.rollout import ReferenceRollout, make_rollout

    model = _model(3)
    cpu = torch.device("cpu")
    assert isinstance(make_rollout(model, cpu), LatentRollout)
    monkeypatch.setattr(
        rollout_module,
        "autocast_context",
        lambda device: torch.autocast(device_type=device.type, dtype=torch.bfloat16),
    )
    mixed = make_rollout(model, cpu)
    assert isinstance(mixed, ReferenceRollout)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 2, model.cfg.embed_dim, generator=g)
    past = torch.randn(2, 1, model.cfg.action_block_dim, generator=g)
    plans = torch.randn(6, 4, model.cfg.action_block_dim, generator=g)
    with torch.no_grad():
        out = mixed.bind(z, past, 3)(plans)  # (6, D), computed in bfloat16
        ref = model.rollout(z.repeat_interleave(3, 0), past.repeat_interleave(3, 0), plans)
    assert out.dtype == torch.float32 and out.shape == (6, model.cfg.embed_dim)
    torch.testing.assert_close(out, ref[:, -1], rtol=0.1, atol=0.1)
    fast = LatentRollout(model).bind(z, past, 3)(plans)
    assert not torch.equal(out, fast)  # it really ran in another precision
