"""Reading physics out of the latent space: probes, surprise and temporal straightness.

Three questions a user asks of a trained world model, one call each:

- **Probes** (:func:`probe_episodes`, :func:`fit_probes`): is a physical quantity
  (agent position, block angle, joint angles: any column of the recorded states) a
  linear (or small-MLP) function of the frame embedding? Fitted on training episodes
  and scored (MSE, Pearson r) on held-out ones, because a probe scored on the frames
  it was fitted on measures memorisation, not what the embedding encodes.
- **Surprise** (:func:`surprise_curve`): how far the predicted next embedding is from
  the observed one at each step of an episode (teacher forced: the predictor always
  sees the TRUE past frames). Physically impossible events (a teleport) should make
  it spike; :func:`paired_test` says whether the spike is significant across episodes.
- **Straightness** (:func:`straightness`, :func:`straightness_over_checkpoints`): the
  mean cosine between consecutive latent velocities; a world model whose latent
  trajectories straighten over training makes linear extrapolation (and planning)
  easier.

Pure torch + numpy: no env imports. Anything with an ``encode(uint8 (..., H, W, 3))
-> (..., D)`` method (and ``predict(z (B, T, D), actions (B, T, fs*A)) -> (B, T, D)``
for surprise) can be probed, so tests can use stubs with known answers. The env-side
tools (re-rendering perturbed episodes, plots, CLI) live in ``eval/physics.py``.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .data import ActionNormalizer, Episode

__all__ = [
    "Encoder",
    "WorldModelLike",
    "LinearProbe",
    "MLPProbe",
    "ProbeResult",
    "PairedTest",
    "parse_quantity_spec",
    "state_targets",
    "pearson_r",
    "encode_frames",
    "encode_episodes",
    "fit_probes",
    "probe_episodes",
    "model_dims",
    "action_blocks",
    "surprise_curve",
    "paired_test",
    "student_t_sf",
    "velocity_cosines",
    "straightness",
    "episode_straightness",
    "load_model",
    "straightness_over_checkpoints",
]


# ---------------------------------------------------------------------------------------
# what can be probed
# ---------------------------------------------------------------------------------------
class Encoder(Protocol):
    """Anything that maps uint8 frames ``(..., H, W, 3)`` to embeddings ``(..., D)``."""

    def encode(self, pixels: Tensor) -> Tensor: ...


class WorldModelLike(Encoder, Protocol):
    """An encoder plus a teacher-forced predictor (``LeWM`` or a test stub).

    ``predict(z (B, T, D), actions (B, T, fs*A)) -> (B, T, D)``: output ``t`` is the
    predicted embedding of the frame after action block ``t`` (normalised units).
    """

    def predict(self, z: Tensor, actions: Tensor) -> Tensor: ...


def _device_of(model: Any) -> torch.device:
    """Where the model's parameters live (CPU for parameter-free stubs)."""
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Evaluate in eval mode (BatchNorm running stats, no dropout), then restore.

    A probe of a model left in train mode would see batch-statistics embeddings that
    depend on what else is in the batch: not the embeddings the planner uses.
    """
    was_training = isinstance(model, nn.Module) and model.training
    if was_training:
        model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_training:
            model.train()


def model_dims(model: Any, history: int | None, frameskip: int | None) -> tuple[int, int]:
    """``(history, frameskip)``: as given, or read from ``model.cfg`` (LeWM has it; stubs pass them)."""
    cfg = getattr(model, "cfg", None)
    h = history if history is not None else getattr(cfg, "history", None)
    fs = frameskip if frameskip is not None else getattr(cfg, "frameskip", None)
    if h is None or fs is None:
        raise ValueError(
            "history and frameskip are needed: pass them, or use a model with a "
            "`cfg` holding them (LeWM does)"
        )
    if int(h) < 1 or int(fs) < 1:
        raise ValueError(f"history and frameskip must be >= 1, got {h}, {fs}")
    return int(h), int(fs)


# ---------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------
def encode_frames(
    model: Encoder, pixels: np.ndarray | Tensor, *, batch_size: int = 512
) -> np.ndarray:
    """Embeddings of many frames, batched: uint8 ``(N, H, W, 3)`` -> float32 ``(N, D)``.

    Runs under ``torch.inference_mode`` and eval mode; batches bound the memory of
    the encoder's activations, not the result.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = int(pixels.shape[0])
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (N, H, W, 3), got shape {tuple(pixels.shape)}")
    dev = _device_of(model)
    out: list[np.ndarray] = []
    with _eval_mode(model):
        for i in range(0, n, batch_size):
            chunk = pixels[i : i + batch_size]
            x = torch.as_tensor(
                np.ascontiguousarray(chunk) if isinstance(chunk, np.ndarray) else chunk
            )
            z = model.encode(x.to(dev))  # (b, D)
            out.append(z.float().cpu().numpy())
    if not out:
        raise ValueError("no frames to encode")
    return np.concatenate(out).astype(np.float32, copy=False)  # (N, D)


