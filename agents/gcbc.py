"""Goal-conditioned behaviour cloning (GCBC) from pixels on LeWM's reward-free dataset.

The paper's simplest baseline (Push-T 75%, Cube 84%): regress the dataset's
actions from (frame, goal frame) with hindsight goals, i.e. the goal is a frame
k = 1..`max_offset` env steps later in the same episode. No reward, no world
model: it answers whether planning with LeWM beats plain imitation of the same
data.

- encoder: the `cpu` preset's CNN (`lewm_agent.networks.CNNEncoder`, 32-64-128-256,
  64 px, 192-d), shared by the frame and the goal (siamese), then an MLP on
  [e, g, g - e] -> the next action block of `frameskip` env steps (normalised
  units, the dataset's action normaliser), executed open-loop, then the next
  block is predicted from the new frame. `frameskip=1` predicts one action per
  step (closed loop).
- trained on the training split only (the last `holdout_fraction` of episodes are
  the protocol's held-out goals, as for LeWM), at the `cpu` preset's budget by
  default (1200 steps of batch 64, the same gradient steps as the world model).
- saved as `gcbc.safetensors` + `gcbc.json` (config, normaliser, action bounds,
  training log): no pickle.

Why blocks: the data policy is a noisy heuristic and its per-step noise is not
predictable from the frame; a block of 5 steps regresses onto the mean motion
over the block (action chunking) and makes one decision per 5 steps, the same
rate as LeWM's plans.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GCBCConfig", "GCBCNet", "GCBCAgent", "train_gcbc"]

WEIGHTS_FILE = "gcbc.safetensors"
META_FILE = "gcbc.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class GCBCConfig:
    """Architecture and training of the GCBC baseline."""

    image_size: int = 64
    """Image side (the dataset's)."""
    channels: tuple[int, ...] = (32, 64, 128, 256)
    """CNN encoder channels (the `cpu` preset's)."""
    embed_dim: int = 192
    """Encoder output size (the `cpu` preset's embedding)."""
    hidden: int = 512
    """Width of the MLP head's hidden layers."""
    layers: int = 2
    """Hidden layers of the MLP head."""
    frameskip: int = 5
    """Env steps per predicted action block, executed open-loop (1: one action per step)."""
    max_offset: int = 50
    """Hindsight goals are 1..max_offset env steps ahead."""
    steps: int = 1200
    """Optimiser steps (the `cpu` preset's LeWM budget)."""
    batch_size: int = 64
    """(frame, goal, action block) triples per step."""
    lr: float = 3e-4
    """Peak AdamW learning rate (short warm-up, cosine decay)."""
    weight_decay: float = 1e-3
    """AdamW weight decay."""
    holdout_fraction: float = 0.1
    """Episodes held out (the last ones): the protocol draws its goals from them."""
    train_episodes: int = 0
    """Only the first N training episodes (0 = all): LeWM's `TrainConfig.train_episodes`."""
    seed: int = 0
    """Seed of the weights and the sampled triples."""


class GCBCNet(nn.Module):
    """uint8 frame (B, H, W, 3) + goal (B, H, W, 3) -> normalised action block (B, fs*A)."""

    def __init__(self, cfg: GCBCConfig, action_dim: int) -> None:
        super().__init__()
        from lewm_agent.networks import CNNEncoder, init_weights, mlp_stack

        self.cfg = cfg
        self.encoder = CNNEncoder(cfg.image_size, tuple(cfg.channels), cfg.embed_dim)
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.head = mlp_stack(3 * cfg.embed_dim, cfg.hidden, cfg.layers, cfg.frameskip * action_dim)
        # LeWM's init (kaiming convs, 0.02-std linears) for the encoder; the head keeps
        # torch's default: three 0.02-std layers shrink the signal ~6x each and the
        # loss did not move in 80 steps on the test data.
        init_weights(self.encoder)

    def embed(self, pixels: Tensor) -> Tensor:
        """uint8 (N, H, W, 3) -> (N, embed_dim)."""
        from lewm_agent.model import preprocess

        return self.norm(self.encoder(preprocess(pixels)))

    def forward(self, pixels: Tensor, goal: Tensor) -> Tensor:
        n = pixels.shape[0]
        e = self.embed(torch.cat([pixels, goal]))  # (2N, E): one encoder call for both
        z, g = e[:n], e[n:]  # (N, E) each
        return self.head(torch.cat([z, g, g - z], dim=-1))  # (N, fs*A)


class GCBCAgent:
    """A trained GCBC policy with the stable-baselines3 ``predict`` signature.

    Acts on ``{"pixels", "goal"}`` observations (single or batched); each env
    keeps a queue of the current block's actions, which ``episode_start`` clears.
    """

    obs_mode = "pixels"
    supports_env_indices = True

    def __init__(
        self,
        net: GCBCNet,
        normalizer: Any,
        action_low: np.ndarray,
        action_high: np.ndarray,
        *,
        env_id: str | None = None,
        training_stats: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        from lewm_agent.device import resolve_device

        self.device = resolve_device(device)
        self.net = net.to(self.device).eval()
        self.config: GCBCConfig = net.cfg
        self.normalizer = normalizer
        self.action_dim = int(normalizer.action_dim)
        self.action_low = np.asarray(action_low, dtype=np.float32).reshape(self.action_dim)
        self.action_high = np.asarray(action_high, dtype=np.float32).reshape(self.action_dim)
        self.env_id = env_id
        self.image_size = int(self.config.image_size)
        self.training_stats: dict[str, Any] = dict(training_stats or {})
        self.training_stats.setdefault("reward_used", False)
        self.name = "gcbc"
        self._queues: dict[int, deque] = {}

    # ------------------------------------------------------------------ acting
    def reset(self) -> None:
        self._queues.clear()

    def _images(self, x: Any, what: str) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[None]
        size = self.image_size
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (size, size, 3):
            raise ValueError(
                f"gcbc: {what} must be uint8 (N, {size}, {size}, 3) or ({size}, {size}, 3), "
                f"got {x.dtype} {x.shape}: make the env with image_size={size}"
            )
        return x

    @torch.inference_mode()
    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
        env_indices: list[int] | None = None,
    ) -> tuple[np.ndarray, None]:
        """Next action(s) in the env's units, clipped to its bounds: (A,) or (N, A).

        ``state`` and ``deterministic`` are accepted for the SB3 signature (the policy
        is deterministic); ``episode_start`` (N,) clears those envs' block queues;
        ``env_indices`` names the tracked envs the N observations belong to.
        """
        if not isinstance(observation, dict) or "pixels" not in observation:
            raise ValueError("gcbc acts on {'pixels', 'goal'} observations (obs_mode='pixels')")
        if "goal" not in observation:
            raise ValueError("gcbc needs a goal image in the observation ('goal')")
        batched = np.asarray(observation["pixels"]).ndim == 4
        pixels = self._images(observation["pixels"], "pixels")
        goals = self._images(observation["goal"], "goal")
        n = pixels.shape[0]
        if goals.shape[0] != n:
            raise ValueError(f"{goals.shape[0]} goal images for {n} observations")
        if env_indices is None:
            ids = list(range(n))
            if set(self._queues) - set(ids):  # another (vector) env: start fresh
                self._queues.clear()
        else:
            ids = [int(i) for i in env_indices]
            if len(ids) != n or len(set(ids)) != n:
                raise ValueError(f"env_indices must be {n} distinct ints, got {ids}")
        if episode_start is not None:
            starts = np.asarray(episode_start, dtype=bool).reshape(-1)
            if starts.shape[0] != n:
                raise ValueError(f"episode_start has {starts.shape[0]} entries for {n} envs")
            for j in np.flatnonzero(starts):
                self._queues.pop(ids[j], None)
        need = [j for j, i in enumerate(ids) if not self._queues.get(i)]
        if need:
            px = torch.from_numpy(np.ascontiguousarray(pixels[need])).to(self.device)
            gl = torch.from_numpy(np.ascontiguousarray(goals[need])).to(self.device)
            from lewm_agent.device import autocast_context

            with autocast_context(self.device):
                blocks = self.net(px, gl).float()  # (K, fs*A) normalised
            fs, a = self.config.frameskip, self.action_dim
            steps = blocks.reshape(len(need), fs, a).cpu().numpy()  # (K, fs, A)
            env_steps = np.clip(
                self.normalizer.denormalize(steps), self.action_low, self.action_high
            ).astype(np.float32)
            for k, j in enumerate(need):
                self._queues[ids[j]] = deque(env_steps[k])
        actions = np.stack([self._queues[i].popleft() for i in ids]).astype(np.float32)  # (N, A)
        return (actions if batched else actions[0]), None

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write gcbc.safetensors then gcbc.json (last: its presence marks a complete save)."""
        from safetensors.torch import save_file

        from lewm_agent.atomic import atomic_path
        from lewm_agent.checkpoint import write_json

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.net.state_dict().items()}
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        meta = {
            "format_version": FORMAT_VERSION,
            "config": asdict(self.config),
            "action_normalizer": self.normalizer.to_dict(),
            "action_low": self.action_low.tolist(),
            "action_high": self.action_high.tolist(),
            "env_id": self.env_id,
            "training": self.training_stats,
        }
        write_json(folder / META_FILE, meta)
        return folder

    @staticmethod
    def is_saved(path: str | os.PathLike[str]) -> bool:
        folder = Path(path)
        return (folder / WEIGHTS_FILE).is_file() and (folder / META_FILE).is_file()

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> GCBCAgent:
        """Load a folder written by :meth:`save`."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from lewm_agent.config import from_dict
        from lewm_agent.data import ActionNormalizer

        folder = Path(path)
        if not cls.is_saved(folder):
            raise FileNotFoundError(
                f"{folder} is not a saved GCBC agent (needs {WEIGHTS_FILE} and {META_FILE}); "
                "train one with agents.gcbc.train_gcbc or agents.make('gcbc', data=..., path=...)"
            )
        try:
            meta = json.loads((folder / META_FILE).read_text())
            if meta.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format_version {meta.get('format_version')!r}")
            cfg = from_dict(GCBCConfig, meta["config"])
            normalizer = ActionNormalizer.from_dict(meta["action_normalizer"])
            net = GCBCNet(cfg, normalizer.action_dim)
            net.load_state_dict(load_file(str(folder / WEIGHTS_FILE), device="cpu"))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
            raise ValueError(f"{folder} holds a corrupt GCBC agent: {e}") from e
        return cls(
            net,
            normalizer,
            np.asarray(meta["action_low"], dtype=np.float32),
            np.asarray(meta["action_high"], dtype=np.float32),
            env_id=meta.get("env_id"),
            training_stats=meta.get("training"),
            device=device,
        )


# ---------------------------------------------------------------------- training
class _Triples:
    """Hindsight (frame t, goal frame t+k, normalised action block at t) over a split.

    The pairs come from `lewm_agent.data.HindsightSampler`, as the policy head's.
    """

    def __init__(self, split: Any, normalizer: Any, cfg: GCBCConfig) -> None:
        from lewm_agent.data import HindsightSampler

        self.sampler = HindsightSampler(
            [len(e) for e in split.episodes], cfg.frameskip, cfg.max_offset
        )
        actions = np.concatenate([e.actions for e in split.episodes])  # (N, A)
        self.actions = np.asarray(normalizer.normalize(actions), dtype=np.float32)  # (N, A)
        self.frames = [e.pixels for e in split.episodes]

    def sample(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, ...]:
        """uint8 frames (B, H, W, 3), goals (B, H, W, 3), float32 blocks (B, fs*A)."""
        b = self.sampler.sample(rng, size)
        pairs = list(zip(b.episode, b.t, b.k, strict=True))
        px = np.stack([self.frames[e][t] for e, t, _ in pairs])  # (B, H, W, 3)
        gl = np.stack([self.frames[e][t + k] for e, t, k in pairs])  # (B, H, W, 3)
        return px, gl, self.actions[b.action_rows].reshape(size, -1)  # blocks (B, fs*A)


@torch.inference_mode()
def gcbc_loss(net: GCBCNet, triples: _Triples, n: int = 512, seed: int = 1) -> float:
    """MSE of `net` on `n` fixed hindsight triples (a seeded sample, in chunks)."""
    px, gl, target = triples.sample(np.random.default_rng(seed), n)
    dev = next(net.parameters()).device
    was = net.training
    net.eval()
    preds = [
        net(torch.from_numpy(px[i : i + 128]).to(dev), torch.from_numpy(gl[i : i + 128]).to(dev))
        for i in range(0, n, 128)
    ]
    net.train(was)
    return float(F.mse_loss(torch.cat(preds).float().cpu(), torch.from_numpy(target)))


def train_gcbc(
    data: Any,
    *,
    save_to: str | os.PathLike[str] | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    threads: int | None = None,
    log_every: int = 25,
    **config: Any,
) -> GCBCAgent:
    """Train GCBC on a reward-free dataset (folder or `lewm_agent.data.Dataset`).

    Args:
        data: the dataset LeWM trains on; its last `holdout_fraction` of episodes
            is never seen (the protocol's goals come from there).
        save_to: folder to save the agent into.
        threads: torch CPU threads while training (restored after); None = leave.
        **config: `GCBCConfig` fields (steps, batch_size, frameskip, holdout_fraction, ...).
    Returns:
        the trained agent; ``training_stats`` holds wall seconds, env steps and the log.
    """
    from tqdm.auto import tqdm

    from lewm_agent.config import replace
    from lewm_agent.data import ActionNormalizer, Dataset, load_dataset
    from lewm_agent.device import autocast_context, resolve_device

    dev = resolve_device(device)
    dataset = data if isinstance(data, Dataset) else load_dataset(data, skip_corrupt=True)
    cfg = replace(GCBCConfig(image_size=dataset.image_size), **config)
    if cfg.image_size != dataset.image_size:
        raise ValueError(
            f"image_size {cfg.image_size} differs from the data's {dataset.image_size}"
        )
    split, heldout = dataset.split(cfg.holdout_fraction) if len(dataset) > 1 else (dataset, None)
    if cfg.train_episodes > 0:  # the prefix LeWM trained on
        split = split.head(cfg.train_episodes)
    a = dataset.action_dim
    normalizer = ActionNormalizer.fit(np.concatenate([e.actions for e in split.episodes]))
    triples = _Triples(split, normalizer, cfg)

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    net = GCBCNet(cfg, a).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    warmup = max(1, min(50, cfg.steps // 10))
    log: list[dict[str, float]] = []
    t0 = time.perf_counter()
    net.train()
    try:
        bar = tqdm(range(cfg.steps), desc="train gcbc", disable=not progress, unit="step")
        for step in bar:
            lr = cfg.lr * min(1.0, (step + 1) / warmup)
            lr *= 0.5 * (1 + math.cos(math.pi * step / max(1, cfg.steps)))
            for group in opt.param_groups:
                group["lr"] = lr
            px, gl, block = triples.sample(rng, cfg.batch_size)
            target = torch.from_numpy(block).to(dev)  # (B, fs*A)
            with autocast_context(dev):
                pred = net(torch.from_numpy(px).to(dev), torch.from_numpy(gl).to(dev))
            loss = F.mse_loss(pred.float(), target)  # (B, fs*A) vs (B, fs*A)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            if step % log_every == 0 or step == cfg.steps - 1:
                log.append({"step": step, "loss": float(loss.detach()), "lr": lr})
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        seconds = time.perf_counter() - t0
        held = None
        if heldout is not None and len(heldout):
            try:
                held = gcbc_loss(net, _Triples(heldout, normalizer, cfg))
            except ValueError:  # held-out episodes shorter than a block
                held = None
    finally:
        torch.set_num_threads(previous)
    net.eval()
    meta = dataset.meta
    agent = GCBCAgent(
        net.cpu() if dev.type != "cpu" else net,
        normalizer,
        np.asarray(meta["action_low"], dtype=np.float32),
        np.asarray(meta["action_high"], dtype=np.float32),
        env_id=meta.get("env_id"),
        training_stats={
            "seconds": seconds,
            "env_steps": int(split.num_steps),
            "reward_used": False,
            "steps": cfg.steps,
            "heldout_loss": held,
            "log": log,
        },
        device=dev,
    )
    if save_to is not None:
        agent.save(save_to)
    return agent
