"""A goal-directed Push-T expert: pushes chosen by simulating them on the true physics.

The coverage pusher (:class:`envs.push_t_pusher.PushTPusher`) moves the block around;
this expert brings it to a goal pose. It keeps the pusher's state machine (walk to a
contact without touching the block, push, back off) and replaces how the next push is
chosen: it samples candidate pushes (a contact point on the T's outline, a push
direction near the inward normal, a speed and a length), plays each one forward on a
copy of the env's own pymunk world starting from the contact, and takes the push whose
final block pose is closest to the goal, with a small charge per env step spent
walking and pushing. That is sampling MPC over push primitives (hydrax's Push-T task
samples raw action sequences; primitives need ~50x fewer rollouts because no sample
wastes its steps walking into the block). Rotation needs no special logic: an
off-centre push that turns the block toward the goal angle scores better.

Cost per choice: one BFS over the free space (~1-2 ms) and ``candidates`` rollouts of
2-9 env steps on a persistent space (~0.1 ms per env step: the env's
``simulate_step`` rebuilds the space every step, which costs 10x more), so a choice
takes ~30-50 ms and happens every ~5-15 env steps.

Two uses:
- ``targets="goal"``: drive the block to the observation's ``desired_goal`` and hold
  it there (the expert's own success is measured this way).
- ``targets="random"`` (data collection): drive the block through a chain of random
  target poses, each replaced once reached or after ``target_steps`` steps, with
  Gaussian action noise and occasional random-action segments, the way DINO-WM
  replays its expert with noise: the data then holds purposeful pushes, rotations
  included, and the protocol's goals (25 steps ahead) are moves an expert makes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pymunk._chipmunk import lib as _lib

from envs.common import batch_info, episode_starts, state_rows
from envs.push_t import (
    DT,
    KP,
    KV,
    MAX_STEP,
    N_SUBSTEPS,
    PUSHER_HIGH,
    PUSHER_LOW,
    SUCCESS_ANGLE,
    SUCCESS_POS_PX,
    WORLD_SIZE,
    _build_space,
)
from envs.push_t_pusher import (
    _CELL,
    _CLEARANCE,
    _EDGE_LEN,
    _EDGES,
    _NEW,
    _PUSH,
    PushTPusher,
    _in_arena,
    _Plan,
    _rot,
)

__all__ = ["PushTExpert", "pose_cost"]

_POS_SCALE = SUCCESS_POS_PX
_ANG_SCALE = SUCCESS_ANGLE


def _angle_diff(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray | float:
    """Wrapped ``a - b`` in [-pi, pi]."""
    return np.arctan2(np.sin(np.subtract(a, b)), np.cos(np.subtract(a, b)))


def pose_cost(pose: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Squared goal error in units of the success thresholds: < 2 is near success.

    ``pose`` ``(..., 3)`` and ``target`` ``(3,)`` are block poses (x, y, angle).
    """
    pos = np.linalg.norm(pose[..., :2] - target[:2], axis=-1) / _POS_SCALE
    ang = np.abs(_angle_diff(pose[..., 2], target[2])) / _ANG_SCALE
    return pos**2 + ang**2


