"""Push-T: a circular pusher slides a T-shaped block to a target pose (pymunk, top-down).

The world is a 512 x 512 px arena seen from above (x right, y down, so a positive
angle turns the block clockwise on screen). The T is one rigid body made of a
120 x 30 bar and a 30 x 90 stem, its origin at its centre of mass. There is no
gravity: floor friction is emulated by a pivot joint and a gear joint to the static
body with ``max_bias = 0`` and a capped ``max_force``, which is the standard
Chipmunk recipe for top-down sliding (a capped force is Coulomb friction, so the
block stops within about one env step once it is no longer pushed).

The pusher is a circle (radius 15) dragged by a kinematic handle through a pivot
joint whose force is capped; the handle follows a critically damped PD law towards
``pusher + action * MAX_STEP`` and the pusher covers ~90% of that move in one env
step (10 substeps of 10 ms). Unlike the classic Push-T's kinematic pusher, which
is infinitely strong, a capped drive cannot crush the block through a wall: a block
pinned against a wall stops the pusher (a kinematic pusher ended up with its centre
inside the block in such squeezes), and the walls stop the pusher itself.

Exact state restore. Chipmunk keeps hidden solver state between steps (cached
contact and joint impulses used for warm starting), and a float64 simulator would
not round-trip through a float32 state. So every env step rebuilds the space from
the float32 state and ends by rounding the result back to float32: the dynamics are
a pure function ``(state, action) -> next state`` (:func:`simulate_step`), and
``reset(options={"state": s})`` reproduces both the frame and the future exactly.

State (float32, 10): ``[pusher_x, pusher_y, block_x, block_y, block_angle,
pusher_vx, pusher_vy, block_vx, block_vy, block_angvel]`` in px, rad, px/s, rad/s;
the angle is wrapped to [-pi, pi]. The goal is a full state too: success only looks
at the block pose (position error < 20 px and angle error < pi/9), the pusher in the
goal state only decides where the goal image shows it.

One env (physics, rendering, spaces, reset options); its data policies are
`envs/push_t_pusher.py` and `envs/push_t_expert.py`.
"""

from __future__ import annotations

import math
import os
from typing import Any, ClassVar

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import numpy as np  # noqa: E402
import pygame  # noqa: E402
import pymunk  # noqa: E402
from gymnasium import spaces  # noqa: E402

from envs.common import StateVectorEnv, check_action, state_vector  # noqa: E402

__all__ = [
    "PushTEnv",
    "simulate_step",
    "BLOCK_BOXES_LOCAL",
    "BLOCK_MASS",
    "BLOCK_MOMENT",
    "BLOCK_RADIUS",
    "block_polygons",
    "distance_to_block",
    "goal_errors",
    "WORLD_SIZE",
    "WALL",
    "PUSHER_RADIUS",
    "MAX_STEP",
    "PUSHER_LOW",
    "PUSHER_HIGH",
    "STATE_DIM",
    "SUCCESS_POS_PX",
    "SUCCESS_ANGLE",
]

# ---------------------------------------------------------------- world constants
WORLD_SIZE = 512.0
WALL = 8.0
"""Visible wall thickness (px). The collision walls are 400 px thick segments whose
inner faces are the arena border, so nothing can tunnel out of the arena."""
PUSHER_RADIUS = 15.0
MAX_STEP = 30.0
"""Commanded pusher move (px) per unit of action, per axis."""
PUSHER_LOW = WALL + PUSHER_RADIUS
PUSHER_HIGH = WORLD_SIZE - WALL - PUSHER_RADIUS
N_SUBSTEPS = 10
DT = 0.01
KP = 1600.0
KV = 80.0  # 2 * sqrt(KP): critically damped, no overshoot from rest
STATE_DIM = 10
SUCCESS_POS_PX = 20.0
SUCCESS_ANGLE = math.pi / 9

