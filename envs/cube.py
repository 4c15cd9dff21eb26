"""Cube: OGBench's single-cube pick-and-place (UR5e arm + Robotiq 2F-85 gripper, MuJoCo).

The world is OGBench's own ``cube-single`` MuJoCo model, built by the ``ogbench``
package (``ogbench.manipspace.envs.cube_env.CubeEnv(env_type="single")``), with its
``visual-cube-single`` look (``ob_type="pixels"``: purple gripper, see-through arm)
and its ``front_pixels`` camera. Its controller is used as is: a 5-D action in
``[-1, 1]`` is a relative end-effector command (x, y, z moves of up to 5 cm, a yaw
turn of up to 0.3 rad, a gripper opening change) that OGBench's inverse kinematics
turns into PD joint targets; one env step is 25 MuJoCo steps of 2 ms (0.05 s).
This class only replaces OGBench's episode logic (task sampling, goal rendering,
success colouring) by the lewm env contract (docs/formats.md).

State (float32, 48): ``[qpos (21), qvel (20), ctrl (7)]``: the arm's 6 joints, the
gripper's 8 joints and the cube's free joint (position, then quaternion w x y z);
their velocities; the PD targets of the 6 arm joints and the gripper command. ``ctrl``
is there because the gripper-contact reading of the state observation depends on the
applied forces; every step overwrites it from the action, so the future does not.

Exact restore: MuJoCo's only hidden state that feeds the next step here is the
solver warm start, which is disabled (Newton's solver with tolerance 1e-8 converges
without it), and every step ends by writing the float32 state back into the
simulator (then ``mj_forward``), so ``(state, action) -> next state`` is a pure
function and ``reset(options={"state": s})`` reproduces the frame and the future.

Goal and success (OGBench's rule): the goal is a full state; success means the cube
is within ``SUCCESS_RADIUS`` = 4 cm (3-D distance) of the goal state's cube position.
The arm in the goal state only decides where the goal image shows it. OGBench's
target marker (a translucent cube) is hidden: made invisible and parked under the
floor, so no frame ever shows the goal.

The env wraps OGBench's model; its oracle is `envs/cube_oracle.py`.
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any, ClassVar

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from gymnasium import spaces  # noqa: E402

from envs.common import MujocoFrames, StateVectorEnv, check_action, state_vector  # noqa: E402

__all__ = [
    "CubeEnv",
    "OGBENCH_VERSION",
    "STATE_DIM",
    "OBS_DIM",
    "SUCCESS_RADIUS",
    "XYZ_CENTER",
    "XYZ_SCALE",
    "GRIPPER_SCALE",
    "ARM_SAMPLING_BOUNDS",
    "OBJECT_SAMPLING_BOUNDS",
    "TARGET_SAMPLING_BOUNDS",
    "CUBE_REST_Z",
    "cube_position",
]

OGBENCH_VERSION = "1.2.2"
"""The ogbench release this module is written against (pinned in pyproject.toml)."""
NQ, NV, NU = 21, 20, 7
STATE_DIM = NQ + NV + NU
OBS_DIM = 28
"""Length of the state-mode observation vector (OGBench's ``cube-single`` layout)."""
SUCCESS_RADIUS = 0.04
"""OGBench's success test: cube within 4 cm of its target (m)."""
_CUBE_QPOS = slice(14, 21)
"""The cube's free joint in ``qpos``: xyz (m), then quaternion (w, x, y, z)."""

# OGBench's constants (ogbench.manipspace.envs.manipspace_env.ManipSpaceEnv / CubeEnv),
# restated so the data policy can use them without building an env; a test checks them.
XYZ_CENTER = np.array([0.425, 0.0, 0.0])
XYZ_SCALE = 10.0
GRIPPER_SCALE = 3.0
ARM_SAMPLING_BOUNDS = np.array([[0.25, -0.35, 0.20], [0.6, 0.35, 0.35]])
OBJECT_SAMPLING_BOUNDS = np.array([[0.3, -0.3], [0.55, 0.3]])
TARGET_SAMPLING_BOUNDS = np.array([[0.3, -0.3], [0.55, 0.3]])
CUBE_REST_Z = 0.02
"""Height of the cube's centre when it rests on the table (half its 4 cm side)."""
_SHADOW_SIZE = 1024
"""Shadow-map side (px); OGBench uses 4096 (see :func:`_template`)."""
_LOD_CELL = 0.003
"""Grid (m) of the render-only mesh simplification: below a pixel's footprint on
the table at 224 px (~3.6 mm), so 185k triangles become 40k (:func:`_render_lod`)."""
_HIDDEN_MARKER_POS = np.array([0.0, 0.0, -0.3])
"""Where OGBench parks target markers it does not show: under the floor."""

# Observation bounds (gymnasium's checker rejects infinite ones). Entries are clipped
# to them; the physical values stay far inside (the walls keep the cube within
# x in [0.22, 0.63] m, |y| < 0.38 m, i.e. scaled |.| < 4).
_OBS_HIGH = np.concatenate(
    [
        np.full(6, 7.0),  # arm joint angles (rad; limits +-2 pi)
        np.full(6, 50.0),  # arm joint speeds (rad/s)
        np.full(3, 10.0),  # effector position, (p - centre) * 10
        np.ones(2),  # cos, sin of the effector yaw
        [GRIPPER_SCALE, 1.0],  # gripper opening * 3, gripper contact
        np.full(3, 10.0),  # cube position, (p - centre) * 10
        np.ones(4),  # cube quaternion
        np.ones(2),  # cos, sin of the cube yaw
    ]
).astype(np.float32)
_OBS_LOW = -_OBS_HIGH
_OBS_LOW[17:19] = 0.0  # opening and contact are in [0, 3] and [0, 1]
_GOAL_HIGH = 2.0
"""Bound (m) of the goal vectors (cube xyz)."""


def cube_position(state: np.ndarray) -> np.ndarray:
    """Cube centre ``(..., 3)`` (m) of state vectors ``(..., 48)``."""
    return np.asarray(state)[..., _CUBE_QPOS.start : _CUBE_QPOS.start + 3]


def _yaw_from_quat(q: np.ndarray) -> float:
    """Yaw (rad) of a quaternion (w, x, y, z), as ``ogbench.manipspace.lie.SO3``."""
    w, x, y, z = (float(v) for v in q)
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def _yaw_from_matrix(mat: np.ndarray) -> float:
    """Yaw (rad) of a 3x3 rotation matrix (flattened), through its quaternion."""
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.asarray(mat, dtype=np.float64).reshape(9))
    return _yaw_from_quat(quat)