class _PushSim:
    """One persistent pymunk world (the env's own, built once) to play pushes forward.

    Resetting the bodies instead of rebuilding the space keeps a rollout at ~0.1 ms
    per env step. Cached contact impulses carry over between rollouts, so results
    differ slightly from the env's exact steps: fine for ranking candidate pushes.
    """

    def __init__(self) -> None:
        zero = np.array([100.0, 100.0, 256.0, 256.0, 0, 0, 0, 0, 0, 0], dtype=np.float32)
        self.space, self.pusher, self.block, self.handle = _build_space(zero)

    def push(self, pre: np.ndarray, pose: np.ndarray, action: np.ndarray, steps: int) -> np.ndarray:
        """Final block pose ``(3,)`` after ``steps`` env steps of ``action`` from rest.

        The pusher starts at ``pre`` (just off the block), the block at ``pose``.
        """
        block, pusher, handle = self.block, self.pusher, self.handle
        block.position = (float(pose[0]), float(pose[1]))
        block.angle = float(pose[2])
        block.velocity = (0.0, 0.0)
        block.angular_velocity = 0.0
        pusher.position = handle.position = (float(pre[0]), float(pre[1]))
        pusher.velocity = handle.velocity = (0.0, 0.0)
        for body in (block, pusher):
            self.space.reindex_shapes_for_body(body)
        self.space.step(0.0)  # let pymunk run its once-per-change checks now
        # The substep loop calls Chipmunk directly: pymunk's Python wrappers around
        # step and the velocity setter are ~half the cost of a rollout.
        lib, space_ptr, handle_ptr = _lib, self.space._space, handle._body
        ax, ay = float(action[0]) * MAX_STEP, float(action[1]) * MAX_STEP
        for _ in range(steps):
            # the env's drive (envs.push_t.simulate_step): a PD reference toward the
            # clipped target, followed by the kinematic handle
            px, py = pusher.position
            vx, vy = pusher.velocity
            tx = min(max(px + ax, PUSHER_LOW), PUSHER_HIGH)
            ty = min(max(py + ay, PUSHER_LOW), PUSHER_HIGH)
            rx, ry = px, py
            handle.position = (px, py)
            for _ in range(N_SUBSTEPS):
                vx += (KP * (tx - rx) - KV * vx) * DT
                vy += (KP * (ty - ry) - KV * vy) * DT
                lib.cpBodySetVelocity(handle_ptr, (vx, vy))
                lib.cpSpaceStep(space_ptr, DT)
                rx, ry = rx + vx * DT, ry + vy * DT  # a kinematic body moves at its velocity
        return np.array([block.position[0], block.position[1], block.angle])


