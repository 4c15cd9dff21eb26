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

Modules: `encode` (what can be probed, encoding), `state` (probes), `surprise`,
`straightness`; the statistics are `lewm_agent.stats`. Every name of `__all__` is
importable from `lewm_agent.probe` itself.
"""

from ..stats import PairedTest, paired_test, student_t_sf
from .encode import Encoder, WorldModelLike, encode_episodes, encode_frames, model_dims
from .state import (
    LinearProbe,
    MLPProbe,
    ProbeResult,
    fit_probes,
    parse_quantity_spec,
    pearson_r,
    probe_episodes,
    state_targets,
)
from .straightness import (
    episode_straightness,
    load_model,
    straightness,
    straightness_over_checkpoints,
    velocity_cosines,
)
from .surprise import action_blocks, surprise_curve

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
