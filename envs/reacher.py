"""Reacher: a 2-link planar arm (MuJoCo) must reach a target joint configuration.

Like gymnasium's Reacher, but the goal is a joint configuration ``(q1, q2)`` shown
only as a goal image (a rendering of the arm at rest in that configuration); the
current frame never shows a target. A fixed top-down camera frames the 0.21 m reach
so that the arm fills the image.

Dynamics: torque motors (``action * GEAR``) on a shoulder hinge (unlimited) and an
elbow hinge (limited to +-2.8 rad so the forearm never folds onto the upper arm).
Joint damping and armature give time constants of 0.12-0.22 s and a top speed of 5 rad/s
(0.25 rad per env step): responsive, yet smooth enough to learn from pixels.
One env step is ``FRAME_SKIP`` = 5 MuJoCo steps of 10 ms (RK4).

State (float32, 4): ``[q1, q2, dq1, dq2]`` (rad, rad/s), q1 wrapped to [-pi, pi].
Exact restore: the solver warm start (the only hidden MuJoCo state that matters
here) is disabled, and every step ends by writing the float32 state back into the
simulator, so ``(state, action) -> next state`` is a pure function and
``reset(options={"state": s})`` reproduces both the frame and the future exactly.

Success: both wrapped joint errors below ``SUCCESS_TOL`` = 0.2 rad. Against the
image: the camera sees ~0.47 m across at the arm's height (7.4 mm per pixel at
64 px) and the stretched arm reaches the image border. Measured on renders, a
0.2 rad shoulder error moves the fingertip by 6.0 px at 64 px (21 px at 224) and a
0.2 rad elbow error by 3.0 px (11 px at 224). So a miss is always visible in the
images, and the tolerance spans several pixels even at 64 px, which a planner
working from 64 px frames can resolve; much tighter would ask for sub-pixel
precision, much looser would accept arms that look clearly different.
"""

from __future__ import annotations

import math
import os
from typing import Any, ClassVar

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from gymnasium import spaces  # noqa: E402

from envs.common import MujocoFrames, StateVectorEnv, check_action, state_vector  # noqa: E402

__all__ = [
    "ReacherEnv",
    "REACHER_XML",
    "STATE_DIM",
    "ELBOW_LIMIT",
    "MAX_JOINT_SPEED",
    "SUCCESS_TOL",
    "FRAME_SKIP",
    "joint_errors",
]

STATE_DIM = 4
ELBOW_LIMIT = 2.8
"""Elbow range (rad), symmetric."""
MAX_JOINT_SPEED = 50.0
"""Observation bound on joint speeds (rad/s); the motors top out near 5 rad/s."""
SUCCESS_TOL = 0.2
"""Per-joint tolerance (rad) of the success test; see the module docstring."""
FRAME_SKIP = 5
LINK1, LINK2 = 0.10, 0.11
GEAR = 0.1
"""Motor torque (N m) per unit of action."""
DAMPING, ARMATURE = 0.02, 0.002
"""Joint damping (N m s) and armature (kg m^2): top speed GEAR / DAMPING = 5 rad/s."""
_ELBOW_SLACK = 0.1
"""A soft joint limit can be overshot slightly under full torque: states up to
``ELBOW_LIMIT + _ELBOW_SLACK`` are accepted on reset."""

REACHER_XML = f"""
<mujoco model="lewm_reacher">
  <compiler angle="radian"/>
  <option timestep="0.01" integrator="RK4">
    <flag warmstart="disable"/>
  </option>
  <visual>
    <global offwidth="512" offheight="512"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.25 0.25 0.25" specular="0 0 0"/>
    <quality shadowsize="0"/>
  </visual>
  <default>
    <joint damping="{DAMPING}" armature="{ARMATURE}"/>
    <geom contype="0" conaffinity="0" density="1000"/>
    <motor ctrllimited="true" ctrlrange="-1 1" gear="{GEAR}"/>
  </default>
  <worldbody>
    <light directional="true" pos="0 0 1" dir="0 0 -1" diffuse="0.35 0.35 0.35" specular="0 0 0"/>
    <geom name="floor" type="plane" size="0.3 0.3 0.01" rgba="0.93 0.93 0.90 1"/>
    <geom name="reach" type="cylinder" pos="0 0 0.0005" size="0.232 0.0005"
          rgba="0.86 0.86 0.83 1"/>
    <geom name="base" type="cylinder" pos="0 0 0.01" size="0.022 0.01" rgba="0.3 0.3 0.3 1"/>
    <camera name="top" pos="0 0 0.6" xyaxes="1 0 0 0 1 0" fovy="45"/>
    <body name="upper_arm" pos="0 0 0.03">
      <joint name="shoulder" type="hinge" axis="0 0 1"/>
      <geom type="capsule" fromto="0 0 0 {LINK1} 0 0" size="0.013" rgba="0.15 0.35 0.8 1"/>
      <body name="forearm" pos="{LINK1} 0 0">
        <joint name="elbow" type="hinge" axis="0 0 1" limited="true"
               range="-{ELBOW_LIMIT} {ELBOW_LIMIT}"/>
        <geom type="capsule" fromto="0 0 0.005 {LINK2} 0 0.005" size="0.011"
              rgba="0.95 0.55 0.1 1"/>
        <geom name="fingertip" type="sphere" pos="{LINK2} 0 0.01" size="0.017"
              rgba="0.8 0.1 0.1 1"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor name="shoulder_motor" joint="shoulder"/>
    <motor name="elbow_motor" joint="elbow"/>
  </actuator>
</mujoco>
"""
"""The arm. Geoms never collide (contype 0): a planar arm needs no contacts."""