class PushTExpert(PushTPusher):
    """Privileged-state Push-T expert (SB3 ``predict`` signature, batched).

    Args:
        targets: ``"goal"`` (push to the observation's goal pose and hold) or
            ``"random"`` (a chain of random target poses, for data collection).
        noise: std of the Gaussian action noise when ``deterministic=False``.
        seed: seed of the expert's own random generator.
        speed: walking speed (action units; 1 = 30 px/step). Walking moves nothing,
            so it goes fast: a slow walk leaves the block still for many steps.
        push_speed: top push speed (action units); pushes sample ``[0.2, 1]`` of it.
        candidates: candidate pushes simulated per choice.
        step_cost: cost charged per env step a push needs (walk + push), in units
            of :func:`pose_cost`; trades a slightly better push for a nearer one.
        tolerance: fraction of the success thresholds at which a target counts as
            reached (below 1, so that the expert stops inside the success region,
            not on its border).
        target_steps: ``targets="random"``: steps before an unreached target is
            replaced.
        random_segment_prob: ``targets="random"``: per-step probability of starting
            a segment of 3-10 random actions (the data then also shows the pusher
            bumping into things at random).
        push_steps: range of a candidate push's length (env steps).
    """

    def __init__(
        self,
        targets: str = "goal",
        noise: float = 0.0,
        seed: int | None = None,
        speed: float = 1.0,
        push_speed: float = 0.5,
        candidates: int = 48,
        step_cost: float = 0.05,
        tolerance: float = 0.6,
        target_steps: int = 150,
        random_segment_prob: float = 0.0,
        push_steps: tuple[int, int] = (2, 12),
    ) -> None:
        super().__init__(noise=noise, seed=seed, goal_bias=1.0, speed=speed)
        if not 0.0 < push_speed <= 1.0:
            raise ValueError(f"push_speed must be in (0, 1], got {push_speed}")
        self.push_speed = float(push_speed)
        if targets not in ("goal", "random"):
            raise ValueError(f"targets must be 'goal' or 'random', got {targets!r}")
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        if not 0.0 < tolerance <= 1.0:
            raise ValueError(f"tolerance must be in (0, 1], got {tolerance}")
        if not 0.0 <= random_segment_prob < 1.0:
            raise ValueError(f"random_segment_prob must be in [0, 1), got {random_segment_prob}")
        self.targets = targets
        self.candidates = int(candidates)
        self.step_cost = float(step_cost)
        self.tolerance = float(tolerance)
        self.target_steps = int(target_steps)
        self.random_segment_prob = float(random_segment_prob)
        if not 1 <= push_steps[0] <= push_steps[1]:
            raise ValueError(f"push_steps must be (lo, hi) with 1 <= lo <= hi, got {push_steps}")
        self.push_steps = (int(push_steps[0]), int(push_steps[1]))
        self._sim = _PushSim()

    # Back off one step, just clear of the block: the next push usually starts nearby.
    retreat_gap = 2.0
    retreat_steps = 2

    def _alloc(self, n: int) -> None:
        super()._alloc(n)
        self._push_len = np.zeros(n, dtype=np.int64)
        self._push_speed = np.zeros(n)
        self._push_jitter = np.zeros(n)
        self._target = np.zeros((n, 3))  # block pose (x, y, angle)
        self._target_age = np.zeros(n, dtype=np.int64)
        self._segment_left = np.zeros(n, dtype=np.int64)
        self._segment_action = np.zeros((n, 2))

    # ---------------------------------------------------------- batched entry
    def _actions(
        self, observation: Any, episode_start: np.ndarray | None, deterministic: bool
    ) -> tuple[np.ndarray, bool]:
        """Actions for a state-mode observation; ``deterministic`` drops noise and
        random segments."""
        n, batched = batch_info(observation)
        obs = state_rows(observation, "observation", 10, n)
        if n != self._n:
            self._alloc(n)
        starts = episode_starts(episode_start, n)
        self._phase[starts] = _NEW
        if self.targets == "goal":
            if not (isinstance(observation, dict) and "desired_goal" in observation):
                raise ValueError("PushTExpert(targets='goal') needs 'desired_goal' in the obs")
            g = state_rows(observation, "desired_goal", 4, n)
            self._target = np.stack(
                [g[:, 0] * WORLD_SIZE, g[:, 1] * WORLD_SIZE, np.arctan2(g[:, 2], g[:, 3])], axis=1
            )
        else:
            for i in np.flatnonzero(starts):
                self._new_target(i, obs[i, 2:5])
            self._segment_left[starts] = 0
        actions = np.zeros((n, 2))
        for i in range(n):
            actions[i] = self._expert_act(i, obs[i], deterministic)
        if not deterministic and self.noise > 0:
            actions += self.rng.normal(0.0, self.noise, size=actions.shape)
        return actions, batched

    def _reached(self, pose: np.ndarray, target: np.ndarray) -> bool:
        pos = float(np.linalg.norm(pose[:2] - target[:2]))
        ang = abs(float(_angle_diff(pose[2], target[2])))
        tol = self.tolerance
        return pos < tol * SUCCESS_POS_PX and ang < tol * SUCCESS_ANGLE

    def _new_target(self, i: int, pose: np.ndarray) -> None:
        """A random target pose well inside the arena, at least 40 px or 30 deg away."""
        for _ in range(100):
            xy = self.rng.uniform(128.0, 384.0, size=2)
            angle = self.rng.uniform(-math.pi, math.pi)
            far = np.linalg.norm(xy - pose[:2]) >= 40.0
            if far or abs(_angle_diff(angle, pose[2])) >= math.radians(30):
                break
        self._target[i] = (xy[0], xy[1], angle)
        self._target_age[i] = 0
        self._phase[i] = _NEW  # choose the next push for the new target

    def _expert_act(self, i: int, s: np.ndarray, deterministic: bool) -> np.ndarray:
        pose = s[2:5].astype(np.float64)
        if self.targets == "random":
            self._target_age[i] += 1
            if self._reached(pose, self._target[i]) or self._target_age[i] > self.target_steps:
                self._new_target(i, pose)
            if not deterministic:
                if self._segment_left[i] == 0 and self.rng.random() < self.random_segment_prob:
                    self._segment_left[i] = self.rng.integers(3, 11)
                    self._segment_action[i] = self.rng.uniform(-1.0, 1.0, size=2) * self.speed
                if self._segment_left[i] > 0:
                    self._segment_left[i] -= 1
                    if self._segment_left[i] == 0:
                        self._phase[i] = _NEW  # the world moved: plan afresh
                    return self._segment_action[i]
        elif self._reached(pose, self._target[i]) and self._phase[i] != _PUSH:
            self._phase[i] = _NEW
            return np.zeros(2)  # hold: the block stays where it is
        return self._act(i, s, self._goal_vector(i))

    def _goal_vector(self, i: int) -> np.ndarray:
        x, y, a = self._target[i]
        return np.array([x / WORLD_SIZE, y / WORLD_SIZE, math.sin(a), math.cos(a)])

    # ---------------------------------------------------------- push choice
    def _begin_push(self, i: int) -> None:
        self._timer[i] = self._push_len[i]
        self._speed[i] = self._push_speed[i]
        self._jitter[i] = self._push_jitter[i]

    def _choose_contact(
        self, i: int, pusher: np.ndarray, pose: np.ndarray, goal: np.ndarray | None
    ) -> bool:
        """Simulate ``candidates`` pushes from their contacts; keep the best (False if
        no contact is reachable)."""
        target = self._target[i]
        plan = _Plan(pusher, pose)
        rng = self.rng
        rot = _rot(pose[2])
        # Contacts: 4x as many as are simulated; half of the simulated ones are the
        # nearest to walk to (pushing on from where the pusher stands keeps the block
        # moving), the other half random ones.
        m = 4 * self.candidates
        edges = rng.choice(len(_EDGES), size=m, p=_EDGE_LEN / _EDGE_LEN.sum())
        u = rng.uniform(0.05, 0.95, size=m)
        pres, cells, walks = [], [], np.full(m, np.inf)
        for j in range(m):
            a, b, nrm = _EDGES[edges[j]]
            pre = pose[:2] + rot @ (a + u[j] * (b - a) + nrm * (_CLEARANCE + 1.0))
            cell = plan.entry(pre) if _in_arena(pre, 0.0) else None
            pres.append(pre)
            cells.append(cell)
            if cell is not None:
                walks[j] = plan.dist[cell] * _CELL / (self.speed * MAX_STEP)  # env steps
        reachable = np.flatnonzero(np.isfinite(walks))
        near = reachable[np.argsort(walks[reachable])][: self.candidates // 2]
        rest = np.setdiff1d(reachable, near)
        picks = np.concatenate([near, rng.permutation(rest)[: self.candidates - len(near)]]).astype(
            int
        )
        k = len(picks)
        jitter = rng.uniform(-0.5, 0.5, size=k)
        speed = rng.uniform(0.2, 1.0, size=k) * self.push_speed
        length = rng.integers(self.push_steps[0], self.push_steps[1] + 1, size=k)
        best, best_score = None, np.inf
        for q, j in enumerate(picks):
            a, b, nrm = _EDGES[edges[j]]
            c = a + u[j] * (b - a)
            pre, cell, walk = pres[j], cells[j], walks[j]
            action = -(_rot(jitter[q]) @ (rot @ nrm)) * speed[q]
            end = self._sim.push(pre, pose, action, int(length[q]) + 1)
            score = float(pose_cost(end, target)) + self.step_cost * (walk + length[q])
            if score < best_score:
                best, best_score = (q, c, nrm, cell, pre), score
        if best is None:
            return False
        j, c, nrm, cell, pre = best
        self._contact[i], self._normal[i] = c, nrm
        self._paths[i] = plan.path(cell) + [pre]
        self._path_pose[i] = pose
        self._push_len[i] = length[j]
        self._push_speed[i] = speed[j]
        self._push_jitter[i] = jitter[j]
        return True
