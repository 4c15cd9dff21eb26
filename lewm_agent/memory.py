"""The per-env memory of `WorldModelAgent`: `observations.SlotMemory` with torch state.

The bookkeeping (slots, goals, frame history, plan queue) is the torch-free
`observations.SlotMemory`, which `OnnxAgent` uses as it is; here the slots'
noise generators are torch ones on the agent's device, executed blocks become
tensors there, and the planner's inputs are stacked from them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .observations import EnvSlot, SlotMemory


class EnvMemory(SlotMemory):
    """The slots of all envs a `WorldModelAgent` acts for, with tensors on `device`."""

    def __init__(self, seed: int, device: torch.device, history: int, frameskip: int) -> None:
        super().__init__(seed, history, frameskip)
        self.device = device

    def _new_slot(self, index: int) -> EnvSlot:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed + index)  # env i plans with seed + i, batched or not
        return EnvSlot(generator=gen)

    def _block(self, steps: list[np.ndarray]) -> Tensor:
        return torch.as_tensor(np.concatenate(steps), device=self.device)  # (fs*A,)

    @staticmethod
    def context(
        slots: list[EnvSlot], with_past: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """(z_ctx (G, h0, D), past blocks (G, h0-1, fs*A) or None, goals (G, D)).

        The slots must share their context length h0 (`_plan` groups them so).
        """
        h0 = len(slots[0].z_hist)
        z_ctx = torch.stack([torch.stack(sl.z_hist) for sl in slots])  # (G, h0, D)
        past = (
            torch.stack([torch.stack(sl.a_hist[-(h0 - 1) :]) for sl in slots])
            if h0 > 1 and with_past
            else None
        )  # (G, h0-1, fs*A)
        goal = torch.stack([sl.goal_z for sl in slots])  # (G, D)
        return z_ctx, past, goal

    def warm_starts(self, slots: list[EnvSlot], horizon: int, block: int) -> Tensor | None:
        """(G, H, fs*A) previous plans (zeros, the prior mean, for slots without one), or None."""
        if not any(sl.warm is not None for sl in slots):
            return None
        zeros = torch.zeros(horizon, block, device=self.device)
        return torch.stack([sl.warm if sl.warm is not None else zeros for sl in slots])

    @staticmethod
    def keep_unexecuted(slots: list[EnvSlot], plans: Tensor, executed: int) -> None:
        """Warm starts from plans (G, H, fs*A) of which `executed` blocks are queued.

        The unexecuted blocks, then zeros (the prior mean). With nothing left
        unexecuted it would be all zeros, i.e. a cold start: None, so
        `warm_iterations` applies to real warm starts only.
        """
        for j, sl in enumerate(slots):
            sl.warm = (
                torch.cat([plans[j, executed:], torch.zeros_like(plans[j, :executed])])
                if executed < plans.shape[1]
                else None
            )


__all__ = ["EnvMemory", "EnvSlot"]