def _import_ogbench_cube() -> type:
    """OGBench's CubeEnv class, with a clear error when the package is missing."""
    try:
        from ogbench.manipspace.envs.cube_env import CubeEnv as OGCubeEnv
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            f"lewm/Cube-v0 needs the 'ogbench' package ({e}); install it with "
            f"`pip install ogbench=={OGBENCH_VERSION}` (a dependency of lewm-agent)"
        ) from e
    return OGCubeEnv


def _render_lod(model: mujoco.MjModel, cell: float) -> None:
    """Simplify every mesh's triangles for rendering, in place (vertex clustering).

    Vertices are snapped to a ``cell``-sized grid (each cell keeps one of its own
    vertices), degenerate and duplicate triangles are dropped and the kept ones moved
    to the front of the mesh's face block, whose ``mesh_facenum`` shrinks. Only the
    renderer reads triangles: collisions use the convex hulls compiled with the
    model, masses were computed at compile time, so the physics is unchanged (a test
    checks trajectories bit for bit). Must run before any renderer uploads the model.
    """
    for k in range(model.nmesh):
        va, vn = model.mesh_vertadr[k], model.mesh_vertnum[k]
        fa, fn = model.mesh_faceadr[k], model.mesh_facenum[k]
        faces = model.mesh_face[fa : fa + fn].copy()  # (F, 3) indices into the mesh's verts
        cells = np.floor(model.mesh_vert[va : va + vn] / cell).astype(np.int64)  # (V, 3)
        _, first, inverse = np.unique(cells, axis=0, return_index=True, return_inverse=True)
        snapped = first[inverse.reshape(-1)][faces]  # (F, 3) each vertex -> its cell's
        a, b, c = snapped.T
        proper = np.flatnonzero((a != b) & (b != c) & (a != c))
        _, unique = np.unique(np.sort(snapped[proper], axis=1), axis=0, return_index=True)
        keep = proper[np.sort(unique)]  # (F',) in their original order
        n = len(keep)
        model.mesh_face[fa : fa + n] = snapped[keep]
        if model.mesh_facenormal.size:
            model.mesh_facenormal[fa : fa + n] = model.mesh_facenormal[fa + keep]
        if model.mesh_facetexcoord.size and model.mesh_texcoordadr[k] >= 0:
            model.mesh_facetexcoord[fa : fa + n] = model.mesh_facetexcoord[fa + keep]
        model.mesh_facenum[k] = n


