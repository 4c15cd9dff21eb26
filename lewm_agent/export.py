"""Export an agent to ONNX graphs + agent.json, for the torch-free `onnx_agent.OnnxAgent`.

What an agent needs to act, as separate graphs (batch axis dynamic in each):

- `encoder.onnx`: uint8 frames (B, H, W, 3) -> embeddings (B, D), the
  preprocessing included, so the runtime feeds raw pixels;
- `predictor_t{t}.onnx`, t = 1..history: one predictor step, the embeddings of
  the last t frames (B, t, D) and the action blocks taken after each (B, t, fs*A)
  -> the next embedding (B, D). One graph per window length because the
  predictor's attention takes a shortcut at one token and slices its positional
  embedding by t: tracing bakes both in;
- `policy_head.onnx` (when the agent has one): z (B, D), goal (B, D), steps left
  (B,) -> a normalised action block (B, fs*A), unclipped;
- `cost_head.onnx` (when the agent has one, whatever cost its plan uses, so the
  runtime can be loaded with cost "learned" or "latent+learned"): z (N, D),
  goal (N, D) -> `CostHead.distance`, the estimated env steps (N,).

`agent.json` holds everything else the runtime needs (plan config, env action
bounds, the action normaliser, the block bounds in normalised units, image size,
frameskip, history) and the SHA-256 of every graph file, checked at load.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .config import PlanConfig, to_dict
from .controllers import UNBOUNDED_LIMIT, saved_cost_head, saved_policy_head, uses_cost_head
from .model import LeWM, scale_pixels
from .onnx_agent import AGENT_FILE, EXPORT_FORMAT_VERSION, description_sha256

OPSET = 17
ENCODER_FILE = "encoder.onnx"
POLICY_FILE = "policy_head.onnx"
COST_FILE = "cost_head.onnx"


def predictor_file(window: int) -> str:
    """File name of the predictor step graph over a window of `window` frames."""
    return f"predictor_t{window}.onnx"


class _Encoder(nn.Module):
    def __init__(self, model: LeWM) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: Tensor) -> Tensor:
        # model.preprocess's arithmetic with a positive permutation: its movedim(-1, -3)
        # traces to a Transpose with a negative perm that onnxruntime rejects.
        x = scale_pixels(frames.permute(0, 3, 1, 2).float(), self.model.cfg.pixel_norm)
        return self.model.enc_proj(self.model.encoder(x))  # (B, D)


class _PredictorStep(nn.Module):
    """`LeWM.rollout`'s step: the newest token's prediction from a window of t frames."""

    def __init__(self, model: LeWM) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: Tensor, actions: Tensor) -> Tensor:
        # z (B, t, D), actions (B, t, fs*A): block i follows frame i -> (B, D)
        h = self.model.predictor(z, self.model.action_embed(actions))  # (B, t, D)
        return self.model.pred_proj(h[:, -1])


class _Policy(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, z: Tensor, goal: Tensor, steps_left: Tensor) -> Tensor:
        return self.head(z, goal, steps_left)  # (B, D), (B, D), (B,) -> (B, fs*A)


class _Cost(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, z: Tensor, goal: Tensor) -> Tensor:
        # `CostHead.distance` with exp(y) - 1 for its expm1, which ONNX has no operator
        # for: they differ by float32 rounding of 1 (~1e-7 env steps) near the goal.
        y = self.head(z, goal).float() * math.log1p(self.head.cfg.max_gap)  # (N,)
        return torch.exp(y) - 1.0  # (N, D), (N, D) -> (N,) env steps


def _export(module: nn.Module, args: tuple[Tensor, ...], path: Path, names: list[str]) -> None:
    """Trace `module` to ONNX at `path` with every input's and the output's axis 0 dynamic."""
    axes = {n: {0: "batch"} for n in [*names, "out"]}
    with warnings.catch_warnings():
        # Silenced: the TorchScript exporter's deprecation notice (kept: it needs no
        # onnxscript and traces these small graphs exactly) and tracer warnings about
        # Python branches on the window length, which is fixed per predictor graph
        # (one graph per length; tests/lewm_agent/test_onnx.py checks each against torch).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=["out"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _bounds_json(values: np.ndarray) -> list[float | None]:
    """Env bounds as JSON: an infinite bound (no limit) is null."""
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=np.float64)]


@dataclass
class _Parts:
    """What an export needs of an agent: a `WorldModelAgent`'s, or a checkpoint folder's."""

    model: LeWM
    policy_head: nn.Module | None
    cost_head: nn.Module | None
    plan: PlanConfig
    env_id: str | None
    action_low: np.ndarray
    action_high: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def _folder_parts(path: str | os.PathLike) -> _Parts:
    """A checkpoint folder (or `zoo:NAME`), checked as `WorldModelAgent.load` checks it.

    Read here rather than through `WorldModelAgent.load`: agent.py's `export` calls
    this module, which must not import agent.py back.
    """
    from . import zoo
    from .checkpoint import agent_sections, build_model, read_checkpoint

    path = zoo.resolve(path)
    contents = read_checkpoint(path)
    parts = agent_sections(contents)
    model = build_model(contents, device="cpu").eval()
    found = saved_policy_head(path, model, parts.plan.planner, torch.device("cpu"))
    # Loaded whenever the folder has a head trained on this model, not only when the
    # saved plan's cost uses it: the runtime may be loaded with another cost.
    cost = saved_cost_head(path, model, parts.plan.cost, torch.device("cpu"))
    return _Parts(
        model,
        found[0] if found else None,
        cost[0] if cost else None,
        parts.plan,
        parts.env.get("env_id"),
        parts.action_low,
        parts.action_high,
        parts.normalizer.mean,
        parts.normalizer.std,
    )


def _agent_parts(agent: Any) -> _Parts:
    return _Parts(
        agent.model,
        agent.policy_head,
        agent.controller.cost_head,
        agent.plan_config,
        agent.env_id,
        agent.action_low,
        agent.action_high,
        agent.normalizer.mean,
        agent.normalizer.std,
    )


def export_agent(agent_or_path: Any, out_dir: str | os.PathLike) -> Path:
    """Write the ONNX graphs and agent.json of a `WorldModelAgent`, or of a checkpoint
    folder or `zoo:NAME` (checked as loading it checks it).

    The folder is written beside its destination and moved into place at the end,
    so a failed export leaves nothing behind; an existing non-empty `out_dir` is
    refused rather than mixed with other files.
    """
    try:
        import onnx  # noqa: F401  (torch.onnx.export writes the graphs through it)
    except ImportError:
        raise ImportError("exporting needs onnx: pip install 'lewm-agent[onnx]'") from None
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder: export to a new folder")
    parts = (
        _folder_parts(agent_or_path)
        if isinstance(agent_or_path, str | os.PathLike)
        else _agent_parts(agent_or_path)
    )
    if uses_cost_head(parts.plan.cost) and parts.cost_head is None:
        raise ValueError(
            f"the agent's plan cost {parts.plan.cost!r} needs a cost head and it has none: "
            "train one (`lewm train-cost RUN --data DATA`, or agent.fit_cost_head) or set "
            "the plan's cost to 'latent' before exporting"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_export(parts, tmp)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_export(parts: _Parts, folder: Path) -> None:
    cfg = parts.model.cfg
    # A CPU float32 copy: the graphs must not depend on where or how the agent trained.
    model = LeWM(cfg)
    state = parts.model.state_dict()
    model.load_state_dict({k: v.detach().cpu().float() for k, v in state.items()})
    model.eval()
    size, d, block = cfg.image_size, cfg.embed_dim, cfg.action_block_dim
    batch = 2  # > 1, so tracing cannot specialise on a batch of one
    files: dict[str, Any] = {
        "encoder": ENCODER_FILE,
        "predictor": {},
        "policy_head": None,
        "cost_head": None,
    }
    with torch.no_grad():
        frames = torch.zeros(batch, size, size, 3, dtype=torch.uint8)
        _export(_Encoder(model), (frames,), folder / ENCODER_FILE, ["frames"])
        for t in range(1, cfg.history + 1):
            z, a = torch.zeros(batch, t, d), torch.zeros(batch, t, block)
            _export(_PredictorStep(model), (z, a), folder / predictor_file(t), ["z", "actions"])
            files["predictor"][str(t)] = predictor_file(t)
        if parts.policy_head is not None:
            head = copy.deepcopy(parts.policy_head).to("cpu").float().eval()
            args = (torch.zeros(batch, d), torch.zeros(batch, d), torch.ones(batch))
            _export(_Policy(head), args, folder / POLICY_FILE, ["z", "goal", "steps_left"])
            files["policy_head"] = POLICY_FILE
        if parts.cost_head is not None:
            head = copy.deepcopy(parts.cost_head).to("cpu").float().eval()
            args = (torch.zeros(batch, d), torch.zeros(batch, d))
            _export(_Cost(head), args, folder / COST_FILE, ["z", "goal"])
            files["cost_head"] = COST_FILE
    graph_files = [ENCODER_FILE, *files["predictor"].values()]
    graph_files += [f for f in (files["policy_head"], files["cost_head"]) if f]
    # The bounds of one block (fs*A,) in normalised units, as controllers.block_bounds.
    low, high = (np.asarray(b, dtype=np.float64) for b in (parts.action_low, parts.action_high))
    mean, std = (np.asarray(v, dtype=np.float32).reshape(-1) for v in (parts.mean, parts.std))
    low_n = np.where(np.isfinite(low), (low - mean) / std, -UNBOUNDED_LIMIT).astype(np.float32)
    high_n = np.where(np.isfinite(high), (high - mean) / std, UNBOUNDED_LIMIT).astype(np.float32)
    low_n, high_n = np.tile(low_n, cfg.frameskip), np.tile(high_n, cfg.frameskip)
    meta: dict[str, Any] = {
        "format_version": EXPORT_FORMAT_VERSION,
        "env_id": parts.env_id,
        "model": {
            "image_size": size,
            "embed_dim": d,
            "action_dim": cfg.action_dim,
            "frameskip": cfg.frameskip,
            "history": cfg.history,
        },
        "plan": to_dict(parts.plan),
        "action_low": _bounds_json(low),
        "action_high": _bounds_json(high),
        "action_normalizer": {"mean": mean.tolist(), "std": std.tolist()},
        "block_low": low_n.tolist(),
        "block_high": high_n.tolist(),
        "unbounded_limit": UNBOUNDED_LIMIT,
        "files": files,
        "sha256": {name: _sha256(folder / name) for name in graph_files},
    }
    meta["sha256"][AGENT_FILE] = description_sha256(meta)
    (folder / AGENT_FILE).write_text(json.dumps(meta, indent=2) + "\n")


__all__ = [
    "export_agent",
    "predictor_file",
    "AGENT_FILE",
    "COST_FILE",
    "ENCODER_FILE",
    "POLICY_FILE",
]
