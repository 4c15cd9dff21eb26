"""The three experiments on a checkpoint: state probes, surprise, straightness (JSON + PNG)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from eval.probe.encode import WorldModelLike, encode_frames, model_dims
from eval.probe.perturb import Perturbed, colour_change, teleport
from eval.probe.plots import (
    plot_perturbation_frames,
    plot_probes,
    plot_straightness,
    plot_surprise,
)
from eval.probe.spec import PERTURBATIONS, PhysicsSpec, make_env, physics_spec
from eval.probe.state import probe_episodes, state_targets
from eval.probe.straightness import load_model, straightness, straightness_over_checkpoints
from eval.probe.surprise import surprise_curve
from lewm_agent.data import ActionNormalizer, Dataset, Episode, load_dataset
from lewm_agent.heldout import load_heldout, trained_holdout
from lewm_agent.stats import PairedTest, paired_test


# ---------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------
@dataclass
class Loaded:
    """A checkpoint with what the physics tools need from it and its dataset."""

    model: Any
    config: dict[str, Any]
    normalizer: ActionNormalizer
    env_id: str
    train: Dataset
    test: Dataset


def load(checkpoint: str | os.PathLike[str], data: str | os.PathLike[str]) -> Loaded:
    """Load a checkpoint and split its dataset the way training did (held-out = last episodes)."""
    from lewm_agent.checkpoint import load_checkpoint

    model, config, stats = load_checkpoint(checkpoint)
    if "action_normalizer" not in stats:
        raise ValueError(f"{checkpoint}: stats.json has no action_normalizer; re-save the agent")
    normalizer = ActionNormalizer.from_dict(stats["action_normalizer"])
    dataset = load_dataset(data)
    if dataset.image_size != model.cfg.image_size:
        raise ValueError(
            f"dataset {data} has {dataset.image_size} px frames, the model takes "
            f"{model.cfg.image_size} px; use the dataset the model was trained on"
        )
    _, train, test = load_heldout(dataset, trained_holdout(config))
    env_id = (config.get("env") or {}).get("env_id") or dataset.meta["env_id"]
    return Loaded(model, config, normalizer, env_id, train, test)


# ---------------------------------------------------------------------------------------
# experiments
# ---------------------------------------------------------------------------------------
def run_probes(
    loaded: Loaded,
    out: str | os.PathLike[str],
    *,
    quantities: Mapping[str, int | str] | None = None,
    kinds: Sequence[str] = ("linear", "mlp"),
    max_train_frames: int | None = 20_000,
    mlp_steps: int = 500,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit probes on training episodes, score on held-out ones; write probe.json + probe_scatter.png."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = quantities or physics_spec(loaded.env_id).quantities
    t0 = time.perf_counter()
    results = probe_episodes(
        loaded.model,
        loaded.train.episodes,
        loaded.test.episodes,
        spec,
        kinds=kinds,
        max_train_frames=max_train_frames,
        mlp_steps=mlp_steps,
        seed=seed,
        progress=progress,
    )
    report = {
        "env_id": loaded.env_id,
        "quantities": dict(spec),
        "train_episodes": len(loaded.train),
        "test_episodes": len(loaded.test),
        "seconds": time.perf_counter() - t0,
        "probes": {k: r.to_dict() for k, r in results.items()},
    }
    (out / "probe.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_probes(results, out / "probe_scatter.png")
    return report


def _aligned(curve: np.ndarray, k: int, window: int) -> np.ndarray:
    """``curve[k-window : k+window+1]`` padded with NaN outside the episode."""
    out = np.full(2 * window + 1, np.nan)
    lo, hi = max(k - window, 0), min(k + window + 1, len(curve))
    out[lo - (k - window) : hi - (k - window)] = curve[lo:hi]
    return out


def surprise_experiment(
    model: WorldModelLike,
    normalizer: ActionNormalizer,
    env: Any,
    episodes: Sequence[Episode],
    spec: PhysicsSpec,
    *,
    kinds: Sequence[str] = PERTURBATIONS,
    seed: int = 0,
    window: int = 20,
    history: int | None = None,
    frameskip: int | None = None,
    progress: bool = False,
) -> tuple[dict[str, dict[str, Any]], dict[str, Perturbed]]:
    """Surprise of original vs perturbed episodes, with paired tests across episodes.

    Per episode a perturbation step ``k`` is drawn uniformly from
    ``[2*frameskip*history, T - 2*frameskip]`` (room for unperturbed context before and
    for the aftermath). Paired one-sided tests over episodes (one pair per episode):

    - ``test_vs_before`` (the headline): surprise at ``k`` vs the mean surprise of the
      unperturbed steps before ``k`` in the same episode;
    - ``test_vs_original``: surprise at ``k`` vs the ORIGINAL episode's surprise at
      ``k`` (same context, same step: a control for "step k was hard anyway");
    - ``test_vs_after``: surprise at ``k`` vs the mean surprise once the whole context
      is past the edit (``t >= k + frameskip*history``). It separates the EVENT from
      a lasting change of appearance: after a colour change every later frame is
      off-distribution, which raises surprise without anything impossible happening;
    - ``test_after_vs_original``: that aftermath vs the original's same steps.

    Returns (per-kind report dicts, the first episode's perturbations for pictures).
    """
    if not spec.has_perturbations:
        raise ValueError(
            "this env's PhysicsSpec defines no teleport/colour perturbation (only probe "
            "quantities): `lewm probe state` works for it, `lewm probe surprise` does not"
        )
    for kind in kinds:
        if kind not in PERTURBATIONS:
            raise ValueError(f"unknown perturbation {kind!r}; choose from {PERTURBATIONS}")
    h, fs = model_dims(model, history, frameskip)
    rng = np.random.default_rng(seed)
    all_states = np.concatenate([e.states for e in episodes])  # (N, S)
    tc = list(spec.teleport_columns)
    bounds = (all_states[:, tc].min(axis=0), all_states[:, tc].max(axis=0))
    pool = all_states[rng.permutation(len(all_states))[:2000]][:, list(spec.recolor_columns)]
    pool = pool.astype(np.float64)
    k_lo = 2 * fs * h
    per_kind: dict[str, dict[str, list[Any]]] = {
        k: {
            "at": [],
            "before": [],
            "orig_at": [],
            "after": [],
            "orig_after": [],
            "al_p": [],
            "al_o": [],
            "steps": [],
        }
        for k in kinds
    }
    examples: dict[str, dict[str, Any]] = {}
    first: dict[str, Perturbed] = {}
    used = 0
    for ep in tqdm(episodes, desc="surprise", unit="episode", disable=not progress):
        t_len = len(ep)
        k_hi = t_len - 2 * fs
        if k_hi < k_lo:
            continue  # too short for context before and aftermath after
        used += 1
        k = int(rng.integers(k_lo, k_hi + 1))
        z0 = encode_frames(model, ep.pixels)  # (T+1, D)
        s0 = surprise_curve(
            model, None, ep.actions, normalizer=normalizer, history=h, frameskip=fs, embeddings=z0
        )
        for kind in kinds:
            if kind == "teleport":
                p = teleport(env, ep, k, spec, rng, bounds)
            else:
                p = colour_change(env, ep, k, spec, pool)
            # Frames before k are untouched: reuse their embeddings, encode the rest.
            z1 = np.concatenate([z0[:k], encode_frames(model, p.pixels[k:])])  # (T+1, D)
            s1 = surprise_curve(
                model,
                None,
                ep.actions,
                normalizer=normalizer,
                history=h,
                frameskip=fs,
                embeddings=z1,
            )  # (T+1,) the recorded actions drive both versions
            acc = per_kind[kind]
            acc["at"].append(s1[k])
            acc["before"].append(np.nanmean(s1[fs:k]))
            acc["orig_at"].append(s0[k])
            after = slice(k + fs * h, t_len + 1)  # context entirely after the edit
            acc["after"].append(np.nanmean(s1[after]))
            acc["orig_after"].append(np.nanmean(s0[after]))
            acc["al_p"].append(_aligned(s1, k, window))
            acc["al_o"].append(_aligned(s0, k, window))
            acc["steps"].append(k)
            if kind not in examples:
                examples[kind] = {
                    "original": s0.tolist(),
                    "perturbed": s1.tolist(),
                    "step": k,
                    "episode": ep.name,
                    **p.detail,
                }
                first[kind] = p
    if used < 2:
        raise ValueError(f"need at least 2 episodes longer than {k_lo + 2 * fs} steps, got {used}")
    reports: dict[str, dict[str, Any]] = {}
    for kind, acc in per_kind.items():
        vs_before: PairedTest = paired_test(np.array(acc["at"]), np.array(acc["before"]), seed=seed)
        vs_orig: PairedTest = paired_test(np.array(acc["at"]), np.array(acc["orig_at"]), seed=seed)
        after: PairedTest = paired_test(
            np.array(acc["after"]), np.array(acc["orig_after"]), seed=seed
        )
        vs_after: PairedTest = paired_test(np.array(acc["at"]), np.array(acc["after"]), seed=seed)
        reports[kind] = {
            "episodes": used,
            "test_vs_before": vs_before.to_dict(),
            "test_vs_original": vs_orig.to_dict(),
            "test_after_vs_original": after.to_dict(),
            "test_vs_after": vs_after.to_dict(),
            "example": examples[kind],
            "aligned_perturbed": np.array(acc["al_p"]).tolist(),
            "aligned_original": np.array(acc["al_o"]).tolist(),
            "steps": acc["steps"],
        }
    return reports, first


def run_surprise(
    loaded: Loaded,
    out: str | os.PathLike[str],
    *,
    episodes: int = 100,
    kinds: Sequence[str] = PERTURBATIONS,
    new_color: tuple[int, int, int] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Surprise experiment on held-out episodes; writes surprise.json and PNGs.

    ``new_color`` overrides the env spec's colour for the colour change.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = physics_spec(loaded.env_id)
    if new_color is not None:
        spec = dataclasses.replace(spec, new_color=tuple(int(c) for c in new_color))
    env = make_env(loaded.env_id, loaded.model.cfg.image_size)
    eps = loaded.test.episodes[:episodes]
    t0 = time.perf_counter()
    reports, first = surprise_experiment(
        loaded.model, loaded.normalizer, env, eps, spec, kinds=kinds, seed=seed, progress=progress
    )
    plot_surprise(reports, out / "surprise.png")
    ex_name = next(iter(reports.values()))["example"]["episode"]
    ex = next(e for e in eps if e.name == ex_name)
    plot_perturbation_frames(ex.pixels, first, out / "perturbation_frames.png")
    summary = {
        "env_id": loaded.env_id,
        "seconds": time.perf_counter() - t0,
        "history": loaded.model.cfg.history,
        "frameskip": loaded.model.cfg.frameskip,
        "colours": {"old": list(spec.old_color), "new": list(spec.new_color)},
        "perturbations": {
            k: {key: v for key, v in r.items() if not key.startswith("aligned")}
            for k, r in reports.items()
        },
    }
    (out / "surprise.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run_straightness(
    checkpoints: Sequence[str | os.PathLike[str]],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    episodes: int = 100,
    include_init: bool = False,
    stride: int | None = None,
    holdout_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Straightness of each checkpoint (and optionally its untrained init) on held-out episodes.

    ``checkpoints`` may be checkpoint folders, training snapshots
    (``OUT/train_state/step-N``) or run folders (see ``eval.probe.straightness.load_model``),
    in the order to plot them. Returns (and writes to straightness.json)
    ``{"checkpoints": rows, "state_path": x, ...}`` where ``state_path`` is the
    straightness of the true state quantities along the same frames.
    """
    import torch

    from lewm_agent.model import LeWM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not checkpoints:
        raise ValueError("give at least one checkpoint folder")
    loaded = [(Path(c).name, *load_model(c)) for c in checkpoints]
    cfg = loaded[0][1].cfg
    dataset = load_dataset(data)
    if dataset.image_size != cfg.image_size:
        raise ValueError(
            f"dataset {data} has {dataset.image_size} px frames, the model takes "
            f"{cfg.image_size} px; use the dataset the model was trained on"
        )
    test = load_heldout(dataset, holdout_fraction).heldout
    items: list[Any] = []
    if include_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            items.append(("init", LeWM(cfg).eval()))
    for name, model, steps in loaded:
        items.append((name + (f" @{steps}" if steps is not None else ""), model))
    eps = test.episodes[:episodes]
    rows = straightness_over_checkpoints(items, eps, stride=stride, progress=progress)
    for row, (_n, _m, steps) in zip(rows[1:] if include_init else rows, loaded, strict=True):
        row["steps"] = steps
    if include_init:
        rows[0]["steps"] = 0
    # Reference: the same measure on the probed state quantities themselves (the
    # physical path's own straightness at the same stride).
    s = stride if stride is not None else cfg.frameskip
    env_id = dataset.meta["env_id"]
    quantities = physics_spec(env_id).quantities
    paths = [state_targets(e.states[::s], quantities)[1] for e in eps]  # each (T/s, Q)
    report = {
        "env_id": env_id,
        "episodes": len(eps),
        "stride": s,
        "state_path": straightness(paths),
        "checkpoints": rows,
    }
    (out / "straightness.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_straightness(rows, out / "straightness.png", state_path=report["state_path"])
    return report
