"""Cube env (envs/cube.py, OGBench's cube-single model) and its oracle (envs/cube_oracle.py)."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("ogbench", reason="lewm/Cube-v0 needs `pip install ogbench==1.2.2`")

import envs  # noqa: E402, F401  (registers lewm/*)
import envs.cube as cube_module  # noqa: E402
from envs.collect import collect  # noqa: E402
from envs.cube import (  # noqa: E402
    OBS_DIM,
    STATE_DIM,
    SUCCESS_RADIUS,
    CubeEnv,
    cube_position,
)
from envs.cube_oracle import CubeOracle  # noqa: E402
from envs.scripted import DATA_POLICIES, make_data_policy  # noqa: E402
from lewm_agent.data import load_dataset  # noqa: E402
from tests.helpers.envs import assert_check_env_clean, assert_time_limit  # noqa: E402

ENV_ID = "lewm/Cube-v0"


@pytest.fixture(scope="module")
def state_env():
    env = CubeEnv(obs_mode="state")
    yield env
    env.close()


def _with_cube(state: np.ndarray, xyz: tuple[float, float, float]) -> np.ndarray:
    s = state.copy()
    s[14:17] = xyz  # the cube's free joint: xyz, then the quaternion
    return s


def _moving_state(env: CubeEnv, seed: int = 0, steps: int = 40) -> np.ndarray:
    """A state mid-grasp: the oracle carried the cube for a while (speeds, contacts).

    Works in either obs mode: the oracle reads the state observation, built here.
    """
    env.reset(seed=seed)
    policy = CubeOracle(seed=seed)
    for _ in range(steps):
        obs = {"observation": env._state_vector(), "desired_goal": cube_position(env.goal_state)}
        action, _ = policy.predict(obs)
        env.step(action)
    return env.state


@pytest.mark.parametrize("obs_mode", ["pixels", "state"])
def test_check_env_without_warnings(obs_mode: str) -> None:
    assert_check_env_clean(ENV_ID, CubeEnv, obs_mode=obs_mode)


def test_registered_time_limit() -> None:
    assert_time_limit(ENV_ID, 200)
    env = gym.make(ENV_ID, obs_mode="state")
    assert env.action_space.shape == (5,)
    env.close()


@pytest.mark.parametrize("size", [64, 224])
def test_render_sizes(size: int) -> None:
    env = CubeEnv(image_size=size)
    obs, _ = env.reset(seed=1)
    for img in (obs["pixels"], obs["goal"], env.render()):
        assert img.shape == (size, size, 3) and img.dtype == np.uint8
        assert img.std() > 5.0  # not blank
        red = (img[..., 0] > 150) & (img[..., 1] < 110) & (img[..., 2] < 130)  # the cube
        assert red.sum() > 0
    assert not np.array_equal(obs["pixels"], obs["goal"])
    env.close()


@pytest.mark.parametrize("size", [64, 224])
def test_state_round_trip_is_exact(state_env: CubeEnv, size: int) -> None:
    """Restoring ``info["state"]`` gives the recorded frame and the same future, bit for bit."""
    mid = _moving_state(state_env, steps=35)  # found without rendering, then recorded:
    a, b = CubeEnv(image_size=size), CubeEnv(image_size=size)
    a.reset(options={"state": mid, "goal_state": state_env.goal_state})
    obs_a, _, _, _, info_a = a.step(np.array([0.2, 0.1, 0.3, 0.0, 1.0]))
    state, goal, frame = info_a["state"], info_a["goal_state"], obs_a["pixels"]
    assert np.abs(state[21:41]).max() > 0.05  # moving, so velocities matter

    obs_b, info = b.reset(options={"state": state, "goal_state": goal})
    np.testing.assert_array_equal(info["state"], state)
    np.testing.assert_array_equal(obs_b["pixels"], frame)
    np.testing.assert_array_equal(b.render_state(state), frame)
    for action in (np.array([0.7, -0.3, 0.2, 0.5, 1.0]), np.array([-1.0, 1.0, -0.5, 0.0, -1.0])):
        obs_a, ra, _, _, ia = a.step(action)
        obs_b, rb, _, _, ib = b.step(action)
        np.testing.assert_array_equal(ia["state"], ib["state"])
        np.testing.assert_array_equal(obs_a["pixels"], obs_b["pixels"])
        assert ra == rb
    a.close()
    b.close()


def test_restore_reproduces_a_whole_rollout(state_env: CubeEnv) -> None:
    """Replaying recorded actions from a restored state retraces every recorded state."""
    env = state_env
    start = _moving_state(env, seed=3, steps=20)
    goal = env.goal_state
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(15, 5))
    recorded = [env.step(a)[4]["state"] for a in actions]
    env.reset(options={"state": start, "goal_state": goal})
    for a, want in zip(actions, recorded, strict=True):
        np.testing.assert_array_equal(env.step(a)[4]["state"], want)


@pytest.mark.parametrize(
    ("offset", "success"),
    [
        ((0.0, 0.0, 0.0), True),
        ((0.03, 0.0, 0.0), True),
        ((0.02, -0.02, 0.02), True),  # 3.5 cm in 3-D
        ((0.0, 0.039, 0.0), True),
        ((0.041, 0.0, 0.0), False),
        ((0.03, 0.03, 0.0), False),  # 4.2 cm
        ((0.0, 0.0, 0.05), False),  # held 5 cm above the target
    ],
)
def test_success(state_env: CubeEnv, offset: tuple[float, float, float], success: bool) -> None:
    """OGBench's rule: the cube within 4 cm (3-D) of the goal state's cube."""
    state_env.reset(seed=0)
    goal = _with_cube(state_env.goal_state, (0.45, 0.1, 0.02))
    start = _with_cube(state_env.state, tuple(np.add((0.45, 0.1, 0.02), offset)))
    _, info = state_env.reset(options={"state": start, "goal_state": goal})
    assert info["is_success"] is success
    assert info["cube_distance"] == pytest.approx(np.linalg.norm(offset), abs=1e-6)
    assert SUCCESS_RADIUS == 0.04


def test_success_terminates_unless_collecting() -> None:
    env = CubeEnv(obs_mode="state")
    env.reset(seed=0)
    goal = _with_cube(env.goal_state, (0.45, 0.1, 0.02))
    start = _with_cube(env.state, (0.46, 0.1, 0.02))
    env.reset(options={"state": start, "goal_state": goal})
    _, reward, terminated, _, info = env.step(np.zeros(5))
    assert info["is_success"] and terminated and -SUCCESS_RADIUS < reward <= 0.0
    env.terminate_on_success = False
    env.reset(options={"state": start, "goal_state": goal})
    assert not env.step(np.zeros(5))[2]
    env.close()


def test_goal_is_never_drawn_in_the_frame() -> None:
    """The current frame depends on the state only; the goal image is the goal's frame."""
    env = CubeEnv()
    env.reset(seed=0)
    state = env.state
    frames, goal_images = [], []
    for xyz in ((0.35, -0.2, 0.02), (0.5, 0.2, 0.02)):
        goal = _with_cube(env.goal_state, xyz)
        obs, _ = env.reset(options={"state": state, "goal_state": goal})
        frames.append(obs["pixels"])
        goal_images.append(obs["goal"])
        np.testing.assert_array_equal(obs["goal"], env.render_state(goal))
    np.testing.assert_array_equal(frames[0], frames[1])
    assert not np.array_equal(goal_images[0], goal_images[1])
    env.close()


