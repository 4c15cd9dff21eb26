"""Push-T's exact dynamics for many rollouts at once: :func:`envs.push_t.simulate_step`, faster.

A planner over the true physics (``eval.ceiling``) plays hundreds of candidate action
sequences of tens of steps per decision. :func:`envs.push_t.simulate_step` builds a
fresh pymunk space through pymunk's Python objects for every step (~0.25 ms, two
thirds of it building); this module builds the very same space through Chipmunk's C
calls (pymunk's own compiled library) and frees it after the step, so one step
costs about a third as much and stays bit-identical to ``simulate_step``.

Why not one persistent space per sample: Chipmunk caches contact and joint impulses
between steps and numbers shapes with a space-wide counter whose value orders its
broad phase, so a reused space drifts from a freshly built one (the expert's
``_PushSim`` accepts that drift for ranking pushes; an exact-dynamics ceiling must
not). Every step here starts from a new space at the float32 state, exactly as the
env does, and ends with the env's own rounding (:func:`envs.push_t._canonical`).
"""

from __future__ import annotations

import numpy as np
from pymunk._chipmunk import ffi
from pymunk._chipmunk import lib as _cp

from envs.push_t import (
    _PI32,
    _STATE_HIGH,
    _STATE_LOW,
    BLOCK_BOXES_LOCAL,
    BLOCK_MASS,
    BLOCK_MOMENT,
    DRIVE_FORCE,
    DT,
    FLOOR_FORCE,
    FLOOR_TORQUE,
    FRICTION,
    KP,
    KV,
    MAX_STEP,
    N_SUBSTEPS,
    PUSHER_HIGH,
    PUSHER_LOW,
    PUSHER_MASS,
    PUSHER_RADIUS,
    STATE_DIM,
    WALL,
    WORLD_SIZE,
    _wrap,
)

__all__ = ["step_exact", "rollout_exact"]

# The T's two boxes as Chipmunk vertex arrays, built once (the env passes the same
# vertices, as Python tuples, to pymunk.Poly).
_BOX_VERTS = [
    ffi.new("cpVect[]", [tuple(float(c) for c in v) for v in box]) for box in BLOCK_BOXES_LOCAL
]
_IDENTITY = ffi.new("cpTransform *", (1.0, 0.0, 0.0, 1.0, 0.0, 0.0))[0]
_WALL_R = 200.0
_LO, _HI = WALL - _WALL_R, WORLD_SIZE - WALL + _WALL_R
_WALL_SEGMENTS = (
    ((_LO, _LO), (_HI, _LO)),
    ((_HI, _LO), (_HI, _HI)),
    ((_HI, _HI), (_LO, _HI)),
    ((_LO, _HI), (_LO, _LO)),
)
_INF = float("inf")


def _step_raw(s: list[float], ax: float, ay: float) -> list[float]:
    """One env step from the float state ``s`` (10 floats) with a clipped action.

    The same Chipmunk calls, in the same order, as ``envs.push_t._build_space``
    followed by ``simulate_step``'s substep loop; returns the unrounded result
    ``[px, py, bx, by, angle, pvx, pvy, bvx, bvy, angvel]``.
    """
    cp = _cp
    space = cp.cpSpaceNew()
    static = cp.cpSpaceGetStaticBody(space)
    cp.cpSpaceSetIterations(space, 20)
    shapes = []
    for a, b in _WALL_SEGMENTS:
        wall = cp.cpSegmentShapeNew(static, a, b, _WALL_R)
        cp.cpShapeSetFriction(wall, FRICTION)
        cp.cpSpaceAddShape(space, wall)
        shapes.append(wall)

    block = cp.cpBodyNew(BLOCK_MASS, BLOCK_MOMENT)
    cp.cpBodySetPosition(block, (s[2], s[3]))
    cp.cpBodySetAngle(block, s[4])
    cp.cpBodySetVelocity(block, (s[7], s[8]))
    cp.cpBodySetAngularVelocity(block, s[9])
    polys = [cp.cpPolyShapeNew(block, 4, verts, _IDENTITY, 0.0) for verts in _BOX_VERTS]
    for poly in polys:
        cp.cpShapeSetFriction(poly, FRICTION)
    slide = cp.cpPivotJointNew2(static, block, (0.0, 0.0), (0.0, 0.0))
    cp.cpConstraintSetMaxBias(slide, 0.0)
    cp.cpConstraintSetMaxForce(slide, FLOOR_FORCE)
    spin = cp.cpGearJointNew(static, block, 0.0, 1.0)
    cp.cpConstraintSetMaxBias(spin, 0.0)
    cp.cpConstraintSetMaxForce(spin, FLOOR_TORQUE)

    pusher = cp.cpBodyNew(PUSHER_MASS, _INF)
    cp.cpBodySetPosition(pusher, (s[0], s[1]))
    cp.cpBodySetVelocity(pusher, (s[5], s[6]))
    disc = cp.cpCircleShapeNew(pusher, PUSHER_RADIUS, (0.0, 0.0))
    cp.cpShapeSetFriction(disc, FRICTION)
    handle = cp.cpBodyNewKinematic()
    cp.cpBodySetPosition(handle, (s[0], s[1]))
    cp.cpBodySetVelocity(handle, (s[5], s[6]))
    drive = cp.cpPivotJointNew2(handle, pusher, (0.0, 0.0), (0.0, 0.0))
    cp.cpConstraintSetMaxForce(drive, DRIVE_FORCE)
    # pymunk's Space.add order: bodies first, then shapes and constraints as listed.
    for body in (block, pusher, handle):
        cp.cpSpaceAddBody(space, body)
    for poly in polys:
        cp.cpSpaceAddShape(space, poly)
    cp.cpSpaceAddConstraint(space, slide)
    cp.cpSpaceAddConstraint(space, spin)
    cp.cpSpaceAddShape(space, disc)
    cp.cpSpaceAddConstraint(space, drive)

    tx = min(max(s[0] + ax * MAX_STEP, PUSHER_LOW), PUSHER_HIGH)
    ty = min(max(s[1] + ay * MAX_STEP, PUSHER_LOW), PUSHER_HIGH)
    rx, ry, vx, vy = s[0], s[1], s[5], s[6]
    for _ in range(N_SUBSTEPS):
        vx += (KP * (tx - rx) - KV * vx) * DT
        vy += (KP * (ty - ry) - KV * vy) * DT
        cp.cpBodySetVelocity(handle, (vx, vy))
        cp.cpSpaceStep(space, DT)
        r = cp.cpBodyGetPosition(handle)
        rx, ry = r.x, r.y
    p, pv = cp.cpBodyGetPosition(pusher), cp.cpBodyGetVelocity(pusher)
    b, bv = cp.cpBodyGetPosition(block), cp.cpBodyGetVelocity(block)
    out = [
        p.x,
        p.y,
        b.x,
        b.y,
        cp.cpBodyGetAngle(block),
        pv.x,
        pv.y,
        bv.x,
        bv.y,
        cp.cpBodyGetAngularVelocity(block),
    ]

    for constraint in (slide, spin, drive):
        cp.cpSpaceRemoveConstraint(space, constraint)
        cp.cpConstraintFree(constraint)
    for shape in (*shapes, *polys, disc):
        cp.cpSpaceRemoveShape(space, shape)
        cp.cpShapeFree(shape)
    for body in (block, pusher, handle):
        cp.cpSpaceRemoveBody(space, body)
        cp.cpBodyFree(body)
    cp.cpSpaceFree(space)
    return out


