"""Tests for eval/video.py and eval/video_frames.py: exact frame counts, layout, header text, grid, record_episode."""

from __future__ import annotations

import gymnasium as gym
import imageio_ffmpeg
import numpy as np
import pytest
from gymnasium import spaces

from eval.video import _clip_duration, count_frames, record_episode, write_video
from eval.video_frames import grid_frames, side_by_side_frames

SUCCESS_GREEN = np.array([40, 200, 70], dtype=np.uint8)


def _barcode_frames(n: int) -> np.ndarray:
    """n frames (16, 64, 3) that spell their own index in 8 black/white 8-px bars."""
    bits = (np.arange(n)[:, None] >> np.arange(8)[None, :]) & 1  # (n, 8)
    bars = np.repeat(bits * 255, 8, axis=1).astype(np.uint8)  # (n, 64)
    return np.broadcast_to(bars[:, None, :, None], (n, 16, 64, 3)).copy()


def _read_barcode(frame: np.ndarray) -> int:
    bars = frame.reshape(16, 8, 8, 3).mean(axis=(0, 2, 3)) > 128
    return int(sum(int(b) << i for i, b in enumerate(bars)))


def _decode(path) -> list[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3) for buf in reader]


# --------------------------------------------------------------------------- write_video


# 10 @ 10 fps and 50 @ 10 fps are cases where moviepy's own duration
# (sum([1/fps] * n)) truncates to n - 1 frames; 7 and 23 happen to survive it.
@pytest.mark.parametrize(
    ("n", "fps"), [(7, 10), (23, 10), (7, 5), (23, 5), (10, 10), (50, 10), (8, 5)]
)
def test_write_video_keeps_every_frame(tmp_path, n, fps):
    frames = _barcode_frames(n)
    path = write_video(frames, tmp_path / f"v{n}_{fps}.mp4", fps=fps)
    assert path.is_file()
    assert count_frames(path) == n
    n_ffmpeg, _secs = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert n_ffmpeg == n
    # Every frame, in order, including the last one (not a repeat of n - 2).
    assert [_read_barcode(f) for f in _decode(path)] == list(range(n))


def test_clip_duration_never_truncates():
    for fps in (5, 10, 15, 24, 30):
        for n in range(1, 600):
            assert int(_clip_duration(n, fps) * fps) == n


def test_write_video_pads_odd_sizes_and_is_atomic(tmp_path):
    frames = np.zeros((4, 15, 21, 3), dtype=np.uint8)
    frames[:, :, :, 0] = 200
    target = tmp_path / "sub" / "odd.mp4"
    path = write_video(list(frames), target, fps=5)
    assert path == target
    decoded = _decode(path)
    assert len(decoded) == 4
    assert decoded[0].shape == (16, 22, 3)
    assert sorted(p.name for p in target.parent.iterdir()) == ["odd.mp4"]


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError):
        write_video(np.zeros((3, 8, 8, 3), dtype=np.float32), tmp_path / "x.mp4")
    with pytest.raises(ValueError):
        write_video([], tmp_path / "x.mp4")
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- side_by_side


def test_side_by_side_shape_and_panels():
    t, h, w, scale = 5, 12, 10, 3
    frames = np.zeros((t, h, w, 3), dtype=np.uint8)
    frames[:, 2, 3] = (255, 0, 0)  # one red pixel in the agent view
    goal = np.zeros((h, w, 3), dtype=np.uint8)
    goal[7, 1] = (0, 0, 255)  # one blue pixel in the goal
    out = side_by_side_frames(frames, goal, label="agent", scale=scale)
    assert out.dtype == np.uint8 and out.ndim == 4
    assert out.shape[0] == t and out.shape[3] == 3
    assert out.shape[1] > scale * h and out.shape[2] > 2 * scale * w
    # Header + border overhead stays small next to the panels.
    assert out.shape[1] - scale * h < 40 and out.shape[2] - 2 * scale * w < 20
    for frame in out:
        red = np.all(frame == (255, 0, 0), axis=-1)
        blue = np.all(frame == (0, 0, 255), axis=-1)
        assert red.sum() == scale * scale
        assert blue.sum() == scale * scale
        # Agent panel is left of the goal panel.
        assert np.argwhere(red)[:, 1].max() < np.argwhere(blue)[:, 1].min()


def test_side_by_side_header_shows_step_counter():
    h = w = 16
    scale = 2
    frames = np.full((3, h, w, 3), 90, dtype=np.uint8)  # identical observations
    goal = np.full((h, w, 3), 150, dtype=np.uint8)
    out = side_by_side_frames(frames, goal, label="lewm", scale=scale)
    header_rows = out.shape[1] - scale * h - 1  # everything above panels + bottom border
    for a, b in [(0, 1), (1, 2)]:
        diff_rows = np.flatnonzero(np.any(out[a] != out[b], axis=(1, 2)))
        assert diff_rows.size > 0, "step counter did not change"
        assert diff_rows.max() < header_rows, "only the header may differ"
    # Text is drawn: the header is not one flat colour.
    assert len(np.unique(out[0, :header_rows].reshape(-1, 3), axis=0)) > 2


