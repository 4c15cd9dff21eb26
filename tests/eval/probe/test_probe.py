"""Latent physics tools: probes, surprise, paired tests, straightness (eval/probe/).

The perturbations and `lewm probe` end to end are in tests/eval/probe/test_perturb.py.

Most tests use stubs with known answers (a synthetic embedding that encodes a
quantity linearly, a predictor that is exactly right), so each one fails when the
code under it is wrong rather than when a model is undertrained.
"""

import math

import numpy as np
import pytest
import torch

from eval.probe import (
    LinearProbe,
    MLPProbe,
    action_blocks,
    encode_episodes,
    encode_frames,
    fit_probes,
    parse_quantity_spec,
    pearson_r,
    probe_episodes,
    state_targets,
    straightness,
    straightness_over_checkpoints,
    surprise_curve,
    velocity_cosines,
)
from lewm_agent.config import get_preset
from lewm_agent.data import ActionNormalizer, Episode
from lewm_agent.model import LeWM
from lewm_agent.stats import paired_test, student_t_sf


# ---------------------------------------------------------------------------------------
# stubs
# ---------------------------------------------------------------------------------------
class PixelStub:
    """A world with a 2-D integer position written into pixel (0, 0), channels 0 and 1.

    ``encode`` reads it back; ``predict`` is the exact dynamics (position + sum of the
    block's raw actions), after undoing the normaliser if one is given. A surprise
    of exactly zero therefore needs frames, context and action blocks all aligned.
    """

    def __init__(
        self, history: int, frameskip: int, normalizer: ActionNormalizer | None = None
    ) -> None:
        self.history, self.frameskip, self.normalizer = history, frameskip, normalizer
        self.calls: list[tuple[int, ...]] = []

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels[..., 0, 0, :2].double()  # (..., 2)

    def predict(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(z.shape))
        assert z.shape[1] <= self.history
        a = actions
        if self.normalizer is not None:
            a = self.normalizer.denormalize(a)
        b, t, _ = a.shape
        return z + a.reshape(b, t, self.frameskip, 2).sum(2).to(z.dtype)  # (B, T, 2)


def stub_episode(t_len: int = 60, seed: int = 0, size: int = 4) -> Episode:
    """Integer actions in {-1, 0, 1}; position starts at 100 so it stays in uint8."""
    rng = np.random.default_rng(seed)
    actions = rng.integers(-1, 2, size=(t_len, 2)).astype(np.float32)  # (T, 2)
    pos = 100 + np.concatenate([np.zeros((1, 2)), np.cumsum(actions, axis=0)])  # (T+1, 2)
    pixels = np.zeros((t_len + 1, size, size, 3), dtype=np.uint8)
    pixels[:, 0, 0, :2] = pos.astype(np.uint8)
    return Episode("stub.npz", pixels, actions, pos.astype(np.float32), False, True)


# ---------------------------------------------------------------------------------------
# probes
# ---------------------------------------------------------------------------------------
def synthetic(n: int, d: int = 192, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=(d, 2))
    y = x @ w + 0.05 * rng.normal(size=(n, 2))  # (n, 2) a linear code + a little noise
    return x, y


def test_linear_probe_recovers_a_linearly_encoded_quantity():
    x, y = synthetic(3000)
    res = fit_probes(x[:2000], y[:2000], x[2000:], y[2000:], ["a", "b"], kinds=["linear"])
    assert min(res["linear"].r.values()) > 0.99
    assert max(res["linear"].mse.values()) < 0.01


def test_probes_find_nothing_in_shuffled_targets(one_thread):
    # D = 192 like the model: a probe that learned nothing points in a random direction,
    # whose correlation with a linear target is ~ 1/sqrt(D) (0.25 at D = 16).
    x, y = synthetic(3000)
    y_shuffled = y[np.random.default_rng(1).permutation(2000)]
    res = fit_probes(x[:2000], y_shuffled, x[2000:], y[2000:], ["a", "b"], kinds=["linear"])
    assert max(abs(v) for v in res["linear"].r.values()) < 0.2, res["linear"].r
    mlp = MLPProbe(hidden=64, steps=150, batch_size=256).fit(x[:2000], y_shuffled)
    r = pearson_r(y[2000:], mlp.predict(x[2000:]))
    assert np.all(np.abs(r) < 0.2), r


def test_mlp_probe_decodes_a_nonlinear_quantity_the_linear_one_cannot(one_thread):
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(4000, 4))
    y = x[:, :1] ** 2 + x[:, 1:2] ** 2  # (n, 1) a squared radius: even in every input
    lin = LinearProbe().fit(x[:3000], y[:3000]).predict(x[3000:])
    mlp = MLPProbe(hidden=64, steps=300, batch_size=256).fit(x[:3000], y[:3000])
    mlp = mlp.predict(x[3000:])
    assert abs(pearson_r(y[3000:], lin)[0]) < 0.2
    assert pearson_r(y[3000:], mlp)[0] > 0.95


def test_mlp_probe_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    x, y = synthetic(200)
    MLPProbe(steps=5).fit(x, y)
    assert torch.equal(torch.rand(3), expected)


