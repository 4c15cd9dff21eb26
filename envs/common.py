"""Checks shared by every lewm/* environment, so they fail the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def check_env_args(
    render_mode: str | None, obs_mode: str, image_size: int, max_size: int | None = None
) -> None:
    """Validate the constructor arguments of the env contract (docs/CONTRACTS.md)."""
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
    if obs_mode not in ("pixels", "state"):
        raise ValueError(f"obs_mode must be 'pixels' or 'state', got {obs_mode!r}")
    upper = max_size if max_size is not None else np.inf
    if not isinstance(image_size, int | np.integer) or not 8 <= image_size <= upper:
        bound = f"in [8, {max_size}]" if max_size is not None else ">= 8"
        raise ValueError(f"image_size must be an int {bound}, got {image_size!r}")


def split_reset_options(options: dict[str, Any] | None) -> tuple[Any, Any]:
    """(state, goal_state) from reset options, each None when absent; other keys are errors."""
    options = dict(options or {})
    unknown = set(options) - {"state", "goal_state"}
    if unknown:
        raise ValueError(
            f"unknown reset options {sorted(unknown)}; expected 'state' and/or 'goal_state'"
        )
    return options.get("state"), options.get("goal_state")


def pick_start_and_goal(
    state: np.ndarray | None,
    goal: np.ndarray | None,
    sample: Callable[[], np.ndarray],
    solved: Callable[[np.ndarray, np.ndarray], bool],
    tries: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """(start, goal): the given ones, and fresh samples for the missing ones.

    Only what was sampled is resampled, until the pair is not already solved,
    so a sampled episode never starts at its goal (a given pair is kept as is).
    """
    for _ in range(tries):
        g = goal if goal is not None else sample()
        s = state if state is not None else sample()
        if (state is not None and goal is not None) or not solved(s, g):
            break
    return s, g
