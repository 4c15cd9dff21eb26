"""The data policy of ``lewm/PushT-v0`` (stable-baselines3 ``predict`` signature).

A world model only learns the physics it sees, so this policy is built for coverage,
not for return: the pusher keeps making contact with the block from many sides
(translations and rotations), with a state machine (walk to a contact without
touching the block, push, back off) and a path planner over the free space. It acts
on the env's *state*-mode observation (a GoalEnv dict), single or batched with a
leading batch dim, and keeps per-env internal state arrays sized to the batch;
``episode_start`` resets the matching entries.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from envs.common import BatchedPolicy, batch_info, episode_starts, state_rows
from envs.push_t import (
    BLOCK_BOXES_LOCAL,
    BLOCK_MASS,
    BLOCK_MOMENT,
    MAX_STEP,
    PUSHER_HIGH,
    PUSHER_LOW,
    PUSHER_RADIUS,
    WALL,
    WORLD_SIZE,
    block_polygons,
    distance_to_block,
)

__all__ = ["PushTPusher"]


def _t_edges() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pushable edges of the T: (start, end, outward normal) in the block frame.

    The parts of the bar's underside and of the stem's sides that a pusher of radius
    15 cannot reach without touching the other part are cut off, so every contact's
    outward normal ray is free of the block: approaching along it never collides.
    """
    bar, stem = BLOCK_BOXES_LOCAL
    x0, y0 = bar.min(axis=0)
    x1, y_mid = bar.max(axis=0)
    sx1, y1 = stem.max(axis=0)
    clear = PUSHER_RADIUS + 8.0
    e = []
    for a, b, n in (
        ((x0, y0), (x1, y0), (0, -1)),  # top of the bar
        ((x1, y0), (x1, y_mid), (1, 0)),  # right end of the bar
        ((sx1 + clear, y_mid), (x1, y_mid), (0, 1)),  # underside, right
        ((sx1, y_mid + clear), (sx1, y1), (1, 0)),  # stem, right side
        ((sx1, y1), (-sx1, y1), (0, 1)),  # stem bottom
        ((-sx1, y_mid + clear), (-sx1, y1), (-1, 0)),  # stem, left side
        ((x0, y_mid), (-sx1 - clear, y_mid), (0, 1)),  # underside, left
        ((x0, y0), (x0, y_mid), (-1, 0)),  # left end of the bar
    ):
        e.append((np.array(a, float), np.array(b, float), np.array(n, float)))
    return e


_EDGES = _t_edges()
_EDGE_LEN = np.array([np.linalg.norm(b - a) for a, b, _ in _EDGES])
_GYRATION = math.sqrt(BLOCK_MOMENT / BLOCK_MASS)  # radius of gyration (px), for torque scores

_NEW, _NAVIGATE, _PUSH, _RETREAT = 0, 1, 2, 3
_APPROACH_LIMIT = 40
"""Steps allowed to reach a contact before giving up on it."""
_CLEARANCE = PUSHER_RADIUS + 3.0
"""Pusher-centre distance to the block (px) that counts as not touching it."""
_PUSH_STEPS = (3, 10)
"""Range of a push's length (env steps); at full speed a push moves the block up to
~250 px, so longer pushes mostly just pin it against a wall."""
_CENTRE_RADIUS = 120.0
"""Beyond this distance (px) of the block from the arena centre, contacts that push it
back inwards are favoured."""

