"""Moved to `envs.experts` (the Push-T and Reacher data policies live beside their envs).

Kept so that `from agents.experts import PushTPusher, ReacherOU` still works.
"""

from envs.experts import PushTPusher, ReacherOU

__all__ = ["PushTPusher", "ReacherOU"]