# T geometry in the block frame, origin at the centre of mass (uniform density).
_BAR_W, _BAR_H = 120.0, 30.0
_STEM_W, _STEM_H = 30.0, 90.0
_BAR_AREA = _BAR_W * _BAR_H
_STEM_AREA = _STEM_W * _STEM_H
_COM_Y = (_BAR_AREA * _BAR_H / 2 + _STEM_AREA * (_BAR_H + _STEM_H / 2)) / (_BAR_AREA + _STEM_AREA)
_BAR = np.array([[-60.0, 0.0], [60.0, 0.0], [60.0, 30.0], [-60.0, 30.0]])
_STEM = np.array([[-15.0, 30.0], [15.0, 30.0], [15.0, 120.0], [-15.0, 120.0]])
_BAR -= (0.0, _COM_Y)
_STEM -= (0.0, _COM_Y)
BLOCK_BOXES_LOCAL: tuple[np.ndarray, np.ndarray] = (_BAR, _STEM)
"""The two rectangles of the T (4 x 2 vertices each) in the block frame."""
BLOCK_RADIUS = float(max(np.linalg.norm(_BAR, axis=1).max(), np.linalg.norm(_STEM, axis=1).max()))
"""Distance from the centre of mass to the farthest corner (~80.7 px)."""

BLOCK_MASS = 1.0
_BAR_MASS = BLOCK_MASS * _BAR_AREA / (_BAR_AREA + _STEM_AREA)
_STEM_MASS = BLOCK_MASS - _BAR_MASS
BLOCK_MOMENT = pymunk.moment_for_poly(_BAR_MASS, [tuple(v) for v in _BAR]) + pymunk.moment_for_poly(
    _STEM_MASS, [tuple(v) for v in _STEM]
)
FLOOR_FORCE = 3000.0
"""Friction force cap (mass * px/s^2): a block sliding at 300 px/s stops in ~0.1 s."""
FLOOR_TORQUE = FLOOR_FORCE * 40.0
"""Friction torque cap: the force cap times a typical lever arm (40 px) of the T."""
FRICTION = 0.6
PUSHER_MASS = 1.0
DRIVE_FORCE = 30000.0
"""Force cap of the pusher's drive: 10x the block's floor friction, so pushing is
effortless, yet finite, so that a block pinned against a wall stops the pusher
instead of being crushed through (an infinitely strong kinematic pusher overlapped
the block by its full radius in such squeezes)."""

# Rendering colours (RGB).
_BG = (236, 236, 232)
_WALL_RGB = (170, 170, 170)
_BLOCK_RGB = (119, 128, 140)
PUSHER_RGB = (40, 90, 220)
"""The pusher's colour in a rendering (the physics probe recolours it)."""

MAX_SPEED = 2000.0
"""Velocity bound (px/s) of the observation space; the physics clips to it as a safety net
(measured with the scripted pusher, end-of-step speeds stay below 300 px/s)."""
MAX_ANG_SPEED = 60.0
"""Angular velocity bound (rad/s), likewise a safety net."""
_VEL_HIGH = [MAX_SPEED, MAX_SPEED, MAX_SPEED, MAX_SPEED, MAX_ANG_SPEED]
_STATE_LOW = np.array([WALL, WALL, 0.0, 0.0, -math.pi] + [-v for v in _VEL_HIGH], dtype=np.float32)
_STATE_HIGH = np.array(
    [WORLD_SIZE - WALL, WORLD_SIZE - WALL, WORLD_SIZE, WORLD_SIZE, math.pi] + _VEL_HIGH,
    dtype=np.float32,
)


# ---------------------------------------------------------------- pure helpers
_PI32 = float(np.float32(np.pi))
"""pi rounded to float32 (slightly above pi): the largest angle a float32 state holds."""


def _wrap(angle: np.ndarray | float) -> np.ndarray | float:
    """Wrap angles to [-pi, pi] (through atan2, so the result is always in range)."""
    return np.arctan2(np.sin(angle), np.cos(angle))


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def block_polygons(x: float, y: float, angle: float) -> list[np.ndarray]:
    """World coordinates (px) of the T's two rectangles at pose ``(x, y, angle)``."""
    rot = _rotation(angle)
    return [box @ rot.T + (x, y) for box in BLOCK_BOXES_LOCAL]


