"""OnnxAgent: a `lewm export` folder acting with numpy + onnxruntime, without torch.

The same decisions as `WorldModelAgent.predict` (agent.py, controllers.py,
planning.py), in numpy over the exported graphs (export.py). The argument
checks and the per-env memory (goal, frame history, plan queue, warm start)
are the agent's own, from observations.py; re-written here are the
planners "policy" (the head alone), "cem"/"mppi" and "cem-prior"/"mppi-prior"
(the head's plan rolled out through the predictor graph as the sampler's
prior). The search scores plans with `PlanConfig.cost` as `Controller.plan_cost`
does: the latent distance, the exported cost head's env steps ("learned"), or
both ("latent+learned"), on the final embedding or summed over every block
(`cost_horizon_sum`). Given the same sampling noise (`noise_fn`), the search
picks the plan the torch planner picks; its default noise is numpy's, so plans
differ from torch's run to run only through the draws.

This module must stay importable without torch: it imports numpy, onnxruntime
(at load), `lewm_agent.config` and `lewm_agent.observations` (both torch-free),
nothing else of the package.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import PlanConfig, from_dict, replace
from .observations import EnvSlot, SlotMemory, check_images, parse_predict

AGENT_FILE = "agent.json"
EXPORT_FORMAT_VERSION = 1

NoiseFn = Callable[[Sequence[np.random.Generator], tuple[int, int, int]], np.ndarray]
"""`noise_fn(rngs, (S, H, A)) -> (B, S, H, A)` unit noise, row b from rngs[b]."""


class ExportError(ValueError):
    """An export folder that is incomplete, changed since export, or not an export."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def colour_noise(white: np.ndarray, beta: float) -> np.ndarray:
    """iCEM's 1/f^beta colouring of white noise (S, per, steps) along its last axis,
    rescaled to unit std, as `planning.Planner.noise` colours it (beta 0: unchanged)."""
    steps = white.shape[-1]
    if beta <= 0 or steps <= 1:
        return white
    freqs = np.fft.rfftfreq(steps).astype(np.float32)  # (steps//2+1,)
    freqs[0] = freqs[1]  # keep a finite DC component
    spectrum = np.fft.rfft(white, axis=-1) * freqs ** (-beta / 2)
    out = np.fft.irfft(spectrum, n=steps, axis=-1).astype(np.float32)
    return out / out.std(ddof=1)  # torch's std is the unbiased one


