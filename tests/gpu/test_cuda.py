"""The CUDA path the package promises: device "auto", bf16 autocast training of the
`paper` preset, exact resume, planning, and the ONNX export of a CUDA-trained model.

Every test here is marked `gpu` and skips without CUDA ("CUDA not available"), so the
default run collects them and skips (it hides CUDA: tests/conftest.py); `make
gpu-check` runs them (`pytest -m gpu`).

This file is also the script of the resume check, run in a fresh interpreter so that
cuBLAS starts with the deterministic workspace setting:
`python tests/gpu/test_cuda.py resume DATA OUT`.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lewm_agent import WorldModelAgent
from lewm_agent.config import PlanConfig, get_preset, replace
from lewm_agent.data import ActionNormalizer
from lewm_agent.device import autocast_context, resolve_device
from lewm_agent.model import LeWM
from lewm_agent.rollout import ReferenceRollout
from lewm_agent.sigreg import SIGReg
from lewm_agent.train import train


def _skip_reason() -> str:
    # tests/conftest.py hides CUDA from every run but `pytest -m gpu`.
    if os.environ.get("LEWM_TESTS_HIDE_CUDA") == "1" and torch.version.cuda is not None:
        return "CUDA not available: hidden outside `pytest -m gpu` (make gpu-check)"
    return "CUDA not available"


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason=_skip_reason()),
]

ROOT = Path(__file__).resolve().parents[2]
CUDA = torch.device("cuda")
PAPER = get_preset("paper")
SMALL_PLAN = PlanConfig(samples=64, iterations=3, elites=8, horizon=5, receding_horizon=2)

# The resume check: a run that crashes at CRASH_AT (after the checkpoint of step
# EVERY) and resumes equals the uninterrupted run of STEPS steps.
STEPS, EVERY, CRASH_AT = 8, 3, 4


@pytest.fixture(scope="module")
def paper_data(tmp_path_factory) -> Path:
    """A moving-square dataset at the `paper` preset's 224 px."""
    from tests.helpers.synthetic import moving_square_dataset

    path = tmp_path_factory.mktemp("paper") / "data"
    moving_square_dataset(path, episodes=6, steps=30, size=PAPER.model.image_size)
    return path


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """The same at the `test` preset's 32 px, for the CUDA-trained export."""
    from tests.helpers.synthetic import moving_square_dataset

    path = tmp_path_factory.mktemp("small") / "data"
    moving_square_dataset(path, episodes=10, steps=40)
    return path


def _paper_agent(device: str | torch.device, plan: PlanConfig = SMALL_PLAN) -> WorldModelAgent:
    """The `paper` model, random weights with non-zero action modulations (adaLN-zero
    would make every plan cost the same), as an agent on `device`."""
    torch.manual_seed(0)
    model = LeWM(PAPER.model).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("modulation.weight"):
                p.normal_(0.0, 0.02)
    a = PAPER.model.action_dim
    normalizer = ActionNormalizer(mean=[0.1, -0.2], std=[0.5, 0.4])
    return WorldModelAgent(model, normalizer, -np.ones(a), np.ones(a), plan, device=device)