def test_state_observation_is_ogbenchs(state_env: CubeEnv) -> None:
    """The 28-D observation equals OGBench's own cube-single observation of that state."""
    env = state_env
    _moving_state(env, seed=1, steps=30)
    obs = env._obs()["observation"]
    og = env._og
    og._ob_type = "states"
    try:
        og.pre_step()  # OGBench's observation code reads the previous-step fields
        ref = og.compute_observation()
    finally:
        og._ob_type = "pixels"
    assert obs.shape == (OBS_DIM,) and ref.shape == (OBS_DIM,)
    np.testing.assert_allclose(obs, ref, atol=1e-6)
    assert env.observation_space.contains(env._obs())


def test_restated_constants_match_ogbench(state_env: CubeEnv) -> None:
    og = state_env._og
    np.testing.assert_array_equal(cube_module.ARM_SAMPLING_BOUNDS, og._arm_sampling_bounds)
    np.testing.assert_array_equal(cube_module.OBJECT_SAMPLING_BOUNDS, og._object_sampling_bounds)
    np.testing.assert_array_equal(cube_module.TARGET_SAMPLING_BOUNDS, og._target_sampling_bounds)
    assert state_env.dt == pytest.approx(0.05)


def test_render_lod_keeps_the_physics(monkeypatch: pytest.MonkeyPatch) -> None:
    """The render-only mesh simplification leaves a grasping rollout bit-identical."""
    simplified = CubeEnv(obs_mode="state")
    monkeypatch.setattr(cube_module, "_TEMPLATES", {})
    monkeypatch.setattr(cube_module, "_render_lod", lambda model, cell: None)
    full = CubeEnv(obs_mode="state")
    assert simplified.model.mesh_facenum.sum() < full.model.mesh_facenum.sum() / 3
    obs, _ = simplified.reset(seed=2)
    full.reset(seed=2)
    policy = CubeOracle(seed=0, action_noise=0.0)
    contact = 0.0
    for _ in range(60):
        action, _ = policy.predict(obs)
        obs, *_, info = simplified.step(action)
        np.testing.assert_array_equal(full.step(action)[4]["state"], info["state"])
        contact = max(contact, float(obs["observation"][18]))
    assert contact > 0.5  # the rollout did grasp the cube


