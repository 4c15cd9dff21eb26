"""Physics in the latent space, on real environments: probes, surprise, straightness.

The env-dependent half of :mod:`lewm_agent.probe` (which knows tensors only):

- which state columns are which quantity, per env (:func:`physics_spec`);
- perturbed episodes re-rendered from edited states through the env's own
  ``render_state`` (the contract every env keeps): a **teleport** (the object jumps
  to a far legal position at step ``k`` and the recorded actions are replayed from
  there through the env's physics, so the rest of the episode is a legal trajectory
  continuing from the new place) and a **colour change** (frames from step ``k`` on
  show the object in another colour, states untouched);
- reports with PNGs, and the command line (`lewm probe ...`)::

    lewm probe state runs/tw1 --data data/demo-tworoom
    lewm probe surprise runs/tw1 --data data/demo-tworoom
    lewm probe straightness runs/tw1 --init --data data/demo-tworoom

Colour change without touching the env: the envs draw with module-level colour
constants, and mutating those would change every other env instance in the process.
Instead the object is re-coloured in image space, exactly: each frame is
``background + alpha * (colour - background)`` per pixel (anti-aliased drawing), the
background is recovered by rendering the same state with the object moved to three
far-apart places and taking the per-pixel median, so ``alpha`` can be solved for and
the pixel redrawn with the new colour (anti-aliasing preserved). Re-colouring with
the old colour gives the original frame back (tested).

Modules: `spec` (per-env quantities, state re-rendering), `perturb` (teleport,
colour change), `experiments` (the three runs), `plots`, `command` (`probe_state`,
`probe_surprise`, `probe_straightness`: what `lewm probe` runs). Every public name is importable
from `eval.physics` itself.
"""

from __future__ import annotations

from eval.physics.command import probe_state, probe_straightness, probe_surprise
from eval.physics.experiments import (
    Loaded,
    load,
    run_probes,
    run_straightness,
    run_surprise,
    surprise_experiment,
)
from eval.physics.perturb import Perturbed, colour_change, object_free_background, recolor, teleport
from eval.physics.plots import (
    format_p,
    plot_perturbation_frames,
    plot_probes,
    plot_straightness,
    plot_surprise,
)
from eval.physics.spec import (
    PERTURBATIONS,
    PhysicsSpec,
    make_env,
    physics_spec,
    render_states,
    resimulate,
)

__all__ = [
    "Loaded",
    "PERTURBATIONS",
    "Perturbed",
    "PhysicsSpec",
    "colour_change",
    "format_p",
    "load",
    "probe_state",
    "probe_straightness",
    "probe_surprise",
    "make_env",
    "object_free_background",
    "physics_spec",
    "plot_perturbation_frames",
    "plot_probes",
    "plot_straightness",
    "plot_surprise",
    "recolor",
    "render_states",
    "resimulate",
    "run_probes",
    "run_straightness",
    "run_surprise",
    "surprise_experiment",
    "teleport",
]