def _latent_inputs(envs: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """A mid-episode plan's inputs: a full `history` window of context, a goal."""
    cfg = PAPER.model
    g = torch.Generator().manual_seed(seed)
    h, d, block = cfg.history, cfg.embed_dim, cfg.action_block_dim
    out = {
        "z_ctx": torch.randn(envs, h, d, generator=g),  # (G, h, D)
        "past": torch.randn(envs, h - 1, block, generator=g),  # (G, h-1, fs*A)
        "goal": torch.randn(envs, d, generator=g),  # (G, D)
    }
    return {k: v.to(device) for k, v in out.items()}


# ---------------------------------------------------------------------------- device
def test_auto_device_is_cuda_with_bf16_autocast():
    dev = resolve_device("auto")
    assert dev.type == "cuda"
    with autocast_context(dev):
        assert torch.is_autocast_enabled("cuda")
        assert torch.get_autocast_dtype("cuda") == torch.bfloat16
    agent = _paper_agent("auto")
    assert agent.device.type == "cuda"
    assert {p.device.type for p in agent.model.parameters()} == {"cuda"}


# -------------------------------------------------------------------------- training
def test_bf16_step_of_the_paper_preset():
    """The loop's step by hand: matmuls in bf16, loss finite, fp32 weights and grads updated."""
    cfg, tcfg = PAPER.model, PAPER.train
    torch.manual_seed(0)
    model = LeWM(cfg).to(CUDA).train()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    seen: dict[str, torch.dtype] = {}

    def record(name: str):
        def hook(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> None:
            seen[name] = output.dtype  # returns None: the output is left as it is

        return hook

    for name in ("enc_proj.fc1", "predictor.blocks.0.attn.qkv", "encoder.blocks.0.mlp.fc1"):
        model.get_submodule(name).register_forward_hook(record(name))
    sigreg = SIGReg(tcfg.sigreg_directions, tcfg.sigreg_knots).to(CUDA)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=tcfg.weight_decay)
    b, t = 4, cfg.history + 1
    pixels = torch.randint(0, 256, (b, t, cfg.image_size, cfg.image_size, 3), dtype=torch.uint8)
    actions = torch.randn(b, t, cfg.action_block_dim)  # (B, T, fs*A)
    pixels, actions = pixels.to(CUDA), actions.to(CUDA)
    directions = torch.Generator().manual_seed(0)  # drawn on the CPU, as the loop does
    with autocast_context(CUDA):
        out = model.loss(pixels, actions, sigreg, tcfg.sigreg_weight, generator=directions)
    assert set(seen.values()) == {torch.bfloat16}, seen
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    assert torch.isfinite(out["sigreg_loss"]) and torch.isfinite(out["pred_loss"])
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
    optimizer.step()
    params = dict(model.named_parameters())
    assert all(p.dtype == torch.float32 and p.is_cuda for p in params.values())
    assert all(p.grad.dtype == torch.float32 for p in params.values() if p.grad is not None)
    # Parts with a gradient at the first step (adaLN-zero keeps the action embedder's at 0).
    for name in (
        "encoder.patch_embed.weight",
        "enc_proj.fc1.weight",
        "predictor.blocks.0.modulation.weight",
    ):
        assert not torch.equal(params[name], before[name]), name


def test_sigreg_directions_reach_cuda_without_waiting_for_it():
    """The step's SIGReg directions (drawn on the CPU) are the CPU's values, and their
    copy is queued behind the forward instead of waiting for it (a synchronising copy
    raises here)."""
    from lewm_agent.sigreg import random_directions

    want = random_directions(192, 64, torch.Generator().manual_seed(3))  # (D, M)
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = random_directions(192, 64, torch.Generator().manual_seed(3), CUDA)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert got.is_cuda and torch.equal(got.cpu(), want)


def test_train_runs_the_paper_preset_on_cuda(paper_data):
    """`train` itself (device "auto", DataLoader workers, pinned memory): finite log rows,
    a float32 model on the GPU that moved away from its initial weights."""
    tcfg = replace(PAPER.train, steps=3, batch_size=4, log_every=1, warmup_steps=1, lr=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # collapse watch on 3 steps
        result = train(paper_data, PAPER.model, tcfg, progress=False)
    assert len(result.log) == 3
    for row in result.log:
        assert all(np.isfinite(v) for v in row.values()), row
    params = dict(result.model.named_parameters())
    assert all(p.is_cuda and p.dtype == torch.float32 for p in params.values())
    torch.manual_seed(tcfg.seed)  # the initial weights, as the loop draws them
    init = dict(LeWM(result.model_config).named_parameters())
    changed = [k for k in params if not torch.equal(params[k].cpu(), init[k])]
    assert "encoder.patch_embed.weight" in changed and "predictor.pos_embed" in changed
    assert len(changed) > len(params) // 2, f"only {len(changed)} of {len(params)} changed"


def _resume_runs(data: str, out: str) -> None:
    """The resume script: an uninterrupted run and one that crashes and resumes.

    Deterministic CUDA kernels (the workspace setting comes from the environment,
    set before cuBLAS starts): atomics in a kernel would make two uninterrupted runs
    differ too, which says nothing about the checkpoint.
    """
    from safetensors.torch import save_file

    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    cfg = replace(PAPER.train, steps=STEPS, batch_size=4, log_every=1, warmup_steps=2, lr=1e-4)
    common = {"device": "cuda", "progress": False, "checkpoint_every": EVERY, "plot": False}

    class Crash(RuntimeError):
        """The simulated kill at step CRASH_AT."""

    def crash(step: int, row: object) -> None:
        if step == CRASH_AT:
            raise Crash

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = train(data, PAPER.model, cfg, log_dir=Path(out) / "ref", **common)
        with pytest.raises(Crash):
            train(data, PAPER.model, cfg, log_dir=Path(out) / "run", callback=crash, **common)
        run = train(data, PAPER.model, cfg, log_dir=Path(out) / "run", resume=True, **common)
    assert run.start_step == EVERY, run.start_step
    for name, result in (("ref", ref), ("run", run)):
        weights = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
        save_file(weights, str(Path(out) / name / "final.safetensors"))


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def test_resumed_run_on_cuda_equals_uninterrupted_run(paper_data, tmp_path):
    """As tests/lewm_agent/train/test_resume.py on the CPU: every logged float and the
    final weights are identical, here for the `paper` preset under bf16 autocast."""
    from safetensors.torch import load_file

    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, __file__, "resume", str(paper_data), str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref, run = _rows(tmp_path / "ref" / "train_log.csv"), _rows(tmp_path / "run" / "train_log.csv")
    assert len(ref) == STEPS
    assert run == ref
    a = load_file(str(tmp_path / "ref" / "final.safetensors"))
    b = load_file(str(tmp_path / "run" / "final.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# -------------------------------------------------------------------------- planning
def test_rollout_on_cuda_is_the_bf16_reference_close_to_fp32():
    """On CUDA the agent plans through `LeWM.rollout` under bf16 autocast (the fast
    rollout's fp32 matmuls would bypass it); its predictions stay near fp32's."""
    agent = _paper_agent("cuda")
    rollout = agent.controller.rollout
    assert isinstance(rollout, ReferenceRollout)
    x = _latent_inputs(8, CUDA)
    plan = torch.randn(8, SMALL_PLAN.horizon, PAPER.model.action_block_dim, device=CUDA)
    with torch.inference_mode():
        got = rollout(x["z_ctx"], x["past"], plan)  # (G, D)
        want = agent.model.rollout(x["z_ctx"], x["past"], plan)[:, -1]  # fp32, no autocast
    assert got.dtype == torch.float32 and got.shape == want.shape
    rel = (got - want).norm(dim=-1) / want.norm(dim=-1)
    assert rel.max() < 0.1, rel


def test_cem_plans_on_cuda_within_bounds_in_the_cpu_plans_shape():
    gpu, cpu = _paper_agent("cuda"), _paper_agent("cpu")
    envs = 3
    results = {}
    for name, agent in (("cuda", gpu), ("cpu", cpu)):
        x = _latent_inputs(envs, agent.device)
        gens = [torch.Generator(device=agent.device).manual_seed(i) for i in range(envs)]
        results[name] = agent.plan_latent(x["z_ctx"], x["past"], x["goal"], gens)
    plans = results["cuda"].actions  # (G, H, fs*A)
    assert plans.is_cuda and plans.shape == results["cpu"].actions.shape
    assert plans.shape == (envs, SMALL_PLAN.horizon, PAPER.model.action_block_dim)
    assert torch.isfinite(plans).all() and torch.isfinite(results["cuda"].cost).all()
    assert (plans >= gpu._low_n - 1e-6).all() and (plans <= gpu._high_n + 1e-6).all()
    assert results["cuda"].rollouts == SMALL_PLAN.samples * SMALL_PLAN.iterations
    assert plans.std() > 0  # the search moved away from the prior mean


def test_predict_on_cuda_returns_env_actions_within_bounds():
    agent = _paper_agent("cuda")
    rng = np.random.default_rng(0)
    size = PAPER.model.image_size
    obs = {
        "pixels": rng.integers(0, 255, (2, size, size, 3), dtype=np.uint8),
        "goal": rng.integers(0, 255, (2, size, size, 3), dtype=np.uint8),
    }
    for _ in range(PAPER.model.frameskip * SMALL_PLAN.receding_horizon + 1):  # into a replan
        actions, state = agent.predict(obs)
        assert isinstance(actions, np.ndarray) and actions.shape == (2, PAPER.model.action_dim)
        assert state is None and np.isfinite(actions).all()
        assert (actions >= agent.action_low).all() and (actions <= agent.action_high).all()
    single, _ = _paper_agent("cuda").predict({k: v[0] for k, v in obs.items()})
    assert single.shape == (PAPER.model.action_dim,)


# ---------------------------------------------------------------------------- export
def _observations(size: int, n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Blocky random frames (8 px cells), a new goal every 5 steps."""
    rng = np.random.default_rng(seed)

    def frame() -> np.ndarray:
        cells = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
        return np.kron(cells, np.ones((8, 8, 1), dtype=np.uint8))  # (size, size, 3)

    out, goal = [], frame()
    for i in range(n):
        goal = frame() if i % 5 == 0 else goal
        out.append({"pixels": frame(), "goal": goal})
    return out


def _max_action_diff(torch_agent, onnx_agent, observations) -> float:
    """Largest difference of the two agents' actions over `observations`, normalised units."""
    worst = 0.0
    for obs in observations:
        want, _ = torch_agent.predict(obs)
        got, _ = onnx_agent.predict(obs)
        worst = max(worst, float(np.abs((got - want) / torch_agent._std).max()))
    return worst


def test_onnx_export_of_a_cuda_trained_model(small_data, tmp_path):
    """Trained (model and policy head) on CUDA, exported from the live CUDA agent: the
    graphs are CPU float32, the agent stays on the GPU, and OnnxAgent acts as the torch
    agent does on the CPU (head: <= 1e-4; CEM given the same noise: the same plan)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from lewm_agent.onnx_agent import OnnxAgent

    plan = {"samples": 24, "iterations": 3, "elites": 4, "horizon": 3, "receding_horizon": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        agent = WorldModelAgent.fit(
            small_data, preset="test", steps=60, device="cuda", progress=False, plan_overrides=plan
        )
    agent.fit_policy_head(small_data, progress=False, steps=50, hidden=32, layers=2)
    assert agent.device.type == "cuda" and next(agent.policy_head.parameters()).is_cuda
    export = agent.export(tmp_path / "export")
    assert next(agent.model.parameters()).is_cuda  # the export copied, it did not move it
    assert next(agent.policy_head.parameters()).is_cuda
    run = agent.save(tmp_path / "run")  # the same weights, for the CPU torch agent

    size = agent.model_config.image_size
    head_cpu = WorldModelAgent.load(run, planner="policy", device="cpu")
    head_onnx = OnnxAgent.load(export, planner="policy")
    assert _max_action_diff(head_cpu, head_onnx, _observations(size, 12)) <= 1e-4

    cem_cpu = WorldModelAgent.load(run, planner="cem", device="cpu")
    cem_onnx = OnnxAgent.load(export, planner="cem")
    gens = [torch.Generator().manual_seed(cem_cpu.plan_config.seed)]
    cem_onnx.noise_fn = lambda rngs, shape: cem_cpu.planner.noise(gens[: len(rngs)], shape).numpy()
    assert _max_action_diff(cem_cpu, cem_onnx, _observations(size, 12, seed=1)) <= 1e-4


if __name__ == "__main__":
    if sys.argv[1] == "resume":
        _resume_runs(sys.argv[2], sys.argv[3])
