"""`lewm eval [--compare | --videos]`, `lewm probe ...`, `lewm zoo ...`: the evaluation commands.

`lewm eval --compare` is also `python -m eval.compare`, `lewm eval --videos` is
`python -m eval.video`, `lewm probe` is `python -m eval.physics`, `lewm zoo` is
`python -m eval.zoo` (the same `Command`s as their parsers' roots). Each runs a
`run_*` function of `eval/`; option defaults that live there are imported when the
command is chosen.
"""

from __future__ import annotations

import argparse

from ..config import PlanConfig
from .options import PLANNERS, add_config_options, collect_overrides
from .tree import Command


# ---------------------------------------------------------------------------- lewm eval
def eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--agent", required=True, help="checkpoint folder, or zoo:NAME (`lewm zoo list`)"
    )
    p.add_argument(
        "--data",
        default=None,
        help="the dataset the agent was trained on: the protocol's start/goal pairs come "
        "from its held-out episodes (not needed with --episodes-from env, nor for zoo:NAME, "
        "which ships its episodes)",
    )
    p.add_argument(
        "--episodes-from",
        default="data",
        choices=["data", "env"],
        help="data: start/goal pairs from held-out dataset episodes (the paper's protocol); "
        "env: sampled by the env's own reset (seed, seed+1, ...)",
    )
    p.add_argument(
        "--env",
        default=None,
        help="env id or MODULE:ID (default: the env the checkpoint's data was recorded on, "
        "rebuilt with its kwargs and wrappers)",
    )
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--planner", default=None, choices=PLANNERS)
    p.add_argument("--random", action="store_true", help="also run a random agent")
    p.add_argument(
        "--expert",
        action="store_true",
        help="also run the env's goal-directed expert (privileged state: the data's ceiling)",
    )
    p.add_argument(
        "--out", default=None, help="folder for results.json, results.md and success.png"
    )
    p.add_argument("--video", default=None, help="write one rollout video (mp4) here")
    p.add_argument("--device", default="auto")
    add_config_options(p, PlanConfig, "plan-")


def cmd_eval(args: argparse.Namespace) -> int:
    from eval.evaluate import run_eval  # the command line knows every floor

    return run_eval(args, plan_overrides=collect_overrides(args, PlanConfig, "plan-"))


def compare_options(p: argparse.ArgumentParser) -> None:
    from agents.baselines import DEFAULT_TIMESTEPS
    from eval.protocol import BUDGET, EPISODES, SEED

    p.add_argument("--env", required=True, help="env id, e.g. lewm/TwoRoom-v0")
    p.add_argument(
        "--agents",
        default="lewm,ppo,sac,random",
        help="comma list of lewm, ppo, sac, ppo-pixels, random, scripted, gcbc",
    )
    p.add_argument(
        "--lewm",
        default=None,
        help="LeWM checkpoint folder or zoo:NAME (default runs/suite/<env>/lewm)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="the dataset LeWM was trained on: protocol episodes come from its held-out "
        "split (default data/suite/<env>, where `make bench-suite` records it)",
    )
    p.add_argument(
        "--episodes-from",
        default="data",
        choices=["data", "env"],
        help="data: start/goal pairs from the dataset's held-out episodes (the paper's "
        "protocol); env: sampled by the env's own reset, no dataset needed",
    )
    p.add_argument("--episodes", type=int, default=EPISODES, help="protocol episodes")
    p.add_argument("--seed", type=int, default=SEED, help="episode sampling, random agent, SB3")
    p.add_argument("--budget", type=int, default=BUDGET, help="env steps per episode")
    p.add_argument("--out", default=None, help="output folder (default outputs/compare-<env>)")
    p.add_argument(
        "--baselines",
        default=None,
        help="baseline folders <DIR>/<name> (default runs/suite/<env>, as the suite saves them)",
    )
    p.add_argument("--ppo-steps", type=int, default=DEFAULT_TIMESTEPS[("ppo", "state")])
    p.add_argument("--sac-steps", type=int, default=DEFAULT_TIMESTEPS[("sac", "state")])
    p.add_argument("--ppo-pixels-steps", type=int, default=DEFAULT_TIMESTEPS[("ppo", "pixels")])
    p.add_argument(
        "--gcbc-steps", type=int, default=None, help="GCBC gradient steps (default 1200)"
    )
    p.add_argument(
        "--no-train", action="store_true", help="fail instead of training a missing baseline"
    )
    p.add_argument(
        "--holdout", type=float, default=None, help="held-out fraction (default: LeWM's)"
    )
    p.add_argument("--image-size", type=int, default=None, help="default: the dataset's")
    p.add_argument("--planner", default=None, choices=PLANNERS)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse OUT/per_agent/<name>.json results made on the same episodes with the "
        "same checkpoint (each agent's result is saved as soon as it finishes)",
    )


def cmd_compare(args: argparse.Namespace) -> int:
    from eval.compare import run_compare

    run_compare(args)
    return 0