def test_state_targets_and_spec_parsing():
    states = np.array([[1.0, 2.0, 0.0], [3.0, 4.0, math.pi / 2]], dtype=np.float32)
    spec = parse_quantity_spec("x=0, y=1, theta=angle:2")
    assert spec == {"x": 0, "y": 1, "theta": "angle:2"}
    names, y = state_targets(states, spec)
    assert names == ["x", "y", "theta_sin", "theta_cos"]
    np.testing.assert_allclose(y, [[1, 2, 0, 1], [3, 4, 1, 0]], atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        state_targets(states, {"z": 3})
    with pytest.raises(ValueError, match="NAME=COLUMN"):
        parse_quantity_spec("x")


def test_pearson_r_matches_numpy_and_flags_constants():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert pearson_r(a, b)[0] == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert np.isnan(pearson_r(np.ones(5), np.arange(5.0))[0])


def test_probe_episodes_on_stub_encoder_fits_train_and_scores_heldout():
    eps = [stub_episode(40, seed=s) for s in range(6)]
    res = probe_episodes(
        PixelStub(1, 1),
        eps[:4],
        eps[4:],
        {"px": 0, "py": 1},
        kinds=["linear"],
        max_train_frames=100,
    )
    r = res["linear"]
    assert r.n_train == 100 and r.n_test == 2 * 41
    assert min(r.r.values()) > 0.999  # the stub's embedding IS the position


def test_encode_episodes_batches_across_episode_boundaries():
    eps = [stub_episode(t, seed=t) for t in (7, 3, 11)]
    sel = [np.array([0, 5, 7]), np.arange(4), np.array([10])]
    zs = encode_episodes(PixelStub(1, 1), eps, frames=sel, batch_size=3)
    for e, idx, z in zip(eps, sel, zs, strict=True):
        np.testing.assert_array_equal(z, e.states[idx])


# ---------------------------------------------------------------------------------------
# surprise
# ---------------------------------------------------------------------------------------
def test_action_blocks_are_the_next_frameskip_actions_in_order():
    actions = np.arange(20, dtype=np.float32).reshape(10, 2)  # (T=10, A=2)
    blocks = action_blocks(actions, 3)
    assert blocks.shape == (8, 6)
    np.testing.assert_array_equal(blocks[4], actions[4:7].reshape(-1))  # [a4, a5, a6] flattened
    norm = ActionNormalizer([1.0, 2.0], [2.0, 4.0])
    np.testing.assert_allclose(
        action_blocks(actions, 3, norm)[4], norm.normalize(actions[4:7]).reshape(-1)
    )


@pytest.mark.parametrize("history,frameskip", [(1, 5), (3, 5), (2, 1)])
def test_perfect_predictor_has_zero_surprise_on_an_untouched_episode(history, frameskip):
    ep = stub_episode(60)
    s = surprise_curve(
        PixelStub(history, frameskip),
        ep.pixels,
        ep.actions,
        normalizer=None,
        history=history,
        frameskip=frameskip,
    )
    assert np.all(np.isnan(s[:frameskip]))
    np.testing.assert_array_equal(s[frameskip:], 0.0)


def test_surprise_uses_the_normalizer_like_training():
    norm = ActionNormalizer([0.3, -0.2], [0.5, 2.0])
    ep = stub_episode(40)
    s = surprise_curve(
        PixelStub(2, 5, norm), ep.pixels, ep.actions, normalizer=norm, history=2, frameskip=5
    )
    np.testing.assert_allclose(s[5:], 0.0, atol=1e-10)
    # Forgetting to normalise breaks the perfect predictor: the test can fail.
    s_raw = surprise_curve(
        PixelStub(2, 5, norm), ep.pixels, ep.actions, normalizer=None, history=2, frameskip=5
    )
    assert np.nanmax(s_raw) > 0


def test_teleport_spikes_surprise_exactly_where_the_context_straddles_it():
    ep = stub_episode(60)
    pixels = ep.pixels.copy()
    k, fs, h = 30, 5, 2
    pixels[k:, 0, 0, 0] += 20  # jump +20 in x from frame k on, dynamics continue from there
    s = surprise_curve(
        PixelStub(h, fs), pixels, ep.actions, normalizer=None, history=h, frameskip=fs
    )
    spiked = np.flatnonzero(s > 0)
    # The last context frame of target t is t - fs: the windows with it before k and
    # the target at/after k are t in [k, k + fs - 1]; older context frames are ignored
    # by this stub (it predicts from the last token only).
    np.testing.assert_array_equal(spiked, np.arange(k, k + fs))
    assert np.all(s[spiked] == pytest.approx(20**2 / 2))  # squared distance / D


def test_surprise_matches_lewm_rollout():
    """Teacher-forced windows agree with the model's own rollout from the same context."""
    cfg = get_preset("test").model  # history 2, frameskip 5, 32 px
    torch.manual_seed(0)
    model = LeWM(cfg).eval()
    with torch.no_grad():  # make actions matter (AdaLN starts at zero)
        for block in model.predictor.blocks:
            block.modulation.weight.normal_(0, 0.02)
    rng = np.random.default_rng(0)
    t_len = 30
    pixels = rng.integers(0, 256, size=(t_len + 1, 32, 32, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, size=(t_len, cfg.action_dim)).astype(np.float32)
    norm = ActionNormalizer([0.1, 0.0], [0.5, 0.5])
    s = surprise_curve(model, pixels, actions, normalizer=norm)
    z = encode_frames(model, pixels)
    blocks = torch.from_numpy(action_blocks(actions, 5, norm))
    t = 17  # full context: frames 7 and 12
    with torch.inference_mode():
        pred = model.rollout(
            torch.from_numpy(z[[7, 12]])[None], blocks[[7]][None], blocks[[12]][None]
        )[0, -1].numpy()
    assert s[t] == pytest.approx(float(((pred - z[t]) ** 2).mean()), rel=1e-4)
    assert np.all(np.isfinite(s[5:])) and np.all(np.isnan(s[:5]))


def test_surprise_checks_lengths():
    ep = stub_episode(20)
    with pytest.raises(ValueError, match="actions"):
        surprise_curve(
            PixelStub(1, 5), ep.pixels, ep.actions[:-1], normalizer=None, history=1, frameskip=5
        )
    with pytest.raises(ValueError, match="history and frameskip"):
        surprise_curve(PixelStub(1, 5), ep.pixels, ep.actions, normalizer=None)


# ---------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------
def test_student_t_sf_matches_tables():
    assert student_t_sf(2.228, 10) == pytest.approx(0.025, abs=2e-4)  # two-sided 5%, df 10
    assert student_t_sf(0.0, 7) == pytest.approx(0.5)
    assert student_t_sf(-1.812, 10) == pytest.approx(0.95, abs=2e-4)
    assert student_t_sf(1.96, 1e6) == pytest.approx(0.025, abs=1e-4)  # normal limit
    assert student_t_sf(1.0, 1) == pytest.approx(0.25)  # Cauchy: 1/2 - atan(1)/pi


def test_paired_test_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    base = rng.exponential(size=40)
    shifted = paired_test(base * 5 + 0.1, base)
    assert shifted.p_t < 1e-6 and shifted.p_perm < 1e-3 and shifted.frac_greater == 1.0
    noise = paired_test(base + rng.normal(0, 0.1, 40), base + rng.normal(0, 0.1, 40))
    assert noise.p_t > 0.01 and noise.p_perm > 0.01
    small = paired_test(np.arange(1.0, 9.0) + 1, np.arange(1.0, 9.0))  # exact: 2^8 patterns
    assert small.permutations == 256 and small.p_perm == pytest.approx(1 / 256)


# ---------------------------------------------------------------------------------------
# straightness
# ---------------------------------------------------------------------------------------
def test_straight_line_has_straightness_one_and_random_walk_about_zero():
    t = np.arange(50.0)[:, None]
    line = 3.0 + t * np.linspace(-1, 1, 32)[None, :]  # (50, 32)
    assert straightness(line) == pytest.approx(1.0)
    walk = np.cumsum(np.random.default_rng(0).normal(size=(2000, 64)), axis=0)
    assert abs(straightness(walk)) < 0.05
    zigzag = np.array([[0.0, 0.0], [1.0, 0.0]] * 10)  # back and forth
    assert straightness(zigzag) == pytest.approx(-1.0)


def test_velocity_cosines_skip_standing_still():
    z = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    cos = velocity_cosines(z)
    assert np.isnan(cos[0]) and np.isnan(cos[1]) and cos[2] == pytest.approx(1.0)


def test_straightness_over_checkpoints_table(tmp_path):
    eps = [stub_episode(40, seed=s) for s in range(3)]
    rows = straightness_over_checkpoints(
        [("a", PixelStub(1, 1)), ("b", PixelStub(1, 1))], eps, stride=1
    )
    assert [r["label"] for r in rows] == ["a", "b"]
    assert rows[0]["straightness"] == rows[1]["straightness"] and rows[0]["pairs"] > 0


def test_load_model_reads_checkpoints_and_training_snapshots(tiny_agent_dir, tmp_path):
    """Tracking over training needs snapshots (train_state/step-N: no config.json)."""
    from eval.probe import load_model
    from lewm_agent.config import to_dict
    from lewm_agent.train_state import save_train_state

    model, steps = load_model(tiny_agent_dir)
    assert steps == 40 and not model.training
    save_train_state(
        tmp_path,
        step=7,
        model_state=model.state_dict(),
        optimizer_state={"state": {}, "param_groups": []},
        meta={"model_config": to_dict(model.cfg)},
    )
    for path in (tmp_path, tmp_path / "train_state" / "step-00000007"):
        snap, snap_steps = load_model(path)
        assert snap_steps == 7
        for (k, v), w in zip(model.state_dict().items(), snap.state_dict().values(), strict=True):
            assert torch.equal(v, w), k
    with pytest.raises(ValueError, match="neither a checkpoint"):
        load_model(tmp_path / "nothing")