def encode_episodes(
    model: Encoder,
    episodes: Sequence[Episode],
    *,
    frames: Sequence[np.ndarray] | None = None,
    batch_size: int = 512,
    progress: bool | str = False,
) -> list[np.ndarray]:
    """Embeddings of selected frames of each episode, batched across episodes.

    Args:
        episodes: the episodes (their ``pixels`` may be memory-mapped).
        frames: per episode, the frame indices to encode (default: every frame).
        progress: a tqdm bar in frames (a string is its description).
    Returns:
        Per episode, float32 ``(len(frames[i]), D)`` (``(T+1, D)`` by default).
    """
    if frames is None:
        frames = [np.arange(e.pixels.shape[0]) for e in episodes]
    if len(frames) != len(episodes):
        raise ValueError(f"{len(frames)} frame selections for {len(episodes)} episodes")
    counts = [len(f) for f in frames]
    total = sum(counts)
    if total == 0:
        raise ValueError("no frames selected")
    h, w, c = episodes[0].pixels.shape[1:]
    buf = np.empty((min(batch_size, total), h, w, c), dtype=np.uint8)  # (b, H, W, 3)
    parts: list[np.ndarray] = []
    fill = 0
    dev = _device_of(model)
    desc = progress if isinstance(progress, str) else "encode frames"
    bar = tqdm(total=total, desc=desc, unit="frame", disable=not progress, leave=False)
    with _eval_mode(model), bar:

        def flush(k: int) -> None:
            z = model.encode(torch.from_numpy(buf[:k]).to(dev))  # (k, D)
            parts.append(z.float().cpu().numpy())
            bar.update(k)

        for ep, idx in zip(episodes, frames, strict=True):
            idx = np.asarray(idx, dtype=np.int64)
            pos = 0
            while pos < len(idx):
                take = min(len(buf) - fill, len(idx) - pos)
                buf[fill : fill + take] = ep.pixels[idx[pos : pos + take]]
                fill += take
                pos += take
                if fill == len(buf):
                    flush(fill)
                    fill = 0
        if fill:
            flush(fill)
    z_all = np.concatenate(parts)  # (total, D)
    return np.split(z_all, np.cumsum(counts)[:-1])


# ---------------------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------------------
def parse_quantity_spec(text: str) -> dict[str, int | str]:
    """``"agent_x=0,agent_y=1,block_angle=angle:4"`` -> ``{"agent_x": 0, ..., "block_angle": "angle:4"}``.

    The command-line form of a quantity spec (see :func:`state_targets`).
    """
    spec: dict[str, int | str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"quantity {item!r} must look like NAME=COLUMN or NAME=angle:COLUMN")
        value = value.strip()
        spec[name.strip()] = value if value.startswith("angle:") else int(value)
    if not spec:
        raise ValueError(f"empty quantity spec {text!r}")
    return spec