# Planning grid for the pusher's centre: 8 px cells over the arena.
_CELL = 8.0
_GRID = int(WORLD_SIZE / _CELL)
_CENTRES = (np.arange(_GRID) + 0.5) * _CELL
_GRID_XY = np.stack(
    np.meshgrid(_CENTRES, _CENTRES, indexing="xy"), axis=-1
)  # (G, G, 2), [row=y, col=x]
_IN_ARENA = np.all((_GRID_XY >= PUSHER_LOW) & (_GRID_XY <= PUSHER_HIGH), axis=-1)
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _rot(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _cell(point: np.ndarray) -> tuple[int, int]:
    col, row = np.clip((np.asarray(point) // _CELL).astype(int), 0, _GRID - 1)
    return int(row), int(col)


def _bfs(free: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """8-connected BFS step counts from ``start`` over ``free`` cells (-1: unreachable).

    Frontier dilation with numpy: one array pass per BFS layer, a millisecond or
    two per plan, and plans happen once per contact.
    """
    dist = np.full(free.shape, -1, dtype=np.int32)
    frontier = np.zeros_like(free)
    frontier[start] = True
    dist[start] = 0
    reached = frontier.copy()
    k = 0
    while frontier.any():
        k += 1
        grown = np.zeros_like(frontier)
        for dy, dx in _NEIGHBOURS:
            grown[max(dy, 0) : _GRID + min(dy, 0), max(dx, 0) : _GRID + min(dx, 0)] |= frontier[
                max(-dy, 0) : _GRID + min(-dy, 0), max(-dx, 0) : _GRID + min(-dx, 0)
            ]
        frontier = grown & free & ~reached
        dist[frontier] = k
        reached |= frontier
    return dist


def _clear(a: np.ndarray, b: np.ndarray, pose: np.ndarray) -> bool:
    """Whether the pusher can slide straight from ``a`` to ``b`` without touching the block."""
    ts = np.linspace(0.0, 1.0, max(2, int(np.linalg.norm(b - a) / 4.0) + 1))
    path = a + ts[:, None] * (b - a)
    return bool(
        np.all(distance_to_block(path, np.broadcast_to(pose, (len(ts), 3))) > _CLEARANCE - 1.0)
    )


class _Plan:
    """Free space around one block pose and BFS distances from the pusher."""

    def __init__(self, pusher: np.ndarray, pose: np.ndarray) -> None:
        self.pose = pose.copy()
        d = distance_to_block(_GRID_XY, np.broadcast_to(pose, (_GRID, _GRID, 3)))
        self.free = _IN_ARENA & (d > _CLEARANCE)
        start = _cell(pusher)
        if not self.free[start]:  # touching the block: start from the closest free cell
            r, c = start
            best = None
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    rr, cc = r + dy, c + dx
                    if 0 <= rr < _GRID and 0 <= cc < _GRID and self.free[rr, cc]:
                        if best is None or dy * dy + dx * dx < best[0]:
                            best = (dy * dy + dx * dx, (rr, cc))
            start = best[1] if best is not None else start
        self.dist = _bfs(self.free, start) if self.free[start] else np.full(self.free.shape, -1)

    def entry(self, point: np.ndarray) -> tuple[int, int] | None:
        """The reachable cell next to ``point`` closest to the pusher (None if none)."""
        r, c = _cell(point)
        best = None
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                rr, cc = r + dy, c + dx
                if 0 <= rr < _GRID and 0 <= cc < _GRID and self.dist[rr, cc] >= 0:
                    if best is None or self.dist[rr, cc] < self.dist[best]:
                        best = (rr, cc)
        return best

    def path(self, cell: tuple[int, int]) -> list[np.ndarray]:
        """Cell centres from the pusher's cell to ``cell`` (BFS backtracking)."""
        out = [cell]
        while self.dist[cell] > 0:
            r, c = cell
            for dy, dx in _NEIGHBOURS:
                rr, cc = r + dy, c + dx
                if 0 <= rr < _GRID and 0 <= cc < _GRID and self.dist[rr, cc] == self.dist[cell] - 1:
                    cell = (rr, cc)
                    break
            out.append(cell)
        return [_GRID_XY[rc] for rc in reversed(out)]


class PushTPusher(BatchedPolicy):
    """Noisy scripted pusher for ``lewm/PushT-v0``: approach a contact, push, repeat.

    Per env, a small state machine: pick a contact point on the T's outline (with
    probability ``goal_bias`` the best of 16 random candidates for moving the block
    towards its goal pose, otherwise a random one; both prefer contacts that are
    near and reachable, that do not push the block into a wall it touches, and, once
    the block strays from the centre, that push it back in: without that the random
    pushes leave the block against a wall most of the time), walk around
    the block to just outside that contact along a path planned on an 8 px grid of
    the free space (so the pusher never bumps the block on the way and also threads
    the gaps between the block and the walls), push into it along the inward normal
    for 3-10 steps at a random speed and direction jitter, back off, and start
    again. Pushes are mostly off-centre, so the data holds translations and
    rotations. Gaussian action noise (``noise``) is added on top.

    Args:
        noise: std of the Gaussian noise added to every action (action units).
        seed: seed of the policy's own random generator.
        goal_bias: probability of choosing the goal-directed contact.
        speed: scale of every commanded move, in (0, 1]: walks go at ``speed`` and
            pushes at a random ``[0.4, 1] * speed`` (action units; 1 = 30 px/step).
            The default 0.5 is an expert's pace: at full speed the block moves a median
            106 px / 51 deg in 25 steps (the evaluation protocol's goal distance), at
            0.5 a median 51 px / 30 deg, and 5.5% of 25-step goals are already met at
            the start (measured over 12 episodes x 300 steps).
    """

    retreat_gap: float = 5.0
    """Backing off after a push ends this far (px) beyond touching distance..."""
    retreat_steps: int = 4
    """...or after this many steps."""

    def __init__(
        self,
        noise: float = 0.1,
        seed: int | None = None,
        goal_bias: float = 0.5,
        speed: float = 0.5,
    ) -> None:
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        if not 0.0 < speed <= 1.0:
            raise ValueError(f"speed must be in (0, 1], got {speed}")
        self.speed = float(speed)
        if not 0.0 <= goal_bias <= 1.0:
            raise ValueError(f"goal_bias must be in [0, 1], got {goal_bias}")
        self.noise = float(noise)
        self.goal_bias = float(goal_bias)
        self.rng = np.random.default_rng(seed)
        self._n = 0
        self._alloc(0)

    def _alloc(self, n: int) -> None:
        self._n = n
        self._phase = np.full(n, _NEW, dtype=np.int64)
        self._contact = np.zeros((n, 2))  # block frame
        self._normal = np.zeros((n, 2))  # block frame, outward
        self._jitter = np.zeros(n)  # push direction offset (rad)
        self._speed = np.ones(n)
        self._timer = np.zeros(n, dtype=np.int64)
        self._stalls = np.zeros(n, dtype=np.int64)  # push steps without block motion
        self._last_pose = np.zeros((n, 3))
        self._paths: list[list[np.ndarray]] = [[] for _ in range(n)]
        self._path_pose = np.zeros((n, 3))

    def reset(self, indices: np.ndarray | None = None) -> None:
        """Forget the plan of the given envs (all if ``None``)."""
        self._phase[slice(None) if indices is None else indices] = _NEW

    def _actions(
        self, observation: Any, episode_start: np.ndarray | None, deterministic: bool
    ) -> tuple[np.ndarray, bool]:
        """Actions for a state-mode observation; ``deterministic`` drops the Gaussian noise."""
        n, batched = batch_info(observation)
        obs = state_rows(observation, "observation", 10, n)
        has_goal = isinstance(observation, dict) and "desired_goal" in observation
        goal = state_rows(observation, "desired_goal", 4, n) if has_goal else None
        if n != self._n:
            self._alloc(n)
        self._phase[episode_starts(episode_start, n)] = _NEW
        actions = np.zeros((n, 2))
        for i in range(n):
            actions[i] = self._act(i, obs[i], None if goal is None else goal[i])
        if not deterministic and self.noise > 0:
            actions += self.rng.normal(0.0, self.noise, size=actions.shape)
        return actions, batched

    # ---------------------------------------------------------- one env
    def _act(self, i: int, s: np.ndarray, goal: np.ndarray | None) -> np.ndarray:
        pusher, pose = s[:2], s[2:5]
        rot = _rot(pose[2])
        for _ in range(4):  # a phase may end at once; at most a few transitions per step
            phase = self._phase[i]
            if phase == _NEW:
                if not self._choose_contact(i, pusher, pose, goal):
                    return self.rng.uniform(-0.5, 0.5, size=2)  # boxed in: wiggle
                self._phase[i], self._timer[i] = _NAVIGATE, 0
                continue
            normal = rot @ self._normal[i]
            contact = pose[:2] + rot @ self._contact[i]
            if phase == _RETREAT:
                gap, steps = self.retreat_gap, self.retreat_steps
                if distance_to_block(pusher, pose) > _CLEARANCE + gap or self._timer[i] >= steps:
                    self._phase[i] = _NEW
                    continue
                self._timer[i] += 1
                return normal * self.speed
            if phase == _PUSH:
                self._timer[i] -= 1
                lost = distance_to_block(pusher, pose) > PUSHER_RADIUS + 20.0
                moved = np.abs(pose - self._last_pose[i]).max() > 0.5
                self._stalls[i] = 0 if moved else self._stalls[i] + 1
                self._last_pose[i] = pose
                if self._timer[i] < 0 or lost or self._stalls[i] >= 3:
                    self._phase[i], self._timer[i] = _RETREAT, 0
                    continue
                return -(_rot(self._jitter[i]) @ normal) * self._speed[i]
            # _NAVIGATE
            self._timer[i] += 1
            pre = contact + normal * (_CLEARANCE + 1.0)
            if np.linalg.norm(pre - pusher) < 5.0:
                self._phase[i] = _PUSH
                self._stalls[i] = -1  # the first push step only closes the gap
                self._last_pose[i] = pose
                self._begin_push(i)
                continue
            if self._timer[i] > _APPROACH_LIMIT:
                self._phase[i] = _NEW
                continue
            target = self._waypoint(i, pusher, pose, pre)
            if target is None:  # the contact became unreachable
                self._phase[i] = _NEW
                continue
            return _toward(pusher, target, self.speed)
        return np.zeros(2)

    def _begin_push(self, i: int) -> None:
        """Length (steps), speed and direction jitter of the push that starts now."""
        self._timer[i] = self.rng.integers(_PUSH_STEPS[0], _PUSH_STEPS[1] + 1)
        self._speed[i] = self.rng.uniform(0.4, 1.0) * self.speed
        self._jitter[i] = self.rng.uniform(-0.35, 0.35)

    def _waypoint(
        self, i: int, pusher: np.ndarray, pose: np.ndarray, pre: np.ndarray
    ) -> np.ndarray | None:
        """Next point to head for on the way to ``pre``: ``pre`` itself when in plain
        sight, else the farthest visible point of the planned path (replanned when the
        block has moved since)."""
        if _clear(pusher, pre, pose):
            return pre
        moved = np.abs(pose - self._path_pose[i]).max() > 1.0
        if moved or not self._paths[i]:
            plan = _Plan(pusher, pose)
            cell = plan.entry(pre)
            if cell is None:
                return None
            self._paths[i] = plan.path(cell) + [pre]
            self._path_pose[i] = pose
        path = self._paths[i]
        gaps = np.linalg.norm(np.asarray(path) - pusher, axis=1)
        k = int(np.argmin(gaps))  # progress along the path: drop what lies behind
        del path[: min(k + 1 if gaps[k] < 6.0 else k, len(path) - 1)]
        for j in range(min(len(path), 12) - 1, -1, -1):
            if _clear(pusher, path[j], pose):
                return path[j]
        return path[0]

    def _choose_contact(
        self, i: int, pusher: np.ndarray, pose: np.ndarray, goal: np.ndarray | None
    ) -> bool:
        """Pick a reachable contact: best for the goal (prob. ``goal_bias``) or random.

        Scores prefer short walks (more pushing per step) and penalise pushing the
        block into a wall it touches (that only stalls). False if none is reachable.
        """
        plan = _Plan(pusher, pose)
        k = 16
        edges = self.rng.choice(len(_EDGES), size=k, p=_EDGE_LEN / _EDGE_LEN.sum())
        u = self.rng.uniform(0.05, 0.95, size=k)
        rot = _rot(pose[2])
        corners = np.concatenate(block_polygons(*pose))
        touching = np.array(
            [
                corners[:, 0].min() < WALL + 12.0,
                corners[:, 0].max() > WORLD_SIZE - WALL - 12.0,
                corners[:, 1].min() < WALL + 12.0,
                corners[:, 1].max() > WORLD_SIZE - WALL - 12.0,
            ]
        )
        # Random pushes drift the block to the walls (a random walk with reflecting
        # walls): past _CENTRE_RADIUS from the centre, favour pushes back inwards.
        off = np.array([WORLD_SIZE / 2, WORLD_SIZE / 2]) - pose[:2]
        off_norm = float(np.linalg.norm(off))
        to_centre = off / max(off_norm, 1e-6)
        inward = 1.5 * float(np.clip((off_norm - _CENTRE_RADIUS) / 80.0, 0.0, 1.0))
        use_goal = goal is not None and self.rng.random() < self.goal_bias
        best, best_score = None, -np.inf
        for e, t in zip(edges, u, strict=True):
            a, b, n = _EDGES[e]
            c = a + t * (b - a)
            pre = pose[:2] + rot @ (c + n * (_CLEARANCE + 1.0))
            cell = plan.entry(pre) if _in_arena(pre, 0.0) else None
            if cell is None:
                continue
            push = -(rot @ n)
            score = -plan.dist[cell] * _CELL / 200.0
            into = np.array([-push[0], push[0], -push[1], push[1]]) > 0.3
            score -= 2.0 * float(np.any(touching & into))
            score += inward * float(push @ to_centre)
            if use_goal:
                score += self._goal_score(pose, rot @ c, push, goal)
            else:
                score += self.rng.random()
            if score > best_score:
                best, best_score = (c, n, plan.path(cell)), score
        if best is None:
            return False
        self._contact[i], self._normal[i], path = best
        self._paths[i] = path + [pose[:2] + rot @ (best[0] + best[1] * (_CLEARANCE + 1.0))]
        self._path_pose[i] = pose
        return True

    @staticmethod
    def _goal_score(pose: np.ndarray, arm: np.ndarray, push: np.ndarray, goal: np.ndarray) -> float:
        """How well pushing along ``push`` at offset ``arm`` moves the block to the goal pose."""
        err = goal[:2] * WORLD_SIZE - pose[:2]
        dist = float(np.linalg.norm(err))
        dang = math.atan2(
            goal[2] * math.cos(pose[2]) - goal[3] * math.sin(pose[2]),
            goal[3] * math.cos(pose[2]) + goal[2] * math.sin(pose[2]),
        )
        trans = float(push @ err) / max(dist, 1e-6) * min(1.0, dist / 40.0)
        torque = (arm[0] * push[1] - arm[1] * push[0]) / _GYRATION
        return trans + math.copysign(1.0, dang) * torque * min(1.0, abs(dang) / 0.5)


def _in_arena(point: np.ndarray, margin: float) -> bool:
    """Whether the pusher could stand at ``point`` with ``margin`` px to spare."""
    return bool(np.all((point > PUSHER_LOW + margin) & (point < PUSHER_HIGH - margin)))


def _toward(pusher: np.ndarray, target: np.ndarray, speed: float) -> np.ndarray:
    """Action moving the pusher towards ``target``, per-axis bounded by ``speed``."""
    a = (target - pusher) / MAX_STEP
    m = float(np.abs(a).max())
    return a * (speed / m) if m > speed else a
