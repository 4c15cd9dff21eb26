"""Push-T env (envs/push_t.py) and its scripted data policy (envs/push_t_pusher.py)."""

from __future__ import annotations

import math
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from envs.push_t import (  # noqa: E402
    PUSHER_RADIUS,
    STATE_DIM,
    PushTEnv,
    distance_to_block,
    simulate_step,
)
from envs.push_t_pusher import PushTPusher  # noqa: E402
from tests.helpers.envs import assert_check_env_clean, assert_time_limit  # noqa: E402

GOAL = np.array([100.0, 100.0, 256.0, 256.0, 0.5, 0, 0, 0, 0, 0], dtype=np.float32)


def _with_block(dx: float = 0.0, dy: float = 0.0, dangle: float = 0.0) -> np.ndarray:
    s = GOAL.copy()
    s[0:2] = (400.0, 420.0)  # the pusher elsewhere: success only looks at the block
    s[2:5] += (dx, dy, dangle)
    return s


def _rolled_out(env: PushTEnv, steps: int, seed: int = 0) -> None:
    """Drive ``env`` (state mode) with the expert so the block is in motion."""
    obs, _ = env.reset(seed=seed)
    policy = PushTPusher(noise=0.1, seed=seed)
    for _ in range(steps):
        action, _ = policy.predict(obs)
        obs, *_ = env.step(action)


ENV_ID = "lewm/PushT-v0"


@pytest.mark.parametrize("obs_mode", ["pixels", "state"])
def test_check_env_without_warnings(obs_mode: str) -> None:
    assert_check_env_clean(ENV_ID, PushTEnv, obs_mode=obs_mode)


def test_registered_time_limit() -> None:
    assert_time_limit(ENV_ID, 300)


@pytest.mark.parametrize("size", [64, 224])
def test_render_sizes(size: int) -> None:
    env = PushTEnv(image_size=size)
    obs, _ = env.reset(seed=1)
    for img in (obs["pixels"], obs["goal"], env.render()):
        assert img.shape == (size, size, 3) and img.dtype == np.uint8
        assert img.std() > 5.0  # not blank
        blue = (img[..., 2] > 150) & (img[..., 0] < 120)  # the pusher
        grey = np.abs(img.astype(int) - (119, 128, 140)).max(axis=-1) < 12  # the T
        assert blue.sum() > 0 and grey.sum() > 0.01 * size * size
    assert not np.array_equal(obs["pixels"], obs["goal"])


def test_state_round_trip_is_exact() -> None:
    """Restoring ``info["state"]`` gives the same frame and the same future, bit for bit."""
    a = PushTEnv(obs_mode="state")
    _rolled_out(a, 25)
    state, goal = a.state, a.goal_state
    frame = a.render()

    b = PushTEnv(obs_mode="state")
    _, info = b.reset(options={"state": state, "goal_state": goal})
    np.testing.assert_array_equal(info["state"], state)
    np.testing.assert_array_equal(b.render(), frame)
    np.testing.assert_array_equal(b.render_state(state), frame)
    for action in (np.array([0.7, -0.3]), np.array([-1.0, 1.0]), np.array([0.2, 0.9])):
        _, ra, _, _, ia = a.step(action)
        _, rb, _, _, ib = b.step(action)
        np.testing.assert_array_equal(ia["state"], ib["state"])
        np.testing.assert_array_equal(a.render(), b.render())
        assert ra == rb
    np.testing.assert_array_equal(
        simulate_step(state, [0.7, -0.3]), simulate_step(state, [0.7, -0.3])
    )


def test_round_trip_while_pushing() -> None:
    """Exact even mid-contact (cached contact impulses are not hidden state)."""
    s = np.array([150, 256, 256, 256, 0, 0, 0, 0, 0, 0], dtype=np.float32)
    env = PushTEnv(obs_mode="state")
    env.reset(options={"state": s, "goal_state": GOAL})
    for _ in range(6):
        env.step(np.array([1.0, 0.0]))
    mid = env.state
    assert mid[7] > 10.0  # the block is being pushed
    nxt = env.step(np.array([1.0, 0.1]))[4]["state"]
    env.reset(options={"state": mid, "goal_state": GOAL})
    np.testing.assert_array_equal(env.step(np.array([1.0, 0.1]))[4]["state"], nxt)


def test_render_state_leaves_env_alone() -> None:
    env = PushTEnv()
    obs, info = env.reset(seed=3)
    other = env.render_state(GOAL)
    assert other.shape == obs["pixels"].shape
    np.testing.assert_array_equal(env.state, info["state"])
    np.testing.assert_array_equal(env.render(), obs["pixels"])


@pytest.mark.parametrize(
    ("offset", "success"),
    [
        ((0.0, 0.0, 0.0), True),
        ((12.0, 9.0, 0.0), True),  # 15 px
        ((0.0, 0.0, math.pi / 12), True),
        ((25.0, 0.0, 0.0), False),
        ((0.0, -25.0, 0.0), False),
        ((0.0, 0.0, math.pi / 6), False),
        ((0.0, 0.0, -math.pi / 6), False),
    ],
)
def test_success(offset: tuple[float, float, float], success: bool) -> None:
    env = PushTEnv(obs_mode="state")
    _, info = env.reset(options={"state": _with_block(*offset), "goal_state": GOAL})
    assert info["is_success"] is success
    _, reward, terminated, _, info = env.step(np.zeros(2))  # at rest: nothing moves
    assert info["is_success"] is success and terminated is success
    assert reward <= 0.0