def state_targets(
    states: np.ndarray, spec: Mapping[str, int | str]
) -> tuple[list[str], np.ndarray]:
    """Regression targets from state vectors.

    Args:
        states: ``(N, S)`` recorded states.
        spec: name -> column index, or ``"angle:c"`` for an angle in column ``c``,
            which becomes two targets ``name_sin`` and ``name_cos``: an angle wraps at
            +-pi, so regressing it directly would punish a probe for the jump
            between two nearly identical orientations.
    Returns:
        The target names and a float64 ``(N, Q)`` array.
    """
    states = np.asarray(states)
    if states.ndim != 2:
        raise ValueError(f"states must be (N, S), got shape {states.shape}")
    s = states.shape[1]
    names: list[str] = []
    cols: list[np.ndarray] = []
    for name, where in spec.items():
        is_angle = isinstance(where, str)
        if is_angle:
            kind, _, col = str(where).partition(":")
            if kind != "angle" or not col.strip().lstrip("-").isdigit():
                raise ValueError(
                    f"quantity {name!r}: expected a column index or 'angle:c', got {where!r}"
                )
            c = int(col)
        else:
            c = int(where)
        if not 0 <= c < s:
            raise ValueError(
                f"quantity {name!r}: column {c} is out of range for states with {s} columns"
            )
        v = states[:, c].astype(np.float64)  # (N,)
        if is_angle:
            names += [f"{name}_sin", f"{name}_cos"]
            cols += [np.sin(v), np.cos(v)]
        else:
            names.append(name)
            cols.append(v)
    if not names:
        raise ValueError("the quantity spec is empty")
    return names, np.stack(cols, axis=1)  # (N, Q)


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-column Pearson correlation of ``(N, Q)`` arrays (NaN where a column is constant)."""
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    if a.ndim == 1:
        a, b = a[:, None], b[:, None]
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))  # (Q,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=0) / den, np.nan)


# ---------------------------------------------------------------------------------------
# probes
# ---------------------------------------------------------------------------------------
class _Standardizer:
    """Column standardisation fitted on training data (std floored so constants pass)."""

    def __init__(self, x: np.ndarray) -> None:
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.std = np.where(std < 1e-8, 1.0, std)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return x * self.std + self.mean


class LinearProbe:
    """Closed-form ridge regression on standardised embeddings.

    The ridge strength is chosen from ``alphas`` (relative to the number of samples)
    on the last ``val_fraction`` of the training rows, then the probe is refitted on
    all of them: one ``D x D`` solve per alpha, so selection costs nothing next to
    encoding, and nothing about the test set leaks into the choice.
    """

    def __init__(
        self,
        alphas: Sequence[float] = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0),
        val_fraction: float = 0.1,
    ) -> None:
        if not alphas or any(a < 0 for a in alphas):
            raise ValueError(f"alphas must be a non-empty list of values >= 0, got {alphas}")
        self.alphas = tuple(float(a) for a in alphas)
        self.val_fraction = float(val_fraction)
        self.alpha: float | None = None

    @staticmethod
    def _solve(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
        d = x.shape[1]
        gram = x.T @ x + alpha * x.shape[0] * np.eye(d)  # (D, D)
        return np.linalg.solve(gram, x.T @ y)  # (D, Q)

    def fit(self, x: np.ndarray, y: np.ndarray) -> LinearProbe:
        """Fit on embeddings ``(N, D)`` and targets ``(N, Q)``."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self._xs, self._ys = _Standardizer(x), _Standardizer(y)
        xs, ys = self._xs(x), self._ys(y)  # (N, D), (N, Q)
        n_val = int(len(xs) * self.val_fraction)
        if len(self.alphas) > 1 and n_val >= 10 and len(xs) - n_val >= 10:
            xa, ya, xv, yv = xs[:-n_val], ys[:-n_val], xs[-n_val:], ys[-n_val:]
            errs = [((xv @ self._solve(xa, ya, a) - yv) ** 2).mean() for a in self.alphas]
            self.alpha = self.alphas[int(np.argmin(errs))]
        else:
            self.alpha = self.alphas[0]
        self.weight = self._solve(xs, ys, self.alpha)  # (D, Q)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Embeddings ``(N, D)`` -> predicted targets ``(N, Q)`` in target units."""
        if self.alpha is None:
            raise RuntimeError("call fit() before predict()")
        return self._ys.inverse(self._xs(np.asarray(x, dtype=np.float64)) @ self.weight)


