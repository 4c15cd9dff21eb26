"""WorldModelAgent: a goal-conditioned policy that plans in LeWM's latent space.

`predict(obs)` has the stable-baselines3 signature, so the agent drops into
ordinary Gymnasium loops and `evaluate_policy`. Per environment it keeps a
queue of planned actions, the embeddings of the last `history` block-boundary
frames with the action blocks between them, and the previous plan for a warm
start; all envs that need a new plan are planned together in one batched call.

Size (~800 lines, over the ~500 guide): one class, the public API, whose predict
path (per-env slots, frame history, plan queue, warm start, policy head) shares
state that splitting would scatter; training, checkpoints and planning live in their
own modules.
"""

from __future__ import annotations

import numbers
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import zoo
from .checkpoint import (
    CONFIG_FILE,
    STATS_FILE,
    CheckpointContents,
    CheckpointError,
    build_model,
    read_checkpoint,
    save_checkpoint,
)
from .config import (
    ModelConfig,
    PlanConfig,
    TrainConfig,
    from_dict,
    get_preset,
    replace,
    to_dict,
)
from .data import ActionNormalizer, Dataset
from .device import autocast_context, resolve_device
from .model import LeWM
from .planning import PlanResult, make_planner, uses_policy
from .rollout import LatentRollout
from .train import TrainResult, run_meta, train
from .validation import ConfigError, check_action_bounds, check_finite_vector

# Normalised-space bound used where the env's own bound is infinite.
UNBOUNDED_LIMIT = 3.0


def _checkpoint_sections(
    contents: CheckpointContents,
) -> tuple[
    PlanConfig, TrainConfig | None, dict[str, Any], np.ndarray, np.ndarray, ActionNormalizer
]:
    """The agent's parts of a checkpoint (plan, train, env, normaliser), each value checked.

    Raises CheckpointError naming the file and field: a NaN bound or normaliser
    statistic would otherwise turn every planned action into NaN.
    """
    config, stats = contents.config, contents.stats
    a = contents.model_config.action_dim
    config_path, stats_path = contents.folder / CONFIG_FILE, contents.folder / STATS_FILE
    section = "plan"
    try:
        plan = config.get("plan")
        plan_cfg = from_dict(PlanConfig, {} if plan is None else plan)
        section = "train"
        train = config.get("train")
        train_cfg = None if train is None else from_dict(TrainConfig, train)
        section = "env"
        env = config.get("env")
        if not isinstance(env, dict):
            raise ConfigError(f"must be an object with action_low/action_high, got {env!r}")
        if not isinstance(env.get("env_id"), str | None):
            raise ConfigError(f"env_id must be a string or null, got {env.get('env_id')!r}")
        build = env.get("build")  # how the data's env was made (envs/build.py); optional
        if build is not None and not (isinstance(build, dict) and isinstance(build.get("id"), str)):
            raise ConfigError(f"build must be null or an object with an 'id', got {build!r}")
        low, high = check_action_bounds(
            env.get("action_low"), env.get("action_high"), a, "action_low/action_high"
        )
    except ValueError as e:
        raise CheckpointError(f"{config_path}: bad {section} section: {e}") from e
    section = "action_normalizer"
    try:
        norm = stats.get("action_normalizer")
        if not isinstance(norm, dict):
            raise ConfigError(f"must be an object with mean and std, got {norm!r}")
        mean = check_finite_vector(norm.get("mean"), a, "mean")
        std = check_finite_vector(norm.get("std"), a, "std")
        if np.any(std <= 0):
            raise ConfigError(f"std must be positive, got {std.tolist()}")
        section = "training"
        if not isinstance(stats.get("training"), dict | None):
            raise ConfigError(f"must be an object, got {stats.get('training')!r}")
    except ValueError as e:
        raise CheckpointError(f"{stats_path}: bad {section} section: {e}") from e
    return plan_cfg, train_cfg, env, low, high, ActionNormalizer(mean, std)


