"""Two-Room environment: API compliance, rendering, state round trip, physics."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers lewm/*)
from envs import two_room
from envs.two_room import TwoRoomEnv
from tests.helpers.envs import assert_check_env_clean

ENV_ID = "lewm/TwoRoom-v0"
# Legal positions well inside each room / the door.
LEFT = np.array([0.25, 0.5], np.float32)
RIGHT = np.array([0.75, 0.5], np.float32)


def make(**kwargs) -> TwoRoomEnv:
    return gym.make(ENV_ID, **kwargs).unwrapped


@pytest.mark.parametrize("obs_mode", ["pixels", "state"])
@pytest.mark.parametrize("image_size", [64, 224])
def test_check_env_without_warnings(obs_mode: str, image_size: int) -> None:
    assert_check_env_clean(ENV_ID, TwoRoomEnv, obs_mode=obs_mode, image_size=image_size)


def test_registered_time_limit() -> None:
    env = gym.make(ENV_ID)
    assert env.spec is not None and env.spec.max_episode_steps == 100
    env.reset(seed=0, options={"state": LEFT, "goal_state": RIGHT})
    for t in range(100):
        _, _, term, trunc, _ = env.step(np.zeros(2, np.float32))
        assert not term
        assert trunc == (t == 99)


@pytest.mark.parametrize("image_size", [64, 224])
def test_pixel_observation_and_render(image_size: int) -> None:
    env = make(image_size=image_size)
    obs, info = env.reset(seed=3)
    assert set(obs) == {"pixels", "goal"}
    for img in (obs["pixels"], obs["goal"], env.render()):
        assert img.dtype == np.uint8 and img.shape == (image_size, image_size, 3)
    np.testing.assert_array_equal(obs["pixels"], env.render())
    # The goal image is the rendering of the goal state, and the frame never shows the goal.
    np.testing.assert_array_equal(obs["goal"], env.render_state(info["goal_state"]))
    assert not np.array_equal(obs["pixels"], obs["goal"])
    # The agent is drawn in its colour, and is a visible blob (>= 12 px at 64 px).
    red = np.all(obs["pixels"] == two_room.AGENT_COLOR, axis=-1)
    assert red.sum() >= 12 * (image_size / 64) ** 2
    # Agent pixels are where the state says (y up, row 0 = top).
    rows, cols = np.nonzero(red)
    x, y = info["state"]
    assert abs(cols.mean() + 0.5 - x * image_size) < 1.0
    assert abs(rows.mean() + 0.5 - (1 - y) * image_size) < 1.0


def test_wall_and_door_drawn() -> None:
    env = make(image_size=64)
    frame = env.render_state(LEFT)
    wall_col = frame[:, 32]  # x ~ 0.5
    dark = np.all(wall_col == two_room.WALL_COLOR, axis=-1)
    assert dark[:20].all() and dark[-20:].all()  # wall above and below the door
    assert not dark[28:36].any()  # the door (y in [0.4, 0.6]) is open


def test_render_state_round_trip_exact() -> None:
    env = make(image_size=64)
    other = make(image_size=64)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(60):
        obs, _, term, _, info = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
        if term:
            obs, info = env.reset()
        expected = env.render_state(info["state"])
        np.testing.assert_array_equal(obs["pixels"], expected)
        obs2, info2 = other.reset(
            options={"state": info["state"], "goal_state": info["goal_state"]}
        )
        np.testing.assert_array_equal(obs2["pixels"], obs["pixels"])
        np.testing.assert_array_equal(obs2["goal"], obs["goal"])
        np.testing.assert_array_equal(info2["state"], info["state"])


def test_render_state_does_not_change_env() -> None:
    env = make()
    obs, info = env.reset(seed=1)
    env.render_state(RIGHT)
    np.testing.assert_array_equal(env.render(), obs["pixels"])
    assert env._info()["state"].tolist() == info["state"].tolist()


def test_success_reward_and_state_obs() -> None:
    env = make(obs_mode="state")
    goal = np.array([0.7, 0.7], np.float32)
    near = np.array([0.7, 0.7 - 0.069], np.float32)
    far = np.array([0.7, 0.7 - 0.075], np.float32)
    obs, info = env.reset(options={"state": near, "goal_state": goal})
    assert info["is_success"]
    np.testing.assert_allclose(obs["observation"], near)
    np.testing.assert_allclose(obs["achieved_goal"], near)
    np.testing.assert_allclose(obs["desired_goal"], goal)
    _, info = env.reset(options={"state": far, "goal_state": goal})
    assert not info["is_success"]
    # Step into the goal: terminated = success, reward = -distance.
    obs, reward, term, trunc, info = env.step(np.array([0.0, 1.0], np.float32))
    assert term and info["is_success"] and not trunc
    assert reward == pytest.approx(-np.linalg.norm(obs["achieved_goal"] - goal), abs=1e-6)
    # Vectorised compute_reward (HER) agrees with step's reward.
    ach = np.stack([obs["achieved_goal"], far])
    des = np.stack([goal, goal])
    r = env.compute_reward(ach, des, [{}, {}])
    assert r.shape == (2,)
    assert r[0] == pytest.approx(reward, abs=1e-6)
    assert r[1] == pytest.approx(-0.075, abs=1e-6)


def test_terminate_on_success_off() -> None:
    env = make(obs_mode="state", terminate_on_success=False)
    env.reset(options={"state": [0.7, 0.62], "goal_state": [0.7, 0.7]})
    _, _, term, _, info = env.step(np.array([0.0, 1.0], np.float32))
    assert info["is_success"] and not term


def _run(env: TwoRoomEnv, start, action, steps: int) -> np.ndarray:
    env.reset(options={"state": np.asarray(start, np.float32), "goal_state": [0.1, 0.1]})
    path = []
    for _ in range(steps):
        _, _, _, _, info = env.step(np.asarray(action, np.float32))
        path.append(info["state"])
    return np.array(path)  # (steps, 2)


@pytest.mark.parametrize("y", [0.1, 0.3, 0.38, 0.62, 0.8, 0.95])
def test_wall_blocks_outside_door(y: float) -> None:
    env = make(obs_mode="state")
    for start, direction in (((0.3, y), (1.0, 0.0)), ((0.7, y), (-1.0, 0.0))):
        path = _run(env, start, direction, 30)
        side = np.sign(start[0] - 0.5)
        assert np.all(np.sign(path[:, 0] - 0.5) == side), "agent crossed the wall"
        # It ends touching the wall face: disk edge at the wall surface.
        face = 0.5 + side * (two_room.WALL_THICKNESS / 2 + two_room.AGENT_RADIUS)
        assert path[-1, 0] == pytest.approx(face, abs=1e-6)
        assert path[-1, 1] == pytest.approx(y, abs=1e-6)  # no drift along the face


def test_no_tunnelling_with_diagonal_moves() -> None:
    env = make(obs_mode="state")
    rng = np.random.default_rng(0)
    for _ in range(200):
        start = (rng.uniform(0.05, 0.43), rng.choice([rng.uniform(0.05, 0.35), 0.9]))
        path = _run(env, start, (1.0, rng.uniform(-0.3, 0.3)), 15)
        for x, yy in path:
            assert two_room.is_legal_position(float(x), float(yy))
            if abs(yy - 0.5) > 0.07:  # outside the door corridor: must stay left
                assert x <= 0.5


def test_door_lets_agent_through() -> None:
    env = make(obs_mode="state")
    path = _run(env, (0.2, 0.5), (1.0, 0.0), 25)
    assert path[-1, 0] > 0.75
    # Slanted approach: slides along the wall face into the door, then through.
    path = _run(env, (0.3, 0.75), (1.0, -1.0), 30)
    assert path[:, 0].max() > 0.55


def test_arena_bounds() -> None:
    env = make(obs_mode="state")
    r = two_room.AGENT_RADIUS
    path = _run(env, (0.2, 0.2), (-1.0, -1.0), 20)
    np.testing.assert_allclose(path[-1], [r, r], atol=1e-6)
    path = _run(env, (0.8, 0.8), (1.0, 1.0), 20)
    np.testing.assert_allclose(path[-1], [1 - r, 1 - r], atol=1e-6)


def test_random_resets_are_legal_and_cover_both_rooms() -> None:
    env = make(obs_mode="state")
    starts, goals = [], []
    for seed in range(200):
        _, info = env.reset(seed=seed)
        starts.append(info["state"])
        goals.append(info["goal_state"])
        assert not info["is_success"]
    for p in starts + goals:
        assert two_room.is_legal_position(float(p[0]), float(p[1]))
    xs = np.array(starts)[:, 0]
    assert 0.3 < (xs < 0.5).mean() < 0.7


@pytest.mark.parametrize(
    "options, match",
    [
        ({"state": [0.5, 0.2]}, "not a legal"),  # inside the wall
        ({"state": [0.01, 0.5]}, "not a legal"),  # disk sticks out of the arena
        ({"goal_state": [1.2, 0.5]}, "not a legal"),
        ({"state": [0.2, 0.3, 0.1]}, "shape"),
        ({"goal_state": [[0.2, 0.3]]}, "shape"),
        ({"state": [np.nan, 0.3]}, "finite"),
    ],
)
def test_reset_validation(options: dict, match: str) -> None:
    env = make()
    with pytest.raises(ValueError, match=match):
        env.reset(options=options)


def test_door_position_is_legal_and_settable() -> None:
    env = make()
    _, info = env.reset(options={"state": [0.5, 0.5], "goal_state": [0.5, 0.45]})
    np.testing.assert_array_equal(info["state"], np.array([0.5, 0.5], np.float32))


def test_bad_constructor_args() -> None:
    with pytest.raises(ValueError, match="obs_mode"):
        TwoRoomEnv(obs_mode="rgb")
    with pytest.raises(ValueError, match="render_mode"):
        TwoRoomEnv(render_mode="human")
