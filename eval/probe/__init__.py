"""Physics in the latent space: state probes, surprise and temporal straightness.

Three questions a user asks of a trained world model, one call each:

- **Probes** (:func:`probe_episodes`, :func:`fit_probes`, :func:`run_probes`): is a
  physical quantity (agent position, block angle, joint angles: any column of the
  recorded states) a linear (or small-MLP) function of the frame embedding? Fitted on
  training episodes and scored (MSE, Pearson r) on held-out ones, because a probe
  scored on the frames it was fitted on measures memorisation, not what the embedding
  encodes.
- **Surprise** (:func:`surprise_curve`, :func:`run_surprise`): how far the predicted
  next embedding is from the observed one at each step of an episode (teacher forced:
  the predictor always sees the TRUE past frames). Physically impossible events should
  make it spike; ``lewm_agent.stats.paired_test`` says whether the spike is significant
  across episodes.
- **Straightness** (:func:`straightness`, :func:`run_straightness`): the mean cosine
  between consecutive latent velocities; a world model whose latent trajectories
  straighten over training makes linear extrapolation (and planning) easier.

The latent tools (`encode`, `state`, `surprise`, `straightness`) know tensors only:
anything with an ``encode(uint8 (..., H, W, 3)) -> (..., D)`` method (and
``predict(z (B, T, D), actions (B, T, fs*A)) -> (B, T, D)`` for surprise) can be
probed, so tests can use stubs with known answers. The env-side tools use the envs:

- which state columns are which quantity, per env (:func:`physics_spec`);
- perturbed episodes re-rendered from edited states through the env's own
  ``render_state`` (the contract every env keeps): a **teleport** (the object jumps
  to a far legal position at step ``k`` and the recorded actions are replayed from
  there through the env's physics, so the rest of the episode is a legal trajectory
  continuing from the new place) and a **colour change** (frames from step ``k`` on
  show the object in another colour, states untouched);
- reports with PNGs, run by ``lewm probe state|surprise|straightness``.

Colour change without touching the env: the envs draw with module-level colour
constants, and mutating those would change every other env instance in the process.
Instead the object is re-coloured in image space, exactly: each frame is
``background + alpha * (colour - background)`` per pixel (anti-aliased drawing), the
background is recovered by rendering the same state with the object moved to three
far-apart places and taking the per-pixel median, so ``alpha`` can be solved for and
the pixel redrawn with the new colour (anti-aliasing preserved). Re-colouring with
the old colour gives the original frame back (tested).

Modules: `encode` (what can be probed, encoding), `state` (probes), `surprise`,
`straightness`, `spec` (per-env quantities, state re-rendering), `perturb` (teleport,
colour change), `experiments` (the three runs on a checkpoint), `plots`, `command`
(what `lewm probe` runs). Every name of `__all__` is importable from `eval.probe`.
"""

from __future__ import annotations

from eval.probe.encode import Encoder, WorldModelLike, encode_episodes, encode_frames, model_dims
from eval.probe.experiments import (
    Loaded,
    load,
    run_probes,
    run_straightness,
    run_surprise,
    surprise_experiment,
)
from eval.probe.perturb import Perturbed, colour_change, object_free_background, recolor, teleport
from eval.probe.plots import (
    format_p,
    plot_perturbation_frames,
    plot_probes,
    plot_straightness,
    plot_surprise,
)
from eval.probe.spec import (
    PERTURBATIONS,
    PhysicsSpec,
    make_env,
    physics_spec,
    render_states,
    resimulate,
)
from eval.probe.state import (
    LinearProbe,
    MLPProbe,
    ProbeResult,
    fit_probes,
    parse_quantity_spec,
    pearson_r,
    probe_episodes,
    state_targets,
)
from eval.probe.straightness import (
    episode_straightness,
    load_model,
    straightness,
    straightness_over_checkpoints,
    velocity_cosines,
)
from eval.probe.surprise import action_blocks, surprise_curve

__all__ = [
    "PERTURBATIONS",
    "Encoder",
    "LinearProbe",
    "Loaded",
    "MLPProbe",
    "Perturbed",
    "PhysicsSpec",
    "ProbeResult",
    "WorldModelLike",
    "action_blocks",
    "colour_change",
    "encode_episodes",
    "encode_frames",
    "episode_straightness",
    "fit_probes",
    "format_p",
    "load",
    "load_model",
    "make_env",
    "model_dims",
    "object_free_background",
    "parse_quantity_spec",
    "pearson_r",
    "physics_spec",
    "plot_perturbation_frames",
    "plot_probes",
    "plot_straightness",
    "plot_surprise",
    "probe_episodes",
    "recolor",
    "render_states",
    "resimulate",
    "run_probes",
    "run_straightness",
    "run_surprise",
    "state_targets",
    "straightness",
    "straightness_over_checkpoints",
    "surprise_curve",
    "surprise_experiment",
    "teleport",
    "velocity_cosines",
]