def distance_to_block(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) from world points ``(..., 2)`` to the T at pose ``(..., 3)``.

    Zero inside the block. Vectorised so that the scripted pusher can check whole
    paths for collisions at once.
    """
    points = np.asarray(points, dtype=np.float64)
    pose = np.asarray(pose, dtype=np.float64)
    d = points - pose[..., :2]
    c, s = np.cos(pose[..., 2]), np.sin(pose[..., 2])
    local = np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)
    out = np.full(local.shape[:-1], np.inf)
    for box in BLOCK_BOXES_LOCAL:
        lo, hi = box.min(axis=0), box.max(axis=0)
        gap = np.maximum(np.maximum(lo - local, local - hi), 0.0)
        out = np.minimum(out, np.linalg.norm(gap, axis=-1))
    return out


def goal_errors(
    achieved_goal: np.ndarray, desired_goal: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Position error (px) and wrapped angle error (rad) between goal vectors.

    Goal vectors are ``(x / 512, y / 512, sin(angle), cos(angle))``; any leading batch
    shape is kept.
    """
    a = np.asarray(achieved_goal, dtype=np.float64)
    b = np.asarray(desired_goal, dtype=np.float64)
    pos = np.hypot(a[..., 0] - b[..., 0], a[..., 1] - b[..., 1]) * WORLD_SIZE
    # angle of (a - b) from the sin/cos pairs, robust to non-unit inputs
    sin_d = a[..., 2] * b[..., 3] - a[..., 3] * b[..., 2]
    cos_d = a[..., 3] * b[..., 3] + a[..., 2] * b[..., 2]
    return pos, np.abs(np.arctan2(sin_d, cos_d))


def _goal_vector(state: np.ndarray) -> np.ndarray:
    s = np.asarray(state, dtype=np.float64)
    return np.array(
        [s[2] / WORLD_SIZE, s[3] / WORLD_SIZE, math.sin(s[4]), math.cos(s[4])], dtype=np.float64
    )


def _canonical(state: np.ndarray) -> np.ndarray:
    """float32 state with the angle wrapped: the one representation the env ever holds."""
    s = np.asarray(state, dtype=np.float64).copy()
    if abs(s[4]) > _PI32:  # keep in-range float32 angles bit-exact (idempotent)
        s[4] = _wrap(s[4])
    s[5:] = np.clip(s[5:], _STATE_LOW[5:], _STATE_HIGH[5:])
    return s.astype(np.float32)


def _build_space(
    state: np.ndarray,
) -> tuple[pymunk.Space, pymunk.Body, pymunk.Body, pymunk.Body]:
    """A fresh space at ``state``: no cached impulses, so the step is a pure function.

    Returns ``(space, pusher, block, handle)``; ``handle`` is the kinematic reference
    point that drags the pusher through a force-limited pivot joint.
    """
    s = [float(v) for v in state]
    space = pymunk.Space()
    space.iterations = 20
    # Thick walls whose inner faces are the arena border.
    r = 200.0
    lo, hi = WALL - r, WORLD_SIZE - WALL + r
    for a, b in (
        ((lo, lo), (hi, lo)),
        ((hi, lo), (hi, hi)),
        ((hi, hi), (lo, hi)),
        ((lo, hi), (lo, lo)),
    ):
        wall = pymunk.Segment(space.static_body, a, b, r)
        wall.friction = FRICTION
        space.add(wall)

    block = pymunk.Body(BLOCK_MASS, BLOCK_MOMENT)
    block.position = (s[2], s[3])
    block.angle = s[4]
    block.velocity = (s[7], s[8])
    block.angular_velocity = s[9]
    shapes = [pymunk.Poly(block, [tuple(v) for v in box]) for box in BLOCK_BOXES_LOCAL]
    for shape in shapes:
        shape.friction = FRICTION
    slide = pymunk.PivotJoint(space.static_body, block, (0.0, 0.0), (0.0, 0.0))
    slide.max_bias = 0.0
    slide.max_force = FLOOR_FORCE
    spin = pymunk.GearJoint(space.static_body, block, 0.0, 1.0)
    spin.max_bias = 0.0
    spin.max_force = FLOOR_TORQUE

    pusher = pymunk.Body(PUSHER_MASS, float("inf"))  # never rotates
    pusher.position = (s[0], s[1])
    pusher.velocity = (s[5], s[6])
    disc = pymunk.Circle(pusher, PUSHER_RADIUS)
    disc.friction = FRICTION
    handle = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
    handle.position = (s[0], s[1])
    handle.velocity = (s[5], s[6])
    drive = pymunk.PivotJoint(handle, pusher, (0.0, 0.0), (0.0, 0.0))
    drive.max_force = DRIVE_FORCE
    space.add(block, *shapes, slide, spin, pusher, disc, handle, drive)
    return space, pusher, block, handle


