"""Episode videos: record an agent in an env, lay out [agent view | goal], write mp4.

Everything here is headless: the mp4 is written by moviepy 2.x with the ffmpeg
binary that comes with imageio-ffmpeg; the frames are laid out by
`eval.video_frames`.

Typical use::

    frames, goal, success, steps = record_episode(env, agent, max_steps=200, seed=0)
    video = side_by_side_frames(frames, goal, label="lewm",
                                success_steps=[len(frames) - 1] if success else None)
    write_video(video, "runs/episode0.mp4", fps=10)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lewm_agent.atomic import atomic_path
from lewm_agent.heldout import trained_holdout

from .video_frames import grid_frames, side_by_side_frames, stack_frames

__all__ = ["agent_videos", "comparison_videos", "count_frames", "record_episode", "write_video"]


def _clip_duration(n_frames: int, fps: float) -> float:
    """A duration for which moviepy's writer emits exactly `n_frames` frames.

    moviepy 2.2's ``iter_frames`` writes ``int(duration * fps)`` frames, and an
    ImageSequenceClip's duration is ``sum([1/fps] * n)``, which often rounds just
    below n/fps (e.g. 10 frames at 10 fps -> 0.9999999999999999 -> 9 frames): the
    last frame is silently dropped. Use n/fps, nudged up by an ulp whenever the
    float product would still truncate below n.
    """
    duration = n_frames / fps
    while int(duration * fps) < n_frames:
        duration = float(np.nextafter(duration, np.inf))
    return duration


def _frame_lookup(video: np.ndarray, fps: float):
    """Frame function mapping time t to frame ``round(t * fps)``.

    Replaces ImageSequenceClip's own lookup, which under NumPy 2 compares the
    np.float64 times from ``iter_frames`` with float32 frame starts
    (``i / fps - np.finfo(np.float32).eps`` promotes to float32) and so returns
    the previous image for some frames (e.g. frames 24, 29, 34... of 50 at 10
    fps): a frame is duplicated and the real one never reaches the file.
    """
    last = video.shape[0] - 1

    def frame_function(t: float) -> np.ndarray:
        return video[min(max(int(np.floor(float(t) * fps + 0.5)), 0), last)]

    return frame_function


def write_video(
    frames: Sequence[np.ndarray] | np.ndarray,
    path: str | os.PathLike[str],
    fps: int = 10,
) -> Path:
    """Write (T, H, W, 3) uint8 frames to an H.264 / yuv420p mp4; every frame lands in the file.

    Odd widths/heights are padded by one edge-replicated pixel (yuv420p needs even
    sizes). Two moviepy 2.2 pitfalls are avoided: the clip duration is set so
    that ``int(duration * fps) == T`` (otherwise the last frame can be dropped) and
    frames are looked up by index (see `_frame_lookup`). The file is written under a temporary name in the destination folder
    and renamed into place, so a reader never sees a partial video.
    Returns the path written.
    """
    from moviepy import ImageSequenceClip

    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    video = stack_frames(frames, "frames")
    n, h, w = video.shape[:3]
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        video = np.pad(video, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    video = np.ascontiguousarray(video)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix or ".mp4"
    with atomic_path(path, prefix=f".{path.stem}.", suffix=f".tmp{suffix}") as tmp:
        clip = ImageSequenceClip(list(video), fps=fps, with_mask=False)
        clip = clip.with_updated_frame_function(_frame_lookup(video, fps))
        clip = clip.with_duration(_clip_duration(n, fps))
        clip.write_videofile(
            str(tmp),
            fps=fps,
            codec="libx264",
            audio=False,
            logger=None,
            ffmpeg_params=["-pix_fmt", "yuv420p", "-movflags", "+faststart"],
        )
        clip.close()
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise RuntimeError(f"ffmpeg produced no output for {path}")
    return path


def count_frames(path: str | os.PathLike[str]) -> int:
    """Exact number of video frames in `path`, by decoding every frame with ffmpeg."""
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        next(reader)  # metadata dict
        return sum(1 for _ in reader)
    finally:
        reader.close()


# --------------------------------------------------------------------------- episodes


def record_episode(
    env: Any,
    agent: Any,
    *,
    max_steps: int,
    reset_options: dict[str, Any] | None = None,
    seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray, bool, int]:
    """Run one episode of ``agent.predict(obs)`` and keep the pixels.

    The env's observations are dicts ``{"pixels": (H, W, 3) uint8, "goal": (H, W, 3)
    uint8}``; ``agent.predict`` has the stable-baselines3 signature and returns
    ``(action, state)`` (the state is fed back; ``episode_start`` is True on the
    first call).

    Returns:
        frames: (steps + 1, H, W, 3) uint8, obs["pixels"] after reset and after every step.
        goal: (H, W, 3) uint8, obs["goal"] after reset.
        success: whether any step's ``info["is_success"]`` was true.
        steps: env steps taken (stops on terminated/truncated or at `max_steps`).
    """
    obs, _info = env.reset(seed=seed, options=reset_options)
    frames = [np.array(obs["pixels"], dtype=np.uint8, copy=True)]
    goal = np.array(obs["goal"], dtype=np.uint8, copy=True)
    success = False
    steps = 0
    state = None
    episode_start = np.ones((1,), dtype=bool)
    while steps < max_steps:
        action, state = agent.predict(
            obs, state=state, episode_start=episode_start, deterministic=True
        )
        episode_start = np.zeros((1,), dtype=bool)
        obs, _reward, terminated, truncated, info = env.step(action)
        steps += 1
        frames.append(np.array(obs["pixels"], dtype=np.uint8, copy=True))
        success = success or bool(info.get("is_success", False))
        if terminated or truncated:
            break
    return np.stack(frames), goal, success, steps


# --------------------------------------------------------------------------- CLI


def agent_videos(
    env_id: str,
    agent: Any,
    name: str,
    episodes: Sequence[Any],
    out_dir: str | os.PathLike[str],
    *,
    env_kwargs: dict[str, Any] | None = None,
    budget: int = 50,
    fps: int = 10,
    columns: int = 2,
    scale: int = 4,
) -> tuple[Path, Path]:
    """One agent on protocol episodes: ``<slug>_<name>.mp4`` (the first episode) and
    ``<slug>_<name>_grid.mp4`` (all of them tiled), written into ``out_dir``.

    Each cell is [agent view | goal image] with the agent's name and a step counter;
    the border turns green on the frame where an episode succeeds. Frames come from
    ``eval.protocol.run_protocol(record=True)``, so a state-based baseline is shown
    through the env's renderer, on the very same episodes. Every frame is kept: the
    single-episode video has exactly ``steps + 1`` frames.
    """
    import gymnasium as gym

    import envs  # noqa: F401  (registers lewm/*)
    from eval.compare import env_slug
    from eval.protocol import run_protocol

    if not episodes:
        raise ValueError("agent_videos needs at least one protocol episode")
    kwargs = {"obs_mode": "pixels", **(env_kwargs or {})}
    result, frames = run_protocol(
        env_id,
        agent,
        list(episodes),
        name=f"video {name}",
        budget=budget,
        env_kwargs=env_kwargs,
        progress=False,
        record=True,
    )
    renderer = gym.make(env_id, **kwargs).unwrapped
    cells = []
    for ep, ep_frames, info in zip(episodes, frames, result.per_episode, strict=True):
        goal = renderer.render_state(ep.goal_state)
        success = [len(ep_frames) - 1] if info["success"] else None
        cells.append(
            side_by_side_frames(
                np.stack(ep_frames), goal, label=name, scale=scale, success_steps=success
            )
        )
    out = Path(out_dir)
    slug = env_slug(env_id)
    single = write_video(cells[0], out / f"{slug}_{name}.mp4", fps=fps)
    grid = write_video(grid_frames(cells, columns, gap=4), out / f"{slug}_{name}_grid.mp4", fps=fps)
    return single, grid


def comparison_videos(
    env: str,
    names: Sequence[str],
    *,
    lewm: str | os.PathLike[str] | None = None,
    data: str | os.PathLike[str] | None = None,
    baselines: str | os.PathLike[str] | None = None,
    episodes: int = 4,
    columns: int = 2,
    seed: int = 42,
    budget: int = 50,
    fps: int = 10,
    holdout: float | None = None,
    out: str | os.PathLike[str] | None = None,
    device: str = "auto",
) -> list[Path]:
    """Two mp4s per agent of `names` (`lewm videos`; see :func:`agent_videos`).

    Loads the agents like ``eval.compare`` (saved baselines only: no training here),
    samples the protocol episodes the same way (same seed: the same episodes as the
    comparison's first ones). `data` defaults to data/suite/<env> (a zoo model's
    shipped episodes when `lewm` ships them), `lewm` to runs/suite/<env>/lewm,
    `baselines` to runs/suite/<env>, `out` to outputs/videos-<env>.
    """
    import json

    from eval.compare import agent_episodes, env_slug, has_shipped_episodes, load_agents
    from lewm_agent.zoo import folder, is_zoo_ref

    slug = env_slug(env)
    lewm = lewm or f"runs/suite/{slug}/lewm"
    lewm_folder = folder(str(lewm)) if is_zoo_ref(lewm) else Path(lewm)
    if data is None and "lewm" in names and has_shipped_episodes(lewm_folder):
        config = json.loads((lewm_folder / "config.json").read_text())
        image_size = int(config["model"]["image_size"])
    else:
        data = data or f"data/suite/{slug}"
        if not (Path(data) / "meta.json").is_file():
            raise SystemExit(f"no dataset at {data}: pass --data")
        image_size = int(json.loads((Path(data) / "meta.json").read_text())["image_size"])
    agents = load_agents(
        [n.strip() for n in names if n.strip()],
        env,
        lewm=lewm,
        baselines_dir=baselines or f"runs/suite/{slug}",
        train_missing=False,
        seed=seed,
        image_size=image_size,
        device=device,
    )
    if holdout is None:
        holdout = trained_holdout(agents.get("lewm"))
    eps, _ = agent_episodes(lewm_folder, data, n=episodes, seed=seed, holdout=holdout)
    out_dir = Path(out or f"outputs/videos-{slug}")
    written: list[Path] = []
    for name, agent in agents.items():
        paths = agent_videos(
            env,
            agent,
            name,
            eps,
            out_dir,
            env_kwargs={"image_size": image_size},
            budget=budget,
            fps=fps,
            columns=columns,
        )
        print("wrote " + ", ".join(map(str, paths)))
        written += paths
    return written