def videos_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", required=True)
    p.add_argument("--agents", default="lewm,ppo,sac,random")
    p.add_argument("--lewm", default=None, help="default runs/suite/<env>/lewm")
    p.add_argument(
        "--data",
        default=None,
        help="dataset whose held-out split gives the episodes (default data/suite/<env>)",
    )
    p.add_argument("--baselines", default=None, help="default runs/suite/<env>")
    p.add_argument("--episodes", type=int, default=4, help="episodes per grid video")
    p.add_argument("--columns", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--budget", type=int, default=50)
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--holdout", type=float, default=None)
    p.add_argument("--out", default=None, help="default outputs/videos-<env>")
    p.add_argument("--device", default="auto")


def cmd_videos(args: argparse.Namespace) -> int:
    from eval.video import run_videos

    return run_videos(args)


COMPARE = Command(
    "--compare",
    help="several agents (lewm, ppo, sac, random, scripted) on the same episodes",
    description="Every agent on the same paper-protocol episodes: results.json, "
    "results.md and success.png (95% Wilson intervals).",
    options=compare_options,
    run=cmd_compare,
)
VIDEOS = Command(
    "--videos",
    help="videos of several agents",
    description="Videos of several agents on the same protocol episodes (the comparison's "
    "first ones, same seed): per agent an mp4 of one episode and a grid of --episodes "
    "episodes, each frame agent | goal | step counter. Saved baselines only.",
    options=videos_options,
    run=cmd_videos,
)
EVAL = Command(
    "eval",
    help="the paper's protocol on held-out episodes (`lewm eval --compare -h`: several "
    "agents; `lewm eval --videos -h`: videos of several agents)",
    description="Run a LeWM checkpoint on the paper's protocol. Two more modes have "
    "their own options: `lewm eval --compare ...` (several agents on the same "
    "episodes; `lewm eval --compare -h`) and `lewm eval --videos ...` (videos of "
    "several agents; `lewm eval --videos -h`).",
    options=eval_options,
    run=cmd_eval,
    modes=(COMPARE, VIDEOS),
)


# --------------------------------------------------------------------------- lewm probe
def _probe_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="the dataset folder the model was trained on")
    p.add_argument("--out", default=None, help="report folder (default outputs/physics/<run>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")


def _state_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint")
    _probe_common(p)
    p.add_argument(
        "--quantities",
        default=None,
        help='e.g. "agent_x=0,agent_y=1" or "block_angle=angle:4" (default: the env\'s spec)',
    )
    p.add_argument("--kinds", default="linear,mlp")
    p.add_argument("--max-train-frames", type=int, default=20_000)
    p.add_argument("--mlp-steps", type=int, default=500, help="optimiser steps of the MLP probe")


def _surprise_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint")
    _probe_common(p)
    p.add_argument("--episodes", type=int, default=100, help="held-out episodes to perturb")
    p.add_argument("--perturb", default="teleport,colour")
    p.add_argument(
        "--colour", default=None, help="new object colour R,G,B (default: the env spec's)"
    )


def _straightness_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+")
    _probe_common(p)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--init", action="store_true", help="also measure the untrained model")
    p.add_argument(
        "--stride", type=int, default=None, help="env steps between frames (default frameskip)"
    )


def cmd_probe(args: argparse.Namespace) -> int:
    from eval.probe.command import run_probe

    return run_probe(args)


PROBE = Command(
    "probe",
    help="latent physics: state | surprise | straightness (`lewm probe -h`)",
    description="Probes, surprise and temporal straightness of a trained LeWM checkpoint.",
    dest="probe_command",
    run=cmd_probe,
    children=(
        Command(
            "state",
            aliases=("probe",),
            help="linear / MLP probes of state quantities (positions, angles) from the embedding",
            description="Fit linear / MLP probes from the embeddings of training frames to "
            "state quantities (positions, angles) and score them on held-out frames. "
            "(Called `probe` before; that name still works.)",
            options=_state_options,
        ),
        Command(
            "surprise",
            help="surprise of teleport / colour-change perturbations",
            options=_surprise_options,
        ),
        Command(
            "straightness",
            help="latent straightness over checkpoints",
            options=_straightness_options,
        ),
    ),
)


# ----------------------------------------------------------------------------- lewm zoo
def _zoo_add_options(p: argparse.ArgumentParser) -> None:
    from eval.protocol import EPISODES, SEED

    p.add_argument("run", help="checkpoint folder (from `lewm train`)")
    p.add_argument("--name", required=True, help="zoo name, e.g. pusht (-> zoo:pusht)")
    p.add_argument("--data", required=True, help="the dataset the run was trained on")
    p.add_argument("--collect-cmd", required=True, help="the exact command that recorded --data")
    p.add_argument("--train-cmd", required=True, help="the exact command that trained RUN")
    p.add_argument("--dtype", default="auto", choices=["auto", "float16", "float32"])
    p.add_argument(
        "--max-drop",
        type=int,
        default=1,
        help="auto: keep float16 unless it solves more than this many fewer episodes",
    )
    p.add_argument("--episodes", type=int, default=EPISODES)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument(
        "--planner",
        default=None,
        choices=PLANNERS,
        help="measure and ship with this planner (default: the checkpoint's); policy / "
        "cem-prior / mppi-prior ship RUN's policy head (`lewm train-policy RUN --data DATA`)",
    )
    p.add_argument("--note", default="", help="free text for the card (e.g. machine load)")
    p.add_argument("--force", action="store_true", help="replace an existing zoo model")


def _zoo_list_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def cmd_zoo(args: argparse.Namespace) -> int:
    from eval.zoo import run_zoo

    return run_zoo(args)


ZOO = Command(
    "zoo",
    help="the model zoo: list | add (`lewm zoo -h`)",
    description="the model zoo",
    dest="zoo_command",
    run=cmd_zoo,
    children=(
        Command(
            "list",
            help="the zoo's models: env, name, size, success, CI, card",
            options=_zoo_list_options,
        ),
        Command(
            "add",
            help="add a trained run (converts, evaluates, writes the card)",
            options=_zoo_add_options,
        ),
    ),
)
