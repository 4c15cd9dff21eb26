"""From an encoded context and a goal embedding to action blocks (normalised units).

Three controllers, picked by `PlanConfig.planner`:

- "cem" / "mppi": sampling-based search (`planning.py`) over action sequences,
  each scored by `PlanConfig.cost` (`Controller.plan_cost`): the squared distance
  between the predictor's final embedding and the goal's, or the learned cost
  head's estimate of the env steps between them (`cost_head.py`);
- "policy": the latent policy head alone, one block per decision;
- "cem-prior" / "mppi-prior": the search, seeded with the policy head's own
  plan rolled out through the predictor (TD-MPC2's policy prior).

The rollout that scores plans is picked by the precision the model computes in
(`rollout.make_rollout`), not by the device's name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .config import PlanConfig
from .device import autocast_context
from .model import LeWM
from .planning import PlanResult, make_planner, uses_policy
from .rollout import LatentRollout, ReferenceRollout, make_rollout

UNBOUNDED_LIMIT = 3.0
"""Normalised-space bound used where the env's own bound is infinite."""

RolloutFn = Callable[[Tensor, Tensor | None, Tensor], Tensor]
"""`(z_ctx (G, h0, D), past (G, h0-1, fs*A) or None, plan (G, H, fs*A)) -> (G, D)`."""


