"""Surprise: how far the predicted next embedding is from the observed one, step by step
(teacher forced); `lewm_agent.stats.paired_test` says whether a spike is significant."""

from __future__ import annotations

import numpy as np
import torch

from eval.probe.encode import WorldModelLike, _device_of, _eval_mode, encode_frames, model_dims
from lewm_agent.data import ActionNormalizer


# ---------------------------------------------------------------------------------------
# surprise
# ---------------------------------------------------------------------------------------
def action_blocks(
    actions: np.ndarray, frameskip: int, normalizer: ActionNormalizer | None = None
) -> np.ndarray:
    """Per env step ``c``, the flattened block ``actions[c : c + frameskip]``.

    Returns float32 ``(T - frameskip + 1, frameskip * A)``: row ``c`` is the block the
    model sees after a frame taken at step ``c`` (normalised if a normalizer is given,
    as in training).
    """
    a = np.asarray(actions, dtype=np.float32)  # (T, A)
    if a.ndim != 2:
        raise ValueError(f"actions must be (T, A), got shape {a.shape}")
    if normalizer is not None:
        a = np.asarray(normalizer.normalize(a), dtype=np.float32)
    t, dim = a.shape
    if t < frameskip:
        raise ValueError(f"episode has {t} actions, fewer than one block of {frameskip}")
    idx = np.arange(t - frameskip + 1)[:, None] + np.arange(frameskip)[None, :]  # (T-fs+1, fs)
    return a[idx].reshape(-1, frameskip * dim)


def surprise_curve(
    model: WorldModelLike,
    pixels: np.ndarray | None,
    actions: np.ndarray,
    *,
    normalizer: ActionNormalizer | None,
    history: int | None = None,
    frameskip: int | None = None,
    embeddings: np.ndarray | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Per-step surprise along one episode, teacher forced.

    ``surprise[t]`` is the mean over the D dimensions of the squared difference
    between the embedding predicted for frame ``t`` and the embedding of frame ``t``
    (the squared distance / D, i.e. the training loss's units). The prediction uses
    the true frames ``t - k*frameskip`` for ``k = n..1`` (``n = min(history,
    t // frameskip)``, so early steps use the context that exists) and their action
    blocks, exactly the windows the model was trained on, at every env step rather
    than every ``frameskip``-th one so an event is seen wherever it happens.

    Args:
        pixels: uint8 ``(T+1, H, W, 3)`` frames (``pixels[t]`` before ``actions[t]``), or
            None when ``embeddings`` are given.
        actions: ``(T, A)`` env actions.
        normalizer: the checkpoint's action normalizer (``None``: actions are used as
            they are, for stubs that take raw actions).
        history, frameskip: default to ``model.cfg``'s.
        embeddings: precomputed ``(T+1, D)`` embeddings of ``pixels`` (skips encoding).
    Returns:
        float64 ``(T+1,)``; NaN for ``t < frameskip`` (no context frame yet).
    """
    h, fs = model_dims(model, history, frameskip)
    if pixels is None and embeddings is None:
        raise ValueError("give the episode's pixels or its precomputed embeddings")
    n_frames = int(pixels.shape[0]) if embeddings is None else int(embeddings.shape[0])
    if np.asarray(actions).shape[0] != n_frames - 1:
        raise ValueError(
            f"{n_frames} frames need {n_frames - 1} actions, got {np.asarray(actions).shape[0]}"
        )
    z = encode_frames(model, pixels) if embeddings is None else np.asarray(embeddings, np.float32)
    blocks = action_blocks(actions, fs, normalizer)  # (T-fs+1, fs*A)
    out = np.full(n_frames, np.nan)
    targets = np.arange(fs, n_frames)  # (M,) frames with at least one context frame
    n_ctx = np.minimum(h, targets // fs)  # (M,)
    dev = _device_of(model)
    with _eval_mode(model):
        for k in np.unique(n_ctx):
            ts = targets[n_ctx == k]  # (m,)
            ctx = ts[:, None] - fs * (k - np.arange(k))[None, :]  # (m, k) oldest first
            for i in range(0, len(ts), batch_size):
                c = ctx[i : i + batch_size]
                zc = torch.from_numpy(z[c]).to(dev)  # (b, k, D)
                ac = torch.from_numpy(blocks[c]).to(dev)  # (b, k, fs*A)
                pred = model.predict(zc, ac)[:, -1].float().cpu().numpy()  # (b, D)
                err = (pred - z[ts[i : i + batch_size]]) ** 2  # (b, D)
                out[ts[i : i + batch_size]] = err.mean(axis=1)
    return out