def test_success_wraps_angles() -> None:
    env = PushTEnv(obs_mode="state")
    goal = GOAL.copy()
    goal[4] = math.pi - 0.05
    state = _with_block()
    state[4] = -math.pi + 0.05  # 0.1 rad away across the wrap
    _, info = env.reset(options={"state": state, "goal_state": goal})
    assert info["is_success"] and info["angle_error"] == pytest.approx(0.1, abs=1e-5)


def test_compute_reward_vectorised() -> None:
    env = PushTEnv(obs_mode="state")
    obs, _ = env.reset(seed=0)
    _, reward, *_ = env.step(np.array([0.5, 0.5]))
    obs = env._obs()
    batch_a = np.stack([obs["achieved_goal"]] * 5)
    batch_d = np.stack([obs["desired_goal"]] * 5)
    r = env.compute_reward(batch_a, batch_d, [{}] * 5)
    assert r.shape == (5,)
    np.testing.assert_allclose(r, reward, atol=1e-5)
    assert env.compute_reward(obs["desired_goal"], obs["desired_goal"], {}) == 0.0


@pytest.mark.parametrize(
    "options",
    [
        {"state": np.zeros(5)},
        {"goal_state": np.zeros((2, STATE_DIM))},
        {"state": np.full(STATE_DIM, np.nan)},
        {"state": np.array([600.0, 100, 256, 256, 0, 0, 0, 0, 0, 0])},  # pusher off the arena
        {"state": np.array([100.0, 100, 256, 256, 0, 1e6, 0, 0, 0, 0])},
        {"state": "abc"},
        {"goal": GOAL},  # unknown key
    ],
)
def test_bad_reset_options(options: dict) -> None:
    with pytest.raises(ValueError):
        PushTEnv().reset(options=options)
    with pytest.raises(ValueError):
        PushTEnv().render_state(np.zeros(3))


def test_pusher_cannot_crush_block_into_wall() -> None:
    """A block pinned against a wall stops the pusher instead of being overlapped."""
    env = PushTEnv(obs_mode="state")
    env.reset(
        options={"state": np.array([300, 230, 420, 256, 0, 0, 0, 0, 0, 0]), "goal_state": GOAL}
    )
    for _ in range(15):
        _, _, _, _, info = env.step(np.array([1.0, 0.0]))
        s = info["state"]
        assert distance_to_block(s[:2], s[2:5]) > PUSHER_RADIUS - 3.0
    assert s[2] + 60.0 <= 512.0  # the bar's end stays inside the arena


def test_expert_predict_batched_and_single() -> None:
    envs = [PushTEnv(obs_mode="state") for _ in range(3)]
    obs = [e.reset(seed=i)[0] for i, e in enumerate(envs)]
    batch = {k: np.stack([o[k] for o in obs]) for k in obs[0]}
    policy = PushTPusher(noise=0.2, seed=0)
    start = np.ones(3, dtype=bool)
    moved = np.zeros(3, dtype=bool)
    first = [e.state for e in envs]
    for _ in range(40):
        actions, state = policy.predict(batch, episode_start=start)
        start[:] = False
        assert actions.shape == (3, 2) and actions.dtype == np.float32 and state is None
        assert np.all(np.abs(actions) <= 1.0)
        obs = [e.step(a)[0] for e, a in zip(envs, actions, strict=True)]
        batch = {k: np.stack([o[k] for o in obs]) for k in obs[0]}
    for i, e in enumerate(envs):
        moved[i] = np.abs(e.state[2:5] - first[i][2:5]).max() > 1.0
    assert moved.any()  # the expert does push the block
    single, _ = policy.predict(obs[0], episode_start=np.array([True]))
    assert single.shape == (2,) and np.all(np.abs(single) <= 1.0)
    with pytest.raises(ValueError):
        policy.predict({"pixels": np.zeros((64, 64, 3), np.uint8), "goal": np.zeros((64, 64, 3))})


def test_expert_speed_bounds_its_moves_and_slows_the_block() -> None:
    """`speed` caps every deterministic action and the block moves less at a lower pace."""
    with pytest.raises(ValueError, match="speed"):
        PushTPusher(speed=0.0)
    travelled = {}
    for speed in (0.3, 1.0):
        env = PushTEnv(obs_mode="state")
        obs, _ = env.reset(seed=1)
        policy = PushTPusher(seed=1, speed=speed)
        start, path = True, 0.0
        for _ in range(60):
            action, _ = policy.predict(obs, episode_start=np.array([start]), deterministic=True)
            start = False
            assert np.abs(action).max() <= speed + 1e-6
            before = env.state[2:4].copy()
            obs, *_ = env.step(action)
            path += float(np.linalg.norm(env.state[2:4] - before))
        travelled[speed] = path
    assert 0.0 < travelled[0.3] < travelled[1.0]
