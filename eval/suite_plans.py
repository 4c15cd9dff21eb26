"""The suite's plans: per-env budgets of data, training and evaluation (`lewm suite --preset`).

Budgets (plan `full`): the data is Two-Room 1000 x 100 steps, Push-T 600 x 300,
Reacher 654 x 200, Cube 550 x 200 env steps; LeWM trains the `cpu` preset (Push-T
2500 steps of batch 128 with SIGReg weight 0.2, Reacher 1000, Cube 3000 and its
policy head, which it acts with; Cube has no pixel PPO); PPO on state gets the SAME
number of env steps as LeWM's dataset; SAC gets 10k and pixel PPO 20k (one ~20 ms update per env step for SAC, ~17 ms per
step for pixel PPO: an equal budget would cost 35-100 min per env and baseline).
The `test` plan runs the same stages with tiny budgets in seconds (for tests and
a smoke run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EnvPlan:
    """Budgets of one env in the suite."""

    env_id: str
    episodes: int
    """Episodes of reward-free data to record."""
    policy: str = "scripted"
    """Data policy (``envs.scripted.make_data_policy``): scripted | expert | oracle | random."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra ``gym.make`` kwargs for collection (e.g. ``max_episode_steps``)."""
    lewm_preset: str = "cpu"
    lewm_steps: int | None = None
    """LeWM gradient steps (None: the preset's)."""
    ppo_steps: int | None = None
    """PPO env steps (None: the same as the dataset's env steps)."""
    sac_steps: int = 30_000
    ppo_pixels_steps: int | None = None
    """Pixel PPO env steps (None: the same as the dataset's env steps)."""
    eval_episodes: int = 50
    budget: int = 50
    image_size: int = 64
    workers: int = 2
    agents: tuple[str, ...] = ("lewm", "ppo", "sac", "ppo-pixels", "gcbc", "random")
    video_episodes: int = 4
    plan_overrides: dict[str, Any] = field(default_factory=dict)
    """PlanConfig overrides for LeWM at evaluation (e.g. fewer CEM samples in tests)."""
    train_overrides: dict[str, Any] = field(default_factory=dict)
    """TrainConfig overrides for LeWM (e.g. batch size, SIGReg weight)."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """ModelConfig overrides for LeWM (e.g. history)."""
    gcbc_steps: int | None = None
    """GCBC gradient steps (None: its default, the `cpu` preset's 1200 of batch 64)."""
    lewm_planner: str | None = None
    """LeWM's planner in the comparison (None: the checkpoint's, CEM). "policy" or
    "cem-prior" train the latent policy head after the world model (lewm stage)."""

    @property
    def needs_policy_head(self) -> bool:
        """Whether `lewm_planner` acts with the latent policy head (`planning.uses_policy`)."""
        from lewm_agent.planning import uses_policy  # imports torch: only when asked

        return self.lewm_planner is not None and uses_policy(self.lewm_planner)


_CPU_BASELINES: dict[str, Any] = {"sac_steps": 10_000, "ppo_pixels_steps": 20_000}
"""SAC costs ~20 ms per update (one per env step) and pixel PPO ~17 ms per env step on
a 2-core CPU, so they get fixed budgets (~4 and ~6 min) instead of the
dataset's env steps (35-100 min each); the tables print every agent's budget."""

SUITE_PLANS: dict[str, dict[str, EnvPlan]] = {
    # The budgets behind the published suite tables (a 2-core CPU).
    "full": {
        "tworoom": EnvPlan("lewm/TwoRoom-v0", episodes=1000, **_CPU_BASELINES),
        "pusht": EnvPlan(
            "lewm/PushT-v0",
            episodes=600,
            lewm_steps=2500,
            # A stronger SIGReg on a bigger batch keeps the block's pose in the
            # embedding (a linear probe reads it better than with batch 64 x 0.09).
            train_overrides={"batch_size": 128, "sigreg_weight": 0.2},
            **_CPU_BASELINES,
        ),
        "reacher": EnvPlan("lewm/Reacher-v0", episodes=654, lewm_steps=1000, **_CPU_BASELINES),
        # OGBench's Markov oracle. Rendering costs ~50-110 ms of CPU per frame, so the
        # data is a twentieth of the paper's 10k x 200 episodes, and pixel PPO (~70 ms
        # per env step with the render) is left out: PPO and SAC on state.
        "cube": EnvPlan(
            "lewm/Cube-v0",
            episodes=550,
            policy="oracle",
            lewm_steps=3000,
            # The latent policy head acts alone: on this small dataset it plans
            # better than CEM (docs/results, Cube).
            lewm_planner="policy",
            agents=("lewm", "ppo", "sac", "gcbc", "random"),
            **_CPU_BASELINES,
        ),
    },
    "test": {
        name: EnvPlan(
            env_id,
            episodes=4,
            lewm_preset="test",
            lewm_steps=3,
            ppo_steps=256,
            sac_steps=0,
            ppo_pixels_steps=0,
            eval_episodes=2,
            budget=4,
            image_size=32,
            workers=1,
            agents=("lewm", "ppo", "gcbc", "random"),
            video_episodes=2,
            gcbc_steps=2,
            plan_overrides={"samples": 16, "iterations": 1, "elites": 4},
        )
        for name, env_id in (
            ("tworoom", "lewm/TwoRoom-v0"),
            ("pusht", "lewm/PushT-v0"),
            ("reacher", "lewm/Reacher-v0"),
        )
    },
}
"""Named plans of per-env budgets (`lewm suite --preset NAME`). `test` leaves out SAC
(SAC+HER needs a whole episode before its first update) and pixel PPO (>= 36 px images)."""


__all__ = ["EnvPlan", "SUITE_PLANS"]