def simulate_step(state: np.ndarray, action: np.ndarray) -> np.ndarray:
    """One env step of physics: ``(state, action) -> next state`` (float32, deterministic).

    ``action`` is clipped to [-1, 1]. A reference point starts at the pusher's
    position and velocity and follows a critically damped PD law towards
    ``clip(pusher + action * MAX_STEP)`` for ``N_SUBSTEPS`` substeps of ``DT``; the
    pusher tracks it through a pivot joint capped at ``DRIVE_FORCE``.
    """
    a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
    space, pusher, block, handle = _build_space(state)
    tx = min(max(float(state[0]) + a[0] * MAX_STEP, PUSHER_LOW), PUSHER_HIGH)
    ty = min(max(float(state[1]) + a[1] * MAX_STEP, PUSHER_LOW), PUSHER_HIGH)
    rx, ry, vx, vy = (float(state[i]) for i in (0, 1, 5, 6))
    for _ in range(N_SUBSTEPS):
        # semi-implicit Euler on the reference, then the kinematic handle follows it
        vx += (KP * (tx - rx) - KV * vx) * DT
        vy += (KP * (ty - ry) - KV * vy) * DT
        handle.velocity = (vx, vy)
        space.step(DT)
        rx, ry = handle.position
    px, py = pusher.position
    pvx, pvy = pusher.velocity
    bx, by = block.position
    bvx, bvy = block.velocity
    # Safety net only: walls bound both bodies in practice.
    px = min(max(px, WALL), WORLD_SIZE - WALL)
    py = min(max(py, WALL), WORLD_SIZE - WALL)
    bx = min(max(bx, 0.0), WORLD_SIZE)
    by = min(max(by, 0.0), WORLD_SIZE)
    return _canonical(
        np.array([px, py, bx, by, block.angle, pvx, pvy, bvx, bvy, block.angular_velocity])
    )


