"""Episode videos: record an agent in an env, lay out [agent view | goal], write mp4.

Everything here is headless. Text is drawn with matplotlib's Agg canvas (which
ships its own DejaVu fonts), upscaling is nearest-neighbour with ``np.repeat``,
and the mp4 is written by moviepy 2.x with the ffmpeg binary that comes with
imageio-ffmpeg.

Typical use::

    frames, goal, success, steps = record_episode(env, agent, max_steps=200, seed=0)
    video = side_by_side_frames(frames, goal, label="lewm",
                                success_steps=[len(frames) - 1] if success else None)
    write_video(video, "runs/episode0.mp4", fps=10)

Size (~570 lines, over the ~500 guide): layout, text drawing and the mp4 writer are
one pipeline with moviepy's pitfalls handled in one place.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from lewm_agent.atomic import atomic_path
from lewm_agent.heldout import trained_holdout

__all__ = [
    "agent_videos",
    "count_frames",
    "grid_frames",
    "comparison_videos",
    "record_episode",
    "side_by_side_frames",
    "write_video",
]

_HEADER_BG = (24, 24, 24)
_HEADER_FG = "#f0f0f0"
_BORDER = (48, 48, 48)
_SUCCESS_BORDER = (40, 200, 70)
_TEXT_DPI = 100


# --------------------------------------------------------------------------- helpers


def _as_rgb_uint8(image: np.ndarray, what: str) -> np.ndarray:
    """(H, W, 3) uint8 view of `image`; grayscale (H, W) is stacked to RGB, RGBA drops alpha."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"{what} must be (H, W, 3) RGB, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise TypeError(f"{what} must be uint8, got {arr.dtype}")
    return arr[:, :, :3]


def _stack_frames(frames: Sequence[np.ndarray] | np.ndarray, what: str) -> np.ndarray:
    """(T, H, W, 3) uint8 array from a sequence of frames (or an array already)."""
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise ValueError(f"{what} must be (T, H, W, 3), got shape {frames.shape}")
        if frames.shape[3] == 3 and frames.dtype == np.uint8:
            if frames.shape[0] == 0:
                raise ValueError(f"{what} is empty")
            return frames
    frames = list(frames)
    if not frames:
        raise ValueError(f"{what} is empty")
    out = [_as_rgb_uint8(f, what) for f in frames]
    shape = out[0].shape
    for i, f in enumerate(out):
        if f.shape != shape:
            raise ValueError(f"{what}: frame {i} has shape {f.shape}, frame 0 has {shape}")
    return np.stack(out)


def _upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour integer upscale of (..., H, W, C) along H and W."""
    if scale == 1:
        return image
    return np.repeat(np.repeat(image, scale, axis=-3), scale, axis=-2)


def _pad_to(image: np.ndarray, height: int, width: int, value: Sequence[int]) -> np.ndarray:
    """Pad (H, W, 3) at the bottom/right to (height, width) with colour `value`."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[:] = np.asarray(value, dtype=np.uint8)
    out[:h, :w] = image
    return out


