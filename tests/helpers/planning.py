"""A known quadratic for the planners: cost = squared distance to a per-problem target."""

from __future__ import annotations

import torch

H, A = 4, 3  # horizon and action size of the test problems


def quadratic(targets: torch.Tensor, samples: int, calls: list | None = None):
    """Cost of plans (B*S, H, A) = squared distance to a per-problem target (B, H, A).

    Every evaluated batch of plans is appended to ``calls`` when given.
    """

    def cost(plans: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(plans.clone())
        t = targets.repeat_interleave(samples, dim=0)
        return (plans - t).square().sum(dim=(1, 2))

    return cost


def gens(seeds) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def bounds(lo: float = -2.0, hi: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((A,), lo), torch.full((A,), hi)
