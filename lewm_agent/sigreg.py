"""SIGReg: the Sketched Isotropic Gaussian Regularizer of LeWM.

Project a batch of embeddings on M random unit directions and, for each 1-D
projection, measure the Epps-Pulley statistic: the weighted squared distance
between the empirical characteristic function of the projection and the
standard normal's, exp(-t^2/2). By Cramer-Wold, matching every 1-D projection
means matching the isotropic Gaussian, which keeps embeddings from collapsing.

Only the per-direction batch means of cos(t x) and sin(t x) enter the
statistic, so the multi-process version is exact and cheap: all-reduce those
means (a differentiable all-reduce) instead of each rank regularising its own
shard, which is a different (and noisier) loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


def random_directions(
    dim: int, num: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> Tensor:
    """Unit directions as the columns of a (dim, num) matrix.

    Drawn on the CPU from `generator` so every rank that seeds it the same way
    gets the same directions regardless of its device.
    """
    a = torch.randn(dim, num, generator=generator)  # (D, M)
    a = a / a.norm(dim=0, keepdim=True).clamp_min(1e-12)
    if torch.device(device).type == "cuda":
        # A copy from pageable memory waits for the GPU to finish the work queued so
        # far (the step's forward), stalling every training step; from pinned memory
        # it is queued behind that work instead. The values are the same.
        return a.pin_memory().to(device, non_blocking=True)
    return a.to(device)


class SIGReg(nn.Module):
    """Epps-Pulley statistic averaged over random directions and time steps.

    Args:
        num_directions: M, the number of random 1-D projections per call.
        knots: trapezoid knots of the integral over t in [0, t_max].
        t_max: upper end of the integral (3 in the paper).
    """

    def __init__(self, num_directions: int = 1024, knots: int = 17, t_max: float = 3.0) -> None:
        super().__init__()
        if num_directions < 1 or knots < 2:
            raise ValueError("SIGReg needs num_directions >= 1 and knots >= 2")
        self.num_directions = num_directions
        t = torch.linspace(0.0, t_max, knots)  # (K,)
        dt = t_max / (knots - 1)
        trapezoid = torch.full((knots,), dt)
        trapezoid[0] = trapezoid[-1] = dt / 2
        gauss_cf = torch.exp(-0.5 * t.square())  # the N(0,1) characteristic function
        # The integrand is even in t, so the integral over [-t_max, t_max] is twice
        # the one over [0, t_max]; the weight w(t) = exp(-t^2/2) equals gauss_cf.
        self.register_buffer("t", t, persistent=False)
        self.register_buffer("target_cf", gauss_cf, persistent=False)
        self.register_buffer("weights", 2.0 * trapezoid * gauss_cf, persistent=False)

    def forward(
        self,
        z: Tensor,
        generator: torch.Generator | None = None,
        directions: Tensor | None = None,
        process_group: object | None = None,
        distributed: bool = False,
    ) -> Tensor:
        """SIGReg of embeddings `z` (..., N, D): N batch samples of dimension D.

        Leading dimensions (e.g. time steps) are averaged over. With
        `distributed=True` the statistic is that of the batch concatenated over
        all ranks of `process_group`: every rank must pass the same directions
        (same `generator` seed) and get the same value and exact gradients.
        """
        if z.dim() < 2:
            raise ValueError(f"SIGReg expects (..., N, D) embeddings, got shape {tuple(z.shape)}")
        if directions is None:
            directions = random_directions(z.shape[-1], self.num_directions, generator, z.device)
        # fp32 even under bf16 autocast: cos/sin of bf16 projections and bf16 batch
        # sums would make the statistic (a small difference of O(1) means) noise.
        with torch.autocast(device_type=z.device.type, enabled=False):
            x = z.float() @ directions.to(device=z.device, dtype=torch.float32)  # (..., N, M)
            xt = x.unsqueeze(-1) * self.t  # (..., N, M, K)
            cos_sum = xt.cos().sum(dim=-3)  # (..., M, K)
            sin_sum = xt.sin().sum(dim=-3)  # (..., M, K)
            n_total = torch.full((1,), float(x.shape[-2]), device=z.device)  # local batch size
            if distributed and dist.is_available() and dist.is_initialized():
                from .distributed import all_reduce_sum

                group = process_group or dist.group.WORLD
                # Differentiable all-reduce of the SUMS (the global means need the
                # global count). Its backward all-reduces the incoming gradients, so
                # rank r's samples receive the sum over ranks of d(loss_r')/d(sum):
                # with DDP's gradient averaging that is exactly the gradient of the
                # single-process loss on the concatenated batch.
                sums = all_reduce_sum(torch.stack([cos_sum, sin_sum]), group=group)  # one call
                cos_sum, sin_sum = sums.unbind(0)  # each (..., M, K)
                dist.all_reduce(n_total, group=group)  # no .item(): no host sync on GPU
            cos_mean = cos_sum / n_total
            sin_mean = sin_sum / n_total
            err = (cos_mean - self.target_cf).square() + sin_mean.square()  # (..., M, K)
            statistic = (err @ self.weights) * n_total  # (..., M): scaled by the batch size
            return statistic.mean()