_TEMPLATES: dict[int, Any] = {}
"""Compiled OGBench envs by image size, one per process (see :func:`_template`)."""


def _template(image_size: int) -> Any:
    """OGBench's single-cube env, compiled and prepared once per process and image size.

    Building it takes ~5 s (dm_control parses the MJCF and the IK model, MuJoCo
    compiles 28 meshes); an evaluation makes one env per episode, so the model (and
    OGBench's IK controller, stateless between calls) is shared by the envs of a
    process. OGBench's own ``reset`` (task logic, a render for its observation) is
    never called.
    """
    if image_size in _TEMPLATES:
        return _TEMPLATES[image_size]
    og = _import_ogbench_cube()(
        env_type="single",
        ob_type="pixels",  # visual-cube-single's look: purple gripper, see-through arm
        width=image_size,  # the offscreen buffer size
        height=image_size,
        visualize_info=False,
        mode="data_collection",
        terminate_at_goal=False,
    )
    og._mjcf_model = og.build_mjcf_model()
    og.compile_model_and_data()
    m = og._model
    if (m.nq, m.nv, m.nu) != (NQ, NV, NU):
        raise RuntimeError(
            f"unexpected OGBench cube model (nq, nv, nu) = {(m.nq, m.nv, m.nu)}, "
            f"expected {(NQ, NV, NU)}: install ogbench=={OGBENCH_VERSION}"
        )
    m.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_WARMSTART)  # exact restore
    # Software rendering (EGL on llvmpipe, no GPU) of OGBench's scene took 360 ms of CPU
    # per frame at 64 and 224 px, mostly the robot's 185k mesh triangles and the 4096 px
    # shadow map. These two changes cut it to 90 ms; frames differ from OGBench's by
    # 0.2/255 on average (5% of the pixels differ at all, 0.2% by more than 16/255).
    # Without multisampling (OGBench asks for 4x) a 64 px frame costs 56 ms instead of
    # 92 ms of CPU and differs by 0.8/255 on average more;
    # shadows stay: they are the image's only cue of the cube's height.
    m.vis.quality.shadowsize = _SHADOW_SIZE
    m.vis.quality.offsamples = 0
    _render_lod(m, _LOD_CELL)
    # OGBench's colours (CubeEnv.initialize_episode) and a hidden target marker.
    for gid in og._cube_geom_ids_list[0]:
        m.geom_rgba[gid] = og._cube_colors[0]
    for gid in og._cube_target_geom_ids_list[0]:
        m.geom_rgba[gid, 3] = 0.0
    _TEMPLATES[image_size] = og
    return og


def _canonical(state: np.ndarray) -> np.ndarray:
    """The float32 form the env holds (float32 -> float64 -> float32 is exact)."""
    return np.asarray(state, dtype=np.float64).astype(np.float32)


