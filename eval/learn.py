"""Evaluation inside `agents.learn`: protocol success after each round.

`agents.learn.learn` sits below this floor and takes evaluation as a callable;
`protocol_eval_fn` is that callable for the paper protocol on a fixed set of
start/goal pairs (`learn_eval_episodes`: a dataset's held-out split, a zoo model's
shipped episodes or an episodes.json), so every round is scored on the same pairs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lewm_agent.agent import WorldModelAgent
from lewm_agent.config import replace

from .protocol import ProtocolEpisode, run_protocol

EVAL_PLAN: dict[str, Any] = {"samples": 60, "iterations": 5, "elites": 6}
"""CEM 60 x 5: 100% (50/50) on Two-Room with the zoo model, like CEM 300 x 10, at a
tenth of the rollouts (docs/results/planning.md); an evaluation after every round
must stay cheap on a CPU."""


def learn_eval_episodes(
    source: str | os.PathLike[str], n: int = 50, seed: int = 42
) -> list[ProtocolEpisode]:
    """The protocol's pairs from a dataset folder's held-out split (10%, as `lewm train`
    holds out), or the first `n` shipped in `zoo:NAME`, a model folder or episodes.json."""
    from lewm_agent.zoo import EPISODES_FILE, is_zoo_ref

    from .compare import protocol_episodes
    from .zoo import protocol_episodes as shipped

    path = Path(source)
    if not is_zoo_ref(source) and path.is_dir() and not (path / EPISODES_FILE).is_file():
        return protocol_episodes(path, n=n, seed=seed)[0]
    return shipped(str(source), n=n, seed=seed)


def protocol_eval_fn(
    env: str | Mapping[str, Any],
    episodes: list[ProtocolEpisode],
    *,
    plan_overrides: Mapping[str, Any] | None = None,
    results: list[dict[str, Any]] | None = None,
) -> Callable[[WorldModelAgent], float]:
    """`eval_fn(agent) -> success rate` on `episodes`, planning with the agent's plan
    config updated by `plan_overrides` (default `EVAL_PLAN`); each round's full
    `ProtocolResult` dict is appended to `results` when given."""
    overrides = dict(EVAL_PLAN if plan_overrides is None else plan_overrides)

    def evaluate(agent: WorldModelAgent) -> float:
        plan = replace(agent.plan_config, **overrides)
        player = WorldModelAgent(
            agent.model,
            agent.normalizer,
            agent.action_low,
            agent.action_high,
            plan,
            device=agent.device,
        )
        result, _ = run_protocol(
            env,
            player,
            episodes,
            name="learn eval",
            env_kwargs={"image_size": agent.model_config.image_size},
            progress=False,
        )
        if results is not None:
            results.append(result.to_dict())
        return float(result.success_rate)

    return evaluate
