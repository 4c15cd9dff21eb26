"""stable-baselines3 baselines trained on the env's dense reward (what LeWM does without).

Three model-free baselines per env, all trained on the env's own random start/goal
distribution (``env.reset()`` samples both) under its own time limit:

- ``ppo`` on the state observation (GoalEnv dict -> ``MultiInputPolicy``);
- ``sac`` on the state observation, with hindsight relabelling (``HerReplayBuffer``,
  "future" strategy) on by default: every lewm env is a GoalEnv with a vectorised
  ``compute_reward``, and its goals (Two-Room positions, Reacher joint configurations,
  the Push-T block pose) are exactly what the achieved goal measures, so relabelled
  transitions are true transitions of other tasks;
- ``ppo`` on pixels (``obs_mode="pixels"``): the same 64 px ``{"pixels", "goal"}``
  observation the world model plans from, through ``MultiInputPolicy`` with an
  early-fusion CNN (frame and goal stacked on channels, so the first convolution
  can compare them; two separate CNNs, SB3's default, only meet after pooling).

A trained baseline is an :class:`SB3Agent`: it has the stable-baselines3 ``predict``
signature (deterministic by default, as the evaluation wants) and announces the
observation it needs through ``obs_mode`` (and ``image_size``), which
``eval.protocol.run_protocol`` reads to build its envs; the start and goal states are
set through reset options either way, so a state agent plays the same episodes.
Saved folders hold SB3's own ``model.zip`` plus a plain-JSON ``baseline.json``.

Default budgets (env steps), chosen to finish in minutes on this 2-core CPU (reference
costs: PPO ~1.4 ms per env step, SAC ~20 ms per gradient update, uncontended):

- ``ppo`` state 100k (~2.5 min uncontended): the same 100k env steps as the
  reward-free data of the Two-Room LeWM, so that comparison is at equal env steps.
- ``sac`` state 20k: one gradient update per env step -> ~7 min uncontended; an
  equal 100k would be ~35 min per env. Pass ``total_timesteps`` when time allows.
- ``ppo`` pixels 50k: the CNN makes a step ~5-10x dearer than state PPO -> ~5-10 min.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from lewm_agent.atomic import atomic_write_json

__all__ = [
    "ALGOS",
    "DEFAULT_TIMESTEPS",
    "BaselineConfig",
    "GoalImageCNN",
    "SB3Agent",
    "train_baseline",
    "baseline_name",
    "parse_baseline_name",
]

ALGOS: tuple[str, ...] = ("ppo", "sac")
OBS_MODES: tuple[str, ...] = ("state", "pixels")
DEFAULT_TIMESTEPS: dict[tuple[str, str], int] = {
    ("ppo", "state"): 100_000,
    ("sac", "state"): 20_000,
    ("ppo", "pixels"): 50_000,
}
"""Env-step budgets per (algo, obs_mode); see the module docstring for the reasons."""

MODEL_FILE = "model.zip"
META_FILE = "baseline.json"


def baseline_name(algo: str, obs_mode: str) -> str:
    """The registry / report name: ``ppo``, ``sac`` (state) or ``ppo-pixels``, ``sac-pixels``."""
    return algo if obs_mode == "state" else f"{algo}-{obs_mode}"


def parse_baseline_name(name: str) -> tuple[str, str]:
    """Inverse of :func:`baseline_name`: ``"ppo-pixels"`` -> ``("ppo", "pixels")``."""
    algo, _, mode = name.replace("_", "-").partition("-")
    mode = mode or "state"
    if algo not in ALGOS or mode not in OBS_MODES:
        raise ValueError(
            f"unknown baseline {name!r}; expected one of "
            f"{[baseline_name(a, m) for a in ALGOS for m in OBS_MODES]}"
        )
    return algo, mode


@dataclass(frozen=True)
class BaselineConfig:
    """Everything that defines a baseline's training run (saved in baseline.json)."""

    env_id: str
    algo: str = "ppo"
    """"ppo" or "sac"."""
    obs_mode: str = "state"
    """"state" (GoalEnv dict) or "pixels" ({"pixels", "goal"} images, like LeWM)."""
    total_timesteps: int | None = None
    """Env steps of training; None = DEFAULT_TIMESTEPS[(algo, obs_mode)]."""
    her: bool = True
    """SAC only: hindsight relabelling of goals (HerReplayBuffer, 'future', k=4)."""
    image_size: int = 64
    """Image side for obs_mode='pixels' (the world model's size)."""
    n_envs: int | None = None
    """Parallel (in-process) envs; None = 8 for PPO, 1 for SAC."""
    seed: int = 0
    gamma: float = 0.98
    """Discount; episodes last 100-300 steps, success ends them."""

    def resolved(self) -> BaselineConfig:
        """Validated copy with the defaults filled in."""
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {ALGOS}, got {self.algo!r}")
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {self.obs_mode!r}")
        steps = self.total_timesteps
        if steps is None:
            if (self.algo, self.obs_mode) not in DEFAULT_TIMESTEPS:
                raise ValueError(f"no default budget for {self.algo} on {self.obs_mode}")
            steps = DEFAULT_TIMESTEPS[(self.algo, self.obs_mode)]
        if steps < 1:
            raise ValueError(f"total_timesteps must be >= 1, got {steps}")
        n_envs = self.n_envs or (8 if self.algo == "ppo" else 1)
        her = self.her and self.algo == "sac" and self.obs_mode == "state"
        return BaselineConfig(
            self.env_id,
            self.algo,
            self.obs_mode,
            int(steps),
            her,
            int(self.image_size),
            int(n_envs),
            int(self.seed),
            float(self.gamma),
        )


