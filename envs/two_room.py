"""Two-Room: a 2-D point agent in two rooms joined by a door (LeWM's simplest task).

Geometry (world units, the arena is the unit square, ``y`` points up):

- a vertical wall at ``x = 0.5`` of thickness :data:`WALL_THICKNESS`, with one
  door: a gap of height :data:`DOOR_HEIGHT` centred at ``y = 0.5``;
- the agent is a disk of radius :data:`AGENT_RADIUS`; an action in ``[-1, 1]^2``
  moves it by ``STEP_SIZE * action``;
- success: the agent's centre is closer than :data:`SUCCESS_RADIUS` to the goal
  (the paper's 16 px at 224 px).

Collisions are solved in *configuration space* (the set of legal agent
centres), so the agent is a point there and the obstacles are axis-aligned
boxes: the wall band grown by the agent radius, minus the door corridor shrunk
by it (the agent's bounding square must fit through the door, a slightly
conservative choice at the two door corners that keeps every test exact).
A move is a segment; the first box face it hits stops the normal component and
the agent slides along the face with the rest of the move (so there is no
tunnelling for any step size, and a heuristic that aims at the door slides into
it). Every edge is a float32-representable number and positions are kept
float32-exact, so ``info["state"]`` restores the exact same position and frame.

The current frame never shows the goal: a goal image is simply the frame of
the agent standing at the goal.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from envs.common import GoalImageEnv, split_reset_options

# ---- geometry (world units) ---------------------------------------------------------
WALL_X = 0.5
WALL_THICKNESS = 0.04
DOOR_CENTER_Y = 0.5
DOOR_HEIGHT = 0.2
AGENT_RADIUS = 0.04
STEP_SIZE = 0.04
SUCCESS_RADIUS = 0.07


def _f32(v: float) -> float:
    """Round to the nearest float32 (as a Python float) so edges are exactly representable."""
    return float(np.float32(v))


# Configuration-space bounds for the agent's centre (float32-exact).
_ARENA_LO = _f32(AGENT_RADIUS)
_ARENA_HI = _f32(1.0 - AGENT_RADIUS)
_BAND_LO = _f32(WALL_X - WALL_THICKNESS / 2 - AGENT_RADIUS)  # left room: x <= _BAND_LO
_BAND_HI = _f32(WALL_X + WALL_THICKNESS / 2 + AGENT_RADIUS)  # right room: x >= _BAND_HI
_DOOR_LO = _f32(DOOR_CENTER_Y - DOOR_HEIGHT / 2 + AGENT_RADIUS)  # corridor: _DOOR_LO <= y
_DOOR_HI = _f32(DOOR_CENTER_Y + DOOR_HEIGHT / 2 - AGENT_RADIUS)  # ... and y <= _DOOR_HI
# Obstacles as OPEN boxes (xmin, xmax, ymin, ymax): their boundary is legal.
_OBSTACLES: tuple[tuple[float, float, float, float], ...] = (
    (_BAND_LO, _BAND_HI, -1.0, _DOOR_LO),  # lower wall segment
    (_BAND_LO, _BAND_HI, _DOOR_HI, 2.0),  # upper wall segment
)

# ---- colours (RGB uint8) --------------------------------------------------------------
BACKGROUND_COLOR = (235, 235, 225)
WALL_COLOR = (45, 45, 60)
AGENT_COLOR = (220, 50, 40)


def is_legal_position(x: float, y: float) -> bool:
    """Whether an agent centre at ``(x, y)`` is inside the arena and clear of the wall."""
    if not (_ARENA_LO <= x <= _ARENA_HI and _ARENA_LO <= y <= _ARENA_HI):
        return False
    return not any(x0 < x < x1 and y0 < y < y1 for x0, x1, y0, y1 in _OBSTACLES)


def _first_hit(x: float, y: float, dx: float, dy: float) -> tuple[float, int, float] | None:
    """Earliest entry of the segment ``(x, y) + t (dx, dy)``, ``t in [0, 1]``, into an obstacle.

    Slab (Liang-Barsky) test against each open box. Returns ``(t, axis, face)``
    with ``axis`` 0 for a vertical face (x = face) or 1 for a horizontal one, or
    ``None`` when the whole segment stays in free space.
    """
    best: tuple[float, int, float] | None = None
    for x0, x1, y0, y1 in _OBSTACLES:
        t_in, t_out = -np.inf, np.inf
        axis, face = -1, 0.0
        for a, (p, d, lo, hi) in enumerate(((x, dx, x0, x1), (y, dy, y0, y1))):
            if d == 0.0:
                if not (lo < p < hi):  # parallel to the slab and outside it: no hit
                    t_in, t_out = np.inf, -np.inf
                    break
                continue
            ta, tb = (lo - p) / d, (hi - p) / d
            f = lo if d > 0 else hi  # the face that is entered
            if ta > tb:
                ta, tb = tb, ta
            if ta > t_in:
                t_in, axis, face = ta, a, f
            t_out = min(t_out, tb)
        if t_in < t_out and 0.0 <= t_in <= 1.0 and t_out > 0.0:
            if best is None or t_in < best[0]:
                best = (t_in, axis, face)
    return best


def move(x: float, y: float, dx: float, dy: float) -> tuple[float, float]:
    """Move a legal position by ``(dx, dy)`` with wall sliding; returns a legal float32-exact position."""
    x_start, y_start = x, y
    # The arena is convex: clamping the target keeps the whole segment inside it.
    tx = min(max(x + dx, _ARENA_LO), _ARENA_HI)
    ty = min(max(y + dy, _ARENA_LO), _ARENA_HI)
    dx, dy = tx - x, ty - y
    for _ in range(3):  # at most two face contacts (a wall face, then a corridor edge)
        hit = _first_hit(x, y, dx, dy)
        if hit is None:
            x, y = x + dx, y + dy
            break
        t, axis, face = hit
        if axis == 0:  # vertical face: stop on it, slide vertically with the rest
            x, y = face, y + t * dy
            dx, dy = 0.0, (1.0 - t) * dy
        else:  # horizontal face: stop on it, slide horizontally
            x, y = x + t * dx, face
            dx, dy = (1.0 - t) * dx, 0.0
    # Rounding to float32 is monotone and every edge is float32-exact, so a legal
    # position stays legal; the clamp only guards the arena against tiny float error.
    x = min(max(_f32(x), _ARENA_LO), _ARENA_HI)
    y = min(max(_f32(y), _ARENA_LO), _ARENA_HI)
    if not is_legal_position(x, y):  # unreachable in exact arithmetic; never end in the wall
        return x_start, y_start
    return x, y


class _Renderer:
    """Pure-numpy renderer for one image size: cached background + an anti-aliased disk."""

    _cache: ClassVar[dict[int, _Renderer]] = {}

    @classmethod
    def get(cls, size: int) -> _Renderer:
        if size not in cls._cache:
            cls._cache[size] = cls(size)
        return cls._cache[size]

    def __init__(self, size: int) -> None:
        self.size = size
        edges = np.arange(size + 1, dtype=np.float64) / size  # pixel edges, world units

        def coverage(lo: float, hi: float) -> np.ndarray:
            """Fraction of each pixel interval inside [lo, hi] (exact box-filter AA)."""
            return np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None) * size

        cov_x = coverage(WALL_X - WALL_THICKNESS / 2, WALL_X + WALL_THICKNESS / 2)  # (W,)
        door_lo, door_hi = DOOR_CENTER_Y - DOOR_HEIGHT / 2, DOOR_CENTER_Y + DOOR_HEIGHT / 2
        cov_y = coverage(0.0, door_lo) + coverage(door_hi, 1.0)  # (H,) in world y (up)
        cov_rows = cov_y[::-1]  # image row 0 is the top (y = 1)
        alpha = (cov_rows[:, None] * cov_x[None, :])[..., None]  # (H, W, 1)
        bg = np.array(BACKGROUND_COLOR, np.float64)
        wall = np.array(WALL_COLOR, np.float64)
        self.background = np.rint(bg * (1 - alpha) + wall * alpha).astype(np.uint8)  # (H, W, 3)
        self.background.setflags(write=False)
        self.radius_px = AGENT_RADIUS * size
        self.agent_color = np.array(AGENT_COLOR, np.float32)

    def draw(self, x: float, y: float) -> np.ndarray:
        """Frame with the agent centred at world ``(x, y)``: uint8 (H, W, 3), a new array."""
        s, r = self.size, self.radius_px
        # Render from the float32 value so a state read back from info renders identically.
        cx = float(np.float32(x)) * s  # column coordinate, pixels
        cy = (1.0 - float(np.float32(y))) * s  # row coordinate, pixels (row 0 = top)
        frame = self.background.copy()  # (H, W, 3)
        r0, r1 = max(int(np.floor(cy - r - 1)), 0), min(int(np.ceil(cy + r + 1)), s)
        c0, c1 = max(int(np.floor(cx - r - 1)), 0), min(int(np.ceil(cx + r + 1)), s)
        if r0 >= r1 or c0 >= c1:
            return frame
        rows = np.arange(r0, r1, dtype=np.float32) + 0.5 - cy  # (h,)
        cols = np.arange(c0, c1, dtype=np.float32) + 0.5 - cx  # (w,)
        dist = np.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2)  # (h, w)
        alpha = np.clip(r + 0.5 - dist, 0.0, 1.0)[..., None]  # (h, w, 1) ~ pixel coverage
        patch = frame[r0:r1, c0:c1].astype(np.float32)  # (h, w, 3)
        blended = patch + alpha * (self.agent_color - patch)
        frame[r0:r1, c0:c1] = np.rint(blended).astype(np.uint8)
        return frame


class TwoRoomEnv(GoalImageEnv):
    """Point agent, two rooms, one door; goal-conditioned, pixels or state observations.

    Args:
        render_mode: ``"rgb_array"`` (default) or ``None``; ``render()`` returns the
            current frame either way.
        obs_mode: ``"pixels"`` -> ``Dict(pixels, goal)`` uint8 images, or ``"state"``
            -> GoalEnv ``Dict(observation, achieved_goal, desired_goal)`` float32
            positions (for SB3 HER and the scripted heuristic).
        image_size: side of the square frames in pixels (64 for CPU work, 224 paper).
        terminate_on_success: end the episode on success (the task's contract). Data
            collection turns it off so episodes run to the time limit: a world model
            wants long continuous trajectories (training windows span 20+ steps, the
            evaluation protocol needs goals 25 steps ahead), and uniform start/goal
            pairs are otherwise often solved in under 20 steps.

    ``reset(options={"state": s, "goal_state": g})`` sets the start and/or the goal
    exactly (each a legal ``(x, y)``); whichever is missing is sampled uniformly over
    legal positions, at least :data:`SUCCESS_RADIUS` away from the other so an episode
    never starts solved unless both were given.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    state_dim: ClassVar[int] = 2

    def __init__(
        self,
        render_mode: str | None = "rgb_array",
        obs_mode: str = "pixels",
        image_size: int = 64,
        terminate_on_success: bool = True,
    ) -> None:
        self._init_args(render_mode, obs_mode, image_size, terminate_on_success)
        self._renderer = _Renderer.get(self.image_size)

        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        if obs_mode == "pixels":
            self.observation_space = self._pixels_space()
        else:
            pos = spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
            self.observation_space = spaces.Dict(
                {"observation": pos, "achieved_goal": pos, "desired_goal": pos}
            )

        self._pos = (0.5 * (_ARENA_LO + _BAND_LO), 0.5)  # placeholder until reset()
        self._goal = (0.5 * (_BAND_HI + _ARENA_HI), 0.5)

    # ---- public helpers ------------------------------------------------------------------
    def render_state(self, state: np.ndarray) -> np.ndarray:
        """Render any state ``(x, y)`` as uint8 ``(H, W, 3)`` without touching the env."""
        x, y = self._parse_state(state, "state")
        return self._renderer.draw(x, y)

    def compute_reward(
        self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any = None
    ) -> np.ndarray:
        """Dense reward ``-||achieved - desired||``, vectorised over leading dims (SB3 HER)."""
        a = np.asarray(achieved_goal, dtype=np.float32)
        d = np.asarray(desired_goal, dtype=np.float32)
        return -np.linalg.norm(a - d, axis=-1).astype(np.float32)  # (...,)

    def compute_success(self, achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """Vectorised success test: distance below :data:`SUCCESS_RADIUS`."""
        return -self.compute_reward(achieved_goal, desired_goal) < SUCCESS_RADIUS

    # ---- gymnasium API -------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        start, goal = split_reset_options(options)
        start_xy = self._parse_state(start, "options['state']") if start is not None else None
        goal_xy = self._parse_state(goal, "options['goal_state']") if goal is not None else None
        if start_xy is None:
            start_xy = self._sample_legal(away_from=goal_xy)
        if goal_xy is None:
            goal_xy = self._sample_legal(away_from=start_xy)
        self._pos, self._goal = start_xy, goal_xy
        self._frame = None
        self._goal_frame = None
        return self._obs(), self._info()

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (2,):
            raise ValueError(f"action must have shape (2,), got {np.shape(action)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite, got {action!r}")
        a = np.clip(a, -1.0, 1.0)
        self._pos = move(self._pos[0], self._pos[1], STEP_SIZE * a[0], STEP_SIZE * a[1])
        self._frame = None
        return self._step_result()

    # ---- internals -----------------------------------------------------------------------
    def _step_reward(self, info: dict[str, Any]) -> float:
        return float(-self._distance())

    def _draw_current(self) -> np.ndarray:
        return self._renderer.draw(*self._pos)

    def _draw_goal(self) -> np.ndarray:
        return self._renderer.draw(*self._goal)

    def _distance(self) -> float:
        return float(np.hypot(self._pos[0] - self._goal[0], self._pos[1] - self._goal[1]))

    def _obs(self) -> dict[str, np.ndarray]:
        if self.obs_mode == "pixels":
            return self._pixels_obs()
        pos = np.array(self._pos, dtype=np.float32)
        return {
            "observation": pos,
            "achieved_goal": pos.copy(),
            "desired_goal": np.array(self._goal, dtype=np.float32),
        }

    def _info(self) -> dict[str, Any]:
        return {
            "state": np.array(self._pos, dtype=np.float32),
            "goal_state": np.array(self._goal, dtype=np.float32),
            "is_success": bool(self._distance() < SUCCESS_RADIUS),
        }

    def _sample_legal(self, away_from: tuple[float, float] | None) -> tuple[float, float]:
        """Uniform legal position (rejection sampling, ~90% acceptance)."""
        for _ in range(10_000):
            x, y = (float(v) for v in self.np_random.uniform(_ARENA_LO, _ARENA_HI, size=2))
            x, y = _f32(x), _f32(y)
            if not is_legal_position(x, y):
                continue
            if away_from is not None and np.hypot(x - away_from[0], y - away_from[1]) < (
                SUCCESS_RADIUS
            ):
                continue
            return x, y
        raise RuntimeError("could not sample a legal position (geometry constants are broken)")

    @staticmethod
    def _parse_state(state: Any, what: str) -> tuple[float, float]:
        """Validate a user-given ``(x, y)`` and return it as float32-exact Python floats."""
        arr = np.asarray(state, dtype=np.float32)
        if arr.shape != (2,):
            raise ValueError(
                f"TwoRoomEnv: {what} must be an (x, y) array of shape (2,), got shape {arr.shape}"
            )
        x, y = float(arr[0]), float(arr[1])
        if not (np.isfinite(x) and np.isfinite(y)):
            raise ValueError(f"TwoRoomEnv: {what} must be finite, got {arr.tolist()}")
        if not is_legal_position(x, y):
            raise ValueError(
                f"TwoRoomEnv: {what}={arr.tolist()} is not a legal agent position: it must lie "
                f"in [{_ARENA_LO:.3f}, {_ARENA_HI:.3f}]^2 (arena minus agent radius) and not "
                f"inside the wall band {_BAND_LO:.3f} < x < {_BAND_HI:.3f} outside the door "
                f"corridor {_DOOR_LO:.3f} <= y <= {_DOOR_HI:.3f}"
            )
        return x, y
