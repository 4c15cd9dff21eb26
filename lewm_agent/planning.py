"""Sampling-based planners over a batched cost function: CEM and MPPI.

A planner optimises B independent problems at once. Each problem is an action
sequence of shape (H, A) in *normalised* action units, bounded by `low`/`high`
(the env bounds mapped through the action normaliser). All S samples of all B
problems go through the cost function in ONE call of shape (B*S, H, A): a
batched rollout is ~20x faster than one sample at a time on a CPU.

Each problem draws its noise from its own torch.Generator, so planning B envs
together gives exactly the plans of planning them one by one with the same
seeds.

A policy prior (TD-MPC2 style; planners "cem-prior" and "mppi-prior") is a
proposal (B, H, A) that the caller computes, e.g. a policy head rolled out
through the predictor: the initial mean is set to it and a share
(`prior_fraction`) of every iteration's samples is drawn around it with
`prior_std`, so a good proposal needs few samples and iterations. A
warm-started replan may use fewer iterations (`warm_iterations`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .config import PlanConfig
from .validation import FIELD_CHOICES

CostFn = Callable[[Tensor], Tensor]
"""Maps candidate plans (B*S, H, A) to costs (B*S,), problem-major order."""


@dataclass
class PlanResult:
    actions: Tensor
    """(B, H, A) the planned sequences, inside the bounds."""
    cost: Tensor
    """(B,) cost of the returned sequences' best sample in the last iteration."""
    rollouts: int = 0
    """Candidate sequences evaluated per problem (samples x iterations run)."""


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
        if cfg.warm_iterations < 0 or not 0.0 <= cfg.prior_fraction < 1.0 or cfg.prior_std <= 0:
            raise ValueError(
                "planning needs warm_iterations >= 0, 0 <= prior_fraction < 1 and prior_std > 0"
            )
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

    def prior_samples(self, with_proposal: bool) -> int:
        """How many of an iteration's samples are drawn around the proposal."""
        if not with_proposal:
            return 0
        # Sample 0 is the mean and the last one may hold the warm start.
        return min(self.cfg.samples - 2, max(1, round(self.cfg.prior_fraction * self.cfg.samples)))

    def plan(
        self,
        cost_fn: CostFn,
        generators: Sequence[torch.Generator],
        init_mean: Tensor | None = None,
        proposal: Tensor | None = None,
    ) -> PlanResult:
        """Sample around the current mean, keep the elites, refit; return the final mean.

        The current mean is always evaluated as sample 0, so a warm-started plan
        never gets worse than the shifted previous one.

        Args:
            init_mean: (B, H, A) warm start (the shifted previous plan), or None.
                With it, `cfg.warm_iterations` (when > 0) replaces `cfg.iterations`.
            proposal: (B, H, A) a policy's plan, or None. It becomes the initial
                mean (the warm start is then kept as one first-iteration sample),
                and `prior_samples` samples per iteration are drawn around it.
        """
        cfg = self.cfg
        b, a = len(generators), self.low.shape[0]
        warm = init_mean is not None
        iterations = cfg.warm_iterations if warm and cfg.warm_iterations > 0 else cfg.iterations
        if proposal is not None:
            if proposal.shape != (b, cfg.horizon, a):
                raise ValueError(
                    f"proposal must be ({b}, {cfg.horizon}, {a}), got {tuple(proposal.shape)}"
                )
            proposal = proposal.to(self.low.device).clamp(self.low, self.high)  # (B, H, A)
            if warm:
                init_mean = init_mean.to(self.low.device).clamp(self.low, self.high)  # type: ignore[union-attr]
        n_prior = self.prior_samples(proposal is not None)
        start = proposal if proposal is not None else init_mean
        mean, std = self.initial(b, start, a)  # (B, H, A) each
        best_cost = torch.full((b,), float("inf"), device=mean.device)
        for it in range(iterations):
            eps = self.noise(generators, (cfg.samples, cfg.horizon, a))  # (B, S, H, A)
            samples = mean.unsqueeze(1) + std.unsqueeze(1) * eps
            if n_prior:
                # The same unit noise, rescaled around the proposal: no extra draws,
                # so the per-env generators stay in step with the plain planner's.
                samples[:, 1 : 1 + n_prior] = (
                    proposal.unsqueeze(1) + cfg.prior_std * eps[:, 1 : 1 + n_prior]  # type: ignore[union-attr]
                )  # (B, P, H, A)
                if warm and it == 0:
                    samples[:, -1] = init_mean  # the shifted previous plan stays a candidate
            samples[:, 0] = mean
            samples = samples.clamp(self.low, self.high)
            costs = self.evaluate(cost_fn, samples)  # (B, S)
            elite_cost, idx = costs.topk(cfg.elites, dim=1, largest=False)  # (B, E) ascending
            elites = samples.gather(1, idx[..., None, None].expand(-1, -1, cfg.horizon, a))
            mean, std = self.refit(elites, elite_cost)  # (B, H, A) each
            best_cost = elite_cost[:, 0]
        return PlanResult(
            actions=mean.clamp(self.low, self.high),
            cost=best_cost,
            rollouts=iterations * cfg.samples,
        )

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


PLANNER_NAMES: tuple[str, ...] = FIELD_CHOICES["PlanConfig"]["planner"]
"""Valid `PlanConfig.planner` values."""


def uses_policy(name: str) -> bool:
    """Whether planner `name` needs a policy head ("policy" alone, or a "-prior" planner)."""
    return name == "policy" or name.endswith("-prior")


def make_planner(
    cfg: PlanConfig, low: Tensor, high: Tensor, step_dim: int | None = None
) -> Planner:
    """The planner named by `cfg.planner`; `step_dim` is the size of one env action.

    "cem-prior"/"mppi-prior" are CEM/MPPI that their caller gives a proposal;
    "policy" gets a CEM too (unused while the policy head acts alone).
    """
    planners = {"cem": CEM, "mppi": MPPI}
    base = "cem" if cfg.planner == "policy" else cfg.planner.removesuffix("-prior")
    if cfg.planner not in PLANNER_NAMES or base not in planners:
        raise ValueError(f"unknown planner {cfg.planner!r}; choose one of {list(PLANNER_NAMES)}")
    return planners[base](cfg, low, high, step_dim)
