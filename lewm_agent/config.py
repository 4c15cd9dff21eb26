"""Configuration dataclasses and named presets.

Every field carries a one-line docstring-style comment; the CLI is generated from
these dataclasses, and a checkpoint stores them as JSON so `load(path)` needs
nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from .validation import ConfigError, check_config_fields

T = TypeVar("T")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of LeWM: encoder, projectors, action embedder, predictor."""

    image_size: int = 64
    """Side of the square input image in pixels."""
    encoder: str = "cnn"
    """Image encoder: "vit" (paper) or "cnn" (fast on CPU)."""
    embed_dim: int = 192
    """Size of one frame embedding (the paper's 192; below ~184 hurts)."""
    vit_patch: int = 14
    """ViT patch size in pixels."""
    vit_depth: int = 12
    """ViT number of transformer blocks."""
    vit_width: int = 192
    """ViT token width."""
    vit_heads: int = 3
    """ViT attention heads."""
    vit_norm_eps: float = 1e-6
    """ViT LayerNorm epsilon (the official LeWM checkpoints, Hugging Face's ViT: 1e-12)."""
    pixel_norm: str = "symmetric"
    """Pixel scaling before the encoder: "symmetric" ([0, 255] -> [-1, 1]) or "imagenet" (x / 255 standardised by ImageNet's channel mean and std, as the official LeWM checkpoints)."""
    cnn_channels: tuple[int, ...] = (32, 64, 128, 256)
    """CNN encoder: output channels of each stride-2 convolution."""
    projector_hidden: int = 2048
    """Hidden width of the two BatchNorm projector MLPs (encoder and predictor)."""
    action_dim: int = 2
    """Dimension of one environment action."""
    frameskip: int = 5
    """Environment steps per action block (one predictor step)."""
    action_mlp_ratio: int = 4
    """Action embedder MLP width as a multiple of embed_dim."""
    action_smooth_dim: int = 0
    """Output channels of the action embedder's kernel-1 convolution (0 = the action block size)."""
    history: int = 3
    """Frames of context the predictor sees (paper: 3; 1 on Two-Room)."""
    pred_depth: int = 6
    """Predictor transformer blocks."""
    pred_heads: int = 16
    """Predictor attention heads."""
    pred_head_dim: int = 64
    """Width of one predictor attention head."""
    pred_mlp: int = 2048
    """Predictor MLP hidden width."""
    pred_dropout: float = 0.1
    """Predictor dropout (paper: 0.1 is best; 0 and 0.2+ hurt)."""
    pred_block_norms: bool = False
    """Predictor blocks also apply a learnable LayerNorm to the modulated input of attention and of the MLP (stable-worldmodel's predictor layout, the official LeWM checkpoints)."""
    pred_norm_eps: float = 1e-6
    """Epsilon of the predictor's learnable LayerNorms: the output norm and the block norms (the official LeWM checkpoints: 1e-5)."""

    def __post_init__(self) -> None:
        check_config_fields(self)  # a bad value fails here, naming the field

    @property
    def action_block_dim(self) -> int:
        """Size of one flattened action block (frameskip * action_dim)."""
        return self.frameskip * self.action_dim


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of LeWM: loss weights, optimiser, schedule, batching."""

    steps: int = 1000
    """Optimiser steps."""
    batch_size: int = 64
    """Sequences per step (paper: 128)."""
    lr: float = 3e-4
    """Peak AdamW learning rate (paper: 5e-5 for 10 GPU epochs; 3e-4 for CPU minutes)."""
    weight_decay: float = 1e-3
    """AdamW weight decay."""
    warmup_steps: int = 50
    """Linear warm-up steps before the cosine decay."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    sigreg_weight: float = 0.09
    """lambda, the only loss hyperparameter (paper: 0.09-0.1)."""
    sigreg_directions: int = 1024
    """Random projection directions per SIGReg evaluation."""
    sigreg_knots: int = 17
    """Trapezoid knots of the Epps-Pulley integral over t in [0, 3]."""
    holdout_fraction: float = 0.1
    """Episodes held out of training (used by the evaluation protocol)."""
    train_episodes: int = 0
    """Train on only the first N training episodes (0 = all). The held-out split is
    taken from the whole folder first, so runs on different data sizes are evaluated
    on the same held-out episodes."""
    seed: int = 0
    """Seed of weights, sampler and SIGReg directions."""
    log_every: int = 10
    """Steps between CSV log rows."""
    threads: int = 0
    """torch CPU threads (0 = leave torch's default)."""

    def __post_init__(self) -> None:
        check_config_fields(self)  # a bad value fails here, naming the field


