"""Multi-process training support: process groups, exact global BatchNorm, launching.

LeWM's two batch-coupled parts, SIGReg and the projectors' BatchNorm, make a
naive data-parallel run train a DIFFERENT objective: each rank regularises and
normalises its own shard. Here both see the global batch, so N processes with
per-rank batch B/N train the same objective (and get the same gradients, up to
float summation order) as one process with batch B:

- SIGReg: `SIGReg(..., distributed=True)` all-reduces its per-direction sums.
- BatchNorm: `GlobalBatchNorm1d` all-reduces its batch sums with a differentiable
  all-reduce. torch's own `nn.SyncBatchNorm` refuses CPU tensors, and this one is
  a few lines, works on gloo and NCCL alike and is the one path the tests check.

Launching: `torchrun --nproc_per_node=N -m lewm_agent.train ...` sets RANK,
WORLD_SIZE, LOCAL_RANK and the rendezvous; `init_distributed` reads them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "DistInfo",
    "GlobalBatchNorm1d",
    "all_reduce_sum",
    "convert_global_batchnorm",
    "revert_global_batchnorm",
    "dist_info",
    "init_distributed",
    "launch_torchrun",
    "launched_by_torchrun",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, checkpoints and the agent folder."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True inside a process started by torchrun / torch.distributed.run."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def dist_info() -> DistInfo:
    """The current process group's rank and size (single process when none)."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, local_world)
    return DistInfo()


def init_distributed(device: torch.device, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group that torchrun described in the environment.

    NCCL when training on CUDA (each process uses GPU LOCAL_RANK), gloo on CPU.
    A no-op returning a single-process DistInfo when not launched by torchrun
    or when the group already exists (e.g. a user's own launcher).
    """
    if not (dist.is_available() and launched_by_torchrun()):
        return dist_info()
    if int(os.environ["WORLD_SIZE"]) <= 1 or dist.is_initialized():
        return dist_info()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return dist_info()


def shutdown_distributed() -> None:
    """Leave the process group (if any) so the process exits cleanly."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward is again a sum over ranks (see `all_reduce_sum`)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any) -> Tensor:
        ctx.group = group
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def all_reduce_sum(x: Tensor, group: Any = None) -> Tensor:
    """Differentiable sum of `x` over the ranks of `group` (identity in one process).

    Forward: every rank gets S = sum_r x_r. Backward: rank r's `x_r` receives
    sum_r' dL_r'/dS, the gradient of the SUM of all ranks' losses. Every rank holds
    the same global statistic, so that sum counts it world-size times, and DDP's
    averaging of parameter gradients divides that back out: the parameters get
    exactly the gradient of the single-process loss on the concatenated batch.
    (torch.distributed.nn.functional.all_reduce does the same but is deprecated.)
    """
    if not (dist.is_available() and dist.is_initialized()):
        return x
    return _AllReduceSum.apply(x, group or dist.group.WORLD)


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the batch over all ranks.

    Outside training, or without an initialised multi-process group, it is a plain
    BatchNorm1d (same parameters and buffers, so state dicts are interchangeable).

    Gradients: the all-reduce is differentiable and its backward sums the incoming
    gradients over ranks, so each rank's inputs receive the sum over ranks of
    d(loss_r)/d(input). DDP then averages parameter gradients over ranks, which
    gives exactly the gradient of the mean of the per-rank losses, i.e. of the
    single-process loss on the concatenated batch when shards are equal in size.
    """

    def forward(self, x: Tensor) -> Tensor:
        if (
            not (self.training and dist.is_available() and dist.is_initialized())
            or dist.get_world_size() == 1
        ):
            return super().forward(x)
        if x.dim() != 2:
            raise ValueError(f"GlobalBatchNorm1d expects (N, C) inputs, got {tuple(x.shape)}")
        xf = x.float()  # statistics in fp32 even under bf16 autocast
        n_local = torch.full((1,), float(x.shape[0]), device=x.device)
        sums = all_reduce_sum(torch.cat([xf.sum(dim=0), n_local]))  # (C+1,), differentiable
        n = sums[-1].detach()  # global batch size (a constant)
        mean = sums[:-1] / n  # (C,)
        centered = xf - mean  # (N, C)
        # Two passes (mean, then squared deviations) rather than E[x^2]-E[x]^2,
        # which cancels catastrophically in fp32 when |mean| >> std.
        var = all_reduce_sum(centered.square().sum(dim=0)) / n  # (C,) biased, as BN normalises
        y = centered * torch.rsqrt(var + self.eps)  # (N, C)
        if self.affine:
            y = y * self.weight + self.bias
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[union-attr,operator]
                if self.momentum is None:  # cumulative moving average, as BatchNorm
                    factor = 1.0 / float(self.num_batches_tracked)  # type: ignore[arg-type]
                else:
                    factor = self.momentum
                unbiased = var.detach() * (n / (n - 1).clamp_min(1.0))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)  # type: ignore[union-attr]
        return y.to(x.dtype)


def _swap_batchnorm(module: nn.Module, to_global: bool) -> nn.Module:
    for name, child in module.named_children():
        src = nn.BatchNorm1d if to_global else GlobalBatchNorm1d
        if type(child) is src:
            dst_cls = GlobalBatchNorm1d if to_global else nn.BatchNorm1d
            new = dst_cls(
                child.num_features,
                eps=child.eps,
                momentum=child.momentum,
                affine=child.affine,
                track_running_stats=child.track_running_stats,
                device=child.weight.device if child.affine else None,
            )
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            _swap_batchnorm(child, to_global)
    return module


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every nn.BatchNorm1d by a GlobalBatchNorm1d (in place; returns module)."""
    return _swap_batchnorm(module, to_global=True)


def revert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Turn GlobalBatchNorm1d back into plain nn.BatchNorm1d (after training)."""
    return _swap_batchnorm(module, to_global=False)


def launch_torchrun(nproc: int, module: str, argv: Sequence[str]) -> int:
    """Run `python -m torch.distributed.run --standalone --nproc_per_node=N -m MODULE ARGV`.

    `--standalone` rendezvous on a free localhost port, so several runs can share a
    machine. Returns torchrun's exit code (non-zero if any rank failed).
    """
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        module,
        *argv,
    ]
    return subprocess.call(cmd)


def all_reduce_mean(values: Tensor) -> Tensor:
    """Mean over ranks of a small float tensor (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values
