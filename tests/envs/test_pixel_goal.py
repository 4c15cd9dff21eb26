"""PixelGoal: any Gymnasium env -> {"pixels", "goal"}; recording and planning on Reacher-v5."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.wrappers import PixelGoal, RecordEpisodes, resize_image
from lewm_agent import WorldModelAgent
from lewm_agent.data import load_dataset

SIZE = 32  # the `test` preset's image size
RENDER = 64  # gymnasium's Reacher renders 480 px by default; 64 keeps the tests fast


# A fixed top-down camera: gymnasium's default free camera aims at wherever the arm
# is at the first render, so it would differ between processes (data vs evaluation).
TOP_DOWN = {"trackbodyid": -1, "lookat": np.zeros(3), "distance": 0.5, "elevation": -90.0}


def make_reacher(**kwargs: object) -> gym.Env:
    return gym.make(
        "Reacher-v5",
        render_mode="rgb_array",
        width=RENDER,
        height=RENDER,
        default_camera_config=TOP_DOWN,
        **kwargs,
    )


def arm_at_target(goal_env: gym.Env, env: gym.Env) -> None:
    """goal_state_fn for Reacher-v5: the arm's fingertip on the live episode's target.

    Reacher-v5's qpos is ``[shoulder, elbow, target_x, target_y]`` with links of 0.1
    and 0.11 m (fingertip at the end of the second); two-link inverse kinematics.
    """
    target = np.asarray(env.unwrapped.data.qpos[2:4], dtype=np.float64)
    l1, l2 = 0.1, 0.11
    d = float(np.clip(np.linalg.norm(target), abs(l1 - l2) + 1e-6, l1 + l2 - 1e-6))
    cos_q2 = (d * d - l1 * l1 - l2 * l2) / (2 * l1 * l2)
    q2 = math.acos(float(np.clip(cos_q2, -1.0, 1.0)))
    q1 = math.atan2(target[1], target[0]) - math.atan2(l2 * math.sin(q2), l1 + l2 * math.cos(q2))
    goal_env.unwrapped.set_state(np.array([q1, q2, *target]), np.zeros(4))


# ---------------------------------------------------------------------------- resize
def test_resize_integer_factor_is_the_rounded_block_mean() -> None:
    img = np.random.default_rng(0).integers(0, 256, (96, 64, 3), dtype=np.uint8)
    out = resize_image(img, (24, 16))
    blocks = img.reshape(24, 4, 16, 4, 3).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_array_equal(out, np.floor(blocks + 0.5).astype(np.uint8))


@pytest.mark.parametrize("size", [(64, 64), (37, 23), (150, 211), (1, 1)])
def test_resize_keeps_flat_images_flat_and_shapes(size: tuple[int, int]) -> None:
    flat = np.full((90, 70, 3), 77, dtype=np.uint8)
    out = resize_image(flat, size)
    assert out.shape == (*size, 3) and out.dtype == np.uint8
    assert np.all(out == 77)  # area and bilinear weights sum to one


def test_resize_area_average_keeps_thin_features() -> None:
    """A 1-px line survives a 7.5x shrink as a faint line (point sampling would drop it)."""
    img = np.zeros((480, 480, 3), dtype=np.uint8)
    img[:, 243] = 255  # one bright column
    out = resize_image(img, 64)
    col_mass = out[..., 0].astype(np.float64).sum(axis=0) / 64  # (64,)
    assert col_mass.sum() == pytest.approx(255 / 7.5, abs=1.0)  # the line's mass is kept


def test_resize_rejects_non_images() -> None:
    with pytest.raises(ValueError, match="uint8"):
        resize_image(np.zeros((8, 8, 3), np.float32), 4)
    with pytest.raises(ValueError, match="uint8"):
        resize_image(np.zeros((8, 8), np.uint8), 4)


# ----------------------------------------------------------------------- PixelGoal
@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
def test_pixel_goal_passes_check_env() -> None:
    env = PixelGoal(make_reacher(), image_size=SIZE, goal_state_fn=arm_at_target)
    check_env(env, skip_render_check=True)  # seeded determinism includes the goal image
    env.close()


def test_goal_state_fn_goal_is_what_the_agent_sees_at_the_goal() -> None:
    env = PixelGoal(make_reacher(), image_size=SIZE, goal_state_fn=arm_at_target)
    obs, info = env.reset(seed=3)
    assert set(obs) == {"pixels", "goal"}
    assert obs["pixels"].shape == obs["goal"].shape == (SIZE, SIZE, 3)
    assert env.observation_space.contains(obs)
    assert not np.array_equal(obs["pixels"], obs["goal"])
    # Put the live env in the goal state: its frame is then exactly the goal image
    # (same renderer, same camera, same resize).
    arm_at_target(env.unwrapped, env)
    np.testing.assert_array_equal(resize_image(env.render(), SIZE), obs["goal"])
    # info["state"] is added: Reacher-v5 is MuJoCo, so it is [qpos, qvel].
    _, info = env.reset(seed=4)
    u = env.unwrapped
    expected = np.concatenate([u.data.qpos, u.data.qvel]).astype(np.float32)
    np.testing.assert_array_equal(info["state"], expected)
    env.close()


def test_goal_fn_and_set_goal() -> None:
    red = np.zeros((RENDER, RENDER, 3), np.uint8)
    red[..., 0] = 200
    env = PixelGoal(make_reacher(), goal_fn=lambda e: red, image_size=SIZE)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs["goal"], resize_image(red, SIZE))
    # set_goal replaces the running episode's goal at once...
    blue = np.zeros((100, 100, 3), np.uint8)
    blue[..., 2] = 90
    env.set_goal(blue)
    obs, *_ = env.step(np.zeros(2, np.float32))
    np.testing.assert_array_equal(obs["goal"], resize_image(blue, SIZE))
    # ...but a goal_fn recomputes the goal at every reset.
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(obs["goal"], resize_image(red, SIZE))

    fixed = PixelGoal(make_reacher(), image_size=SIZE)
    with pytest.raises(RuntimeError, match="no goal"):
        fixed.reset(seed=0)  # never a silent blank goal
    fixed.set_goal(blue)
    for seed in (0, 1):  # without a goal function, the set_goal image stays the goal
        obs, _ = fixed.reset(seed=seed)
        np.testing.assert_array_equal(obs["goal"], resize_image(blue, SIZE))
    with pytest.raises(ValueError, match="uint8"):
        fixed.set_goal(np.zeros((8, 8, 3), np.float32))


def test_pixel_goal_clear_errors() -> None:
    with pytest.raises(ValueError, match="rgb_array"):
        PixelGoal(gym.make("Reacher-v5"), goal_fn=lambda e: None)  # render_mode None
    with pytest.raises(ValueError, match="not both"):
        PixelGoal(make_reacher(), goal_fn=lambda e: None, goal_state_fn=arm_at_target)
    env = PixelGoal(make_reacher(), goal_fn=lambda e: np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"goal_fn\(env\) must be a uint8"):
        env.reset(seed=0)


def test_non_mujoco_env_records_its_flat_observation_as_state(tmp_path: Path) -> None:
    """Pendulum has no info['state'] and no MuJoCo data: the raw observation is the state."""
    inner = gym.make("Pendulum-v1", render_mode="rgb_array", max_episode_steps=6)
    env = PixelGoal(inner, image_size=SIZE)
    env.set_goal(np.zeros((SIZE, SIZE, 3), np.uint8))
    rec = RecordEpisodes(env, tmp_path / "ds", collector="test")
    # [cos, sin, velocity] does not go back in through reset(options={"state": ...}):
    # PixelGoal says the recorded state cannot restore the frame.
    with pytest.warns(UserWarning, match="does not restore the frame"):
        _, info = rec.reset(seed=0)
    raw = [inner.unwrapped._get_obs()]
    done = False
    while not done:
        _, _, term, trunc, info = rec.step(np.array([0.5], np.float32))
        raw.append(inner.unwrapped._get_obs())
        done = term or trunc
    rec.flush()  # episodes are written on a background thread
    ep = load_dataset(tmp_path / "ds").episodes[0]
    assert ep.pixels.shape == (7, SIZE, SIZE, 3)
    np.testing.assert_allclose(ep.states, np.stack(raw), rtol=1e-6)


# ------------------------------------------- record -> train -> plan on gymnasium's env
# Training 20 steps is far too short to learn anything (SIGReg still reports a collapse);
# the test checks the plumbing: any env -> dataset -> agent -> bounded action.
@pytest.mark.filterwarnings("ignore:LeWM embeddings look COLLAPSED")
def test_reacher_v5_record_train_plan(tmp_path: Path) -> None:
    data = tmp_path / "reacher_v5"
    steps = 30  # shorter than Reacher-v5's own 50-step limit: keeps the test fast
    env = RecordEpisodes(
        PixelGoal(
            make_reacher(max_episode_steps=steps), image_size=SIZE, goal_state_fn=arm_at_target
        ),
        data,
        collector="random",
    )
    rng = np.random.default_rng(0)
    for ep in range(4):
        obs, _ = env.reset(seed=ep)
        done = False
        while not done:
            obs, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
            done = term or trunc
    assert env.episodes_written == 4
    env.flush()  # episodes are written on a background thread
    ds = load_dataset(data)
    assert ds.meta["env_id"] == "Reacher-v5" and ds.image_size == SIZE
    assert ds.state_dim == 8 and all(len(e) == steps for e in ds)  # [qpos (4), qvel (4)]
    np.testing.assert_array_equal(ds.episodes[-1].pixels[-1], obs["pixels"])

    agent = WorldModelAgent.fit(data, preset="test", steps=20, progress=False)
    obs, _ = env.reset(seed=100)
    action, state = agent.predict(obs, deterministic=True)
    space = env.action_space
    assert action.shape == space.shape and state is None
    assert np.all(np.isfinite(action))
    assert np.all(action >= space.low) and np.all(action <= space.high)
    env.close()