# ---------------------------------------------------------------------- feature extractor
class GoalImageCNN(BaseFeaturesExtractor):
    """Early fusion: frame and goal image stacked on channels, one NatureCNN-style stack.

    SB3 hands the images channel-first and scaled to [0, 1]; ``(B, 3, H, W)`` each
    -> ``(B, 6, H, W)`` -> convs 8/4, 4/2, 3/1 -> ``(B, features_dim)``. Works for
    any image size >= 36 px (64 px: 15 -> 6 -> 4 spatial).
    """

    def __init__(self, observation_space: spaces.Dict, features_dim: int = 256) -> None:
        super().__init__(observation_space, features_dim)
        for key in ("pixels", "goal"):
            if key not in observation_space.spaces:
                raise ValueError(f"GoalImageCNN needs a {key!r} image in the observation")
        c = observation_space["pixels"].shape[0] + observation_space["goal"].shape[0]
        self.cnn = torch.nn.Sequential(
            torch.nn.Conv2d(c, 32, 8, stride=4),
            torch.nn.ReLU(),
            torch.nn.Conv2d(32, 64, 4, stride=2),
            torch.nn.ReLU(),
            torch.nn.Conv2d(64, 64, 3, stride=1),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
        )
        with torch.no_grad():
            sample = torch.zeros(1, c, *observation_space["pixels"].shape[1:])
            n_flat = self.cnn(sample).shape[1]
        self.linear = torch.nn.Sequential(torch.nn.Linear(n_flat, features_dim), torch.nn.ReLU())

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        x = torch.cat([observations["pixels"], observations["goal"]], dim=1)  # (B, 6, H, W)
        return self.linear(self.cnn(x))  # (B, features_dim)