def test_compute_reward_vectorised(state_env: CubeEnv) -> None:
    obs, _ = state_env.reset(seed=0)
    obs, reward, *_ = state_env.step(np.array([0.5, 0.5, 0.0, 0.0, 0.0]))
    a = np.stack([obs["achieved_goal"]] * 4)
    d = np.stack([obs["desired_goal"]] * 4)
    r = state_env.compute_reward(a, d, [{}] * 4)
    assert r.shape == (4,)
    np.testing.assert_allclose(r, reward, atol=1e-6)
    assert reward < 0


@pytest.mark.parametrize(
    "options",
    [
        {"state": np.zeros(STATE_DIM - 1)},
        {"goal_state": np.zeros((1, STATE_DIM))},
        {"state": np.full(STATE_DIM, np.nan)},
        {"state": np.zeros(STATE_DIM)},  # the cube quaternion is zero
        {"target": np.zeros(STATE_DIM)},  # unknown key
    ],
)
def test_bad_reset_options(state_env: CubeEnv, options: dict) -> None:
    with pytest.raises(ValueError):
        state_env.reset(options=options)


def test_sampled_episodes_are_not_solved_and_seeded(state_env: CubeEnv) -> None:
    for seed in range(5):
        _, info = state_env.reset(seed=seed)
        assert not info["is_success"]
        assert info["state"].shape == (STATE_DIM,) and info["state"].dtype == np.float32
    first = state_env.reset(seed=7)[1]["state"]
    np.testing.assert_array_equal(state_env.reset(seed=7)[1]["state"], first)


# ------------------------------------------------------------------ the oracle
def test_oracle_is_registered_and_batched() -> None:
    assert "oracle" in DATA_POLICIES
    envs_ = [CubeEnv(obs_mode="state", terminate_on_success=False) for _ in range(2)]
    policy = make_data_policy("oracle", ENV_ID, envs_[0].action_space, seed=0)
    assert isinstance(policy, CubeOracle)
    obs = [e.reset(seed=i)[0] for i, e in enumerate(envs_)]
    start_cubes = [cube_position(e.state) for e in envs_]
    moved = np.zeros(2)
    for t in range(80):
        batch = {k: np.stack([o[k] for o in obs]) for k in obs[0]}
        actions, state = policy.predict(batch, episode_start=np.full(2, t == 0))
        assert actions.shape == (2, 5) and actions.dtype == np.float32 and state is None
        assert np.all(np.abs(actions) <= 1.0)
        obs = [e.step(a)[0] for e, a in zip(envs_, actions, strict=True)]
        moved = np.maximum(
            moved,
            [
                np.linalg.norm(cube_position(e.state) - c)
                for e, c in zip(envs_, start_cubes, strict=True)
            ],
        )
    assert np.all(moved > 0.04)  # data mode: each env's oracle picked its cube up and moved it
    single, _ = policy.predict(obs[0])
    assert single.shape == (5,)
    with pytest.raises(ValueError, match="oracle"):
        make_data_policy("oracle", "lewm/TwoRoom-v0", envs_[0].action_space)
    with pytest.raises(TypeError, match="obs_mode='state'"):
        policy.predict({"pixels": np.zeros((2, 64, 64, 3), np.uint8)})


def test_oracle_reaches_the_env_goal(state_env: CubeEnv) -> None:
    """``agents.make("expert")``: goal mode carries the cube to ``desired_goal``, no noise."""
    import agents

    policy = agents.make("expert", env_id=ENV_ID, seed=0)
    assert policy.obs_mode == "state" and policy.policy.targets == "goal"
    obs, _ = state_env.reset(seed=11)
    for t in range(200):
        action, _ = policy.predict(obs, episode_start=np.array([t == 0]))
        obs, _, terminated, _, info = state_env.step(action)
        if terminated:
            break
    assert info["is_success"]


def test_collect_with_the_oracle(tmp_path) -> None:
    """`collect --policy oracle` records episodes whose frames the states reproduce."""
    out = collect(
        ENV_ID,
        "oracle",
        2,
        tmp_path / "cube",
        workers=1,
        image_size=64,
        seed=0,
        env_kwargs={"max_episode_steps": 6},
        progress=False,
    )
    ds = load_dataset(out)
    assert ds.meta["env_id"] == ENV_ID and ds.meta["collector"] == "oracle"
    assert len(ds.episodes) == 2
    ep = ds.episodes[0]
    assert ep.pixels.shape == (7, 64, 64, 3) and ep.states.shape == (7, STATE_DIM)
    assert ep.actions.shape == (6, 5) and np.all(np.abs(ep.actions) <= 1.0)
    env = CubeEnv()
    for t in (0, 6):
        np.testing.assert_array_equal(env.render_state(ep.states[t]), ep.pixels[t])
    env.close()