def _check_env_indices(env_indices: Any, n: int) -> list[int]:
    """`predict`'s env_indices as a list of n distinct non-negative ints (default 0..n-1)."""
    if env_indices is None:
        return list(range(n))
    items = list(np.asarray(env_indices, dtype=object).reshape(-1))
    if not all(
        isinstance(i, numbers.Integral) and not isinstance(i, bool | np.bool_) for i in items
    ):
        raise ValueError(f"env_indices must be integers, got {env_indices!r}")
    ids = [int(i) for i in items]
    if len(ids) != n or len(set(ids)) != n or min(ids) < 0:
        raise ValueError(f"env_indices must be {n} distinct non-negative ints, got {ids}")
    return ids


def _check_episode_start(episode_start: Any, n: int) -> np.ndarray:
    """`predict`'s episode_start as n bools (default all False).

    Only booleans (or the integers 0 and 1) are accepted: np.asarray(["False"],
    dtype=bool) is True, which would silently wipe that env's memory.
    """
    if episode_start is None:
        return np.zeros(n, dtype=bool)
    starts = np.asarray(episode_start)
    if starts.dtype != np.bool_:
        if starts.dtype.kind not in "iu" or not np.isin(starts, (0, 1)).all():
            raise ValueError(
                f"episode_start must be booleans, one per env, got {starts.dtype} "
                f"{starts.tolist()!r}"
            )
        starts = starts.astype(bool)
    starts = starts.reshape(-1)
    if starts.shape[0] != n:
        raise ValueError(f"episode_start has {starts.shape[0]} entries for {n} envs")
    return starts


@dataclass
class _EnvSlot:
    """What the agent remembers about one environment of a (vector) env."""

    generator: torch.Generator
    queue: deque = field(default_factory=deque)  # (env action (A,), normalised action (A,))
    z_hist: list[Tensor] = field(default_factory=list)  # block-boundary embeddings (D,)
    a_hist: list[Tensor] = field(default_factory=list)  # executed normalised blocks (fs*A,)
    current_block: list[np.ndarray] = field(default_factory=list)
    warm: Tensor | None = None  # (H, fs*A) shifted previous plan
    goal_image: np.ndarray | None = None
    goal_z: Tensor | None = None

    def clear(self) -> None:
        self.queue.clear()
        self.z_hist.clear()
        self.a_hist.clear()
        self.current_block.clear()
        self.warm = None