def _canonical_rows(raw: np.ndarray) -> np.ndarray:
    """``simulate_step``'s safety clips and ``_canonical``'s rounding, row-wise: (N, 10) -> float32."""
    s = raw.copy()  # (N, 10) float64
    s[:, 0:2] = np.clip(s[:, 0:2], WALL, WORLD_SIZE - WALL)
    s[:, 2:4] = np.clip(s[:, 2:4], 0.0, WORLD_SIZE)
    # Wrap only out-of-range angles, one scalar at a time like the env (a vectorised
    # sin/cos may differ from the scalar one in the last bit).
    for i in np.flatnonzero(np.abs(s[:, 4]) > _PI32):
        s[i, 4] = _wrap(float(s[i, 4]))
    s[:, 5:] = np.clip(s[:, 5:], _STATE_LOW[5:], _STATE_HIGH[5:])
    return s.astype(np.float32)


def step_exact(states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """One env step for each row: states (N, 10) float32, actions (N, 2) -> (N, 10) float32.

    Row ``i`` equals ``simulate_step(states[i], actions[i])`` bit for bit.
    """
    states = np.asarray(states, dtype=np.float32)
    acts = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)  # (N, 2)
    if states.ndim != 2 or states.shape[1] != STATE_DIM:
        raise ValueError(f"states must be (N, {STATE_DIM}), got {states.shape}")
    if acts.shape != (len(states), 2):
        raise ValueError(f"actions must be ({len(states)}, 2), got {acts.shape}")
    rows = states.tolist()  # float32 -> exact Python floats, as simulate_step's float()
    a = acts.tolist()
    raw = np.array([_step_raw(s, ax, ay) for s, (ax, ay) in zip(rows, a, strict=True)])
    return _canonical_rows(raw.reshape(len(rows), STATE_DIM))


def rollout_exact(state: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Roll every action sequence out from one state.

    Args:
        state: (10,) or (N, 10) float32 start state(s).
        actions: (N, T, 2) env actions (clipped to [-1, 1] like the env).

    Returns:
        (N, T + 1, 10) float32 states, the start included; ``[:, t + 1]`` is the
        env's state after ``actions[:, t]``.
    """
    acts = np.asarray(actions, dtype=np.float64)
    if acts.ndim != 3 or acts.shape[2] != 2:
        raise ValueError(f"actions must be (N, T, 2), got {acts.shape}")
    n, t = acts.shape[:2]
    s0 = np.asarray(state, dtype=np.float32)
    s0 = np.broadcast_to(s0, (n, STATE_DIM)) if s0.ndim == 1 else s0
    if s0.shape != (n, STATE_DIM):
        raise ValueError(f"state must be ({STATE_DIM},) or ({n}, {STATE_DIM}), got {s0.shape}")
    out = np.empty((n, t + 1, STATE_DIM), dtype=np.float32)
    out[:, 0] = s0
    for k in range(t):
        out[:, k + 1] = step_exact(out[:, k], acts[:, k])  # (N, 10)
    return out