class MLPProbe:
    """A small MLP regressor (2 hidden GELU layers), AdamW with cosine decay.

    A probe for quantities the embedding holds non-linearly (e.g. an angle). Kept
    small and briefly trained on purpose: a big, long-trained MLP could decode
    almost anything from almost any features, which would say nothing about the
    world model. Seeded locally, so fitting a probe does not change the caller's
    global torch random state.
    """

    def __init__(
        self,
        hidden: int = 256,
        steps: int = 500,
        batch_size: int = 512,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        seed: int = 0,
    ) -> None:
        self.hidden, self.steps, self.batch_size = int(hidden), int(steps), int(batch_size)
        self.lr, self.weight_decay, self.seed = float(lr), float(weight_decay), int(seed)
        self.net: nn.Sequential | None = None
        self.on_step: Any = None
        """Called with no argument after each optimiser step (progress bars)."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> MLPProbe:
        """Fit on embeddings ``(N, D)`` and targets ``(N, Q)``."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self._xs, self._ys = _Standardizer(x), _Standardizer(y)
        xt = torch.from_numpy(self._xs(x)).float()  # (N, D)
        yt = torch.from_numpy(self._ys(y)).float()  # (N, Q)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = nn.Sequential(
                nn.Linear(xt.shape[1], self.hidden),
                nn.GELU(),
                nn.Linear(self.hidden, self.hidden),
                nn.GELU(),
                nn.Linear(self.hidden, yt.shape[1]),
            )
            opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(self.steps, 1))
            gen = torch.Generator().manual_seed(self.seed)
            n = xt.shape[0]
            for _ in range(self.steps):
                idx = torch.randint(0, n, (min(self.batch_size, n),), generator=gen)  # (b,)
                loss = torch.nn.functional.mse_loss(net(xt[idx]), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if self.on_step is not None:
                    self.on_step()
        self.net = net.eval()
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Embeddings ``(N, D)`` -> predicted targets ``(N, Q)`` in target units."""
        if self.net is None:
            raise RuntimeError("call fit() before predict()")
        xt = torch.from_numpy(self._xs(np.asarray(x, dtype=np.float64))).float()  # (N, D)
        with torch.inference_mode():
            out = self.net(xt).double().numpy()  # (N, Q)
        return self._ys.inverse(out)


@dataclass
class ProbeResult:
    """Held-out scores of one probe kind; ``y_true``/``y_pred`` are kept for plots."""

    kind: str
    names: list[str]
    mse: dict[str, float]
    r: dict[str, float]
    r2: dict[str, float]
    n_train: int
    n_test: int
    y_true: np.ndarray = field(repr=False)  # (N_test, Q)
    y_pred: np.ndarray = field(repr=False)  # (N_test, Q)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (without the per-frame arrays)."""
        return {
            "kind": self.kind,
            "names": list(self.names),
            "mse": self.mse,
            "r": self.r,
            "r2": self.r2,
            "n_train": self.n_train,
            "n_test": self.n_test,
            **self.extra,
        }


def _make_probe(kind: str, seed: int, mlp_steps: int) -> LinearProbe | MLPProbe:
    if kind == "linear":
        return LinearProbe()
    if kind == "mlp":
        return MLPProbe(steps=mlp_steps, seed=seed)
    raise ValueError(f"unknown probe kind {kind!r}; choose 'linear' or 'mlp'")


def fit_probes(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    names: Sequence[str],
    *,
    kinds: Sequence[str] = ("linear", "mlp"),
    seed: int = 0,
    mlp_steps: int = 500,
    progress: bool = False,
) -> dict[str, ProbeResult]:
    """Fit each probe kind on ``(x_train, y_train)`` and score it on ``(x_test, y_test)``.

    Shapes: x ``(N, D)``, y ``(N, Q)`` with ``Q == len(names)``. Scores are per
    quantity, in the quantity's own units (MSE) and unitless (Pearson r, R^2).
    ``progress``: a tqdm bar in optimiser steps (a linear probe counts as one).
    """
    y_train = np.asarray(y_train, dtype=np.float64)
    y_test = np.asarray(y_test, dtype=np.float64)
    if y_train.ndim == 1:
        y_train, y_test = y_train[:, None], y_test[:, None]
    if y_train.shape[1] != len(names) or y_test.shape[1] != len(names):
        raise ValueError(
            f"{len(names)} names for targets of width {y_train.shape[1]}/{y_test.shape[1]}"
        )
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError("embeddings and targets must have the same number of rows")
    if len(x_train) < 2 or len(x_test) < 2:
        raise ValueError("need at least 2 training and 2 test frames")
    results: dict[str, ProbeResult] = {}
    total = sum(mlp_steps if k == "mlp" else 1 for k in kinds)
    bar = tqdm(total=total, desc="fit probes", unit="step", disable=not progress, leave=False)
    for kind in kinds:
        bar.set_postfix(probe=kind)
        probe = _make_probe(kind, seed, mlp_steps)
        if isinstance(probe, MLPProbe):
            probe.on_step = lambda: bar.update(1)
        probe.fit(x_train, y_train)
        if isinstance(probe, LinearProbe):
            bar.update(1)
        pred = probe.predict(x_test)  # (N_test, Q)
        mse = ((pred - y_test) ** 2).mean(axis=0)  # (Q,)
        var = y_test.var(axis=0)  # (Q,)
        r = pearson_r(y_test, pred)  # (Q,)
        with np.errstate(invalid="ignore", divide="ignore"):
            r2 = np.where(var > 0, 1.0 - mse / var, np.nan)
        extra = {"alpha": probe.alpha} if isinstance(probe, LinearProbe) else {}
        results[kind] = ProbeResult(
            kind=kind,
            names=list(names),
            mse={n: float(v) for n, v in zip(names, mse, strict=True)},
            r={n: float(v) for n, v in zip(names, r, strict=True)},
            r2={n: float(v) for n, v in zip(names, r2, strict=True)},
            n_train=len(x_train),
            n_test=len(x_test),
            y_true=y_test,
            y_pred=pred,
            extra=extra,
        )
    bar.close()
    return results


def _select_frames(
    episodes: Sequence[Episode], max_frames: int | None, rng: np.random.Generator
) -> list[np.ndarray]:
    """Every frame, or ``max_frames`` of them drawn uniformly without replacement."""
    lengths = np.array([e.states.shape[0] for e in episodes])  # (E,) frames per episode
    total = int(lengths.sum())
    if max_frames is None or max_frames >= total:
        return [np.arange(n) for n in lengths]
    pick = np.sort(rng.choice(total, size=max_frames, replace=False))  # global frame ids
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [
        pick[(pick >= lo) & (pick < hi)] - lo
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def probe_episodes(
    model: Encoder,
    train_episodes: Sequence[Episode],
    test_episodes: Sequence[Episode],
    spec: Mapping[str, int | str],
    *,
    kinds: Sequence[str] = ("linear", "mlp"),
    max_train_frames: int | None = 20_000,
    max_test_frames: int | None = None,
    seed: int = 0,
    mlp_steps: int = 500,
    batch_size: int = 512,
    progress: bool = False,
) -> dict[str, ProbeResult]:
    """Encode frames, then fit probes on training episodes and score them on test ones.

    ``progress`` shows tqdm bars (frames encoded, probe optimiser steps).

    Args:
        model: anything with ``encode`` (a loaded ``LeWM``).
        train_episodes, test_episodes: e.g. the two halves of ``Dataset.split(0.1)``;
            keep them disjoint, or the scores measure memorisation.
        spec: quantities to probe (see :func:`state_targets`).
        max_train_frames, max_test_frames: random frame subsets (None = all); frames
            of one episode are strongly correlated, so ~20k training frames from many
            episodes fit as well as all of them at a fraction of the encoding time.
    """
    if not train_episodes or not test_episodes:
        raise ValueError("need at least one training and one test episode")
    rng = np.random.default_rng(seed)
    out = []
    for eps, cap, what in (
        (train_episodes, max_train_frames, "encode training frames"),
        (test_episodes, max_test_frames, "encode test frames"),
    ):
        sel = _select_frames(eps, cap, rng)
        shown: bool | str = what if progress else False
        z = np.concatenate(
            encode_episodes(model, eps, frames=sel, batch_size=batch_size, progress=shown)
        )
        states = np.concatenate([e.states[i] for e, i in zip(eps, sel, strict=True)])
        names, y = state_targets(states, spec)
        out.append((z, y))
    (z_tr, y_tr), (z_te, y_te) = out
    return fit_probes(
        z_tr,
        y_tr,
        z_te,
        y_te,
        names,
        kinds=kinds,
        seed=seed,
        mlp_steps=mlp_steps,
        progress=progress,
    )


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


# ---------------------------------------------------------------------------------------
# statistics (no scipy)
# ---------------------------------------------------------------------------------------
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (the one-sided p-value)."""
    if df <= 0:
        raise ValueError(f"df must be positive, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return tail if t >= 0 else 1.0 - tail


@dataclass
class PairedTest:
    """A one-sided paired comparison of ``a`` against ``b`` (H1: a > b)."""

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    median_ratio: float
    """Median of a / b over pairs (how many times larger, robust to outliers)."""
    frac_greater: float
    """Fraction of pairs with a > b."""
    t_stat: float
    p_t: float
    """One-sided paired t-test p-value."""
    p_perm: float
    """One-sided sign-flip permutation p-value (exact for n <= 16, else Monte Carlo)."""
    permutations: int

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def paired_test(
    a: np.ndarray, b: np.ndarray, *, permutations: int = 100_000, seed: int = 0
) -> PairedTest:
    """One-sided paired test that ``a`` is larger than ``b`` (e.g. surprise at a
    perturbation vs at unperturbed steps, one pair per episode).

    Two p-values: the paired t-test (assumes roughly normal differences) and the
    sign-flip permutation test (assumes only that differences are symmetric under
    H0: swapping a pair's labels is as likely as not), whose Monte-Carlo floor is
    ``1 / (permutations + 1)``.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have equal length, got {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = a.size
    if n < 2:
        raise ValueError(f"need at least 2 finite pairs, got {n}")
    d = a - b  # (n,)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd > 0:
        t = mean / (sd / math.sqrt(n))
        p_t = student_t_sf(t, n - 1)
    else:
        t = math.copysign(math.inf, mean) if mean != 0 else 0.0
        p_t = 0.0 if mean > 0 else (0.5 if mean == 0 else 1.0)
    observed = d.sum()
    if n <= 16:  # exact: every sign pattern
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1)  # (2^n, n)
        sums = signs @ d  # (2^n,)
        p_perm = float(np.mean(sums >= observed - 1e-12 * abs(observed)))
        used = 2**n
    else:
        rng = np.random.default_rng(seed)
        count, done = 0, 0
        while done < permutations:  # chunks bound memory
            m = min(10_000, permutations - done)
            signs = rng.integers(0, 2, size=(m, n)) * 2 - 1  # (m, n)
            count += int(np.sum(signs @ d >= observed - 1e-12 * abs(observed)))
            done += m
        p_perm = (count + 1) / (permutations + 1)
        used = permutations
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.median(np.where(b != 0, a / b, np.nan)))
    return PairedTest(
        n=int(n),
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        mean_diff=mean,
        median_ratio=ratio,
        frac_greater=float(np.mean(d > 0)),
        t_stat=float(t),
        p_t=float(p_t),
        p_perm=float(p_perm),
        permutations=int(used),
    )


# ---------------------------------------------------------------------------------------
# temporal straightness
# ---------------------------------------------------------------------------------------
def velocity_cosines(z: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Cosines between consecutive latent velocities of one trajectory.

    ``z`` is ``(T, D)``; velocities ``v_t = z_{t+1} - z_t``; returns ``(T-2,)`` with
    ``cos(v_t, v_{t+1})``, NaN where either velocity is (near) zero: an agent pressed
    against a wall does not move, and a direction of no motion is undefined, not
    "perpendicular".
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"z must be (T, D), got shape {z.shape}")
    v = np.diff(z, axis=0)  # (T-1, D)
    norm = np.linalg.norm(v, axis=1)  # (T-1,)
    num = (v[:-1] * v[1:]).sum(axis=1)  # (T-2,)
    den = norm[:-1] * norm[1:]  # (T-2,)
    scale = max(float(np.median(norm)) if norm.size else 0.0, 1.0) * eps
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((norm[:-1] > scale) & (norm[1:] > scale), num / den, np.nan)


def straightness(trajectories: np.ndarray | Sequence[np.ndarray]) -> float:
    """Mean cosine between consecutive latent velocities over one or many ``(T, D)`` trajectories.

    1 for a straight line traversed in one direction, ~0 for a high-dimensional
    random walk, -1 for back-and-forth oscillation.
    """
    trajs = (
        [trajectories]
        if isinstance(trajectories, np.ndarray) and trajectories.ndim == 2
        else trajectories
    )
    cos = np.concatenate([velocity_cosines(z) for z in trajs])
    cos = cos[np.isfinite(cos)]
    if cos.size == 0:
        raise ValueError(
            "no pair of consecutive non-zero velocities (trajectories too short or static)"
        )
    return float(cos.mean())


def episode_straightness(
    model: Encoder,
    episodes: Sequence[Episode],
    *,
    stride: int,
    batch_size: int = 512,
) -> dict[str, float]:
    """Straightness of the embeddings of frames ``stride`` env steps apart along episodes.

    ``stride`` is usually the model's frameskip (the time step the predictor works
    at). Returns the mean and std of the cosines and the number of pairs.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    sel = [np.arange(0, e.pixels.shape[0], stride) for e in episodes]
    zs = encode_episodes(model, episodes, frames=sel, batch_size=batch_size)
    cos = np.concatenate([velocity_cosines(z) for z in zs])
    cos = cos[np.isfinite(cos)]
    if cos.size == 0:
        raise ValueError("no pair of consecutive non-zero velocities: episodes too short?")
    return {"straightness": float(cos.mean()), "std": float(cos.std()), "pairs": int(cos.size)}


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, int | None]:
    """A LeWM in eval mode and its training steps, from any folder training writes.

    Accepts a checkpoint folder (``config.json`` + ``model.safetensors``), a training
    snapshot ``OUT/train_state/step-N/`` (``state.json`` + ``model.safetensors``; only
    the newest is kept by training, so copy the ones to compare aside), or a run
    folder holding only ``train_state/`` (its newest snapshot). Tracking a quantity
    over training needs the snapshots, which carry no ``config.json``.
    """
    from .checkpoint import CheckpointError, load_checkpoint
    from .config import ModelConfig, from_dict
    from .model import LeWM

    folder = os.fspath(path)
    if os.path.isfile(os.path.join(folder, "config.json")):
        model, _config, stats = load_checkpoint(folder)
        return model, (stats.get("training") or {}).get("steps")
    if not os.path.isfile(os.path.join(folder, "state.json")):
        from .train_state import latest_train_state

        snap = latest_train_state(folder) if os.path.isdir(folder) else None
        if snap is None:
            raise CheckpointError(
                f"{folder} is neither a checkpoint folder (config.json), a training snapshot "
                "(train_state/step-N with state.json) nor a run folder with train_state/"
            )
        folder = os.fspath(snap)
    from .train_state import load_train_state

    state = load_train_state(folder)
    try:
        cfg = from_dict(ModelConfig, state.meta["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{folder}/state.json has no usable model_config: {e!r}") from e
    model = LeWM(cfg)
    model.load_state_dict(state.model)
    return model.eval(), int(state.step)


def straightness_over_checkpoints(
    checkpoints: Sequence[str | os.PathLike[str] | tuple[str, Encoder]],
    episodes: Sequence[Episode],
    *,
    stride: int | None = None,
    batch_size: int = 512,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Straightness of each of several checkpoints on the same episodes (a table).

    ``progress``: a tqdm bar in checkpoints.

    Args:
        checkpoints: folders :func:`load_model` reads (checkpoints or training
            snapshots; labelled by folder name, with training steps when recorded) or
            ``(label, model)`` pairs (e.g. ``("init", LeWM(cfg))``, the untrained model).
        stride: env steps between frames; default: each model's frameskip.
    Returns:
        One row per checkpoint: ``label``, ``steps`` (if known), ``straightness``,
        ``std``, ``pairs``.
    """
    rows: list[dict[str, Any]] = []
    for item in tqdm(checkpoints, desc="straightness", unit="checkpoint", disable=not progress):
        steps: int | None = None
        if isinstance(item, tuple):
            label, model = item
        else:
            model, steps = load_model(item)
            label = os.path.basename(os.path.normpath(os.fspath(item)))
        s = stride if stride is not None else model_dims(model, 1, None)[1]
        row = {"label": label, "steps": steps, "stride": s}
        row.update(episode_straightness(model, episodes, stride=s, batch_size=batch_size))
        rows.append(row)
    return rows
