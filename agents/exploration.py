"""How the learn loop acts between rounds: the exploration settings, the actors and
the frontier goals.

An actor is a batched exploration policy over the env copies of `agents.learn`'s
acting step: `RandomActor` (uniform random actions) or `FrontierActor` (segments of
cheap batched CEM toward recorded frames chosen by `frontier_goals`, with action
noise, alternating with random segments: Go-Explore's go-then-explore).
`frontier_goals` picks the least-visited of a sample of the agent's own frames by
k-NN distance, in the whole embedding or, with `ExploreConfig.goal_space="slow"`,
in its slowest linear features (`lewm_agent.explore`), and returns the matching
planning cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from lewm_agent.agent import WorldModelAgent
from lewm_agent.config import replace
from lewm_agent.data import Dataset
from lewm_agent.explore import ProjectedDistance, frontier_indices, knn_novelty, slow_features
from lewm_agent.heads import embed_frames
from lewm_agent.validation import ConfigError

__all__ = [
    "GOAL_SPACES",
    "Actor",
    "ExploreConfig",
    "FrontierActor",
    "RandomActor",
    "frontier_goals",
]

GOAL_SPACES: tuple[str, ...] = ("latent", "slow")
"""`ExploreConfig.goal_space` values."""


@dataclass(frozen=True)
class ExploreConfig:
    """How the "frontier" exploration acts between rounds."""

    go_steps: int = 50
    """Env steps of planning toward one frontier goal."""
    random_steps: int = 25
    """Env steps of random actions after each goal segment."""
    random_segment_prob: float = 0.2
    """Chance that a segment is random actions instead of goal-directed."""
    action_noise: float = 0.2
    """Std of the Gaussian noise added to planned actions, as a share of the half range."""
    frontier_fraction: float = 0.1
    """Share of the embedded frames, the least-visited, that goals are drawn from."""
    knn: int = 10
    """Neighbours of the k-NN density in latent space."""
    pool: int = 4096
    """Recorded frames embedded per round as goal candidates."""
    samples: int = 30
    """CEM samples of the exploring planner (cheap: it acts for many envs; CEM 30 x 2
    still solved 46 of Two-Room's 50 protocol episodes in docs/results/planning.md)."""
    iterations: int = 2
    """CEM iterations of the exploring planner."""
    elites: int = 4
    """CEM elites of the exploring planner."""
    goal_space: str = "latent"
    """Where goals are chosen and planned toward: "latent" (the whole embedding) or
    "slow" (its `slow_features` slowest linear features, refitted each round on
    consecutive recorded frames: the pose of what the agent moves only by contact)."""
    slow_features: int = 4
    """Features kept by goal_space "slow"."""

    def __post_init__(self) -> None:
        if self.goal_space not in GOAL_SPACES:
            raise ConfigError(
                f"ExploreConfig.goal_space must be one of {GOAL_SPACES}, got {self.goal_space!r}"
            )
        if int(self.slow_features) < 1:
            raise ConfigError(f"ExploreConfig.slow_features must be >= 1, got {self.slow_features}")
        for name in ("go_steps", "pool", "samples", "iterations", "elites", "knn"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"ExploreConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.random_steps < 0:
            raise ConfigError(f"ExploreConfig.random_steps must be >= 0, got {self.random_steps}")
        for name in ("random_segment_prob", "frontier_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0 or (name == "frontier_fraction" and v == 0.0):
                raise ConfigError(f"ExploreConfig.{name} must be in (0, 1], got {v}")
        if self.action_noise < 0:
            raise ConfigError(f"ExploreConfig.action_noise must be >= 0, got {self.action_noise}")
        if self.elites > self.samples:
            raise ConfigError(
                f"ExploreConfig.elites ({self.elites}) must not exceed samples ({self.samples})"
            )


@torch.inference_mode()
def frontier_goals(
    agent: WorldModelAgent, data: Dataset, ex: ExploreConfig, seed: int, r: int
) -> tuple[np.ndarray, ProjectedDistance | None]:
    """Goal images for round `r`, the least-visited of a sample of recorded frames,
    and the planning cost toward them (None: the agent's own latent cost)."""
    if data.frames is None:
        raise ValueError("frontier goals need a dataset with its frames in memory")
    rng = np.random.default_rng([seed, r, 1])
    frames = data.frames
    slow = ex.goal_space == "slow"
    if slow:
        # Candidates need a successor in their episode: the fit sees each one-step change.
        candidates = np.concatenate(
            [np.arange(o, o + len(e)) for o, e in zip(data.frame_offsets, data, strict=True)]
        )  # (M,) frame indices that are not an episode's last
    else:
        candidates = np.arange(len(frames))  # (M,)
    pick = np.sort(rng.choice(candidates, size=min(ex.pool, len(candidates)), replace=False))
    z = embed_frames(agent.model, frames[pick], agent.device)  # (P, D)
    cost = None
    if slow:
        z_next = embed_frames(agent.model, frames[pick + 1], agent.device)  # (P, D)
        projection = slow_features(z, z_next, ex.slow_features)  # (D, k)
        cost = ProjectedDistance(projection).to(agent.device)
        z = z @ projection  # (P, k): novelty in the slow features
    novelty = knn_novelty(z, ex.knn)  # (P,)
    n_goals = max(1, int(round(ex.frontier_fraction * len(pick))))
    chosen = frontier_indices(novelty, n_goals, ex.frontier_fraction, rng)
    return frames[pick[np.unique(chosen)]], cost  # (G, H, W, 3) recorded frames


class Actor:
    """A batched exploration policy over the env copies (indices into them)."""

    def start(self, i: int) -> None:
        """Env copy `i` begins an episode."""

    def act(
        self, obs: list[dict[str, np.ndarray]], idx: list[int], space: gym.spaces.Box
    ) -> np.ndarray:
        raise NotImplementedError


class RandomActor(Actor):
    """Uniform random actions (what `lewm collect --policy random` records)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(
        self, obs: list[dict[str, np.ndarray]], idx: list[int], space: gym.spaces.Box
    ) -> np.ndarray:
        return self.rng.uniform(space.low, space.high, size=(len(idx), *space.shape)).astype(
            np.float32
        )


class FrontierActor(Actor):
    """Go-explore over frontier goals: per env copy, segments of planning toward a goal
    image (with action noise) or of random actions; batched planning over the copies."""

    def __init__(
        self,
        agent: WorldModelAgent,
        goals: np.ndarray,
        ex: ExploreConfig,
        seed: int,
        r: int,
        goal_cost: ProjectedDistance | None = None,
    ) -> None:
        self.ex = ex
        self.goals = goals  # (G, H, W, 3)
        self.rng = np.random.default_rng([seed, r, 2])
        plan = replace(
            agent.plan_config,
            planner="cem",
            samples=ex.samples,
            iterations=ex.iterations,
            elites=ex.elites,
            receding_horizon=agent.plan_config.horizon,
            warm_start=False,
            seed=seed + r,
            cost="latent" if goal_cost is None else "learned",
        )
        self.agent = WorldModelAgent(
            agent.model, agent.normalizer, agent.action_low, agent.action_high, plan,
            device=agent.device,
        )  # fmt: skip
        if goal_cost is not None:
            # The controller's "learned" cost calls `cost_head.distance(z, goal)`, which
            # the projected distance provides: plan toward the goal's slow features.
            self.agent.controller.cost_head = goal_cost
        self.left: dict[int, int] = {}  # env copy -> steps left in its segment
        self.goal: dict[int, int | None] = {}  # env copy -> goal index (None: random segment)
        self.fresh: dict[int, bool] = {}  # env copy -> its plan memory must be cleared
        self.goals_used: list[int] = []

    def start(self, i: int) -> None:
        self.left[i] = 0

    def _segment(self, i: int) -> None:
        ex = self.ex
        if self.goal.get(i) is not None and ex.random_steps > 0:
            self.goal[i], self.left[i] = None, ex.random_steps  # explore after going
        elif self.rng.random() < ex.random_segment_prob:
            self.goal[i], self.left[i] = None, max(1, ex.random_steps)
        else:
            g = int(self.rng.integers(len(self.goals)))
            self.goal[i], self.left[i], self.fresh[i] = g, ex.go_steps, True
            self.goals_used.append(g)

    def act(
        self, obs: list[dict[str, np.ndarray]], idx: list[int], space: gym.spaces.Box
    ) -> np.ndarray:
        for i in idx:
            if self.left.get(i, 0) <= 0:
                self._segment(i)
        actions = self.rng.uniform(space.low, space.high, size=(len(idx), *space.shape))
        go = [j for j, i in enumerate(idx) if self.goal[i] is not None]
        if go:
            envs_go = [idx[j] for j in go]
            batch = {
                "pixels": np.stack([obs[j]["pixels"] for j in go]),
                "goal": self.goals[[self.goal[i] for i in envs_go]],
            }
            starts = np.array([self.fresh.pop(i, False) for i in envs_go])
            planned, _ = self.agent.predict(batch, episode_start=starts, env_indices=envs_go)
            half = (space.high - space.low) / 2
            noise = self.rng.normal(0.0, self.ex.action_noise, size=planned.shape) * half
            actions[go] = np.clip(planned + noise, space.low, space.high)
        for i in idx:
            self.left[i] -= 1
        return actions.astype(np.float32)