# ---------------------------------------------------------------------- the agent
class SB3Agent:
    """A trained SB3 model with the protocol's conventions.

    Attributes:
        obs_mode: the observation the model acts on ("state" or "pixels");
            ``eval.protocol.run_protocol`` builds its envs with it.
        image_size: the image side a pixel model was trained at (None for state).
        training_stats: ``{"seconds", "env_steps", "reward_used": True, ...}`` for reports.
    """

    supports_env_indices = False

    def __init__(
        self,
        model: Any,
        config: BaselineConfig,
        training_stats: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.env_id = config.env_id
        self.obs_mode = config.obs_mode
        self.image_size: int | None = config.image_size if config.obs_mode == "pixels" else None
        self.training_stats: dict[str, Any] = dict(training_stats or {})
        self.training_stats.setdefault("reward_used", True)
        self.name = baseline_name(config.algo, config.obs_mode)

    def predict(
        self,
        observation: dict[str, np.ndarray] | np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """SB3 ``predict``, single or batched; deterministic by default (evaluation).

        ``observation`` must be of the agent's ``obs_mode``: the state GoalEnv dict
        (``observation``, ``achieved_goal``, ``desired_goal``) or ``{"pixels", "goal"}``
        uint8 images of ``image_size``.
        """
        if isinstance(observation, dict):
            want = set(self.model.observation_space.spaces)
            if not want <= set(observation):
                raise ValueError(
                    f"{self.name} acts on obs_mode={self.obs_mode!r} observations with keys "
                    f"{sorted(want)}, got {sorted(observation)}: make the env with "
                    f"obs_mode={self.obs_mode!r}"
                )
            observation = {k: observation[k] for k in want}
        return self.model.predict(
            observation, state=state, episode_start=episode_start, deterministic=deterministic
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``model.zip`` (SB3's format) and ``baseline.json`` into folder ``path``.

        baseline.json is written last (atomically), so its presence marks a complete save.
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / MODEL_FILE)
        meta = {"format_version": 1, "config": asdict(self.config), "training": self.training_stats}
        atomic_write_json(folder / META_FILE, meta)
        return folder

    @staticmethod
    def is_saved(path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` holds a complete saved baseline."""
        folder = Path(path)
        return (folder / MODEL_FILE).is_file() and (folder / META_FILE).is_file()

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "cpu") -> SB3Agent:
        """Load a folder written by :meth:`save` (needs ``import envs`` for the env ids)."""
        folder = Path(path)
        if not cls.is_saved(folder):
            raise FileNotFoundError(
                f"{folder} is not a saved baseline (needs {MODEL_FILE} and {META_FILE}); "
                "train one with agents.baselines.train_baseline"
            )
        meta = json.loads((folder / META_FILE).read_text())
        try:
            config = BaselineConfig(**meta["config"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"{folder / META_FILE} is incomplete or corrupt: {e!r}") from e
        algo_cls = _algo_class(config.algo)
        env = None
        if config.algo == "sac" and config.her:
            # HerReplayBuffer is rebuilt on load and needs the env (for compute_reward).
            env = _make_vec_env(config, n_envs=1)
        model = algo_cls.load(folder / MODEL_FILE, env=env, device=device)
        return cls(model, config, meta.get("training"))


# ---------------------------------------------------------------------- training
def _algo_class(algo: str) -> Any:
    from stable_baselines3 import PPO, SAC

    return {"ppo": PPO, "sac": SAC}[algo]


def _make_vec_env(config: BaselineConfig, n_envs: int) -> Any:
    """DummyVecEnv of ``n_envs`` Monitor-wrapped envs with the env's own time limit."""
    from stable_baselines3.common.env_util import make_vec_env

    import envs  # noqa: F401  (registers lewm/*)

    kwargs: dict[str, Any] = {"obs_mode": config.obs_mode}
    if config.obs_mode == "pixels":
        kwargs["image_size"] = config.image_size
    return make_vec_env(config.env_id, n_envs=n_envs, seed=config.seed, env_kwargs=kwargs)


def _build_model(config: BaselineConfig, env: Any, device: str) -> Any:
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.her import HerReplayBuffer

    if config.algo == "ppo":
        n_envs = int(config.n_envs or 1)
        # A rollout never exceeds the budget (SB3 learns in whole rollouts), so tiny
        # budgets in tests stay tiny and reported env steps match the request.
        n_steps = 256 if config.obs_mode == "state" else 128
        n_steps = max(8, min(n_steps, int(config.total_timesteps or 0) // n_envs))
        kw: dict[str, Any] = {
            "n_steps": n_steps,
            "batch_size": min(256, n_steps * n_envs),
            "n_epochs": 10 if config.obs_mode == "state" else 4,
            "learning_rate": 3e-4 if config.obs_mode == "state" else 2.5e-4,
            "gamma": config.gamma,
            "gae_lambda": 0.95,
            "ent_coef": 0.0,
        }
        if config.obs_mode == "pixels":
            kw["policy_kwargs"] = {
                "features_extractor_class": GoalImageCNN,
                "features_extractor_kwargs": {"features_dim": 256},
                "net_arch": {"pi": [64], "vf": [64]},
            }
        return PPO("MultiInputPolicy", env, seed=config.seed, device=device, verbose=0, **kw)
    if config.obs_mode != "state":
        raise ValueError("SAC on pixels is not offered (replay of 64 px image pairs is too big)")
    steps = int(config.total_timesteps or 0)
    kw = {
        "buffer_size": max(10_000, min(steps, 1_000_000)),
        "learning_starts": min(1_000, max(steps // 10, 1)),
        "batch_size": 256,
        "gamma": config.gamma,
        "tau": 0.005,
        "train_freq": 1,
        "gradient_steps": 1,
    }
    if config.her:
        # HER samples only from finished episodes: start learning after the first one.
        limit = gym.spec(config.env_id).max_episode_steps or 0
        kw["learning_starts"] = max(kw["learning_starts"], limit + 1)
        kw["replay_buffer_class"] = HerReplayBuffer
        kw["replay_buffer_kwargs"] = {"n_sampled_goal": 4, "goal_selection_strategy": "future"}
    return SAC("MultiInputPolicy", env, seed=config.seed, device=device, verbose=0, **kw)


def train_baseline(
    env_id: str,
    algo: str = "ppo",
    obs_mode: str = "state",
    *,
    total_timesteps: int | None = None,
    her: bool = True,
    image_size: int = 64,
    n_envs: int | None = None,
    seed: int = 0,
    save_to: str | os.PathLike[str] | None = None,
    progress: bool = False,
    device: str = "cpu",
    threads: int | None = 1,
) -> SB3Agent:
    """Train one SB3 baseline on ``env_id``'s dense reward and return it (saved if asked).

    Args:
        env_id: a registered id (``import envs`` is done here).
        algo: "ppo" or "sac".
        obs_mode: "state" (GoalEnv dict) or "pixels" (PPO only; 64 px pixels + goal).
        total_timesteps: env steps of training (default: ``DEFAULT_TIMESTEPS``).
        her: SAC only: hindsight relabelling (ignored otherwise).
        image_size: image side for pixel observations.
        n_envs: in-process parallel envs (default 8 for PPO, 1 for SAC).
        seed: seeds the envs' start/goal sampling and the networks.
        save_to: folder to save into (``model.zip`` + ``baseline.json``).
        progress: SB3's progress bar (needs tqdm and rich; without rich: no bar).
        device: torch device; "cpu" (SB3 MLP policies are faster on CPU anyway).
        threads: torch intra-op threads while learning (restored after); None = leave.
    Returns:
        the trained :class:`SB3Agent`; ``training_stats`` holds wall seconds and env steps.
    """
    config = BaselineConfig(
        env_id, algo, obs_mode, total_timesteps, her, image_size, n_envs, seed
    ).resolved()
    env = _make_vec_env(config, n_envs=int(config.n_envs or 1))
    model = _build_model(config, env, device)
    previous = torch.get_num_threads()
    if threads:
        # SB3's MLPs and small CNN gain little from intra-op threads, and on a shared
        # CPU extra OpenMP threads spin at every barrier, which slows small updates
        # several-fold.
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        bar = progress and importlib.util.find_spec("rich") is not None  # SB3 raises without
        model.learn(total_timesteps=int(config.total_timesteps or 0), progress_bar=bar)
    finally:
        torch.set_num_threads(previous)
    seconds = time.perf_counter() - t0
    env.close()
    stats = {
        "seconds": seconds,
        "env_steps": int(model.num_timesteps),
        "reward_used": True,
        "algo": config.algo,
        "obs_mode": config.obs_mode,
        "her": config.her,
    }
    agent = SB3Agent(model, config, stats)
    if save_to is not None:
        agent.save(save_to)
    return agent


def make_env_for(agent: SB3Agent, **kwargs: Any) -> gym.Env:
    """A single env with the observation ``agent`` needs (for ad-hoc rollouts)."""
    import envs  # noqa: F401

    kw: dict[str, Any] = {"obs_mode": agent.obs_mode}
    if agent.image_size is not None:
        kw["image_size"] = agent.image_size
    return gym.make(agent.env_id, **{**kw, **kwargs})