_OBS_HIGH = np.array([1, 1, 1, 1, MAX_JOINT_SPEED, MAX_JOINT_SPEED], dtype=np.float32)


_PI32 = float(np.float32(np.pi))
"""pi rounded to float32 (slightly above pi): the largest angle a float32 state holds."""


def _wrap(angle: np.ndarray | float) -> np.ndarray | float:
    """Wrap angles to [-pi, pi]."""
    return np.arctan2(np.sin(angle), np.cos(angle))


def joint_errors(achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
    """Wrapped absolute joint errors ``(..., 2)`` (rad) between goal vectors.

    Goal vectors are ``(cos q1, sin q1, cos q2, sin q2)``; leading batch dims are kept.
    """
    a = np.asarray(achieved_goal, dtype=np.float64)
    b = np.asarray(desired_goal, dtype=np.float64)
    errs = []
    for i in (0, 2):  # angle of a - b from its cos/sin pairs
        sin_d = a[..., i + 1] * b[..., i] - a[..., i] * b[..., i + 1]
        cos_d = a[..., i] * b[..., i] + a[..., i + 1] * b[..., i + 1]
        errs.append(np.abs(np.arctan2(sin_d, cos_d)))
    return np.stack(errs, axis=-1)


def _goal_vector(state: np.ndarray) -> np.ndarray:
    q1, q2 = float(state[0]), float(state[1])
    return np.array([math.cos(q1), math.sin(q1), math.cos(q2), math.sin(q2)])


def _canonical(state: np.ndarray) -> np.ndarray:
    """float32 state with q1 wrapped and speeds bounded: the only form the env holds."""
    s = np.asarray(state, dtype=np.float64).copy()
    if abs(s[0]) > _PI32:  # keep in-range float32 angles bit-exact (idempotent)
        s[0] = _wrap(s[0])
    s[2:] = np.clip(s[2:], -MAX_JOINT_SPEED, MAX_JOINT_SPEED)
    return s.astype(np.float32)


class ReacherEnv(MujocoFrames, StateVectorEnv):
    """Move a 2-link arm to a target joint configuration given as a goal image.

    Args:
        render_mode: ``"rgb_array"`` (or ``None``; ``render()`` returns the frame
            either way).
        obs_mode: ``"pixels"`` -> ``Dict(pixels, goal)`` uint8 images;
            ``"state"`` -> GoalEnv ``Dict(observation, achieved_goal, desired_goal)``
            with observation ``[cos q1, cos q2, sin q1, sin q2, dq1, dq2]`` and goals
            ``(cos q1, sin q1, cos q2, sin q2)``.
        image_size: side of the square images (64 default, 224 as in the paper).
        terminate_on_success: end the episode on success (the task's contract). Data
            collection turns it off: a world model wants long trajectories.

    Action: ``Box(-1, 1, (2,))`` joint torques (scaled by the motor gear).
    Reward: ``-(|e1| + |e2|) / pi`` with wrapped joint errors, in [-2, 0];
    ``terminated`` on success (both errors < 0.2 rad).

    ``reset(options={"state": s, "goal_state": g})`` sets either exactly
    (``[q1, q2, dq1, dq2]``); missing ones are sampled (at rest, anywhere in range).
    """

    state_dim: ClassVar[int] = STATE_DIM

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        render_mode: str | None = "rgb_array",
        obs_mode: str = "pixels",
        image_size: int = 64,
        terminate_on_success: bool = True,
    ) -> None:
        self._init_args(render_mode, obs_mode, image_size, terminate_on_success, max_size=512)

        self.model = mujoco.MjModel.from_xml_string(REACHER_XML)
        self.data = mujoco.MjData(self.model)
        self._scratch = mujoco.MjData(self.model)  # render_state() never touches self.data
        self._renderer: mujoco.Renderer | None = None
        self._camera = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, "top")
        self.dt = self.model.opt.timestep * FRAME_SKIP

        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        if obs_mode == "pixels":
            self.observation_space = self._pixels_space()
        else:
            goal = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
            self.observation_space = spaces.Dict(
                {
                    "observation": spaces.Box(-_OBS_HIGH, _OBS_HIGH, dtype=np.float32),
                    "achieved_goal": goal,
                    "desired_goal": goal,
                }
            )
        self._init_states()

    # ------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode; ``options`` may hold ``"state"`` and/or ``"goal_state"``."""
        super().reset(seed=seed)
        s, g = self._start_and_goal(options, lambda s, g: self._errors(s, g).max() < SUCCESS_TOL)
        self._goal = g
        self._set_sim(s)
        self._goal_frame = None
        return self._obs(), self._info()

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply torques ``action * gear`` for ``FRAME_SKIP`` MuJoCo steps."""
        a = check_action(action, 2)
        self.data.ctrl[:] = np.clip(a.reshape(2), -1.0, 1.0)
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)
        d = self.data
        self._set_sim(np.array([d.qpos[0], d.qpos[1], d.qvel[0], d.qvel[1]]))
        return self._step_result()

    def compute_reward(
        self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any = None
    ) -> np.ndarray | float:
        """Dense reward ``-(|e1| + |e2|) / pi``, vectorised over leading dims."""
        r = -joint_errors(achieved_goal, desired_goal).sum(axis=-1) / math.pi
        return r if np.ndim(r) else float(r)

    # ------------------------------------------------------------ internals

    def _set_sim(self, state: np.ndarray) -> None:
        """Make the canonical float32 state the simulator's exact state."""
        self._state = _canonical(state)
        s = self._state.astype(np.float64)
        self.data.qpos[:] = s[:2]
        self.data.qvel[:] = s[2:]
        self.data.qacc_warmstart[:] = 0.0
        mujoco.mj_forward(self.model, self.data)
        self._frame = None

    def _validated(self, value: Any, name: str) -> np.ndarray:
        s = state_vector(value, name, STATE_DIM, "[q1, q2, dq1, dq2]")
        if abs(s[1]) > ELBOW_LIMIT + _ELBOW_SLACK:
            raise ValueError(
                f"{name}: elbow angle {s[1]:.3f} outside [-{ELBOW_LIMIT}, {ELBOW_LIMIT}]"
            )
        if np.any(np.abs(s[2:]) > MAX_JOINT_SPEED):
            raise ValueError(f"{name}: joint speeds {s[2:]} exceed {MAX_JOINT_SPEED} rad/s")
        return _canonical(s)

    def _sample_state(self) -> np.ndarray:
        """A configuration at rest, uniform over the joint ranges."""
        rng = self.np_random
        q1 = rng.uniform(-math.pi, math.pi)
        q2 = rng.uniform(-ELBOW_LIMIT, ELBOW_LIMIT)
        return _canonical(np.array([q1, q2, 0.0, 0.0]))

    @staticmethod
    def _errors(state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return joint_errors(_goal_vector(state), _goal_vector(goal))

    _achieved = staticmethod(_goal_vector)

    def _info(self) -> dict[str, Any]:
        err = self._errors(self._state, self._goal)
        info = self._state_info(bool(err.max() < SUCCESS_TOL))
        info["joint_error"] = err.astype(np.float32)
        return info

    def _obs(self) -> dict[str, np.ndarray]:
        if self.obs_mode == "pixels":
            return self._pixels_obs()
        q, dq = self._state[:2].astype(np.float64), self._state[2:]
        return {
            "observation": np.concatenate([np.cos(q), np.sin(q), dq]).astype(np.float32),
            "achieved_goal": _goal_vector(self._state).astype(np.float32),
            "desired_goal": _goal_vector(self._goal).astype(np.float32),
        }

    def _draw(self, state: np.ndarray) -> np.ndarray:
        """Render a canonical state from the top camera using the scratch MjData."""
        d = self._scratch
        d.qpos[:] = state[:2].astype(np.float64)
        d.qvel[:] = state[2:].astype(np.float64)
        mujoco.mj_forward(self.model, d)
        return self._render_data(d)
