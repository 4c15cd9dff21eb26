"""RecordEpisodes and collect: finished episodes only, crash safety, parallel collection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.collect import collect, split_quota
from envs.wrappers import RecordEpisodes
from lewm_agent.data import load_dataset

ENV_ID = "lewm/TwoRoom-v0"
ROOT = Path(__file__).resolve().parents[2]
START = np.array([0.2, 0.2], np.float32)
GOAL = np.array([0.8, 0.8], np.float32)


def test_records_finished_episodes_and_drops_unfinished(tmp_path: Path) -> None:
    env = RecordEpisodes(
        gym.make(ENV_ID, max_episode_steps=7), tmp_path / "ds", collector="test", prefix="p-"
    )
    # An episode interrupted by reset() must not leak into the next one.
    env.reset(options={"state": START, "goal_state": GOAL})
    for _ in range(3):
        env.step(np.array([0.0, 1.0], np.float32))
    expected = []
    for ep in range(3):
        obs, info = env.reset(seed=ep)
        frames, states, actions = [obs["pixels"]], [info["state"]], []
        done = False
        while not done:
            a = np.array([0.9, -0.3], np.float32) * (ep + 1)  # out of bounds for ep >= 1
            obs, _, term, trunc, info = env.step(a)
            actions.append(np.clip(a, -1, 1))
            frames.append(obs["pixels"])
            states.append(info["state"])
            done = term or trunc
        expected.append((np.stack(frames), np.stack(actions), np.stack(states), term, trunc))
    # Unfinished episodes: one interrupted by reset(), one by close().
    env.reset(seed=10)
    for _ in range(3):
        env.step(np.zeros(2, np.float32))
    env.reset(seed=11)
    env.step(np.zeros(2, np.float32))
    env.close()

    ds = load_dataset(tmp_path / "ds")
    assert [e.name for e in ds] == ["p-000000.npz", "p-000001.npz", "p-000002.npz"]
    assert ds.meta["collector"] == "test" and ds.meta["env_id"] == ENV_ID
    for e, (px, act, st, term, trunc) in zip(ds.episodes, expected, strict=True):
        np.testing.assert_array_equal(e.pixels, px)
        np.testing.assert_array_equal(e.actions, act)
        np.testing.assert_array_equal(e.states, st)
        assert (e.terminated, e.truncated) == (term, trunc)
        # The recorded frames are the renderings of the recorded states.
        np.testing.assert_array_equal(e.pixels[-1], env.unwrapped.render_state(e.states[-1]))


def test_state_mode_uses_render_and_max_episodes(tmp_path: Path) -> None:
    env = RecordEpisodes(
        gym.make(ENV_ID, obs_mode="state", max_episode_steps=4), tmp_path / "ds", max_episodes=2
    )
    for ep in range(4):
        env.reset(seed=ep, options={"state": START, "goal_state": GOAL})
        done = False
        while not done:
            _, _, term, trunc, _ = env.step(np.array([1.0, 0.0], np.float32))
            done = term or trunc
    assert env.episodes_written == 2 and not env.recording
    ds = load_dataset(tmp_path / "ds")
    assert len(ds) == 2 and all(len(e) == 4 for e in ds)
    np.testing.assert_array_equal(ds.episodes[0].pixels[0], env.unwrapped.render_state(START))


def test_bad_frames_rejected(tmp_path: Path) -> None:
    env = RecordEpisodes(gym.make(ENV_ID, obs_mode="state", render_mode=None), tmp_path / "ds")
    env.reset(seed=0)  # TwoRoom still renders with render_mode=None, so this works
    env.unwrapped.render = lambda: np.zeros((4, 4), np.float32)
    with pytest.raises(TypeError, match="uint8"):
        env.reset(seed=0)


# A recorder that loops forever: every episode starts at START with the goal far away,
# the agent stands still, so each episode is exactly EP_LEN steps with known frames.
EP_LEN = 6
_LOOP = textwrap.dedent(
    f"""
    import sys, time
    import gymnasium as gym
    import numpy as np
    import envs
    from envs.wrappers import RecordEpisodes
    env = RecordEpisodes(gym.make("{ENV_ID}", max_episode_steps={EP_LEN}), sys.argv[1], prefix="w0-")
    while True:
        env.reset(options={{"state": {START.tolist()}, "goal_state": {GOAL.tolist()}}})
        for _ in range({EP_LEN}):
            env.step(np.zeros(2, np.float32))
            time.sleep(0.02)
    """
)


def _spawn(code: str, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, str(out)], cwd=ROOT, env=env)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"recorder process exited early with code {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the recorder process")
        time.sleep(0.05)


def _check_crashed_dataset(out: Path, min_episodes: int) -> None:
    files = sorted((out / "episodes").glob("*.npz"))
    ds = load_dataset(out)  # must not raise: no half episode is ever visible
    assert len(ds) == len(files) >= min_episodes
    frame0 = gym.make(ENV_ID).unwrapped.render_state(START)
    for i, e in enumerate(ds.episodes):
        assert e.name == f"w0-{i:06d}.npz"
        assert len(e) == EP_LEN and e.pixels.shape[0] == EP_LEN + 1
        np.testing.assert_array_equal(e.states, np.tile(START, (EP_LEN + 1, 1)))
        np.testing.assert_array_equal(e.pixels, np.broadcast_to(frame0, e.pixels.shape))
        assert e.truncated and not e.terminated


def test_sigkill_mid_episode_loses_only_the_episode_in_flight(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    proc = _spawn(_LOOP, out)
    try:
        _wait_for(lambda: len(list((out / "episodes").glob("*.npz"))) >= 2, proc)
        time.sleep(0.05)  # somewhere inside the next episode (each step sleeps 20 ms)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _check_crashed_dataset(out, min_episodes=2)


def test_sigkill_during_file_write_leaves_no_visible_file(tmp_path: Path) -> None:
    """Kill the writer exactly between writing the temp file and renaming it."""
    hang = textwrap.dedent(
        """
        import os, time
        _real_replace = os.replace
        _calls = [0]
        def _slow_replace(src, dst):
            if str(dst).endswith(".npz"):
                _calls[0] += 1
                if _calls[0] == 3:  # third episode: hang with the temp file complete
                    open(str(dst) + ".hanging", "w").close()
                    time.sleep(3600)
            return _real_replace(src, dst)
        os.replace = _slow_replace
        """
    )
    out = tmp_path / "ds"
    proc = _spawn(hang + _LOOP, out)
    try:
        _wait_for(lambda: any((out / "episodes").glob("*.hanging")), proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    leftovers = [p.name for p in (out / "episodes").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers, "expected the killed write to leave its temp file behind"
    _check_crashed_dataset(out, min_episodes=2)
    assert len(load_dataset(out)) == 2


def test_split_quota() -> None:
    assert split_quota(7, 2) == [4, 3]
    assert split_quota(6, 3) == [2, 2, 2]


@pytest.mark.parametrize("workers", [1, 2])
def test_collect_exact_number_of_episodes(tmp_path: Path, workers: int) -> None:
    n = 5
    out = collect(
        ENV_ID,
        "scripted",
        n,
        tmp_path / "ds",
        workers=workers,
        image_size=32,
        seed=0,
        env_kwargs={"max_episode_steps": 12},
        progress=False,
    )
    ds = load_dataset(out)
    assert len(ds) == n
    prefixes = {e.name.split("-")[0] for e in ds}
    assert prefixes == {f"w{i}" for i in range(workers)}
    assert ds.meta["num_episodes"] == n and ds.image_size == 32
    assert ds.meta["collector"] == "scripted"
    for e in ds:
        # Collection runs Two-Room without termination: every episode hits the time limit.
        assert len(e) == 12 and e.truncated
        np.testing.assert_array_equal(e.pixels[0].shape, (32, 32, 3))
        assert np.all(np.abs(e.actions) <= 1.0)
        # Consecutive states are at most one step apart (no reset inside an episode).
        assert np.all(np.linalg.norm(np.diff(e.states, axis=0), axis=1) <= 0.04 * 2**0.5 + 1e-6)


def test_data_policies_single_and_batched() -> None:
    from envs.scripted import RandomPolicy, TwoRoomHeuristic, make_data_policy

    space = gym.spaces.Box(-1, 1, (2,), np.float32)
    single = {"observation": START, "achieved_goal": START, "desired_goal": GOAL}
    batch = {k: np.stack([v, v, v]) for k, v in single.items()}
    for policy in (RandomPolicy(space, seed=0), TwoRoomHeuristic(seed=0)):
        a, state = policy.predict(single)
        assert a.shape == (2,) and a.dtype == np.float32 and state is None
        a, _ = policy.predict(batch, episode_start=np.ones(3, bool))
        assert a.shape == (3, 2) and np.all(np.abs(a) <= 1)
    # Noise-free heuristic heads straight for the goal in the same room.
    a, _ = TwoRoomHeuristic().predict(single, deterministic=True)
    np.testing.assert_allclose(a, (GOAL - START) / np.linalg.norm(GOAL - START), atol=1e-6)
    assert isinstance(make_data_policy("scripted", ENV_ID, space, 0), TwoRoomHeuristic)
    assert isinstance(make_data_policy("random", ENV_ID, space, 0), RandomPolicy)
    with pytest.raises(ValueError, match="no scripted data policy"):
        make_data_policy("scripted", "lewm/Nope-v0", space, 0)
    with pytest.raises(ValueError, match="unknown data policy"):
        make_data_policy("nope", ENV_ID, space, 0)


def test_two_room_heuristic_names_a_malformed_observation() -> None:
    from envs.scripted import TwoRoomHeuristic

    good = {"observation": START, "achieved_goal": START, "desired_goal": GOAL}
    for bad in (
        {**good, "observation": np.zeros(3)},  # not a 2-D position
        {**good, "desired_goal": np.stack([GOAL, GOAL])},  # goal batch, single position
        {k: np.zeros((2, 2, 2)) for k in good},  # a batch of batches
    ):
        with pytest.raises(ValueError, match="equal shape"):
            TwoRoomHeuristic(seed=0).predict(bad)


@pytest.mark.parametrize("deterministic", [True, False])
def test_two_room_heuristic_reaches_goals(deterministic: bool) -> None:
    from envs.scripted import TwoRoomHeuristic

    n = 64
    vec = gym.vector.SyncVectorEnv([lambda: gym.make(ENV_ID, obs_mode="state")] * n)
    obs, info = vec.reset(seed=7)
    cross = (info["state"][:, 0] >= 0.5) != (info["goal_state"][:, 0] >= 0.5)
    assert cross.sum() >= 16  # the sample includes through-the-door goals
    policy = TwoRoomHeuristic(seed=0)
    success = np.zeros(n, bool)
    finished = np.zeros(n, bool)
    for _ in range(100):
        actions, _ = policy.predict(obs, deterministic=deterministic)
        obs, _, term, trunc, _ = vec.step(actions)
        success |= term & ~finished
        finished |= term | trunc
        if finished.all():
            break
    vec.close()
    assert success.mean() >= (1.0 if deterministic else 0.9)
