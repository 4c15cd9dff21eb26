"""Wrappers: reward-free episode recording, and pixels + goal image for any env.

- :class:`RecordEpisodes` (``envs/record.py``) records finished episodes into the lewm
  dataset format.
- :class:`PixelGoal` (``envs/pixel_goal.py``) turns any Gymnasium env with
  ``render_mode="rgb_array"`` into the ``{"pixels", "goal"}`` observation that
  :class:`lewm_agent.WorldModelAgent` plans on, so the agent works on envs this
  package did not write.
- ``envs/frames.py``: the helpers both share (image resize, simulator state).

Every name of ``__all__`` is importable from here.
"""

from __future__ import annotations

from envs.frames import resize_image, simulator_state, warn_unless_state_restores
from envs.pixel_goal import PixelGoal
from envs.record import RecordEpisodes

__all__ = [
    "PixelGoal",
    "RecordEpisodes",
    "resize_image",
    "simulator_state",
    "warn_unless_state_restores",
]
