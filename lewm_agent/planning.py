"""Sampling-based planners over a batched cost function: CEM and MPPI.

A planner optimises B independent problems at once. Each problem is an action
sequence of shape (H, A) in *normalised* action units, bounded by `low`/`high`
(the env bounds mapped through the action normaliser). All S samples of all B
problems go through the cost function in ONE call of shape (B*S, H, A): a
batched rollout is ~20x faster than one sample at a time on a CPU.

Each problem draws its noise from its own torch.Generator, so planning B envs
together gives exactly the plans of planning them one by one with the same
seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .config import PlanConfig

CostFn = Callable[[Tensor], Tensor]
"""Maps candidate plans (B*S, H, A) to costs (B*S,), problem-major order."""


@dataclass
class PlanResult:
    actions: Tensor
    """(B, H, A) the planned sequences, inside the bounds."""
    cost: Tensor
    """(B,) cost of the returned sequences' best sample in the last iteration."""


class Planner:
    """Shared machinery: bounds, noise, the batched cost call."""

    def __init__(
        self, cfg: PlanConfig, low: Tensor, high: Tensor, step_dim: int | None = None
    ) -> None:
        if cfg.elites > cfg.samples:
            raise ValueError(f"elites ({cfg.elites}) cannot exceed samples ({cfg.samples})")
        if cfg.samples < 2 or cfg.iterations < 1 or cfg.horizon < 1:
            raise ValueError("planning needs samples >= 2, iterations >= 1, horizon >= 1")
        if torch.any(low >= high):
            raise ValueError("every lower action bound must be below its upper bound")
        self.cfg = cfg
        self.low = low  # (A,)
        self.high = high  # (A,)
        # A plan step (H, A) may hold several env steps (an action block of
        # A = frameskip * step_dim); coloured noise is correlated over env steps.
        self.step_dim = step_dim or low.shape[0]
        if low.shape[0] % self.step_dim:
            raise ValueError(
                f"step_dim {self.step_dim} does not divide the action size {low.shape[0]}"
            )

    def noise(self, generators: Sequence[torch.Generator], shape: tuple[int, ...]) -> Tensor:
        """Unit-variance noise (B, S, H, A), row b drawn from generators[b].

        White (independent) noise when `cfg.noise_beta` is 0, else iCEM-style
        coloured noise with power spectrum 1/f^beta along the env-step axis:
        successive env steps move the same way, so samples explore coherent
        motions (through a door, around a block) instead of jitter that cancels
        out within a block.
        """
        device = self.low.device
        s, h, a = shape
        steps, per = h * (a // self.step_dim), self.step_dim
        beta = self.cfg.noise_beta
        out = []
        for g in generators:
            white = torch.randn((s, per, steps), generator=g, device=g.device).to(device)
            if beta > 0 and steps > 1:
                freqs = torch.fft.rfftfreq(steps, device=device)  # (steps//2+1,)
                freqs[0] = freqs[1]  # keep a finite DC component
                spectrum = torch.fft.rfft(white, dim=-1) * freqs.pow(-beta / 2)
                white = torch.fft.irfft(spectrum, n=steps, dim=-1)
                white = white / white.std()
            # (S, per, steps) -> (S, steps, per) -> (S, H, A): time-major blocks
            out.append(white.transpose(1, 2).reshape(s, h, a))
        return torch.stack(out)

    def evaluate(self, cost_fn: CostFn, samples: Tensor) -> Tensor:
        """samples (B, S, H, A) -> costs (B, S), in one batched call."""
        b, s = samples.shape[:2]
        costs = cost_fn(samples.reshape(b * s, *samples.shape[2:]))  # (B*S,)
        if costs.shape != (b * s,):
            raise ValueError(
                f"cost function returned shape {tuple(costs.shape)}, expected ({b * s},)"
            )
        return costs.view(b, s)

    def initial(
        self, batch: int, init_mean: Tensor | None, action_dim: int
    ) -> tuple[Tensor, Tensor]:
        h = self.cfg.horizon
        device = self.low.device
        if init_mean is None:
            mean = torch.zeros(batch, h, action_dim, device=device)
        else:
            if init_mean.shape != (batch, h, action_dim):
                raise ValueError(
                    f"init_mean must be ({batch}, {h}, {action_dim}), got {tuple(init_mean.shape)}"
                )
            mean = init_mean.to(device).clamp(self.low, self.high)
        std = torch.full((batch, h, action_dim), self.cfg.init_std, device=device)
        return mean, std

    def plan(
        self,
        cost_fn: CostFn,
        generators: Sequence[torch.Generator],
        init_mean: Tensor | None = None,
    ) -> PlanResult:
        """Sample around the current mean, keep the elites, refit; return the final mean.

        The current mean is always evaluated as sample 0, so a warm-started plan
        never gets worse than the shifted previous one.
        """
        cfg = self.cfg
        b, a = len(generators), self.low.shape[0]
        mean, std = self.initial(b, init_mean, a)  # (B, H, A) each
        best_cost = torch.full((b,), float("inf"), device=mean.device)
        for _ in range(cfg.iterations):
            eps = self.noise(generators, (cfg.samples, cfg.horizon, a))  # (B, S, H, A)
            samples = mean.unsqueeze(1) + std.unsqueeze(1) * eps
            samples[:, 0] = mean
            samples = samples.clamp(self.low, self.high)
            costs = self.evaluate(cost_fn, samples)  # (B, S)
            elite_cost, idx = costs.topk(cfg.elites, dim=1, largest=False)  # (B, E) ascending
            elites = samples.gather(1, idx[..., None, None].expand(-1, -1, cfg.horizon, a))
            mean, std = self.refit(elites, elite_cost)  # (B, H, A) each
            best_cost = elite_cost[:, 0]
        return PlanResult(actions=mean.clamp(self.low, self.high), cost=best_cost)

    def refit(self, elites: Tensor, elite_cost: Tensor) -> tuple[Tensor, Tensor]:
        """New (mean, std), each (B, H, A), from elites (B, E, H, A) and their costs (B, E)."""
        raise NotImplementedError


class CEM(Planner):
    """Cross-entropy method: refit a diagonal Gaussian to the elites each iteration."""

    def refit(self, elites: Tensor, elite_cost: Tensor) -> tuple[Tensor, Tensor]:
        return elites.mean(dim=1), elites.std(dim=1)


class MPPI(Planner):
    """MPPI as in TD-MPC2: softmax-weighted elites, clamped std, warm start.

    Costs of the elites are rescaled to [0, 1] before the softmax, so
    `temperature` does not depend on the scale of latent distances (which
    varies between models and tasks).
    """

    def refit(self, elites: Tensor, elite_cost: Tensor) -> tuple[Tensor, Tensor]:
        cfg = self.cfg
        span = (elite_cost[:, -1:] - elite_cost[:, :1]).clamp_min(1e-8)  # (B, 1)
        score = torch.softmax(-(elite_cost - elite_cost[:, :1]) / span / cfg.temperature, dim=1)
        w = score[..., None, None]  # (B, E, 1, 1)
        mean = (w * elites).sum(dim=1)  # (B, H, A)
        var = (w * (elites - mean.unsqueeze(1)).square()).sum(dim=1)
        return mean, var.sqrt().clamp(cfg.min_std, cfg.max_std)


def make_planner(
    cfg: PlanConfig, low: Tensor, high: Tensor, step_dim: int | None = None
) -> Planner:
    """The planner named by `cfg.planner`; `step_dim` is the size of one env action."""
    planners = {"cem": CEM, "mppi": MPPI}
    if cfg.planner not in planners:
        raise ValueError(f"unknown planner {cfg.planner!r}; choose one of {sorted(planners)}")
    return planners[cfg.planner](cfg, low, high, step_dim)