# ---------------------------------------------------------------- environment
class PushTEnv(StateVectorEnv):
    """Push a T-shaped block to a goal pose with a circular pusher.

    Args:
        render_mode: ``"rgb_array"`` (or ``None``; ``render()`` returns the frame
            either way, because the pixel observation needs it anyway).
        obs_mode: ``"pixels"`` -> ``Dict(pixels, goal)`` uint8 images;
            ``"state"`` -> GoalEnv ``Dict(observation, achieved_goal, desired_goal)``.
        image_size: side of the square images (64 for CPU work, 224 as in the paper).
        terminate_on_success: end the episode on success (the task's contract). Data
            collection turns it off: a world model wants long trajectories.

    Action: ``Box(-1, 1, (2,))``, a relative pusher move of up to ``MAX_STEP`` px per
    axis. Reward: ``-(position error / 512 + angle error / pi)``; ``terminated`` on
    success (block within 20 px and pi/9 rad of the goal pose).

    ``reset(options={"state": s, "goal_state": g})`` sets either exactly (10-dim
    states as in ``info["state"]``); missing ones are sampled.
    """

    state_dim: ClassVar[int] = STATE_DIM

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["rgb_array"],
        "render_fps": int(round(1 / (N_SUBSTEPS * DT))),
    }

    def __init__(
        self,
        render_mode: str | None = "rgb_array",
        obs_mode: str = "pixels",
        image_size: int = 64,
        terminate_on_success: bool = True,
    ) -> None:
        self._init_args(render_mode, obs_mode, image_size, terminate_on_success)

        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        if obs_mode == "pixels":
            self.observation_space = self._pixels_space()
        else:
            goal = spaces.Box(
                low=np.array([0, 0, -1, -1], dtype=np.float32),
                high=np.array([1, 1, 1, 1], dtype=np.float32),
                dtype=np.float32,
            )
            self.observation_space = spaces.Dict(
                {
                    "observation": spaces.Box(_STATE_LOW, _STATE_HIGH, dtype=np.float32),
                    "achieved_goal": goal,
                    "desired_goal": goal,
                }
            )

        # Supersample: draw at an integer multiple (>= 256 px) of the image size and
        # area-average down. Drawing straight at 64 px is 4x cheaper (0.06 vs 0.23
        # ms) but aliased: the block would only move in 8 px jumps, coarser than the
        # 20 px success radius needs; the anti-aliased edges keep sub-pixel motion
        # visible. Drawing at 512 then scaling costs 0.42 ms at 64 px for no gain.
        self._ss = max(1, math.ceil(256 / self.image_size))
        self._canvas = pygame.Surface((self.image_size * self._ss,) * 2)
        self._init_states()

    # ------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode; ``options`` may hold ``"state"`` and/or ``"goal_state"``."""
        super().reset(seed=seed)
        self._state, self._goal = self._start_and_goal(
            options, lambda s, g: bool(self._success(s, g))
        )
        self._frame = None
        self._goal_frame = None
        return self._obs(), self._info()

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Move the pusher by ``action * MAX_STEP`` px (relative) and simulate 0.1 s."""
        a = check_action(action, 2)
        self._state = simulate_step(self._state, a)
        self._frame = None
        return self._step_result()

    def compute_reward(
        self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any = None
    ) -> np.ndarray | float:
        """Dense reward ``-(pos_err / 512 + angle_err / pi)``, vectorised over leading dims."""
        pos, ang = goal_errors(achieved_goal, desired_goal)
        r = -(pos / WORLD_SIZE + ang / math.pi)
        return r if np.ndim(r) else float(r)

    def close(self) -> None:
        self._frame = None
        self._goal_frame = None

    # ------------------------------------------------------------ internals
    def _validated(self, value: Any, name: str) -> np.ndarray:
        s = state_vector(
            value,
            name,
            STATE_DIM,
            "[pusher_x, pusher_y, block_x, block_y, block_angle, pusher_vx, pusher_vy, "
            "block_vx, block_vy, block_angvel]",
        )
        if not np.all((s[0:2] >= WALL) & (s[0:2] <= WORLD_SIZE - WALL)):
            raise ValueError(
                f"{name}: pusher position {s[:2]} outside the arena [{WALL}, {WORLD_SIZE - WALL}]"
            )
        if not (0.0 <= s[2] <= WORLD_SIZE and 0.0 <= s[3] <= WORLD_SIZE):
            raise ValueError(f"{name}: block position {s[2:4]} outside [0, {WORLD_SIZE}]")
        if np.any(np.abs(s[5:]) > _STATE_HIGH[5:]):
            raise ValueError(f"{name}: velocities {s[5:]} exceed the bounds {_STATE_HIGH[5:]}")
        return _canonical(s)

    def _sample_state(self) -> np.ndarray:
        """Random block pose well inside the arena, pusher anywhere not touching it, at rest."""
        rng = self.np_random
        bx, by = rng.uniform(128.0, 384.0, size=2)
        angle = rng.uniform(-math.pi, math.pi)
        pose = np.array([bx, by, angle])
        while True:
            p = rng.uniform(PUSHER_LOW + 20.0, PUSHER_HIGH - 20.0, size=2)
            if distance_to_block(p, pose) > PUSHER_RADIUS + 10.0:
                break
        return _canonical(np.array([p[0], p[1], bx, by, angle, 0, 0, 0, 0, 0]))

    @staticmethod
    def _success(state: np.ndarray, goal: np.ndarray) -> bool:
        pos, ang = goal_errors(_goal_vector(state), _goal_vector(goal))
        return bool(pos < SUCCESS_POS_PX and ang < SUCCESS_ANGLE)

    _achieved = staticmethod(_goal_vector)

    def _info(self) -> dict[str, Any]:
        pos, ang = goal_errors(_goal_vector(self._state), _goal_vector(self._goal))
        info = self._state_info(bool(pos < SUCCESS_POS_PX and ang < SUCCESS_ANGLE))
        info["pos_error"] = float(pos)
        info["angle_error"] = float(ang)
        return info

    def _obs(self) -> dict[str, np.ndarray]:
        if self.obs_mode == "pixels":
            return self._pixels_obs()
        return {
            "observation": self._state.copy(),
            "achieved_goal": _goal_vector(self._state).astype(np.float32),
            "desired_goal": _goal_vector(self._goal).astype(np.float32),
        }

    def _draw(self, state: np.ndarray) -> np.ndarray:
        """Rasterise a canonical state: walls, grey T, blue pusher (no goal marker)."""
        surf = self._canvas
        n = surf.get_width()
        k = n / WORLD_SIZE
        w = round(WALL * k)
        surf.fill(_WALL_RGB)
        surf.fill(_BG, pygame.Rect(w, w, n - 2 * w, n - 2 * w))
        s = [float(v) for v in state]
        for poly in block_polygons(s[2], s[3], s[4]):
            pygame.draw.polygon(surf, _BLOCK_RGB, [tuple(v) for v in poly * k])
        pygame.draw.circle(surf, PUSHER_RGB, (s[0] * k, s[1] * k), PUSHER_RADIUS * k)
        if self._ss > 1:
            surf = pygame.transform.smoothscale(surf, (self.image_size, self.image_size))
        buf = pygame.image.tobytes(surf, "RGB")
        return (
            np.frombuffer(buf, dtype=np.uint8).reshape(self.image_size, self.image_size, 3).copy()
        )