def block_bounds(
    low: np.ndarray,
    high: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    frameskip: int,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """The bounds (fs*A,) of one action block in normalised units, from env bounds (A,)."""
    low_n = np.where(np.isfinite(low), (low - mean) / std, -UNBOUNDED_LIMIT)
    high_n = np.where(np.isfinite(high), (high - mean) / std, UNBOUNDED_LIMIT)
    return (
        torch.tensor(np.tile(low_n, frameskip), dtype=torch.float32, device=device),
        torch.tensor(np.tile(high_n, frameskip), dtype=torch.float32, device=device),
    )


class Controller:
    """Decides normalised action blocks (fs*A each) for G envs at once."""

    def __init__(
        self,
        model: LeWM,
        cfg: PlanConfig,
        low: Tensor,
        high: Tensor,
        device: torch.device,
    ) -> None:
        """`low`/`high` (fs*A,): the bounds of one block in normalised units."""
        self.model, self.cfg, self.device = model, cfg, device
        self.low, self.high = low, high
        self.frameskip = model.cfg.frameskip
        self.planner = make_planner(cfg, low, high, model.cfg.action_dim)
        self.policy_head: Any = None
        """A `policy_head.PolicyHead` (needed by "policy" and the "-prior" planners)."""
        self.cost_head: Any = None
        """A `cost_head.CostHead` (needed by the costs "learned" and "latent+learned")."""
        self._rollout: LatentRollout | ReferenceRollout | None = None

    @property
    def rollout(self) -> LatentRollout | ReferenceRollout:
        # Made at the first plan, from the weights the model has then.
        if self._rollout is None:
            self._rollout = make_rollout(self.model, self.device)
        return self._rollout

    # ---------------------------------------------------------------- policy head
    @torch.inference_mode()
    def policy_blocks(self, z: Tensor, goal: Tensor, steps_left: Tensor | float) -> Tensor:
        """The policy head's next action block (G, fs*A), inside the bounds."""
        if self.policy_head is None:
            raise ValueError(
                f"planner {self.cfg.planner!r} needs a policy head: call "
                "agent.fit_policy_head(data) or `lewm train-policy RUN --data DATA`"
            )
        with autocast_context(self.device):
            out = self.policy_head(z, goal, steps_left).float()  # (G, fs*A)
        return out.clamp(self.low, self.high)

    def act_policy(self, z_ctx: Tensor, goal: Tensor) -> Tensor:
        """Planner "policy": one block (G, 1, fs*A) from the newest frame, re-asked each block.

        The head is asked to reach the goal within this block (`policy_steps_left`
        0): asked for the whole horizon instead, it imitates the data's slow average
        over that many noisy steps.
        """
        steps_left = self.cfg.policy_steps_left or self.frameskip
        block = self.policy_blocks(z_ctx[:, -1], goal, float(steps_left))  # (G, fs*A)
        if not torch.isfinite(block).all():
            raise FloatingPointError("the policy head produced NaN actions: retrain it")
        return block.unsqueeze(1)

    @torch.inference_mode()
    def policy_proposal(
        self, z_ctx: Tensor, past: Tensor | None, goal: Tensor, rollout: RolloutFn
    ) -> Tensor:
        """The policy rolled out through the predictor for the horizon: (G, H, fs*A).

        Block k is asked to reach the goal in the (H - k) blocks still to go.
        `rollout(z_ctx, past, plan)` returns the embedding after the plan's last block.
        One predictor step per block: the predictor sees only its `history` window, so
        each step rolls out the window (its frames and the blocks between them) by the
        newest block, which is exactly what one longer rollout computes.
        """
        horizon, fs, hist = self.cfg.horizon, self.frameskip, self.model.cfg.history
        embs = list(z_ctx.unbind(dim=1))  # h0 x (G, D)
        acts = list(past.unbind(dim=1)) if past is not None else []  # h0-1 x (G, fs*A)
        blocks: list[Tensor] = []
        for k in range(horizon):
            block = self.policy_blocks(embs[-1], goal, float((horizon - k) * fs))
            blocks.append(block)  # (G, fs*A)
            if k + 1 < horizon:
                win = min(hist, len(embs))
                z_win = torch.stack(embs[-win:], dim=1)  # (G, win, D)
                a_win = torch.stack(acts[len(acts) - (win - 1) :], dim=1) if win > 1 else None
                embs.append(rollout(z_win, a_win, block.unsqueeze(1)))  # (G, D)
                acts.append(block)
        return torch.stack(blocks, dim=1)  # (G, H, fs*A)

    # -------------------------------------------------------------------- cost
    def plan_cost(self, embs: Tensor, goal: Tensor) -> Tensor:
        """Cost (N,) of predicted embeddings embs (N, K, D) (K: 1, or every block) vs goal (N, D).

        `PlanConfig.cost`: "latent" the squared embedding distance, "learned" the cost
        head's estimate of env steps to the goal, "latent+learned" their sum with
        `cost_weight` on the learned part; summed over the K embeddings.
        """
        cost = self.cfg.cost
        n, k, d = embs.shape
        total = embs.new_zeros(n)
        if cost in ("latent", "latent+learned"):
            total = total + (embs - goal.unsqueeze(1)).square().sum(dim=-1).sum(dim=1)
        if cost in ("learned", "latent+learned"):
            if self.cost_head is None:
                raise ValueError(
                    f"cost {cost!r} needs a cost head: call agent.fit_cost_head(data) or "
                    "`lewm train-cost RUN --data DATA`"
                )
            flat_goal = goal.repeat_interleave(k, dim=0)  # (N*K, D)
            with autocast_context(self.device):
                steps = self.cost_head.distance(embs.reshape(n * k, d), flat_goal).float()
            weight = self.cfg.cost_weight if cost == "latent+learned" else 1.0
            total = total + weight * steps.view(n, k).sum(dim=1)
        return total  # (N,)

    def _all_blocks(
        self, z_ctx: Tensor, past: Tensor | None, repeats: int
    ) -> Callable[[Tensor], Tensor]:
        """`plans (G*S, H, fs*A) -> (G*S, H, D)`: every block's predicted embedding.

        For `cost_horizon_sum`: the model's own rollout (the fast one keeps only the
        last embedding), under the device's autocast."""
        z_rep = z_ctx.repeat_interleave(repeats, dim=0)  # (G*S, h0, D)
        past_rep = past.repeat_interleave(repeats, dim=0) if past is not None else None

        def embs_of(plans: Tensor) -> Tensor:
            with autocast_context(self.device):
                return self.model.rollout(z_rep, past_rep, plans).float()  # (G*S, H, D)

        return embs_of

    # ------------------------------------------------------------------- search
    @torch.inference_mode()
    def plan(
        self,
        z_ctx: Tensor,
        past: Tensor | None,
        goal: Tensor,
        generators: list[torch.Generator],
        init_mean: Tensor | None = None,
        callback: Callable[[int, int, int], None] | None = None,
    ) -> PlanResult:
        """CEM/MPPI (with the policy's prior for "-prior") for G envs: plans (G, H, fs*A).

        Args:
            z_ctx: (G, h0, D) embeddings of the last h0 block-boundary frames.
            past: (G, h0-1, fs*A) normalised action blocks between them, or None.
            goal: (G, D) goal embeddings.
            generators: one torch.Generator per env (its planning noise).
            init_mean: (G, H, fs*A) warm start, or None for the prior mean.
            callback: called as `callback(iteration, iterations, G)` per iteration.
        """
        cfg = self.cfg
        goal_rep = goal.repeat_interleave(cfg.samples, dim=0)  # (G*S, D), once per plan
        if cfg.cost_horizon_sum:
            embs_of = self._all_blocks(z_ctx, past, cfg.samples)  # -> (G*S, H, D)
        else:
            final_of = self.rollout.bind(z_ctx, past, cfg.samples)  # (G*S, H, fs*A) -> (G*S, D)

            def embs_of(plans: Tensor) -> Tensor:
                return final_of(plans).unsqueeze(1)  # (G*S, 1, D)

        finite: list[Tensor] = []  # one flag per call; checked once (no per-call CUDA sync)
        calls = [0]
        warm = init_mean is not None and cfg.warm_iterations > 0
        iterations = cfg.warm_iterations if warm else cfg.iterations

        def cost_fn(plans: Tensor) -> Tensor:  # (G*S, H, fs*A) -> (G*S,)
            cost = self.plan_cost(embs_of(plans), goal_rep)  # (G*S,)
            finite.append(torch.isfinite(cost).all())
            if callback is not None:  # one call per planner iteration
                calls[0] += 1
                callback(calls[0], iterations, z_ctx.shape[0])
            return cost

        proposal = None
        if uses_policy(cfg.planner):
            proposal = self.policy_proposal(z_ctx, past, goal, self.rollout)  # (G, H, fs*A)
        result = self.planner.plan(cost_fn, generators, init_mean, proposal=proposal)
        # CEM's top-k over NaN costs still returns a finite mean: check the costs themselves.
        if not torch.stack(finite).all():
            raise FloatingPointError(
                "the planner's predicted costs are NaN or infinite: the checkpoint's weights "
                "are likely corrupt (retrain or reload it)"
            )
        if proposal is not None:
            result.rollouts += 1  # the policy's own trajectory
        return result


def saved_policy_head(
    path: str | os.PathLike, model: LeWM, planner: str, device: torch.device
) -> tuple[Any, dict[str, Any]] | None:
    """(head, meta) of checkpoint folder `path` if it has a head trained on `model`.

    A planner that needs the head (`uses_policy`) makes a missing or mismatched head
    a CheckpointError; otherwise a mismatched head is ignored with a warning.
    """
    from .heads import saved_head
    from .policy_head import POLICY_FILES, load_policy_head

    fix = f"train one: `lewm train-policy {path} --data DATA` (or agent.fit_policy_head)"
    needed_by = f"planner {planner!r}" if uses_policy(planner) else None
    return saved_head(
        path, model, POLICY_FILES, load_policy_head, needed_by=needed_by, fix=fix, device=device
    )


def uses_cost_head(cost: str) -> bool:
    """Whether the plan cost `cost` (PlanConfig.cost) needs the checkpoint's cost head."""
    return cost in ("learned", "latent+learned")


def saved_cost_head(
    path: str | os.PathLike, model: LeWM, cost: str, device: torch.device
) -> tuple[Any, dict[str, Any]] | None:
    """(head, meta) of checkpoint folder `path` if it has a cost head trained on `model`.

    As `saved_policy_head`: a cost that needs the head (`uses_cost_head`) makes a
    missing or mismatched head a CheckpointError; otherwise a mismatched head is
    ignored with a warning (a present head is loaded either way, so `save` keeps it).
    """
    from .cost_head import COST_HEAD_FILES, TRAIN_HINT, load_cost_head
    from .heads import saved_head

    fix = f"train one: `{TRAIN_HINT}` (RUN: {path})"
    needed_by = f"cost {cost!r}" if uses_cost_head(cost) else None
    return saved_head(
        path, model, COST_HEAD_FILES, load_cost_head, needed_by=needed_by, fix=fix, device=device
    )