class CubeEnv(MujocoFrames, StateVectorEnv):
    """Pick up a cube and put it where a goal image shows it (OGBench ``cube-single``).

    Args:
        render_mode: ``"rgb_array"`` (or ``None``; ``render()`` returns the frame
            either way).
        obs_mode: ``"pixels"`` -> ``Dict(pixels, goal)`` uint8 images from OGBench's
            ``front_pixels`` camera; ``"state"`` -> GoalEnv ``Dict(observation,
            achieved_goal, desired_goal)``: the observation is OGBench's 28-D
            ``cube-single`` state (arm joints and speeds, effector position, yaw,
            gripper opening and contact, cube position, quaternion and yaw; positions
            as ``(p - XYZ_CENTER) * 10``), the goals are cube positions (m).
        image_size: side of the square images (64 default, as OGBench's
            ``visual-cube-single``; 224 as in the paper).
        terminate_on_success: end the episode on success (the task's contract). Data
            collection turns it off: a world model wants long trajectories.

    Action: ``Box(-1, 1, (5,))``: relative effector x, y, z (5 cm per unit), yaw
    (0.3 rad per unit) and gripper opening (OGBench's action space).
    Reward: ``-(distance of the cube to its goal position)`` in m.

    ``reset(options={"state": s, "goal_state": g})`` sets either exactly (48-D
    states, see the module docstring); missing ones are sampled as OGBench's data
    collection does: the effector at a random pose above the table (gripper open,
    pointing down), the cube resting on the table at a random position and yaw.
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
        self._init_args(render_mode, obs_mode, image_size, terminate_on_success, max_size=1024)

        # One compiled OGBench model per process and image size, shared by the envs
        # (read-only after _build_template); each env gets its own MjData.
        og = copy.copy(_template(self.image_size))
        og._data = mujoco.MjData(og._model)
        self._og = og
        self.model: mujoco.MjModel = og._model
        self.data: mujoco.MjData = og._data
        m = self.model
        arm_joints = np.asarray(og._arm_joint_ids)
        self._arm_qpos = m.jnt_qposadr[arm_joints]  # (6,) hinge joints: one qpos, one dof
        self._arm_dofs = m.jnt_dofadr[arm_joints]  # (6,)
        self._gripper_qpos = int(m.jnt_qposadr[og._gripper_opening_joint_id])
        self._pinch_site = int(og._pinch_site_id)
        self._pad_body = int(m.body("ur5e/robotiq/right_pad").id)
        self._camera = int(m.camera("front_pixels").id)
        self._scratch = mujoco.MjData(m)  # render_state() never touches self.data
        self._renderer: mujoco.Renderer | None = None
        self.dt = og._control_timestep

        self.action_space = spaces.Box(-1.0, 1.0, shape=(5,), dtype=np.float32)
        if obs_mode == "pixels":
            self.observation_space = self._pixels_space()
        else:
            goal = spaces.Box(-_GOAL_HIGH, _GOAL_HIGH, shape=(3,), dtype=np.float32)
            self.observation_space = spaces.Dict(
                {
                    "observation": spaces.Box(_OBS_LOW, _OBS_HIGH, dtype=np.float32),
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
        s, g = self._start_and_goal(options, lambda s, g: self._distance(s, g) <= SUCCESS_RADIUS)
        self._goal = g
        self._set_sim(s)
        self._goal_frame = None
        return self._obs(), self._info()

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply one relative effector command: OGBench's IK + PD control for 0.05 s."""
        a = check_action(action, 5)
        self._og.set_control(np.clip(a.reshape(5), -1.0, 1.0))  # writes self.data.ctrl
        mujoco.mj_step(self.model, self.data, nstep=self._og._n_steps)
        d = self.data
        self._set_sim(np.concatenate([d.qpos, d.qvel, d.ctrl]))
        return self._step_result()

    def compute_reward(
        self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any = None
    ) -> np.ndarray | float:
        """Dense reward ``-||cube - goal||`` (m), vectorised over leading dims."""
        a = np.asarray(achieved_goal, dtype=np.float64)
        b = np.asarray(desired_goal, dtype=np.float64)
        r = -np.linalg.norm(a - b, axis=-1)
        return r if np.ndim(r) else float(r)

    # ------------------------------------------------------------ internals

    def _load(self, d: mujoco.MjData, state: np.ndarray) -> None:
        """Write a canonical state into ``d`` and recompute everything derived from it.

        ``mj_rnePostConstraint`` fills ``cfrc_ext`` (the gripper-contact reading), as
        OGBench does after each step.
        """
        s = state.astype(np.float64)
        d.qpos[:] = s[:NQ]
        d.qvel[:] = s[NQ : NQ + NV]
        d.ctrl[:] = s[NQ + NV :]
        d.mocap_pos[:] = _HIDDEN_MARKER_POS
        d.mocap_quat[:] = (1.0, 0.0, 0.0, 0.0)
        d.time = 0.0  # time does not enter the dynamics; keep it out of the state
        d.qacc_warmstart[:] = 0.0
        mujoco.mj_forward(self.model, d)
        mujoco.mj_rnePostConstraint(self.model, d)

    def _set_sim(self, state: np.ndarray) -> None:
        """Make the canonical float32 state the simulator's exact state."""
        self._state = _canonical(state)
        self._load(self.data, self._state)
        self._frame = None

    def _validated(self, value: Any, name: str) -> np.ndarray:
        s = state_vector(value, name, STATE_DIM, "[qpos (21), qvel (20), ctrl (7)]")
        quat_norm = float(np.linalg.norm(s[_CUBE_QPOS][3:]))
        if not 0.9 < quat_norm < 1.1:
            raise ValueError(
                f"{name}: the cube quaternion qpos[17:21] must be a unit quaternion, "
                f"got norm {quat_norm:.3f}"
            )
        return _canonical(s)

    def _sample_state(self) -> np.ndarray:
        """A state at rest as OGBench's data collection samples it.

        The effector (gripper open, pointing down) at a uniform position in
        ``ARM_SAMPLING_BOUNDS`` with a uniform yaw, through OGBench's IK from the home
        pose (``ManipSpaceEnv.initialize_arm``); the cube on the table at a uniform
        position in ``OBJECT_SAMPLING_BOUNDS`` with a uniform yaw.
        """
        from ogbench.manipspace import lie

        rng, og = self.np_random, self._og
        eff_pos = rng.uniform(*ARM_SAMPLING_BOUNDS)
        eff_ori = lie.SO3.from_z_radians(rng.uniform(-np.pi, np.pi)) @ og._effector_down_rotation
        pose = lie.SE3.from_rotation_and_translation(eff_ori, eff_pos) @ og._T_pa
        arm = og._ik.solve(
            pos=pose.translation(), quat=pose.rotation().wxyz, curr_qpos=og._home_qpos
        )
        qpos = self.model.qpos0.copy()  # gripper joints at 0: open
        qpos[self._arm_qpos] = arm[: len(self._arm_qpos)]
        xy = rng.uniform(*OBJECT_SAMPLING_BOUNDS)
        yaw = rng.uniform(0.0, 2 * np.pi)
        qpos[_CUBE_QPOS] = [*xy, CUBE_REST_Z, math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
        ctrl = np.zeros(NU)
        ctrl[np.asarray(og._arm_actuator_ids)] = qpos[self._arm_qpos]  # PD holds the pose
        return _canonical(np.concatenate([qpos, np.zeros(NV), ctrl]))

    @staticmethod
    def _distance(state: np.ndarray, goal: np.ndarray) -> float:
        return float(np.linalg.norm(cube_position(state) - cube_position(goal)))

    _achieved = staticmethod(cube_position)

    def _info(self) -> dict[str, Any]:
        dist = self._distance(self._state, self._goal)
        info = self._state_info(bool(dist <= SUCCESS_RADIUS))
        info["cube_distance"] = dist
        return info

    def _state_vector(self) -> np.ndarray:
        """OGBench's 28-D ``cube-single`` observation of the current (loaded) state."""
        d = self.data
        cube = d.qpos[_CUBE_QPOS]
        eff_yaw = _yaw_from_matrix(d.site_xmat[self._pinch_site])
        cube_yaw = _yaw_from_quat(cube[3:])
        opening = np.clip(d.qpos[self._gripper_qpos] / 0.8, 0.0, 1.0)
        contact = np.clip(np.linalg.norm(d.cfrc_ext[self._pad_body]) / 50.0, 0.0, 1.0)
        ob = np.concatenate(
            [
                d.qpos[self._arm_qpos],
                d.qvel[self._arm_dofs],
                (d.site_xpos[self._pinch_site] - XYZ_CENTER) * XYZ_SCALE,
                [math.cos(eff_yaw), math.sin(eff_yaw), opening * GRIPPER_SCALE, contact],
                (cube[:3] - XYZ_CENTER) * XYZ_SCALE,
                cube[3:],
                [math.cos(cube_yaw), math.sin(cube_yaw)],
            ]
        )
        return np.clip(ob, _OBS_LOW, _OBS_HIGH).astype(np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        if self.obs_mode == "pixels":
            return self._pixels_obs()
        bound = np.float32(_GOAL_HIGH)
        return {
            "observation": self._state_vector(),
            "achieved_goal": np.clip(cube_position(self._state), -bound, bound),
            "desired_goal": np.clip(cube_position(self._goal), -bound, bound),
        }

    def _draw(self, state: np.ndarray) -> np.ndarray:
        """Render a canonical state from OGBench's ``front_pixels`` camera (scratch MjData)."""
        self._load(self._scratch, state)
        return self._render_data(self._scratch)

    def _draw_current(self) -> np.ndarray:
        """Render the simulator's own (loaded) data."""
        return self._render_data(self.data)
