"""Moved to `envs.push_t_expert` (the Push-T expert lives beside the env it simulates).

Kept so that `from agents.push_t_expert import PushTExpert` still works.
"""

from envs.push_t_expert import PushTExpert, pose_cost

__all__ = ["PushTExpert", "pose_cost"]