@dataclass(frozen=True)
class PlanConfig:
    """Model-predictive control in latent space."""

    planner: str = "cem"
    """"cem", "mppi", "cem-prior"/"mppi-prior" (policy head as sampling prior) or "policy" (head alone)."""
    samples: int = 300
    """Action sequences evaluated per iteration."""
    iterations: int = 30
    """Refinement iterations per plan (paper: 30 on Push-T, 10 elsewhere)."""
    elites: int = 30
    """Best sequences kept per iteration."""
    horizon: int = 5
    """Planned action blocks (5 blocks x frameskip 5 = 25 env steps)."""
    receding_horizon: int = 5
    """Action blocks executed before replanning."""
    init_std: float = 1.0
    """Initial sampling std in normalised action units."""
    min_std: float = 0.05
    """Lower clamp of the sampling std (MPPI)."""
    max_std: float = 2.0
    """Upper clamp of the sampling std (MPPI)."""
    temperature: float = 0.5
    """MPPI softmax temperature over elite costs."""
    noise_beta: float = 0.0
    """Sampling-noise colour over env steps: 0 white (paper), 2 iCEM's coloured noise."""
    warm_start: bool = True
    """Start each plan from the previous plan shifted by the executed blocks."""
    seed: int = 0
    """Seed of the planner's own torch.Generator."""
    warm_iterations: int = 0
    """Iterations of a warm-started replan (0 = `iterations`): the shifted plan is most of the work."""
    prior_fraction: float = 0.25
    """"-prior" planners: share of each iteration's samples drawn around the policy's proposal."""
    prior_std: float = 0.3
    """"-prior" planners: sampling std around the policy's proposal (normalised action units)."""
    policy_steps_left: int = 0
    """Steps-left input of the policy head acting alone (0 = one block: move as fast as the data does)."""
    cost: str = "latent"
    """Plan cost: "latent" (squared embedding distance to the goal), "learned" (the cost head: env steps to the goal) or "latent+learned"."""
    cost_weight: float = 1.0
    """"latent+learned": weight of the learned cost (env steps) added to the latent one."""
    cost_horizon_sum: bool = False
    """Score every predicted block's embedding against the goal (summed), not only the last."""

    def __post_init__(self) -> None:
        check_config_fields(self)  # a bad value fails here, naming the field


@dataclass(frozen=True)
class Preset:
    """A named bundle of model, training and planning settings."""

    model: ModelConfig
    train: TrainConfig
    plan: PlanConfig
    description: str = ""


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        model=ModelConfig(
            image_size=224,
            encoder="vit",
            history=3,
            pred_depth=6,
            pred_heads=16,
            pred_head_dim=64,
            pred_mlp=2048,
            projector_hidden=2048,
        ),
        train=TrainConfig(steps=30000, batch_size=128, lr=5e-5, warmup_steps=1000),
        plan=PlanConfig(samples=300, iterations=30, elites=30),
        description="The paper's setting: ViT-tiny p14 at 224 px, ~18M params; a GPU job.",
    ),
    "cpu": Preset(
        model=ModelConfig(
            image_size=64,
            encoder="cnn",
            cnn_channels=(32, 64, 128, 256),
            history=1,
            pred_depth=4,
            pred_heads=4,
            pred_head_dim=64,
            pred_mlp=1024,
            projector_hidden=1024,
        ),
        train=TrainConfig(steps=1200, batch_size=64, lr=3e-4, warmup_steps=50),
        # Coloured (1/f^2) sampling noise: smooth action sequences, which solve more
        # Two-Room episodes than white noise (docs/results/planning.md).
        plan=PlanConfig(samples=300, iterations=10, elites=30, noise_beta=2.0),
        description="64 px CNN encoder and a 4-layer predictor: trains in minutes on 2 CPU cores.",
    ),
    "test": Preset(
        model=ModelConfig(
            image_size=32,
            encoder="cnn",
            embed_dim=32,
            cnn_channels=(8, 16, 32),
            projector_hidden=64,
            action_mlp_ratio=2,
            history=2,
            pred_depth=1,
            pred_heads=2,
            pred_head_dim=16,
            pred_mlp=64,
            pred_dropout=0.0,
        ),
        train=TrainConfig(steps=200, batch_size=16, lr=1e-3, warmup_steps=10, sigreg_directions=64),
        plan=PlanConfig(samples=32, iterations=3, elites=4),
        description="Tiny: unit tests in seconds.",
    ),
}


def get_preset(name: str) -> Preset:
    """Return a preset by name with an error that lists the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-able dict of a config dataclass (tuples become lists)."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a config dataclass from a dict, rejecting unknown keys by name.

    Lists are turned back into tuples where the field's default is a tuple, so a
    JSON round trip gives an equal (and hashable) config. Values are checked by the
    dataclass itself (`check_config_fields`): a wrong type or range raises ConfigError.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"{cls.__name__} must be a JSON object of its fields, got {type(data).__name__}"
        )
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown fields {unknown}; valid: {sorted(known)}")
    kwargs = {}
    for key, value in data.items():
        default = known[key].default
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def replace(cfg: T, **changes: Any) -> T:
    """dataclasses.replace with a clear error for unknown fields."""
    valid = {f.name for f in fields(cfg)}  # type: ignore[arg-type]
    bad = sorted(set(changes) - valid)
    if bad:
        raise ValueError(f"{type(cfg).__name__}: unknown fields {bad}; valid: {sorted(valid)}")
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]


__all__ = [
    "ConfigError",
    "ModelConfig",
    "TrainConfig",
    "PlanConfig",
    "Preset",
    "PRESETS",
    "get_preset",
    "to_dict",
    "from_dict",
    "replace",
]