def test_side_by_side_success_tint_and_list_input():
    frames = [np.full((8, 8, 3), 30, dtype=np.uint8) for _ in range(4)]
    goal = np.full((8, 8, 3), 60, dtype=np.uint8)
    out = side_by_side_frames(frames, goal, scale=1, success_steps=[-1])
    green = [np.all(f == SUCCESS_GREEN, axis=-1).any() for f in out]
    assert green == [False, False, False, True]


# --------------------------------------------------------------------------- grid


def test_grid_frames_unequal_lengths():
    lengths = [3, 5, 2]
    eps = [np.full((n, 4, 6, 3), 10 * (i + 1), dtype=np.uint8) for i, n in enumerate(lengths)]
    for i, ep in enumerate(eps):
        ep[:, 0, 0] = np.arange(len(ep))[:, None] + 100 * i  # frame index marker
    grid = grid_frames(eps, columns=2)
    assert grid.shape == (5, 8, 12, 3)
    # Episode 0 (top-left, 3 frames) holds its last frame for t = 3, 4.
    np.testing.assert_array_equal(grid[4, :4, :6], eps[0][-1])
    np.testing.assert_array_equal(grid[1, :4, :6], eps[0][1])
    # Episode 1 (top-right) plays all 5 frames.
    np.testing.assert_array_equal(grid[4, :4, 6:], eps[1][4])
    # Episode 2 (bottom-left, 2 frames) holds; bottom-right cell is empty (black).
    np.testing.assert_array_equal(grid[3, 4:, :6], eps[2][-1])
    assert not grid[:, 4:, 6:].any()

    gapped = grid_frames(eps, columns=3, gap=2)
    assert gapped.shape == (5, 4, 3 * 6 + 2 * 2, 3)


# --------------------------------------------------------------------------- record_episode


class _LineEnv(gym.Env):
    """A dot walks right by `action` cells; success when it reaches the goal column."""

    metadata = {"render_modes": []}

    def __init__(self, size: int = 8, goal_x: int = 5, truncate_at: int | None = None):
        self.size, self.goal_x, self.truncate_at = size, goal_x, truncate_at
        img = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.observation_space = spaces.Dict({"pixels": img, "goal": img})
        self.action_space = spaces.Discrete(2)
        self.x = 0
        self.t = 0

    def _img(self, x: int) -> np.ndarray:
        img = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        img[self.size // 2, x] = 255
        return img

    def _obs(self):
        return {"pixels": self._img(self.x), "goal": self._img(self.goal_x)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = int((options or {}).get("start", 0))
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.x = min(self.x + int(action), self.size - 1)
        self.t += 1
        done = self.x == self.goal_x
        truncated = self.truncate_at is not None and self.t >= self.truncate_at
        return self._obs(), float(done), done, truncated, {"is_success": done}


class _FakeAgent:
    """SB3-style predict: always step right; remembers episode_start flags."""

    def __init__(self):
        self.starts = []

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        assert set(observation) == {"pixels", "goal"}
        self.starts.append(bool(np.asarray(episode_start).any()))
        return 1, state


def test_record_episode_success():
    agent = _FakeAgent()
    frames, goal, success, steps = record_episode(_LineEnv(), agent, max_steps=20, seed=0)
    assert (steps, success) == (5, True)
    assert frames.shape == (6, 8, 8, 3) and frames.dtype == np.uint8
    assert goal.shape == (8, 8, 3)
    assert frames[0][4, 0].any() and frames[-1][4, 5].any()  # first and last observation
    np.testing.assert_array_equal(frames[-1], goal)
    assert agent.starts == [True] + [False] * 4


def test_record_episode_stops_at_max_steps_and_truncation():
    frames, _goal, success, steps = record_episode(_LineEnv(), _FakeAgent(), max_steps=3)
    assert (steps, success, len(frames)) == (3, False, 4)
    env = _LineEnv(truncate_at=2)
    frames, _goal, success, steps = record_episode(env, _FakeAgent(), max_steps=50)
    assert (steps, success, len(frames)) == (2, False, 3)
    frames, _goal, success, steps = record_episode(
        _LineEnv(), _FakeAgent(), max_steps=50, reset_options={"start": 3}
    )
    assert (steps, success, len(frames)) == (2, True, 3)


def test_record_to_video_end_to_end(tmp_path):
    frames, goal, success, _steps = record_episode(_LineEnv(), _FakeAgent(), max_steps=20)
    video = side_by_side_frames(
        frames, goal, label="fake", scale=2, success_steps=[len(frames) - 1] if success else None
    )
    path = write_video(video, tmp_path / "ep.mp4", fps=10)
    assert count_frames(path) == len(frames)
