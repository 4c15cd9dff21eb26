"""`lewm data export-minari`: a dataset as a Minari dataset (the Farama offline-RL format)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .format import _read_meta
from .tools import iter_episodes


def export_minari(
    root: str | os.PathLike[str],
    dataset_id: str,
    *,
    minari_root: str | os.PathLike[str] | None = None,
    include_states: bool = True,
    description: str | None = None,
) -> Path:
    """Export a dataset to a Minari dataset (the Farama offline-RL format).

    Observations are ``{"pixels": uint8 (H, W, 3), "state": float32 (S,)}`` (or just
    the pixels with ``include_states=False``), stored losslessly (no JPEG); actions are
    the env's own. Rewards are zeros: our datasets are reward-free by design, and
    LeWM needs none. Episodes are streamed one at a time, so memory stays bounded.

    Args:
        root: our dataset folder.
        dataset_id: Minari id, ``namespace/name-v0`` style (must not exist yet).
        minari_root: where Minari keeps datasets (default: ``$MINARI_DATASETS_PATH``
            or ``~/.minari/datasets``).
    Returns:
        The folder of the new Minari dataset; open it with ``minari.load_dataset(id)``.
    """
    try:
        import gymnasium as gym
        import minari
        from minari.data_collector import EpisodeBuffer
    except ImportError as e:
        raise ImportError(
            'export_minari needs the optional `minari` package: pip install "lewm-agent[minari]"'
        ) from e
    root = Path(root)
    meta = _read_meta(root)
    size, sdim = int(meta["image_size"]), int(meta["state_dim"])
    pixels_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
    obs_space: gym.spaces.Space = (
        gym.spaces.Dict(
            {"pixels": pixels_space, "state": gym.spaces.Box(-np.inf, np.inf, (sdim,), np.float32)}
        )
        if include_states
        else pixels_space
    )
    action_space = gym.spaces.Box(
        np.asarray(meta["action_low"], np.float32), np.asarray(meta["action_high"], np.float32)
    )

    def buffers() -> Iterator[Any]:
        for i, ep in enumerate(iter_episodes(root)):
            t = len(ep)
            terminations = np.zeros(t, dtype=bool)
            truncations = np.zeros(t, dtype=bool)
            terminations[-1], truncations[-1] = ep.terminated, ep.truncated
            obs = {"pixels": ep.pixels, "state": ep.states} if include_states else ep.pixels
            yield EpisodeBuffer(
                id=i,
                observations=obs,
                actions=ep.actions,
                rewards=np.zeros(t, dtype=np.float32),
                terminations=terminations,
                truncations=truncations,
            )

    old = os.environ.get("MINARI_DATASETS_PATH")
    if minari_root is not None:
        os.environ["MINARI_DATASETS_PATH"] = str(Path(minari_root).resolve())
    try:
        with warnings.catch_warnings():
            # Minari nags about metadata we do not have (author, permalink, an env spec:
            # lewm_agent never imports the envs); the env id is in the description.
            warnings.filterwarnings("ignore", message=r".*(is set to None|env_spec is None)")
            minari.create_dataset_from_buffers(
                dataset_id,
                buffers(),  # type: ignore[arg-type]  # any iterable works; bounds memory
                env=None,
                action_space=action_space,
                observation_space=obs_space,
                algorithm_name=str(meta.get("collector", "unknown")),
                description=description
                or (
                    f"Exported by lewm-agent from {root.name}: env {meta['env_id']}, "
                    f"frameskip hint {meta['frameskip']}, reward-free (rewards are zeros)."
                ),
                jpeg_encoding=False,
            )
        from minari.storage.datasets_root_dir import get_dataset_path

        return Path(get_dataset_path(dataset_id))
    finally:
        if minari_root is not None:
            if old is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = old
