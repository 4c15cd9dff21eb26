"""WorldModelAgent: a goal-conditioned policy that plans in LeWM's latent space.

`predict(obs)` has the stable-baselines3 signature, so the agent drops into
ordinary Gymnasium loops and `evaluate_policy`. One decision, top to bottom:

    predict(obs) -> memory (memory.py: per-env goal, frame history, plan queue,
    warm start) -> encode the new goal and block-boundary frames -> a controller
    (controllers.py: CEM/MPPI, the policy head, or both) decides action blocks for
    every env whose queue ran out, in one batched call -> the queue's next action,
    in env units.

Checkpoint reading and validation live in checkpoint.py, training in train/.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import zoo
from .checkpoint import (
    agent_config,
    agent_sections,
    build_model,
    read_checkpoint,
    record_file_hashes,
    save_checkpoint,
)
from .config import ModelConfig, PlanConfig, TrainConfig, get_preset, replace
from .controllers import (
    Controller,
    RolloutFn,
    block_bounds,
    saved_cost_head,
    saved_policy_head,
)
from .data import ActionNormalizer, Dataset
from .device import autocast_context, resolve_device
from .memory import EnvMemory
from .model import LeWM
from .observations import EnvSlot, check_images, parse_predict
from .planning import Planner, PlanResult
from .train import TrainResult, run_meta, train
from .validation import check_action_bounds


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
        a, fs = self.model_config.action_dim, self.model_config.frameskip
        self.action_low, self.action_high = check_action_bounds(action_low, action_high, a)
        self._mean = np.asarray(normalizer.mean, dtype=np.float32).reshape(a)
        self._std = np.asarray(normalizer.std, dtype=np.float32).reshape(a)
        # Bounds of one flattened block (fs*A,) in normalised units.
        self._low_n, self._high_n = block_bounds(
            self.action_low, self.action_high, self._mean, self._std, fs, self.device
        )
        self.controller = Controller(
            self.model, self.plan_config, self._low_n, self._high_n, self.device
        )
        self.memory = EnvMemory(self.plan_config.seed, self.device, self.model_config.history, fs)
        self._manual_goal: np.ndarray | None = None
        self.policy_head_meta: dict[str, Any] = {}
        self.cost_head_meta: dict[str, Any] = {}
        """The JSON meta of `controller.cost_head` (costs "learned", "latent+learned")."""
        self.decisions: list[dict[str, float]] | None = None
        """Set to [] to log every planning call: {"envs", "seconds", "rollouts"} (per env)."""
        if not 1 <= self.plan_config.receding_horizon <= self.plan_config.horizon:
            raise ValueError("receding_horizon must be between 1 and horizon")

    @property
    def policy_head(self) -> Any:
        """A `policy_head.PolicyHead` (planners "policy", "cem-prior", "mppi-prior"), or None."""
        return self.controller.policy_head

    @policy_head.setter
    def policy_head(self, head: Any) -> None:
        self.controller.policy_head = head

    @property
    def planner(self) -> Planner:
        """The CEM/MPPI search of the controller."""
        return self.controller.planner

    @property
    def _slots(self) -> list[EnvSlot]:
        return self.memory.slots

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
        """Write config.json + model.safetensors + stats.json (+ the policy head) to a folder.

        config.json records the SHA-256 of every file written, the head's included,
        so the folder loads the same (or is refused if changed) wherever it is copied.
        """
        config = agent_config(
            self.model_config,
            self.plan_config,
            self.train_config,
            {"env_id": self.env_id, "build": self.env_build},
            self.action_low,
            self.action_high,
        )
        stats = {"action_normalizer": self.normalizer.to_dict(), "training": self.training_stats}
        folder = save_checkpoint(path, self.model, config, stats)
        if self.policy_head is not None:
            from .policy_head import HEAD_CONFIG_FILE, HEAD_WEIGHTS_FILE, save_policy_head

            save_policy_head(folder, self.policy_head, self.policy_head_meta)
            record_file_hashes(folder, (HEAD_WEIGHTS_FILE, HEAD_CONFIG_FILE))
        if self.controller.cost_head is not None:
            from .cost_head import save_cost_head

            save_cost_head(folder, self.controller.cost_head, self.cost_head_meta)
        return folder

    def export(self, path: str | os.PathLike) -> Path:
        """ONNX graphs + agent.json for the torch-free `onnx_agent.OnnxAgent` (export.py)."""
        from .export import export_agent

        return export_agent(self, path)

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
        `checkpoint.read_checkpoint` and `checkpoint.agent_sections`): a changed
        file or a bad value raises a CheckpointError naming its file and field.
        Without `planner` the agent acts with the planner its config.json holds.

        "policy" (the latent policy head alone) and "cem-prior"/"mppi-prior" (the
        head as the sampler's prior) need the folder's policy head
        (`lewm train-policy PATH --data DATA` or `fit_policy_head`).

        `path` may be `"zoo:NAME"`, a model of the zoo (`lewm zoo list`): the same
        as loading its folder, which is an ordinary checkpoint folder.
        """
        path = zoo.resolve(path)
        contents = read_checkpoint(path)
        parts = agent_sections(contents)
        plan_cfg = parts.plan
        if isinstance(planner, PlanConfig):
            plan_cfg = planner
        elif isinstance(planner, str):
            plan_cfg = replace(plan_cfg, planner=planner)
        elif planner is not None:
            raise TypeError("planner must be a planner name (e.g. 'cem'), a PlanConfig or None")
        if plan_overrides:
            plan_cfg = replace(plan_cfg, **plan_overrides)
        dev = resolve_device(device)
        agent = cls(
            build_model(contents, device=dev),
            parts.normalizer,
            parts.action_low,
            parts.action_high,
            plan_cfg,
            train_config=parts.train,
            env_id=parts.env.get("env_id"),
            device=dev,
            training_stats=contents.stats.get("training"),
            env_build=parts.env.get("build"),
        )
        found = saved_policy_head(path, agent.model, plan_cfg.planner, dev)
        if found is not None:
            agent.policy_head, agent.policy_head_meta = found
        found = saved_cost_head(path, agent.model, plan_cfg.cost, dev)
        if found is not None:
            agent.controller.cost_head, agent.cost_head_meta = found
        return agent

    # ------------------------------------------------------------ trained heads
    def fit_policy_head(
        self, dataset: Dataset | str | os.PathLike, *, progress: bool = True, **head_config: Any
    ) -> dict[str, Any]:
        """Train the latent policy head on this frozen model (`policy_head.fit_policy_head`:
        `PolicyHeadConfig` fields as keywords), attach it (`save` writes it); returns its meta."""
        from .policy_head import fit_policy_head

        return fit_policy_head(self, dataset, progress=progress, **head_config)

    def fit_cost_head(
        self, dataset: Dataset | str | os.PathLike, *, progress: bool = True, **head_config: Any
    ) -> dict[str, Any]:
        """Train the learned planning cost on this frozen model (`cost_head.fit_cost_head`:
        `CostHeadConfig` fields as keywords), attach it (`save` writes it); returns its meta."""
        from .cost_head import fit_cost_head

        return fit_cost_head(self, dataset, progress=progress, **head_config)[1]

    # ------------------------------------------------------------------ goals
    def set_goal(self, image: np.ndarray) -> None:
        """Goal image (H, W, 3) or one per env (N, H, W, 3) for observations without a goal."""
        image = check_images(np.asarray(image), self.model_config.image_size, "goal image")
        self._manual_goal = image

    def reset(self, env_indices: list[int] | None = None) -> None:
        """Forget plans, frame history and warm starts (of some envs, or all)."""
        self.memory.reset(env_indices)

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
        size = self.model_config.image_size
        call = parse_predict(observation, size, self._manual_goal, episode_start, env_indices)

        explicit = env_indices is not None
        action_dim = self.model_config.action_dim
        return self.memory.act(call, explicit, self._encode, self._plan, action_dim), None

    def _plan(self, slots: list[EnvSlot]) -> None:
        """Fill the queues of `slots`, envs with the same context planned in one call."""
        # Warm replans with fewer iterations than cold ones cannot share a call.
        split_warm = self.plan_config.warm_iterations > 0 and self.plan_config.warm_start
        for group in EnvMemory.groups(slots, split_warm):
            tic = time.perf_counter()
            rollouts = self._decide(group)
            if self.decisions is not None:
                self.decisions.append(
                    {
                        "envs": len(group),
                        "seconds": (time.perf_counter() - tic) / len(group),
                        "rollouts": rollouts,
                    }
                )

    @torch.inference_mode()
    def _decide(self, slots: list[EnvSlot]) -> int:
        """Queue the next action blocks of envs sharing a context length; rollouts per env."""
        cfg = self.plan_config
        if cfg.planner == "policy":  # one block, from the newest frame
            z_ctx, _, goal = EnvMemory.context(slots, with_past=False)
            self._enqueue(slots, self.controller.act_policy(z_ctx, goal))
            return 0
        z_ctx, past, goal = EnvMemory.context(slots)
        block = self.model_config.frameskip * self.model_config.action_dim
        init = self.memory.warm_starts(slots, cfg.horizon, block) if cfg.warm_start else None
        result = self.plan_latent(z_ctx, past, goal, [sl.generator for sl in slots], init)
        plans = result.actions  # (G, H, fs*A)
        if not torch.isfinite(plans).all():
            raise FloatingPointError(
                "the planner produced NaN actions: the checkpoint's weights "
                "are likely corrupt (retrain or reload it)"
            )
        self._enqueue(slots, plans[:, : cfg.receding_horizon])
        EnvMemory.keep_unexecuted(slots, plans, cfg.receding_horizon)
        return result.rollouts

    def _enqueue(self, slots: list[EnvSlot], blocks: Tensor) -> None:
        """Queue blocks (G, k, fs*A) as k*fs env actions each, in env units and clipped."""
        steps = blocks.shape[1] * self.model_config.frameskip
        norm_steps = blocks.reshape(len(slots), steps, -1).cpu().numpy()  # (G, k*fs, A)
        env_steps = np.clip(norm_steps * self._std + self._mean, self.action_low, self.action_high)
        EnvMemory.enqueue(slots, env_steps, norm_steps)

    # ------------------------------------------- the controller, for benchmarks and tests
    def plan_latent(
        self,
        z_ctx: Tensor,
        past: Tensor | None,
        goal: Tensor,
        generators: list[torch.Generator],
        init_mean: Tensor | None = None,
    ) -> PlanResult:
        """`Controller.plan` with this agent's `plan_callback` (what `predict` calls)."""
        return self.controller.plan(
            z_ctx, past, goal, generators, init_mean, callback=self.plan_callback
        )

    def policy_blocks(self, z: Tensor, goal: Tensor, steps_left: Tensor | float) -> Tensor:
        """The policy head's next action block (G, fs*A), normalised, inside the bounds."""
        return self.controller.policy_blocks(z, goal, steps_left)

    def policy_proposal(
        self, z_ctx: Tensor, past: Tensor | None, goal: Tensor, rollout: RolloutFn
    ) -> Tensor:
        """The policy rolled out through the predictor for the horizon: (G, H, fs*A)."""
        return self.controller.policy_proposal(z_ctx, past, goal, rollout)

    # ------------------------------------------------------------------ encoder
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