class WorldModelAgent:
    """Plans toward a goal image with CEM or MPPI over LeWM's predictions."""

    def __init__(
        self,
        model: LeWM,
        normalizer: ActionNormalizer,
        action_low: np.ndarray,
        action_high: np.ndarray,
        plan_config: PlanConfig | None = None,
        *,
        train_config: TrainConfig | None = None,
        env_id: str | None = None,
        device: str | torch.device = "auto",
        training_stats: dict[str, Any] | None = None,
        env_build: dict[str, Any] | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.model_config: ModelConfig = model.cfg
        self.plan_config = plan_config or PlanConfig()
        self.train_config = train_config
        self.env_id = env_id
        self.env_build = env_build
        """How the training data's env was built (id, module, kwargs, wrappers; JSON),
        from the dataset's meta.json: `lewm eval` rebuilds the env from it."""
        self.plan_callback: Callable[[int, int, int], None] | None = None
        """Called as `plan_callback(iteration, iterations, envs)` after each planner
        iteration of a batched plan (progress bars for plans that take minutes)."""
        self.normalizer = normalizer
        self.training_stats = training_stats or {}
        a = self.model_config.action_dim
        self.action_low, self.action_high = check_action_bounds(action_low, action_high, a)
        self._mean = np.asarray(normalizer.mean, dtype=np.float32).reshape(a)
        self._std = np.asarray(normalizer.std, dtype=np.float32).reshape(a)
        fs = self.model_config.frameskip
        low_n = np.where(
            np.isfinite(self.action_low),
            (self.action_low - self._mean) / self._std,
            -UNBOUNDED_LIMIT,
        )
        high_n = np.where(
            np.isfinite(self.action_high),
            (self.action_high - self._mean) / self._std,
            UNBOUNDED_LIMIT,
        )
        # Bounds of one flattened block (fs*A,) in normalised units.
        self._low_n = torch.tensor(np.tile(low_n, fs), dtype=torch.float32, device=self.device)
        self._high_n = torch.tensor(np.tile(high_n, fs), dtype=torch.float32, device=self.device)
        self.planner = make_planner(self.plan_config, self._low_n, self._high_n, a)
        self._slots: list[_EnvSlot] = []
        self._fast_rollout: LatentRollout | None = None
        self._manual_goal: np.ndarray | None = None
        self.policy_head: Any = None
        """A `policy_head.PolicyHead` (planners "policy", "cem-prior", "mppi-prior"), or None."""
        self.policy_head_meta: dict[str, Any] = {}
        self.decisions: list[dict[str, float]] | None = None
        """Set to [] to log every planning call: {"envs", "seconds", "rollouts"} (per env)."""
        if not 1 <= self.plan_config.receding_horizon <= self.plan_config.horizon:
            raise ValueError("receding_horizon must be between 1 and horizon")

    # ------------------------------------------------------------ construction
    @classmethod
    def fit(
        cls,
        dataset: Dataset | str | os.PathLike,
        preset: str = "cpu",
        *,
        steps: int | None = None,
        model_overrides: dict[str, Any] | None = None,
        train_overrides: dict[str, Any] | None = None,
        plan_overrides: dict[str, Any] | None = None,
        log_dir: str | os.PathLike | None = None,
        device: str | torch.device = "auto",
        progress: bool = True,
        **train_kwargs: Any,
    ) -> WorldModelAgent:
        """Train LeWM on a recorded dataset with a named preset and return the agent.

        `train_kwargs` go to `lewm_agent.train.train` (e.g. `resume=True`,
        `checkpoint_every=200`, `tensorboard=True`, `ram_budget_mb=4000`).
        """
        p = get_preset(preset)
        model_cfg = replace(p.model, **(model_overrides or {}))
        train_cfg = replace(p.train, **(train_overrides or {}))
        if steps is not None:
            train_cfg = replace(train_cfg, steps=steps)
        plan_cfg = replace(p.plan, **(plan_overrides or {}))
        if not isinstance(dataset, Dataset):
            # What `lewm train` records, so `lewm train --resume` can continue a fit too.
            train_kwargs.setdefault("run_meta", run_meta(dataset, preset, plan_cfg))
        result = train(
            dataset,
            model_cfg,
            train_cfg,
            log_dir=log_dir,
            device=device,
            progress=progress,
            **train_kwargs,
        )
        return cls.from_train_result(result, plan_cfg, device, train_config=train_cfg)

    @classmethod
    def from_train_result(
        cls,
        result: TrainResult,
        plan_cfg: PlanConfig,
        device: str | torch.device,
        *,
        train_config: TrainConfig | None = None,
        **extra_stats: Any,
    ) -> WorldModelAgent:
        """The agent a training run made (`fit` and `lewm train` both build it here).

        Its training stats (stats.json's `training`) are the same for every caller:
        seconds, steps, final log row, dataset meta, process count and resume step
        (None for a run that started at step 0). `train_config` defaults to the
        result's; `extra_stats` join the stats.
        """
        meta = result.dataset_meta
        train_cfg = result.train_config if train_config is None else train_config
        return cls(
            result.model,
            result.normalizer,
            np.asarray(meta["action_low"]),
            np.asarray(meta["action_high"]),
            plan_cfg,
            train_config=train_cfg,
            env_id=meta.get("env_id"),
            device=device,
            training_stats={
                "seconds": result.seconds,
                "steps": train_cfg.steps,
                "final": result.log[-1] if result.log else {},
                "dataset": meta,
                "world_size": result.world_size,
                "resumed_from": result.start_step or None,
                **extra_stats,
            },
            env_build=meta.get("env_build"),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write config.json + model.safetensors + stats.json to a folder."""
        config = {
            "model": to_dict(self.model_config),
            "plan": to_dict(self.plan_config),
            "train": to_dict(self.train_config) if self.train_config else None,
            "env": {
                "env_id": self.env_id,
                "build": self.env_build,
                "action_low": self.action_low.tolist(),
                "action_high": self.action_high.tolist(),
            },
        }
        stats = {"action_normalizer": self.normalizer.to_dict(), "training": self.training_stats}
        folder = save_checkpoint(path, self.model, config, stats)
        if self.policy_head is not None:
            from .policy_head import save_policy_head

            save_policy_head(folder, self.policy_head, self.policy_head_meta)
        return folder

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        planner: str | PlanConfig | None = None,
        device: str | torch.device = "auto",
        **plan_overrides: Any,
    ) -> WorldModelAgent:
        """Load a saved agent; `planner` picks "cem"/"mppi" or a full PlanConfig.

        Everything in the folder is checked before the model is built (see
        `read_checkpoint` and `_checkpoint_sections`): a bad value raises a
        CheckpointError naming its file and field.

        "policy" (the latent policy head alone) and "cem-prior"/"mppi-prior" (the
        head as the sampler's prior) need the folder's policy head
        (`lewm train-policy PATH --data DATA` or `fit_policy_head`).

        `path` may be `"zoo:NAME"`, a model of the zoo (`lewm zoo list`); its files
        are checked against the SHA-256 its card records first, and without
        `planner` it acts with the planner its card was measured with (a card
        without one, card_version 1: the checkpoint's planner, as a folder). A zoo
        model's folder given by its path (`"zoo/cube"`) loads the same way.
        """
        ref = zoo.ref_of(path)  # also a zoo model's folder given by its path
        if ref is not None:
            if planner is None:
                planner = zoo.planner(ref)
            path = zoo.verify(ref)
        dev = resolve_device(device)
        contents = read_checkpoint(path)
        plan_cfg, train_cfg, env, low, high, normalizer = _checkpoint_sections(contents)
        if isinstance(planner, PlanConfig):
            plan_cfg = planner
        elif isinstance(planner, str):
            plan_cfg = replace(plan_cfg, planner=planner)
        elif planner is not None:
            raise TypeError("planner must be a planner name (e.g. 'cem'), a PlanConfig or None")
        if plan_overrides:
            plan_cfg = replace(plan_cfg, **plan_overrides)
        stats = contents.stats
        agent = cls(
            build_model(contents, device=dev),
            normalizer,
            low,
            high,
            plan_cfg,
            train_config=train_cfg,
            env_id=env.get("env_id"),
            device=dev,
            training_stats=stats.get("training"),
            env_build=env.get("build"),
        )
        agent._attach_saved_policy_head(path)
        return agent

    # ------------------------------------------------------------ policy head
    def _attach_saved_policy_head(self, path: str | os.PathLike) -> None:
        """Load the folder's policy head if it has one trained on THIS world model."""
        from .policy_head import has_policy_head, load_policy_head, model_digest

        needed = uses_policy(self.plan_config.planner)
        fix = f"train one: `lewm train-policy {path} --data DATA` (or agent.fit_policy_head)"
        if not has_policy_head(path):
            if needed:
                raise CheckpointError(
                    f"planner {self.plan_config.planner!r} needs a policy head and {path} "
                    f"has none; {fix}"
                )
            return
        head, meta = load_policy_head(path, device=self.device)
        if meta.get("model_digest") != model_digest(self.model):
            msg = f"the policy head in {path} was trained on another world model; {fix}"
            if needed:
                raise CheckpointError(msg)
            import warnings

            warnings.warn(msg + "; it is ignored", RuntimeWarning, stacklevel=3)
            return
        self.policy_head, self.policy_head_meta = head, meta

    def fit_policy_head(
        self,
        dataset: Dataset | str | os.PathLike,
        *,
        progress: bool = True,
        **head_config: Any,
    ) -> dict[str, Any]:
        """Train the latent policy head on this (frozen) world model's embeddings.

        Hindsight goals up to `max_offset` env steps ahead in the training split
        of `dataset` (the one LeWM trained on: same held-out episodes). Keyword
        arguments are `policy_head.PolicyHeadConfig` fields (steps, hidden, ...).
        The head is attached to the agent and saved by `save`. Returns its meta.
        """
        from .config import replace as replace_cfg
        from .policy_head import PolicyHeadConfig, train_policy_head

        tc = self.train_config
        cfg = PolicyHeadConfig(
            holdout_fraction=tc.holdout_fraction if tc else 0.1,
            train_episodes=tc.train_episodes if tc else 0,
        )
        cfg = replace_cfg(cfg, **head_config)
        result = train_policy_head(
            self.model, self.normalizer, dataset, cfg, device=self.device, progress=progress
        )
        self.policy_head = result.head
        self.policy_head_meta = {
            "model_digest": result.digest,
            "training": {
                "seconds": result.seconds,
                "final_loss": result.log[-1]["loss"] if result.log else None,
                "first_loss": result.log[0]["loss"] if result.log else None,
                "heldout_loss": result.heldout_loss,
                "log": result.log,
            },
        }
        return self.policy_head_meta

    @torch.inference_mode()
    def policy_blocks(self, z: Tensor, goal: Tensor, steps_left: Tensor | float) -> Tensor:
        """The policy head's next action block (G, fs*A), normalised, inside the bounds."""
        if self.policy_head is None:
            raise ValueError(
                f"planner {self.plan_config.planner!r} needs a policy head: call "
                "agent.fit_policy_head(data) or `lewm train-policy RUN --data DATA`"
            )
        with autocast_context(self.device):
            out = self.policy_head(z, goal, steps_left).float()  # (G, fs*A)
        return out.clamp(self._low_n, self._high_n)

    @torch.inference_mode()
    def policy_proposal(
        self, z_ctx: Tensor, past: Tensor | None, goal: Tensor, rollout: Any
    ) -> Tensor:
        """The policy rolled out through the predictor for the horizon: (G, H, fs*A).

        Block k is asked to reach the goal in the (H - k) blocks still to go.
        `rollout(z_ctx, past, plan)` returns the embedding after the plan's last block.
        One predictor step per block: the predictor sees only its `history` window, so
        each step rolls out the window (its frames and the blocks between them) by the
        newest block, which is exactly what one longer rollout computes.
        """
        cfg, fs, hist = self.plan_config, self.model_config.frameskip, self.model_config.history
        embs = list(z_ctx.unbind(dim=1))  # h0 x (G, D)
        acts = list(past.unbind(dim=1)) if past is not None else []  # h0-1 x (G, fs*A)
        blocks: list[Tensor] = []
        for k in range(cfg.horizon):
            block = self.policy_blocks(embs[-1], goal, float((cfg.horizon - k) * fs))
            blocks.append(block)  # (G, fs*A)
            if k + 1 < cfg.horizon:
                win = min(hist, len(embs))
                z_win = torch.stack(embs[-win:], dim=1)  # (G, win, D)
                a_win = torch.stack(acts[len(acts) - (win - 1) :], dim=1) if win > 1 else None
                embs.append(rollout(z_win, a_win, block.unsqueeze(1)))  # (G, D)
                acts.append(block)
        return torch.stack(blocks, dim=1)  # (G, H, fs*A)

    # ------------------------------------------------------------------ goals
    def set_goal(self, image: np.ndarray) -> None:
        """Goal image (H, W, 3) or one per env (N, H, W, 3) for observations without a goal."""
        image = self._check_images(np.asarray(image), "goal image")
        self._manual_goal = image

    def reset(self, env_indices: list[int] | None = None) -> None:
        """Forget plans, frame history and warm starts (of some envs, or all)."""
        indices = range(len(self._slots)) if env_indices is None else env_indices
        for i in indices:
            self._slots[i].clear()

    # ---------------------------------------------------------------- predict
    supports_env_indices = True
    """`predict` takes `env_indices`: act for a subset of the envs it tracks."""

    def predict(
        self,
        observation: dict[str, np.ndarray] | np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
        env_indices: list[int] | None = None,
    ) -> tuple[np.ndarray, None]:
        """Next action(s) in the env's units, clipped to its bounds.

        Args:
            observation: {"pixels": (H,W,3) or (N,H,W,3) uint8, "goal": same} or
                the pixels alone when a goal was given with `set_goal`.
            state: unused (the agent keeps its per-env memory itself); accepted for
                the stable-baselines3 signature.
            episode_start: (N,) bools; True clears that env's plan queue, frame
                history and warm start.
            deterministic: accepted for the SB3 signature; the plan is the
                planner's final mean either way, reproducible through its seed.
            env_indices: which tracked envs the N observations belong to (for a
                vector env whose finished members no longer act); default 0..N-1.
        Returns:
            (actions (A,) or (N, A), None).
        """
        # Every argument is checked before any per-env memory changes, so a rejected
        # call leaves the agent exactly as it was.
        pixels, goals, batched = self._parse_observation(observation)
        n = pixels.shape[0]
        if n == 0:
            raise ValueError(
                "the observation batch is empty (0 observations): pass one observation "
                "(H, W, 3) or a batch (N, H, W, 3) with N >= 1"
            )
        ids = _check_env_indices(env_indices, n)
        starts = _check_episode_start(episode_start, n)
        if env_indices is None:
            if len(self._slots) != n:  # a new (vector) env: start fresh
                self._slots = [self._new_slot(i) for i in range(n)]
        else:
            while len(self._slots) <= max(ids):
                self._slots.append(self._new_slot(len(self._slots)))
        slots = [self._slots[i] for i in ids]
        for j in np.flatnonzero(starts):
            slots[j].clear()
        self._update_goals(slots, goals)
        self._observe_boundaries(slots, pixels)
        self._plan([sl for sl in slots if not sl.queue])
        actions = np.empty((n, self.model_config.action_dim), dtype=np.float32)
        fs = self.model_config.frameskip
        for j, slot in enumerate(slots):
            env_action, norm_action = slot.queue.popleft()
            actions[j] = env_action
            slot.current_block.append(norm_action)
            if len(slot.current_block) == fs:  # a whole block executed: remember it
                block = torch.as_tensor(np.concatenate(slot.current_block), device=self.device)
                slot.a_hist.append(block)
                del slot.a_hist[: -self.model_config.history]
                slot.current_block.clear()
        return (actions if batched else actions[0]), None

    # ------------------------------------------------------------- internals
    def _new_slot(self, index: int) -> _EnvSlot:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.plan_config.seed + index)
        return _EnvSlot(generator=gen)

    def _check_images(self, images: np.ndarray, what: str) -> np.ndarray:
        size = self.model_config.image_size
        if images.dtype != np.uint8:
            raise ValueError(f"{what} must be uint8 RGB (0-255), got dtype {images.dtype}")
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise ValueError(
                f"{what} has shape {images.shape}; this model expects ({size}, {size}, 3) or "
                f"(N, {size}, {size}, 3): make the env with image_size={size}"
            )
        return images

    def _parse_observation(self, obs: Any) -> tuple[np.ndarray, np.ndarray | None, bool]:
        if isinstance(obs, dict):
            if "pixels" not in obs:
                raise ValueError(
                    f"observation dict has keys {sorted(obs)}; expected 'pixels' "
                    "(and 'goal'): wrap the env with envs.wrappers.PixelGoal"
                )
            raw, goal = np.asarray(obs["pixels"]), obs.get("goal")
        else:
            raw, goal = np.asarray(obs), None
        batched = raw.ndim == 4
        pixels = self._check_images(raw, "observation pixels")
        goals = None
        if goal is not None:
            goals = self._check_images(np.asarray(goal), "observation goal")
        elif self._manual_goal is not None:
            goals = self._manual_goal
        else:
            raise ValueError(
                "no goal: pass observations with a 'goal' image or call agent.set_goal(image) first"
            )
        if goals.shape[0] == 1 and pixels.shape[0] > 1:
            goals = np.broadcast_to(goals, pixels.shape)
        if goals.shape[0] != pixels.shape[0]:
            raise ValueError(f"{goals.shape[0]} goal images for {pixels.shape[0]} observations")
        return pixels, goals, batched

    @torch.inference_mode()
    def _encode(self, images: np.ndarray) -> Tensor:
        """uint8 (N, H, W, 3) -> (N, D) on the agent's device."""
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        with autocast_context(self.device):
            z = self.model.encode(x).float()
        if not torch.isfinite(z).all():
            raise FloatingPointError(
                "the model's embeddings of these images are NaN or infinite: the checkpoint's "
                "weights are likely corrupt (retrain or reload it)"
            )
        return z

    def _update_goals(self, slots: list[_EnvSlot], goals: np.ndarray) -> None:
        changed = [
            j
            for j, s in enumerate(slots)
            if s.goal_image is None or not np.array_equal(s.goal_image, goals[j])
        ]
        if not changed:
            return
        z = self._encode(goals[changed])  # (C, D): the goal is encoded once per goal
        for k, j in enumerate(changed):
            slot = slots[j]
            slot.goal_image, slot.goal_z = goals[j].copy(), z[k]
            slot.queue.clear()  # a new goal invalidates the plan and its warm start
            slot.warm = None

    def _observe_boundaries(self, slots: list[_EnvSlot], pixels: np.ndarray) -> None:
        """Encode the frames of envs at a block boundary and push them into history."""
        at_boundary = [j for j, s in enumerate(slots) if not s.current_block]
        if not at_boundary:
            return
        z = self._encode(pixels[at_boundary])  # (K, D)
        h = self.model_config.history
        for k, j in enumerate(at_boundary):
            slot = slots[j]
            slot.z_hist.append(z[k])
            del slot.z_hist[:-h]
            keep = len(slot.z_hist) - 1  # blocks between the remembered frames
            slot.a_hist[:] = slot.a_hist[len(slot.a_hist) - keep :] if keep else []

    @torch.inference_mode()
    def _plan(self, slots: list[_EnvSlot]) -> None:
        groups: dict[tuple[int, bool], list[_EnvSlot]] = {}
        split_warm = self.plan_config.warm_iterations > 0 and self.plan_config.warm_start
        for slot in slots:  # envs with the same context length share one rollout
            # ...and, when warm replans run fewer iterations, the same warm/cold state.
            key = (len(slot.z_hist), split_warm and slot.warm is not None)
            groups.setdefault(key, []).append(slot)
        for (h0, _), group in groups.items():
            tic = time.perf_counter()
            rollouts = self._plan_group(h0, group)
            if self.decisions is not None:
                self.decisions.append(
                    {
                        "envs": len(group),
                        "seconds": (time.perf_counter() - tic) / len(group),
                        "rollouts": rollouts,
                    }
                )

    @torch.inference_mode()
    def plan_latent(
        self,
        z_ctx: Tensor,
        past: Tensor | None,
        goal: Tensor,
        generators: list[torch.Generator],
        init_mean: Tensor | None = None,
    ) -> PlanResult:
        """Plan for G envs directly in latent space (what `predict` calls).

        Args:
            z_ctx: (G, h0, D) embeddings of the last h0 block-boundary frames.
            past: (G, h0-1, fs*A) normalised action blocks between them, or None.
            goal: (G, D) goal embeddings.
            generators: one torch.Generator per env (its planning noise).
            init_mean: (G, H, fs*A) warm start, or None for the prior mean.
        """
        s = self.plan_config.samples
        goal_rep = goal.repeat_interleave(s, dim=0)  # (G*S, D), once per plan

        if self.device.type == "cpu":
            # fp32 fast path: preallocated buffers, no wasted tokens, and the context
            # tokens all S samples share computed once per env (lewm_agent/rollout.py).
            if self._fast_rollout is None:
                self._fast_rollout = LatentRollout(self.model)
            rollout = self._fast_rollout

            def final_of(plans: Tensor) -> Tensor:  # (G*S, H, fs*A) -> (G*S, D)
                return rollout(z_ctx, past, plans, repeats=s)

        else:  # CUDA: the reference rollout under bf16 autocast
            # Expanded once per plan, reused by every iteration's rollout.
            z_rep = z_ctx.repeat_interleave(s, dim=0)  # (G*S, h0, D)
            past_rep = past.repeat_interleave(s, dim=0) if past is not None else None

            def rollout(z: Tensor, past: Tensor | None, plans: Tensor) -> Tensor:
                with autocast_context(self.device):
                    return self.model.rollout(z, past, plans)[:, -1].float()

            def final_of(plans: Tensor) -> Tensor:  # (G*S, H, fs*A) -> (G*S, D)
                return rollout(z_rep, past_rep, plans)

        finite: list[Tensor] = []  # one flag per call; checked once (no per-call CUDA sync)
        callback, calls = self.plan_callback, [0]
        cfg = self.plan_config
        warm = init_mean is not None and cfg.warm_iterations > 0
        iterations = cfg.warm_iterations if warm else cfg.iterations

        def cost_fn(plans: Tensor) -> Tensor:  # (G*S, H, fs*A) -> (G*S,)
            final = final_of(plans)  # (G*S, D)
            cost = (final - goal_rep).square().sum(dim=-1)
            finite.append(torch.isfinite(cost).all())
            if callback is not None:  # one call per planner iteration
                calls[0] += 1
                callback(calls[0], iterations, z_ctx.shape[0])
            return cost

        proposal = None
        if uses_policy(cfg.planner):
            proposal = self.policy_proposal(z_ctx, past, goal, rollout)  # (G, H, fs*A)
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

    def _plan_group(self, h0: int, slots: list[_EnvSlot]) -> int:
        """Plan for a group of envs, fill their queues; returns rollouts per env."""
        cfg, fs = self.plan_config, self.model_config.frameskip
        z_ctx = torch.stack([torch.stack(sl.z_hist) for sl in slots])  # (G, h0, D)
        if cfg.planner == "policy":
            return self._policy_group(z_ctx, slots)
        past = (
            torch.stack([torch.stack(sl.a_hist[-(h0 - 1) :]) for sl in slots]) if h0 > 1 else None
        )  # (G, h0-1, fs*A)
        goal = torch.stack([sl.goal_z for sl in slots])  # (G, D)
        init = None
        if cfg.warm_start and any(sl.warm is not None for sl in slots):
            zeros = torch.zeros(cfg.horizon, fs * self.model_config.action_dim, device=self.device)
            init = torch.stack([sl.warm if sl.warm is not None else zeros for sl in slots])
        result = self.plan_latent(z_ctx, past, goal, [sl.generator for sl in slots], init)
        plans = result.actions  # (G, H, fs*A)
        if not torch.isfinite(plans).all():
            raise FloatingPointError(
                "the planner produced NaN actions: the checkpoint's weights "
                "are likely corrupt (retrain or reload it)"
            )
        r, a = cfg.receding_horizon, self.model_config.action_dim
        norm_steps = plans[:, :r].reshape(len(slots), r * fs, a).cpu().numpy()  # (G, r*fs, A)
        env_steps = np.clip(norm_steps * self._std + self._mean, self.action_low, self.action_high)
        for j, sl in enumerate(slots):
            sl.queue.extend(zip(env_steps[j].astype(np.float32), norm_steps[j], strict=True))
            # Warm start: the unexecuted blocks, then zeros (the prior mean). With
            # nothing left unexecuted it would be all zeros, i.e. a cold start: None, so
            # `warm_iterations` applies to real warm starts only.
            sl.warm = (
                torch.cat([plans[j, r:], torch.zeros_like(plans[j, :r])])
                if r < cfg.horizon
                else None
            )
        return result.rollouts

    def _policy_group(self, z_ctx: Tensor, slots: list[_EnvSlot]) -> int:
        """planner="policy": one forward pass of the head per env, one block executed."""
        cfg, fs, a = self.plan_config, self.model_config.frameskip, self.model_config.action_dim
        goal = torch.stack([sl.goal_z for sl in slots])  # (G, D)
        # "Reach it within this block", re-asked every block. Asking for the horizon
        # (25 steps) instead imitates the data's slow average over 25 noisy steps:
        # Two-Room 14/50 at 25 vs 50/50 at 5 (README).
        steps_left = cfg.policy_steps_left or fs
        block = self.policy_blocks(z_ctx[:, -1], goal, float(steps_left))  # (G, fs*A)
        if not torch.isfinite(block).all():
            raise FloatingPointError("the policy head produced NaN actions: retrain it")
        norm_steps = block.reshape(len(slots), fs, a).cpu().numpy()  # (G, fs, A)
        env_steps = np.clip(norm_steps * self._std + self._mean, self.action_low, self.action_high)
        for j, sl in enumerate(slots):
            sl.queue.extend(zip(env_steps[j].astype(np.float32), norm_steps[j], strict=True))
        return 0


def agent_from_result(
    result: TrainResult, plan_cfg: Any, device: str | torch.device
) -> WorldModelAgent:
    """`WorldModelAgent.from_train_result(result, plan_cfg, device)` (the older name)."""
    return WorldModelAgent.from_train_result(result, plan_cfg, device)
