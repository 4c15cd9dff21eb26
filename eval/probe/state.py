"""State probes: is a recorded physical quantity a linear (or small-MLP) function of the embedding?

Fitted on training episodes and scored (MSE, Pearson r) on held-out ones: a probe
scored on the frames it was fitted on measures memorisation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from eval.probe.encode import Encoder, encode_episodes
from lewm_agent.data import Episode


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
