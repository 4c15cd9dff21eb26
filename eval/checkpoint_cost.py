"""A checkpoint's own plan cost, scored on rendered frames of exact states (for the ceiling).

The planning ceiling (:mod:`eval.ceiling`) plans over an env's exact dynamics and
scores the rolled-out STATES with a state cost. With a checkpoint cost those states
are drawn by the env (``render_state``: the frame the env would show), encoded by the
checkpoint's encoder, and scored with the checkpoint's own plan cost
(``Controller.plan_cost``: "latent", "learned" or "latent+learned") against the
goal state's frame. The prediction error is zero; what is left is the cost's
geometry (the encoder and the cost function) under a planner's optimisation: the
cost screen's "true" column (:mod:`eval.cost_screen`), but planned.

This is the middle row of the loss split: block-pose cost + exact dynamics (the
search's ceiling), checkpoint cost + exact dynamics (this), checkpoint cost + the
learned predictor (the agent itself).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["CheckpointCost", "checkpoint_state_cost"]

PLAN_COSTS: tuple[str, ...] = ("latent", "learned", "latent+learned")
"""The plan costs a checkpoint offers (`PlanConfig.cost`)."""


@dataclass(frozen=True)
class CheckpointCost:
    """Score states with a checkpoint's plan cost on their rendered frames."""

    agent: str
    """Checkpoint folder or zoo:NAME."""
    cost: str = "latent"
    """The checkpoint's plan cost: "latent", "learned" (needs a cost head) or "latent+learned"."""
    over: str = "final"
    """"final": the last state only; "blocks": summed over every block's end state."""

    def __post_init__(self) -> None:
        if self.cost not in PLAN_COSTS:
            raise ValueError(
                f"CheckpointCost.cost must be one of {list(PLAN_COSTS)}, got {self.cost!r}"
            )
        if self.over not in ("final", "blocks"):
            raise ValueError(f"CheckpointCost.over must be 'final' or 'blocks', got {self.over!r}")


class _FrameCost:
    """states (N, S), goal (S,) -> plan cost (N,) of their frames (one goal embedding cached)."""

    def __init__(self, agent: Any, env: Any, batch: int) -> None:
        self.agent = agent
        self.env = env
        self.batch = batch
        self._goal_key: bytes | None = None
        self._goal_z: torch.Tensor | None = None  # (1, D)

    def _embed(self, states: np.ndarray) -> torch.Tensor:
        from lewm_agent.heads import embed_frames

        frames = np.stack([self.env.render_state(s) for s in states])  # (N, H, W, 3) uint8
        return embed_frames(self.agent.model, frames, torch.device("cpu"), self.batch)  # (N, D)

    def __call__(self, states: np.ndarray, goal: np.ndarray) -> np.ndarray:
        states = np.asarray(states, dtype=np.float32)  # (N, S)
        key = np.asarray(goal, dtype=np.float32).tobytes()
        if key != self._goal_key:
            self._goal_z = self._embed(np.asarray(goal, dtype=np.float32)[None])  # (1, D)
            self._goal_key = key
        assert self._goal_z is not None
        z = self._embed(states)  # (N, D)
        with torch.inference_mode():
            cost = self.agent.controller.plan_cost(
                z[:, None], self._goal_z.expand(len(z), -1)
            )  # (N,)
        return cost.double().numpy()


def checkpoint_state_cost(
    env_id: str, cfg: CheckpointCost, *, batch: int = 512
) -> tuple[Any, dict[str, Any]]:
    """(the state cost, a JSON description) for ``cfg`` on ``env_id``.

    The checkpoint must be trained on ``env_id`` and the env must render states at
    the model's image size; each mismatch is a ValueError naming both values."""
    from envs.build import make_env
    from lewm_agent.agent import WorldModelAgent
    from lewm_agent.zoo import resolve

    path = resolve(cfg.agent)
    agent = WorldModelAgent.load(path, device="cpu", cost=cfg.cost)
    if agent.env_id != env_id:
        raise ValueError(
            f"checkpoint {cfg.agent} was trained on {agent.env_id!r}, not {env_id!r}: "
            "pass a checkpoint of the dataset's env"
        )
    if cfg.cost != "latent" and agent.controller.cost_head is None:
        raise ValueError(
            f"cost {cfg.cost!r} needs a cost head in {cfg.agent}: "
            f"`lewm train-cost {cfg.agent} --data DATA`, or use cost 'latent'"
        )
    size = agent.model_config.image_size
    env = make_env(agent.env_build or env_id, image_size=size).unwrapped
    if not hasattr(env, "render_state"):
        raise ValueError(f"{env_id} cannot render a given state (no render_state)")
    _, info = env.reset(seed=0)
    probe = env.render_state(np.asarray(info["state"], dtype=np.float32))
    if probe.shape[:2] != (size, size):
        raise ValueError(
            f"{env_id} renders {probe.shape[:2]} frames but {cfg.agent} sees {size} px: "
            "build the env at the model's image size"
        )
    described = {
        "agent": os.fspath(cfg.agent),
        "cost": cfg.cost,
        "over": cfg.over,
        "on": "frames rendered from exact states",
    }
    return _FrameCost(agent, env, batch), described