@lru_cache(maxsize=512)
def _text_strip(
    text: str, width: int, height: int, align: str = "left", mono: bool = False
) -> np.ndarray:
    """Render one line of `text` into a (height, width, 3) uint8 strip (Agg, no system fonts).

    The text is vertically centred, padded a few pixels from the aligned edge,
    and clipped to the strip. Cached: headers repeat across frames.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bg = np.array(_HEADER_BG, dtype=np.uint8)
    strip = np.empty((height, width, 3), dtype=np.uint8)
    strip[:] = bg
    if not text or width <= 0 or height <= 0:
        return strip

    fig = Figure(figsize=(width / _TEXT_DPI, height / _TEXT_DPI), dpi=_TEXT_DPI)
    fig.patch.set_facecolor(tuple(c / 255 for c in _HEADER_BG))
    canvas = FigureCanvasAgg(fig)
    # Cap height ~ 0.5 of the strip; points = pixels * 72 / dpi.
    fontsize = max(height * 0.62, 6.0) * 72.0 / _TEXT_DPI
    pad = min(4, max(1, width // 40)) / width
    x = {"left": pad, "center": 0.5, "right": 1.0 - pad}[align]
    fig.text(
        x,
        0.5,
        text,
        ha=align,
        va="center_baseline",
        color=_HEADER_FG,
        fontsize=fontsize,
        family="DejaVu Sans Mono" if mono else "DejaVu Sans",
    )
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    h = min(height, rgba.shape[0])
    w = min(width, rgba.shape[1])
    strip[:h, :w] = rgba[:h, :w, :3]
    return strip


def _header_height(scale: int) -> int:
    return max(12, 5 * scale)


# --------------------------------------------------------------------------- layout


def side_by_side_frames(
    frames: Sequence[np.ndarray] | np.ndarray,
    goal: np.ndarray,
    *,
    label: str = "",
    scale: int = 4,
    success_steps: Collection[int] | None = None,
    total_steps: int | None = None,
) -> np.ndarray:
    """Compose [agent view | goal image] video frames with a text header.

    Args:
        frames: T agent observations, each (H, W, 3) uint8 (or a (T, H, W, 3) array).
        goal: the goal image, (Hg, Wg, 3) uint8 (usually the same size as a frame).
        label: shown in the header above the agent view (e.g. the agent's name).
        scale: integer nearest-neighbour upscale factor (64 px -> 256 px at 4).
        success_steps: frame indices (negative ones count from the end) whose
            border is tinted green, e.g. ``[len(frames) - 1]`` when the episode
            ended in success.
        total_steps: the denominator of the "step t/N" counter; defaults to
            ``T - 1`` (the number of env steps when frames include the reset
            observation and the last one).
    Returns:
        (T, H', W', 3) uint8: header strip on top, the two upscaled panels side by
        side below, separated and surrounded by a thin border.
    """
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    video = _stack_frames(frames, "frames")
    goal_img = _as_rgb_uint8(goal, "goal")
    n = video.shape[0]
    total = (n - 1) if total_steps is None else int(total_steps)

    tinted: set[int] = set()
    for s in success_steps or ():
        s = int(s)
        if -n <= s < n:
            tinted.add(s % n)

    agent_panels = _upscale(video, scale)  # (T, h, w, 3)
    goal_panel = _upscale(goal_img, scale)
    panel_h = max(agent_panels.shape[1], goal_panel.shape[0])
    aw, gw = agent_panels.shape[2], goal_panel.shape[1]
    border = scale // 2 + 1
    header_h = _header_height(scale)

    out_h = header_h + panel_h + 2 * border
    out_w = aw + gw + 3 * border
    x_agent = border
    x_goal = 2 * border + aw
    y_panel = header_h + border

    base = np.empty((out_h, out_w, 3), dtype=np.uint8)
    base[:] = np.asarray(_BORDER, dtype=np.uint8)
    base[:header_h] = np.asarray(_HEADER_BG, dtype=np.uint8)
    base[y_panel : y_panel + panel_h, x_goal : x_goal + gw] = _pad_to(
        goal_panel, panel_h, gw, _BORDER
    )
    # Header above the goal panel; the agent-panel header changes per frame.
    base[:header_h, x_goal : x_goal + gw] = _text_strip("goal", gw, header_h, "center")

    label_w = 0
    if label:
        # Left part of the agent header: the label; right part: the step counter.
        label_w = aw // 2
        base[:header_h, x_agent : x_agent + label_w] = _text_strip(label, label_w, header_h, "left")
    counter_w = aw - label_w
    counter_align = "right" if label else "left"

    out = np.empty((n, out_h, out_w, 3), dtype=np.uint8)
    for t in range(n):
        frame = out[t]
        frame[:] = base
        if t in tinted:
            colour = np.asarray(_SUCCESS_BORDER, dtype=np.uint8)
            frame[header_h:y_panel] = colour
            frame[y_panel + panel_h :] = colour
            frame[header_h:, :x_agent] = colour
            frame[header_h:, x_agent + aw : x_goal] = colour
            frame[header_h:, x_goal + gw :] = colour
        frame[y_panel : y_panel + panel_h, x_agent : x_agent + aw] = _pad_to(
            agent_panels[t], panel_h, aw, _BORDER
        )
        frame[:header_h, x_agent + label_w : x_agent + aw] = _text_strip(
            f"step {t}/{total}", counter_w, header_h, counter_align, mono=True
        )
    return out


def grid_frames(
    episodes: Sequence[np.ndarray | Sequence[np.ndarray]],
    columns: int,
    *,
    gap: int = 0,
) -> np.ndarray:
    """Tile several episode videos into one video.

    Args:
        episodes: videos, each (T_i, H_i, W_i, 3) uint8. Cells are sized to the
            largest H and W; smaller videos sit top-left on black.
        columns: cells per row (rows = ceil(len(episodes) / columns)); empty cells are black.
        gap: black pixels between cells.
    Returns:
        (max T_i, rows * H + (rows - 1) * gap, columns * W + (columns - 1) * gap, 3)
        uint8. An episode shorter than the longest holds its last frame.
    """
    if not episodes:
        raise ValueError("grid_frames needs at least one episode")
    columns = int(columns)
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    gap = int(gap)
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    vids = [_stack_frames(ep, f"episode {i}") for i, ep in enumerate(episodes)]
    columns = min(columns, len(vids))
    rows = -(-len(vids) // columns)
    t_max = max(v.shape[0] for v in vids)
    cell_h = max(v.shape[1] for v in vids)
    cell_w = max(v.shape[2] for v in vids)
    out = np.zeros(
        (t_max, rows * cell_h + (rows - 1) * gap, columns * cell_w + (columns - 1) * gap, 3),
        dtype=np.uint8,
    )
    for i, v in enumerate(vids):
        r, c = divmod(i, columns)
        y, x = r * (cell_h + gap), c * (cell_w + gap)
        t, h, w = v.shape[:3]
        out[:t, y : y + h, x : x + w] = v
        if t < t_max:
            out[t:, y : y + h, x : x + w] = v[-1]
    return out


# --------------------------------------------------------------------------- files


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
    video = _stack_frames(frames, "frames")
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
