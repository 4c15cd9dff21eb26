"""Checks of values that come from outside (config files, checkpoints, the CLI).

Every check raises a `ConfigError` (a `ValueError`) that names the field, the bad
value and what a good one looks like, so a hand-edited or damaged `config.json`
fails at load with one readable line instead of a TypeError deep inside torch or
a silent NaN action.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np


class ConfigError(ValueError):
    """A configuration value has the wrong type or is out of range (the message names it)."""


POSITIVE = math.ulp(0.0)
"""Lower bound meaning "> 0" (the smallest positive float)."""

# Per-field ranges (inclusive) of the config dataclasses; fields not listed get a type
# check only. The planner caps bound one plan's memory: its rollout buffers scale with
# samples x horizon x embed_dim (65536 x 5 x 192 float32 is already 250 MB).
FIELD_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "ModelConfig": {
        "image_size": (1, math.inf),
        "embed_dim": (1, math.inf),
        "vit_patch": (1, math.inf),
        "vit_depth": (1, math.inf),
        "vit_width": (1, math.inf),
        "vit_heads": (1, math.inf),
        "vit_norm_eps": (POSITIVE, 1.0),
        "cnn_channels": (1, math.inf),  # each entry
        "projector_hidden": (1, math.inf),
        "action_dim": (1, math.inf),
        "frameskip": (1, math.inf),
        "action_mlp_ratio": (1, math.inf),
        "action_smooth_dim": (0, math.inf),
        "history": (1, math.inf),
        "pred_depth": (1, math.inf),
        "pred_heads": (1, math.inf),
        "pred_head_dim": (1, math.inf),
        "pred_mlp": (1, math.inf),
        "pred_dropout": (0.0, 0.99),
        "pred_norm_eps": (POSITIVE, 1.0),
    },
    "TrainConfig": {
        "steps": (0, math.inf),
        "batch_size": (1, math.inf),
        "lr": (0.0, math.inf),
        "weight_decay": (0.0, math.inf),
        "warmup_steps": (0, math.inf),
        "grad_clip": (POSITIVE, math.inf),
        "sigreg_weight": (0.0, math.inf),
        "sigreg_directions": (1, math.inf),
        "sigreg_knots": (2, math.inf),
        "holdout_fraction": (0.0, 0.99),
        "seed": (0, 2**63 - 1),
        "log_every": (1, math.inf),
        "threads": (0, math.inf),
    },
    "PlanConfig": {
        "samples": (2, 65536),
        "iterations": (1, 10000),
        "elites": (1, 65536),
        "horizon": (1, 1000),
        "receding_horizon": (1, 1000),
        "init_std": (POSITIVE, math.inf),
        "min_std": (0.0, math.inf),
        "max_std": (POSITIVE, math.inf),
        "temperature": (POSITIVE, math.inf),
        "noise_beta": (0.0, 10.0),
        "seed": (0, 2**63 - 1),
        "warm_iterations": (0, 10000),
        "prior_fraction": (0.0, 0.99),
        "prior_std": (POSITIVE, math.inf),
        "policy_steps_left": (0, math.inf),
        "cost_weight": (0.0, math.inf),
    },
    "CostHeadConfig": {
        "hidden": (1, math.inf),
        "layers": (1, math.inf),
        "max_gap": (1, math.inf),
        "far_fraction": (0.0, 1.0),
        "same_fraction": (0.0, 1.0),
        "predicted_fraction": (0.0, 1.0),
        "pred_blocks": (1, 1000),
        "pred_pool": (1, math.inf),
        "steps": (0, math.inf),
        "batch_size": (1, math.inf),
        "lr": (0.0, math.inf),
        "weight_decay": (0.0, math.inf),
        "seed": (0, 2**63 - 1),
        "holdout_fraction": (0.0, 0.99),
        "train_episodes": (0, math.inf),
    },
}
FIELD_CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "ModelConfig": {"encoder": ("vit", "cnn"), "pixel_norm": ("symmetric", "imagenet")},
    "PlanConfig": {
        "planner": ("cem", "mppi", "cem-prior", "mppi-prior", "policy"),
        "cost": ("latent", "learned", "latent+learned"),
    },
}


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _check_range(where: str, value: float, bounds: tuple[float, float] | None) -> None:
    if bounds is None:
        return
    lo, hi = bounds
    if not lo <= value <= hi:
        lower = "> 0" if lo == POSITIVE else f">= {lo:g}"
        upper = "" if hi == math.inf else f" and <= {hi:g}"
        raise ConfigError(f"{where} must be {lower}{upper}, got {value!r}")


def check_config_fields(cfg: Any) -> None:
    """Check every field of a config dataclass against the type of its default and its range.

    The type is the default's: an int field takes integers only (not 32.0 or "32"),
    a float field any finite real number, a bool field True/False, a str field a
    string, a tuple field a non-empty sequence of integers. Fields whose default is
    None are not checked (they are free-form).
    """
    name = type(cfg).__name__
    ranges = FIELD_RANGES.get(name, {})
    choices = FIELD_CHOICES.get(name, {})
    for f in dataclasses.fields(cfg):
        value, default = getattr(cfg, f.name), f.default
        where, bounds = f"{name}.{f.name}", ranges.get(f.name)
        if isinstance(default, bool):
            if not isinstance(value, bool | np.bool_):
                raise ConfigError(f"{where} must be true or false, got {_describe(value)}")
        elif isinstance(default, int):
            if not _is_int(value):
                raise ConfigError(f"{where} must be an integer, got {_describe(value)}")
            _check_range(where, value, bounds)
        elif isinstance(default, float):
            if not _is_real(value) or not math.isfinite(value):
                raise ConfigError(f"{where} must be a finite number, got {_describe(value)}")
            _check_range(where, value, bounds)
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise ConfigError(f"{where} must be a string, got {_describe(value)}")
            if f.name in choices and value not in choices[f.name]:
                raise ConfigError(f"{where} must be one of {list(choices[f.name])}, got {value!r}")
        elif isinstance(default, tuple):
            if not isinstance(value, tuple | list) or not value:
                raise ConfigError(
                    f"{where} must be a non-empty list of integers, got {_describe(value)}"
                )
            for item in value:
                if not _is_int(item):
                    raise ConfigError(
                        f"{where} must hold integers only, got {_describe(item)} in {value!r}"
                    )
                _check_range(where, item, bounds)


def check_action_bounds(
    low: Any, high: Any, action_dim: int, where: str = "action bounds", *, strict: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) as float32 arrays (A,), checked: numbers, no NaN, right length, low < high.

    Infinite bounds are allowed (an unbounded Box); NaN never is (it turns every
    clipped action into NaN). `strict=False` allows low == high (a Box may pin a
    dimension; a dataset may record it, a planner cannot search it).
    """
    lo, hi = _number_vector(low, f"{where}: low"), _number_vector(high, f"{where}: high")
    for arr, side in ((lo, "low"), (hi, "high")):
        if arr.shape != (action_dim,):
            raise ConfigError(
                f"{where}: {side} has {arr.size} entries, the model has action_dim {action_dim}"
            )
        if np.isnan(arr).any():
            raise ConfigError(f"{where}: {side} contains NaN: {arr.tolist()}")
    if np.any(lo >= hi) if strict else np.any(lo > hi):
        relation = "below" if strict else "at most"
        raise ConfigError(
            f"{where}: every low must be {relation} its high, got {lo.tolist()} / {hi.tolist()}"
        )
    return lo, hi


def check_finite_vector(values: Any, length: int, where: str) -> np.ndarray:
    """A float32 vector (length,) of finite numbers, or a ConfigError naming `where`."""
    arr = _number_vector(values, where)
    if arr.shape != (length,):
        raise ConfigError(f"{where} has {arr.size} entries, expected {length}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{where} must be finite, got {arr.tolist()}")
    return arr


def _number_vector(values: Any, where: str) -> np.ndarray:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        raise ConfigError(f"{where} must be a list of numbers, got {_describe(values)}")
    items = list(values)
    if not all(_is_real(v) for v in items):
        raise ConfigError(f"{where} must be a flat list of numbers, got {values!r}")
    with np.errstate(over="ignore"):  # 1e39 becomes inf, which the callers judge
        return np.asarray(items, dtype=np.float64).astype(np.float32)


__all__ = [
    "ConfigError",
    "FIELD_RANGES",
    "check_action_bounds",
    "check_config_fields",
    "check_finite_vector",
]