def white_or_coloured_noise(
    rngs: Sequence[np.random.Generator], shape: tuple[int, int, int], step_dim: int, beta: float
) -> np.ndarray:
    """`planning.Planner.noise` in numpy: (B, S, H, A) unit noise, white or 1/f^beta."""
    s, h, a = shape
    steps, per = h * (a // step_dim), step_dim
    out = []
    for rng in rngs:
        white = rng.standard_normal((s, per, steps)).astype(np.float32)
        coloured = colour_noise(white, beta)  # (S, per, steps)
        out.append(coloured.transpose(0, 2, 1).reshape(s, h, a))  # time-major blocks
    return np.stack(out)


class OnnxAgent:
    """A goal-conditioned agent over exported ONNX graphs, with SB3's `predict`."""

    def __init__(
        self,
        folder: Path,
        meta: dict[str, Any],
        sessions: dict[str, Any],
        plan_config: PlanConfig,
    ) -> None:
        self.folder = folder
        self.meta = meta
        self.plan_config = plan_config
        m = meta["model"]
        self.image_size, self.embed_dim = int(m["image_size"]), int(m["embed_dim"])
        self.action_dim, self.frameskip = int(m["action_dim"]), int(m["frameskip"])
        self.history = int(m["history"])
        self.block_dim = self.action_dim * self.frameskip
        inf = float("inf")
        self.action_low = np.array(
            [-inf if v is None else v for v in meta["action_low"]], dtype=np.float32
        )
        self.action_high = np.array(
            [inf if v is None else v for v in meta["action_high"]], dtype=np.float32
        )
        norm = meta["action_normalizer"]
        self._mean = np.asarray(norm["mean"], dtype=np.float32).reshape(self.action_dim)
        self._std = np.asarray(norm["std"], dtype=np.float32).reshape(self.action_dim)
        self.low = np.asarray(meta["block_low"], dtype=np.float32)  # (fs*A,) normalised
        self.high = np.asarray(meta["block_high"], dtype=np.float32)
        self.env_id = meta.get("env_id")
        self._encoder = sessions["encoder"]
        self._steps = {int(t): s for t, s in sessions["predictor"].items()}
        self._policy = sessions.get("policy_head")
        self._cost = sessions.get("cost_head")
        self.noise_fn: NoiseFn = lambda rngs, shape: white_or_coloured_noise(
            rngs, shape, self.action_dim, self.plan_config.noise_beta
        )
        """Unit planning noise (B, S, H, A); replace it to share noise with another planner."""
        self.memory = SlotMemory(plan_config.seed, self.history, self.frameskip)
        self._manual_goal: np.ndarray | None = None
        cfg = plan_config
        if cfg.planner not in ("policy", "cem", "mppi", "cem-prior", "mppi-prior"):
            raise ValueError(f"unknown planner {cfg.planner!r}")
        if (cfg.planner == "policy" or cfg.planner.endswith("-prior")) and self._policy is None:
            raise ExportError(
                f"planner {cfg.planner!r} needs a policy head and the export in {folder} has "
                "none: export an agent with a head (`lewm train-policy RUN --data DATA`), or "
                "load with planner='cem'"
            )
        if cfg.cost in ("learned", "latent+learned") and self._cost is None:
            # Scoring with the latent cost instead would silently plan for another
            # objective than the torch agent's.
            raise ExportError(
                f"cost {cfg.cost!r} needs a cost head and the export in {folder} has none: "
                "export an agent with one (`lewm train-cost RUN --data DATA`, then "
                "`lewm export RUN --out DIR`), or load with cost='latent'"
            )
        if not 1 <= cfg.receding_horizon <= cfg.horizon:
            raise ValueError("receding_horizon must be between 1 and horizon")
        if cfg.elites > cfg.samples or cfg.samples < 2:
            raise ValueError("planning needs samples >= 2 and elites <= samples")

    # ------------------------------------------------------------------ load
    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        planner: str | PlanConfig | None = None,
        *,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        **plan_overrides: Any,
    ) -> OnnxAgent:
        """Load an export folder (`lewm export RUN --out DIR`), its files' hashes checked.

        `planner` picks "policy"/"cem"/"cem-prior"/... or a full PlanConfig; keyword
        arguments override plan fields. `threads` sets onnxruntime's intra-op threads.
        """
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError(
                "OnnxAgent needs onnxruntime: pip install 'lewm-agent[onnx]' "
                "(or pip install onnxruntime numpy)"
            ) from e
        folder = Path(path)
        meta = read_export(folder)
        plan_cfg = from_dict(PlanConfig, meta["plan"])
        if isinstance(planner, PlanConfig):
            plan_cfg = planner
        elif isinstance(planner, str):
            plan_cfg = replace(plan_cfg, planner=planner)
        elif planner is not None:
            raise TypeError("planner must be a planner name (e.g. 'cem'), a PlanConfig or None")
        if plan_overrides:
            plan_cfg = replace(plan_cfg, **plan_overrides)
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        provs = list(providers) if providers else ["CPUExecutionProvider"]

        def session(name: str) -> Any:
            return ort.InferenceSession(str(folder / name), opts, providers=provs)

        files = meta["files"]
        sessions: dict[str, Any] = {
            "encoder": session(files["encoder"]),
            "predictor": {t: session(f) for t, f in files["predictor"].items()},
        }
        for head in ("policy_head", "cost_head"):
            if files.get(head):
                sessions[head] = session(files[head])
        return cls(folder, meta, sessions, plan_cfg)

    # ------------------------------------------------------------------ goals
    def set_goal(self, image: np.ndarray) -> None:
        """Goal image (H, W, 3) or one per env (N, H, W, 3) for observations without a goal."""
        self._manual_goal = check_images(np.asarray(image), self.image_size, "goal image")

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
        """Next action(s) (A,) or (N, A) in the env's units, clipped to its bounds.

        As `WorldModelAgent.predict`: `observation` is {"pixels", "goal"} (one or a
        batch) or the pixels alone after `set_goal`; `episode_start` (N,) clears
        those envs' memory; `env_indices` names the tracked envs the N observations
        belong to (default 0..N-1); `state` and `deterministic` are accepted for SB3.
        """
        call = parse_predict(
            observation, self.image_size, self._manual_goal, episode_start, env_indices
        )
        explicit = env_indices is not None
        return self.memory.act(call, explicit, self.encode, self._plan, self.action_dim), None

    @property
    def slots(self) -> list[EnvSlot]:
        """The per-env memory, one slot per tracked env."""
        return self.memory.slots

    # --------------------------------------------------------------- decisions
    def _plan(self, slots: list[EnvSlot]) -> None:
        """Fill the queues of `slots`, envs with the same context planned in one call."""
        split_warm = self.plan_config.warm_iterations > 0 and self.plan_config.warm_start
        for group in SlotMemory.groups(slots, split_warm):
            self._decide(group)

    def _decide(self, slots: list[EnvSlot]) -> None:
        cfg = self.plan_config
        goal = np.stack([sl.goal_z for sl in slots])  # (G, D)
        if cfg.planner == "policy":  # one block from the newest frame
            z = np.stack([sl.z_hist[-1] for sl in slots])  # (G, D)
            steps_left = cfg.policy_steps_left or self.frameskip
            block = self.policy_blocks(z, goal, float(steps_left))  # (G, fs*A)
            if not np.isfinite(block).all():
                raise FloatingPointError("the policy head produced NaN actions: retrain it")
            self._enqueue(slots, block[:, None])
            return
        h0 = len(slots[0].z_hist)
        z_ctx = np.stack([np.stack(sl.z_hist) for sl in slots])  # (G, h0, D)
        past = (
            np.stack([np.stack(sl.a_hist[-(h0 - 1) :]) for sl in slots]) if h0 > 1 else None
        )  # (G, h0-1, fs*A)
        init = None
        if cfg.warm_start and any(sl.warm is not None for sl in slots):
            zeros = np.zeros((cfg.horizon, self.block_dim), dtype=np.float32)
            init = np.stack([sl.warm if sl.warm is not None else zeros for sl in slots])
        plans = self.plan_latent(z_ctx, past, goal, [sl.generator for sl in slots], init)
        if not np.isfinite(plans).all():
            raise FloatingPointError(
                "the planner produced NaN actions: the export's weights are likely corrupt"
            )
        r = cfg.receding_horizon
        self._enqueue(slots, plans[:, :r])
        for j, sl in enumerate(slots):
            sl.warm = (
                np.concatenate([plans[j, r:], np.zeros_like(plans[j, :r])])
                if r < plans.shape[1]
                else None
            )

    def _enqueue(self, slots: list[EnvSlot], blocks: np.ndarray) -> None:
        """Queue blocks (G, k, fs*A) as k*fs env actions each, in env units and clipped."""
        steps = blocks.shape[1] * self.frameskip
        norm = blocks.reshape(len(slots), steps, self.action_dim).astype(np.float32)
        env = np.clip(norm * self._std + self._mean, self.action_low, self.action_high)
        SlotMemory.enqueue(slots, env, norm)

    # ------------------------------------------------------------------ graphs
    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> (N, D) float32."""
        z = self._encoder.run(None, {"frames": np.ascontiguousarray(images, dtype=np.uint8)})[0]
        if not np.isfinite(z).all():
            raise FloatingPointError(
                "the model's embeddings of these images are NaN or infinite: the export's "
                "weights are likely corrupt (export again)"
            )
        return z

    def policy_blocks(self, z: np.ndarray, goal: np.ndarray, steps_left: float) -> np.ndarray:
        """The policy head's next block (G, fs*A), normalised, inside the bounds."""
        if self._policy is None:
            raise ExportError(f"the export in {self.folder} has no policy head")
        s = np.full((z.shape[0],), steps_left, dtype=np.float32)
        feed = {"z": z.astype(np.float32), "goal": goal.astype(np.float32), "steps_left": s}
        out = self._policy.run(None, feed)[0]  # (G, fs*A)
        return np.clip(out, self.low, self.high)

    def step(self, z: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """One predictor step: z (N, t, D), actions (N, t, fs*A), t <= history -> (N, D)."""
        feed = {
            "z": np.ascontiguousarray(z, np.float32),
            "actions": np.ascontiguousarray(actions, np.float32),
        }
        return self._steps[z.shape[1]].run(None, feed)[0]

    def rollout_blocks(
        self, z_ctx: np.ndarray, past: np.ndarray | None, plan: np.ndarray
    ) -> list[np.ndarray]:
        """`LeWM.rollout`: z_ctx (N, h0, D), past (N, h0-1, fs*A) or None, plan
        (N, H, fs*A) -> H x (N, D), the embedding after each planned block, a sliding
        `history` window per step."""
        n, h0, _ = z_ctx.shape
        actions = plan if past is None else np.concatenate([past, plan], axis=1)  # (N, L, fs*A)
        emb = list(np.moveaxis(z_ctx, 1, 0))  # h0 x (N, D)
        for k in range(plan.shape[1]):
            end = h0 + k
            start = max(0, end - self.history)
            z_win = np.stack(emb[start:end], axis=1)  # (N, t, D)
            emb.append(self.step(z_win, actions[:, start:end]))
        return emb[h0:]

    def rollout(self, z_ctx: np.ndarray, past: np.ndarray | None, plan: np.ndarray) -> np.ndarray:
        """`LeWM.rollout`'s final embedding (N, D) (arguments as `rollout_blocks`)."""
        return self.rollout_blocks(z_ctx, past, plan)[-1]

    def cost_steps(self, z: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The cost head's estimated env steps (N,) from z (N, D) to goal (N, D)."""
        if self._cost is None:
            raise ExportError(f"the export in {self.folder} has no cost head")
        feed = {
            "z": np.ascontiguousarray(z, np.float32),
            "goal": np.ascontiguousarray(goal, np.float32),
        }
        return self._cost.run(None, feed)[0]

    def plan_cost(self, embs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """`Controller.plan_cost`: cost (N,) of predicted embeddings embs (N, K, D)
        (K: 1, or every block) vs goal (N, D), by `PlanConfig.cost`, summed over K."""
        cost = self.plan_config.cost
        n, k, d = embs.shape
        total = np.zeros(n, dtype=np.float32)
        if cost in ("latent", "latent+learned"):
            total = total + np.square(embs - goal[:, None]).sum(axis=-1).sum(axis=1)
        if cost in ("learned", "latent+learned"):
            flat_goal = np.repeat(goal, k, axis=0)  # (N*K, D), each goal K times in a row
            steps = self.cost_steps(embs.reshape(n * k, d), flat_goal)  # (N*K,)
            weight = self.plan_config.cost_weight if cost == "latent+learned" else 1.0
            total = total + np.float32(weight) * steps.reshape(n, k).sum(axis=1)
        return total.astype(np.float32, copy=False)  # (N,)

    def policy_proposal(
        self, z_ctx: np.ndarray, past: np.ndarray | None, goal: np.ndarray
    ) -> np.ndarray:
        """`Controller.policy_proposal`: the head rolled out for the horizon (G, H, fs*A)."""
        horizon, fs = self.plan_config.horizon, self.frameskip
        embs = list(np.moveaxis(z_ctx, 1, 0))  # h0 x (G, D)
        acts = list(np.moveaxis(past, 1, 0)) if past is not None else []
        blocks = []
        for k in range(horizon):
            block = self.policy_blocks(embs[-1], goal, float((horizon - k) * fs))
            blocks.append(block)
            if k + 1 < horizon:
                win = min(self.history, len(embs))
                z_win = np.stack(embs[-win:], axis=1)  # (G, win, D)
                a_win = np.stack(acts[len(acts) - (win - 1) :], axis=1) if win > 1 else None
                embs.append(self.rollout(z_win, a_win, block[:, None]))
                acts.append(block)
        return np.stack(blocks, axis=1)

    # ------------------------------------------------------------------ search
    def plan_latent(
        self,
        z_ctx: np.ndarray,
        past: np.ndarray | None,
        goal: np.ndarray,
        rngs: Sequence[np.random.Generator],
        init_mean: np.ndarray | None = None,
    ) -> np.ndarray:
        """`Planner.plan` (CEM/MPPI, with the head's prior for "-prior") -> (G, H, fs*A).

        The same sampling as planning.py: sample 0 is the mean, `prior_samples` are
        the same unit noise around the proposal, the warm start is the last
        first-iteration sample, elites by cost, refit.
        """
        cfg = self.plan_config
        b, a, h, s = len(rngs), self.block_dim, cfg.horizon, cfg.samples
        lo, hi = self.low, self.high
        warm = init_mean is not None
        iterations = cfg.warm_iterations if warm and cfg.warm_iterations > 0 else cfg.iterations
        proposal = None
        if cfg.planner.endswith("-prior"):
            proposal = np.clip(self.policy_proposal(z_ctx, past, goal), lo, hi)  # (B, H, A)
            if warm:
                init_mean = np.clip(init_mean, lo, hi)
        n_prior = 0 if proposal is None else min(s - 2, max(1, round(cfg.prior_fraction * s)))
        start = proposal if proposal is not None else init_mean
        mean = (
            np.zeros((b, h, a), np.float32) if start is None else np.clip(start, lo, hi)
        ).astype(np.float32)
        std = np.full((b, h, a), cfg.init_std, dtype=np.float32)
        z_rep = np.repeat(z_ctx, s, axis=0)  # (B*S, h0, D)
        past_rep = None if past is None else np.repeat(past, s, axis=0)
        goal_rep = np.repeat(goal, s, axis=0)  # (B*S, D)
        refit = self._refit_mppi if cfg.planner.startswith("mppi") else self._refit_cem
        for it in range(iterations):
            eps = np.asarray(self.noise_fn(rngs, (s, h, a)), dtype=np.float32)  # (B, S, H, A)
            samples = mean[:, None] + std[:, None] * eps
            if n_prior:
                samples[:, 1 : 1 + n_prior] = (
                    proposal[:, None] + cfg.prior_std * eps[:, 1 : 1 + n_prior]
                )
                if warm and it == 0:
                    samples[:, -1] = init_mean
            samples[:, 0] = mean
            samples = np.clip(samples, lo, hi)
            blocks = self.rollout_blocks(z_rep, past_rep, samples.reshape(b * s, h, a))
            # (B*S, K, D): every block's embedding for the horizon sum, else the final one
            embs = np.stack(blocks if cfg.cost_horizon_sum else blocks[-1:], axis=1)
            costs = self.plan_cost(embs, goal_rep).reshape(b, s)
            if not np.isfinite(costs).all():
                raise FloatingPointError(
                    "the planner's predicted costs are NaN or infinite: the export's weights "
                    "are likely corrupt"
                )
            idx = np.argsort(costs, axis=1, kind="stable")[:, : cfg.elites]  # (B, E) ascending
            elite_cost = np.take_along_axis(costs, idx, axis=1)
            elites = np.take_along_axis(samples, idx[..., None, None], axis=1)  # (B, E, H, A)
            mean, std = refit(elites, elite_cost)
        return np.clip(mean, lo, hi)

    @staticmethod
    def _refit_cem(elites: np.ndarray, elite_cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return elites.mean(axis=1), elites.std(axis=1, ddof=1)

    def _refit_mppi(
        self, elites: np.ndarray, elite_cost: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.plan_config
        span = np.maximum(elite_cost[:, -1:] - elite_cost[:, :1], 1e-8)  # (B, 1)
        logits = -(elite_cost - elite_cost[:, :1]) / span / cfg.temperature
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        w = (w / w.sum(axis=1, keepdims=True))[..., None, None]  # (B, E, 1, 1)
        mean = (w * elites).sum(axis=1)
        var = (w * np.square(elites - mean[:, None])).sum(axis=1)
        return mean, np.clip(np.sqrt(var), cfg.min_std, cfg.max_std)


def description_sha256(meta: dict[str, Any]) -> str:
    """SHA-256 of agent.json's content without its own entry (canonical JSON), so a
    changed plan config, bound or normaliser is refused like a changed graph."""
    hashes = {k: v for k, v in meta.get("sha256", {}).items() if k != AGENT_FILE}
    body = json.dumps({**meta, "sha256": hashes}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def read_export(folder: str | os.PathLike) -> dict[str, Any]:
    """agent.json of an export folder, after checking every listed file's SHA-256."""
    folder = Path(folder)
    path = folder / AGENT_FILE
    if not path.is_file():
        raise ExportError(
            f"{folder} has no {AGENT_FILE}: not an export folder (make one with "
            "`lewm export RUN --out DIR`)"
        )
    try:
        meta = json.loads(path.read_text())
        version = meta.get("format_version")
        hashes = dict(meta["sha256"])
        files = meta["files"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ExportError(f"{path} is not a valid export description ({e!r}): export again") from e
    if version != EXPORT_FORMAT_VERSION:
        raise ExportError(
            f"{path} has format_version {version!r}; this runtime reads {EXPORT_FORMAT_VERSION}"
        )
    needed = [files.get("encoder"), *dict(files.get("predictor") or {}).values()]
    needed += [files[head] for head in ("policy_head", "cost_head") if files.get(head)]
    for name in needed:
        if name not in hashes:
            raise ExportError(f"{path} lists no SHA-256 for {name!r}: export again")
    if hashes.pop(AGENT_FILE, None) != description_sha256(meta):
        raise ExportError(
            f"{path} does not match its own SHA-256: it was edited after export; export again"
        )
    for name, digest in hashes.items():
        file = folder / name
        if Path(name).name != name or not file.is_file():
            raise ExportError(f"export file {file} is missing: export again")
        if _sha256(file) != digest:
            raise ExportError(
                f"export file {file} does not match its SHA-256 in {AGENT_FILE}: it was "
                "changed or damaged after export; export again"
            )
    return meta


__all__ = [
    "OnnxAgent",
    "ExportError",
    "colour_noise",
    "description_sha256",
    "read_export",
    "white_or_coloured_noise",
]
