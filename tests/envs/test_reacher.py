"""Reacher env (envs/reacher.py) and its OU data policy (envs/reacher_policy.py)."""

from __future__ import annotations

import math
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from envs.reacher import ELBOW_LIMIT, SUCCESS_TOL, ReacherEnv  # noqa: E402
from envs.reacher_policy import ReacherOU  # noqa: E402
from tests.helpers.envs import assert_check_env_clean, assert_time_limit  # noqa: E402

GOAL = np.array([0.5, -1.0, 0.0, 0.0], dtype=np.float32)


@pytest.fixture(scope="module")
def state_env():
    env = ReacherEnv(obs_mode="state")
    yield env
    env.close()


ENV_ID = "lewm/Reacher-v0"


@pytest.mark.parametrize("obs_mode", ["pixels", "state"])
def test_check_env_without_warnings(obs_mode: str) -> None:
    assert_check_env_clean(ENV_ID, ReacherEnv, obs_mode=obs_mode)


def test_registered_time_limit() -> None:
    assert_time_limit(ENV_ID, 200)


@pytest.mark.parametrize("size", [64, 224])
def test_render_sizes(size: int) -> None:
    env = ReacherEnv(image_size=size)
    obs, _ = env.reset(seed=1)
    for img in (obs["pixels"], obs["goal"], env.render()):
        assert img.shape == (size, size, 3) and img.dtype == np.uint8
        assert img.std() > 5.0  # not blank
        red = (img[..., 0] > 150) & (img[..., 1] < 80) & (img[..., 2] < 80)  # fingertip
        blue = (img[..., 2] > 120) & (img[..., 0] < 80)  # upper arm
        assert red.sum() > 0 and blue.sum() > 0
    assert not np.array_equal(obs["pixels"], obs["goal"])
    env.close()


def test_state_round_trip_is_exact() -> None:
    """Restoring ``info["state"]`` gives the same frame and the same future, bit for bit."""
    a, b = ReacherEnv(), ReacherEnv()
    obs, _ = a.reset(seed=0)
    policy = ReacherOU(seed=0)
    for _ in range(15):
        action, _ = policy.predict(obs)
        obs, *_ = a.step(action)
    state, goal, frame = a.state, a.goal_state, a.render()
    assert np.abs(state[2:]).max() > 0.1  # moving, so velocities matter

    obs_b, info = b.reset(options={"state": state, "goal_state": goal})
    np.testing.assert_array_equal(info["state"], state)
    np.testing.assert_array_equal(obs_b["pixels"], frame)
    np.testing.assert_array_equal(b.render_state(state), frame)
    for action in (np.array([0.7, -0.3]), np.array([-1.0, 1.0])):
        _, ra, _, _, ia = a.step(action)
        _, rb, _, _, ib = b.step(action)
        np.testing.assert_array_equal(ia["state"], ib["state"])
        np.testing.assert_array_equal(a.render(), b.render())
        assert ra == rb
    a.close()
    b.close()


def test_round_trip_at_elbow_limit(state_env: ReacherEnv) -> None:
    """The joint-limit constraint carries no hidden solver state (warm start is off)."""
    env = state_env
    env.reset(options={"state": np.array([0.0, 2.5, 0.0, 0.0]), "goal_state": GOAL})
    for _ in range(12):
        env.step(np.array([0.3, 1.0]))
    mid = env.state
    assert mid[1] > ELBOW_LIMIT - 0.05
    nxt = env.step(np.array([-0.2, 1.0]))[4]["state"]
    env.reset(options={"state": mid, "goal_state": GOAL})
    np.testing.assert_array_equal(env.step(np.array([-0.2, 1.0]))[4]["state"], nxt)


@pytest.mark.parametrize(
    ("offset", "success"),
    [
        ((0.0, 0.0), True),
        ((0.15, -0.15), True),
        ((0.25, 0.0), False),
        ((0.0, -0.25), False),
        ((math.pi / 6, 0.0), False),
        ((0.0, math.pi / 6), False),
    ],
)
def test_success(state_env: ReacherEnv, offset: tuple[float, float], success: bool) -> None:
    state = GOAL.copy()
    state[:2] += offset
    _, info = state_env.reset(options={"state": state, "goal_state": GOAL})
    assert info["is_success"] is success
    assert SUCCESS_TOL == 0.2


def test_success_wraps_shoulder(state_env: ReacherEnv) -> None:
    goal = np.array([math.pi - 0.05, 0.3, 0, 0])
    state = np.array([-math.pi + 0.05, 0.3, 0, 0])
    _, info = state_env.reset(options={"state": state, "goal_state": goal})
    assert info["is_success"]
    _, reward, terminated, _, _ = state_env.step(np.zeros(2))
    assert terminated and -0.2 / math.pi < reward <= 0.0


def test_compute_reward_vectorised(state_env: ReacherEnv) -> None:
    obs, _ = state_env.reset(seed=0)
    obs, reward, *_ = state_env.step(np.array([0.5, 0.5]))
    a = np.stack([obs["achieved_goal"]] * 4)
    d = np.stack([obs["desired_goal"]] * 4)
    r = state_env.compute_reward(a, d, [{}] * 4)
    assert r.shape == (4,)
    np.testing.assert_allclose(r, reward, atol=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        {"state": np.zeros(3)},
        {"goal_state": np.zeros((1, 4))},
        {"state": np.array([0.0, np.nan, 0, 0])},
        {"state": np.array([0.0, 3.1, 0, 0])},  # beyond the elbow limit
        {"state": np.array([0.0, 0.0, 1e3, 0])},
        {"target": GOAL},  # unknown key
    ],
)
def test_bad_reset_options(state_env: ReacherEnv, options: dict) -> None:
    with pytest.raises(ValueError):
        state_env.reset(options=options)


def test_ou_predict_batched_and_single(state_env: ReacherEnv) -> None:
    obs, _ = state_env.reset(seed=0)
    batch = {k: np.stack([v] * 5) for k, v in obs.items()}
    policy = ReacherOU(theta=0.15, sigma=0.3, seed=0)
    prev = None
    for t in range(30):
        actions, state = policy.predict(batch, episode_start=np.full(5, t == 0))
        assert actions.shape == (5, 2) and actions.dtype == np.float32 and state is None
        assert np.all(np.abs(actions) <= 1.0)
        if prev is not None:  # smooth: consecutive actions are correlated
            assert np.abs(actions - prev).mean() < 0.5
        prev = actions
    assert np.unique(actions[:, 0]).size == 5  # independent processes per env
    single, _ = policy.predict(obs)
    assert single.shape == (2,)
    pixels = {
        "pixels": np.zeros((2, 64, 64, 3), np.uint8),
        "goal": np.zeros((2, 64, 64, 3), np.uint8),
    }
    assert policy.predict(pixels)[0].shape == (2, 2)
