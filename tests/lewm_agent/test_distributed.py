"""Multi-process training: exact global SIGReg and BatchNorm, and a 2-rank DDP run.

Two gloo processes on the CPU each hold half of a batch. With the global SIGReg
and the global BatchNorm their DDP gradients must equal one process's gradients
on the whole batch; with either part left per-rank (the naive port) they must
not, which is what makes the equality test able to fail.

This file is also the worker script: `python tests/lewm_agent/test_distributed.py worker ...`
(the two ranks of the exactness test) and `... audit-train ...` (a torchrun rank
that records every file it writes, to show that only rank 0 writes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lewm_agent.config import get_preset, replace
from lewm_agent.distributed import all_reduce_mean, convert_global_batchnorm
from lewm_agent.model import LeWM
from lewm_agent.sigreg import SIGReg
from lewm_agent.train.loop import _LossModule

GLOBAL_BATCH = 8
MODES = ("exact", "naive_sigreg", "naive_bn")
ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- worker side
def _inputs() -> tuple:
    cfg = get_preset("test").model  # history 2: windows of 3 frames, 32 px
    g = torch.Generator().manual_seed(0)
    t = cfg.history + 1
    pixels = torch.randint(0, 256, (GLOBAL_BATCH, t, 32, 32, 3), generator=g, dtype=torch.uint8)
    actions = torch.randn(GLOBAL_BATCH, t, cfg.action_block_dim, generator=g)
    z = 0.7 * torch.randn(GLOBAL_BATCH, 16, generator=g) + 0.3  # (B, D) for SIGReg alone
    return cfg, pixels, actions, z


def compute(mode: str, rank: int, world: int) -> dict[str, torch.Tensor]:
    """SIGReg value/gradient and one DDP LeWM loss/gradient on this rank's shard.

    mode "exact": global SIGReg + global BatchNorm; "naive_sigreg": per-rank
    SIGReg; "naive_bn": per-rank BatchNorm. With world == 1 all modes coincide.
    """
    cfg, pixels, actions, z_all = _inputs()
    b = GLOBAL_BATCH // world
    rows = slice(rank * b, (rank + 1) * b)
    multi = world > 1
    global_sigreg = multi and mode in ("exact", "naive_bn")
    global_bn = multi and mode in ("exact", "naive_sigreg")
    out: dict[str, torch.Tensor] = {}

    # 1. SIGReg alone on raw embeddings (B/world, D).
    z = z_all[rows].clone().requires_grad_()
    s = SIGReg(64)(z, generator=torch.Generator().manual_seed(1), distributed=global_sigreg)
    s.backward()
    out["sigreg"] = s.detach().reshape(1)
    out["sigreg_zgrad"] = z.grad  # (B/world, D)

    # 2. The full LeWM loss under DDP, as training runs it.
    torch.manual_seed(0)
    model = LeWM(cfg)
    with torch.no_grad():  # let actions matter, so every parameter gets a gradient
        for block in model.predictor.blocks:
            block.modulation.weight.normal_(std=0.05)
    if global_bn:
        convert_global_batchnorm(model)
    module = _LossModule(model, SIGReg(64), 0.09, distributed=global_sigreg)
    runner = module
    if multi:
        from torch.nn.parallel import DistributedDataParallel as DDP

        runner = DDP(module, forward_sync_buffers=False)  # as lewm_agent.train makes it
    res = runner(pixels[rows], actions[rows], torch.Generator().manual_seed(2))
    res["loss"].backward()
    out["loss"] = all_reduce_mean(res["loss"].detach().reshape(1))
    out["model_sigreg"] = all_reduce_mean(res["sigreg_loss"].reshape(1))
    for name, p in model.named_parameters():
        out[f"grad.{name}"] = p.grad.clone()  # DDP-averaged: the same on every rank
    out["running_mean"] = model.enc_proj.norm.running_mean.clone()
    return out


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    for mode in MODES:
        save_file(compute(mode, rank, world), os.path.join(out_dir, f"{mode}-rank{rank}.st"))
    dist.destroy_process_group()


def _audit_train(audit_dir: str, argv: list[str]) -> int:
    """One torchrun rank of `lewm train`, recording writes under --out."""
    rank = int(os.environ["RANK"])
    out_root = os.path.realpath(argv[argv.index("--out") + 1])
    events: list[list[str]] = []

    def under_out(path: object) -> str | None:
        if isinstance(path, int):
            return None
        p = os.path.realpath(os.fsdecode(path))  # type: ignore[arg-type]
        return p if p.startswith(out_root) else None

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writes = (isinstance(mode, str) and set(mode) & set("wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            p = under_out(path) if writes else None
        elif event == "os.rename":  # (src, dst, ...): os.replace too
            p = under_out(args[0]) or under_out(args[1])
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.chmod"):
            p = under_out(args[0])
        else:
            return
        if p is not None:
            events.append([event, p])

    sys.addaudithook(hook)
    from lewm_agent.cli import main

    code = main(["train", *argv])
    Path(audit_dir, f"rank{rank}.json").write_text(json.dumps(events))
    return code


# ------------------------------------------------------------------------------- tests
def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory) -> dict[str, list[dict[str, torch.Tensor]]]:
    """Run the 2-rank worker once (all modes), return {mode: [rank0, rank1]}."""
    tmp = tmp_path_factory.mktemp("dist")
    init_file = tmp / "rendezvous"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "worker", str(r), "2", str(init_file), str(tmp)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in range(2)
    ]
    for p in procs:
        output, _ = p.communicate(timeout=120)
        assert p.returncode == 0, output.decode()[-3000:]
    return {m: [load_file(str(tmp / f"{m}-rank{r}.st")) for r in range(2)] for m in MODES}


@pytest.fixture(scope="module")
def single() -> dict[str, torch.Tensor]:
    return compute("exact", 0, 1)


def test_global_sigreg_equals_single_process_on_concatenated_batch(two_rank_results, single):
    ranks = two_rank_results["exact"]
    for r, res in enumerate(ranks):
        # Every rank computes the SAME value: the statistic of the whole batch.
        torch.testing.assert_close(res["sigreg"], single["sigreg"], rtol=1e-5, atol=1e-6)
        # Rank r's rows get world x the single-process gradient: each of the 2 ranks
        # holds a copy of the global loss and the all-reduce's backward sums them
        # (DDP's averaging divides it back out; see the parameter test below).
        b = GLOBAL_BATCH // 2
        ref = single["sigreg_zgrad"][r * b : (r + 1) * b]
        assert _rel_err(res["sigreg_zgrad"] / 2, ref) < 1e-5


def test_ddp_loss_and_gradients_equal_single_process(two_rank_results, single):
    exact = two_rank_results["exact"]
    torch.testing.assert_close(exact[0]["loss"], single["loss"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        exact[0]["model_sigreg"], single["model_sigreg"], rtol=1e-5, atol=1e-6
    )
    grads = [k for k in single if k.startswith("grad.")]
    scale = max(float(single[k].abs().max()) for k in grads)
    # Biases feeding a BatchNorm have a mathematically zero gradient (rounding
    # noise ~1e-10 here), so each tensor is compared relative to its own size
    # plus a floor relative to the largest gradient of the model.
    live = [k for k in grads if single[k].abs().max() > 1e-4 * scale]
    assert len(live) > 20, "too few parameters with a gradient: the test would be vacuous"
    for k in grads:
        err = float((exact[0][k] - single[k]).abs().max())
        assert err <= 1e-4 * float(single[k].abs().max()) + 1e-6 * scale, (k, err)
        assert torch.equal(exact[0][k], exact[1][k]), k  # DDP: identical on both ranks
    # The BatchNorm running statistics are those of the global batch too.
    assert _rel_err(exact[0]["running_mean"], single["running_mean"]) < 1e-4


def test_naive_per_rank_sigreg_differs(two_rank_results, single):
    naive = two_rank_results["naive_sigreg"]
    # Each rank regularises its own half: a different statistic on each rank...
    for res in naive:
        assert _rel_err(res["sigreg"], single["sigreg"]) > 0.01
    b = GLOBAL_BATCH // 2
    assert _rel_err(naive[0]["sigreg_zgrad"], single["sigreg_zgrad"][:b]) > 0.01
    # ...and the trained model gets different gradients (BatchNorm is global here,
    # so the difference is SIGReg's alone).
    grads = [k for k in single if k.startswith("grad.")]
    assert max(_rel_err(naive[0][k], single[k]) for k in grads) > 1e-2
    assert _rel_err(naive[0]["model_sigreg"], single["model_sigreg"]) > 0.01


def test_naive_per_rank_batchnorm_differs(two_rank_results, single):
    naive = two_rank_results["naive_bn"]
    grads = [k for k in single if k.startswith("grad.")]
    assert max(_rel_err(naive[0][k], single[k]) for k in grads) > 1e-2
    assert _rel_err(naive[0]["running_mean"], single["running_mean"]) > 1e-3


def test_two_rank_ddp_training_end_to_end_only_rank0_writes(tmp_path):
    from lewm_agent import WorldModelAgent
    from lewm_agent.train import train
    from tests.helpers.synthetic import moving_square_dataset

    data_dir = tmp_path / "data"
    moving_square_dataset(data_dir, episodes=6, steps=40)
    out = tmp_path / "run"
    audit = tmp_path / "audit"
    audit.mkdir()
    steps, batch = 12, 8
    argv = [
        "--data", str(data_dir), "--out", str(out), "--preset", "test",
        "--steps", str(steps), "--batch-size", str(batch), "--log-every", "2",
        "--checkpoint-every", "5", "--threads", "1",
    ]  # fmt: skip
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        __file__, "audit-train", str(audit), *argv,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    # DDP is made without the deprecated argument that warned once per rank.
    assert "broadcast_buffers" not in proc.stderr, proc.stderr[-3000:]

    rank0 = json.loads((audit / "rank0.json").read_text())
    rank1 = json.loads((audit / "rank1.json").read_text())
    assert rank1 == [], f"rank 1 wrote into the run folder: {rank1[:5]}"
    written = " ".join(Path(p).name for _, p in rank0)  # temp names, then renames
    for name in ("train_log.csv", "config.json", "model.safetensors", "train_curves.png"):
        assert name in written, (name, written)

    agent = WorldModelAgent.load(out, device="cpu")
    assert agent.training_stats["world_size"] == 2
    assert not (out / "train_state").exists()  # a finished run keeps only the model
    assert (out / "train_curves.png").stat().st_size > 10_000
    rows = (out / "train_log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(range(0, steps, 2)) + 1  # header, every 2nd step, the last

    # Same global batches, directions and statistics: the 2-process run follows
    # the 1-process run (up to float summation order).
    p = get_preset("test")
    ref = train(
        data_dir,
        p.model,
        replace(p.train, steps=steps, batch_size=batch, log_every=2),
        progress=False,
        plot=False,
    ).log
    ddp_log = [
        dict(zip(rows[0].split(","), map(float, r.split(",")), strict=True)) for r in rows[1:]
    ]
    assert [r["step"] for r in ddp_log] == [r["step"] for r in ref]
    for a, b in zip(ddp_log, ref, strict=True):
        assert abs(a["pred_loss"] - b["pred_loss"]) <= 1e-4 * abs(b["pred_loss"]) + 1e-7, (a, b)
        assert abs(a["sigreg_loss"] - b["sigreg_loss"]) <= 1e-4 * b["sigreg_loss"], (a, b)


def test_nproc_relaunch_re_passes_the_users_argv(monkeypatch, tmp_path):
    """`lewm train --nproc N` hands torchrun exactly what the user typed (abbreviations
    and all), not a command rebuilt from the parser; inside torchrun --nproc is inert."""
    import lewm_agent.distributed as distributed
    from lewm_agent.cli import main

    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    calls: list[tuple[int, str, list[str]]] = []
    monkeypatch.setattr(
        distributed, "launch_torchrun", lambda n, mod, argv: calls.append((n, mod, list(argv)))
    )
    argv = ["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
            "--nproc", "2", "--steps", "3", "--model-pred-depth", "1", "--lr=0.01"]  # fmt: skip
    assert main(argv) == 0
    assert calls == [(2, "lewm_agent.cli", ["--", *argv])]  # "--": torchrun keeps out


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        _worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif sys.argv[1] == "audit-train":
        sys.exit(_audit_train(sys.argv[2], sys.argv[3:]))
