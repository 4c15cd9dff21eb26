"""Frame composition for episode videos: [agent view | goal] panels with a text
header, a green border on success, and a grid of episodes.

Everything here is headless numpy on (T, H, W, 3) uint8 frames. Text is drawn with
matplotlib's Agg canvas (which ships its own DejaVu fonts) and upscaling is
nearest-neighbour with ``np.repeat``. Writing the mp4 and recording an agent is
`eval.video`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import lru_cache

import numpy as np

__all__ = ["grid_frames", "side_by_side_frames", "stack_frames"]

_HEADER_BG = (24, 24, 24)
_HEADER_FG = "#f0f0f0"
_BORDER = (48, 48, 48)
_SUCCESS_BORDER = (40, 200, 70)
_TEXT_DPI = 100


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


def stack_frames(frames: Sequence[np.ndarray] | np.ndarray, what: str) -> np.ndarray:
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
    video = stack_frames(frames, "frames")
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
    vids = [stack_frames(ep, f"episode {i}") for i, ep in enumerate(episodes)]
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
