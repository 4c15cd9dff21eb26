"""Moved to `envs.scripted` (a data policy lives on the floor of the worlds it drives).

Kept so that `from agents.scripted import RandomPolicy, make_data_policy` still works.
"""

from envs.scripted import (
    DATA_POLICIES,
    DATA_POLICY_ALIASES,
    RandomPolicy,
    TwoRoomHeuristic,
    make_data_policy,
)

__all__ = [
    "DATA_POLICIES",
    "DATA_POLICY_ALIASES",
    "RandomPolicy",
    "TwoRoomHeuristic",
    "make_data_policy",
]
