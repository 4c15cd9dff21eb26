"""`lewm eval`, `lewm compare`, `lewm videos`, `lewm probe ...`, `lewm zoo ...`: evaluation.

Each command calls a library function of `eval/` with typed arguments; option
defaults that live there are imported when the command is chosen (`main` builds
only the chosen command's options).
"""

from __future__ import annotations

import argparse

from ..config import PlanConfig
from .options import PLANNERS, add_config_options, agent_path, collect_overrides, comma_list


# ---------------------------------------------------------------------------- lewm eval
def eval_options(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Run a LeWM checkpoint on the paper's protocol (several agents on the same "
        "episodes: `lewm compare`; their videos: `lewm videos`)."
    )
    p.set_defaults(func=cmd_eval)
    p.add_argument(
        "--agent",
        required=True,
        type=agent_path,
        help="checkpoint folder, or zoo:NAME (`lewm zoo list`)",
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
    p.add_argument(
        "--cost",
        dest="plan_cost",
        default=None,
        choices=["latent", "learned", "latent+learned"],
        help="plan cost (the same as --plan-cost); learned needs `lewm train-cost RUN --data DATA`",
    )
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
    from eval.evaluate import evaluate  # the command line knows every floor

    evaluate(
        args.agent,
        data=args.data,
        episodes_from=args.episodes_from,
        env=args.env,
        episodes=args.episodes,
        seed=args.seed,
        planner=args.planner,
        random=args.random,
        expert=args.expert,
        out=args.out,
        video=args.video,
        device=args.device,
        plan_overrides=collect_overrides(args, PlanConfig, "plan-"),
    )
    return 0


def compare_options(p: argparse.ArgumentParser) -> None:
    from agents.baselines import DEFAULT_TIMESTEPS
    from eval.protocol import BUDGET, EPISODES, SEED

    p.description = (
        "Every agent on the same paper-protocol episodes: results.json, results.md and "
        "success.png (95% Wilson intervals)."
    )
    p.set_defaults(func=cmd_compare)
    p.add_argument("--env", required=True, help="env id, e.g. lewm/TwoRoom-v0")
    p.add_argument(
        "--agents",
        default="lewm,ppo,sac,random",
        help="comma list of lewm, ppo, sac, ppo-pixels, random, scripted, gcbc",
    )
    p.add_argument(
        "--lewm",
        default=None,
        type=agent_path,
        help="LeWM checkpoint folder or zoo:NAME (default runs/suite/<env>/lewm)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="the dataset LeWM was trained on: protocol episodes come from its held-out "
        "split (default: the episodes a zoo model ships, else data/suite/<env>, where "
        "`make bench-suite` records it)",
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
    from eval.compare import compare_agents

    compare_agents(
        args.env,
        comma_list(args.agents) or [],
        lewm=args.lewm,
        data=args.data,
        episodes_from=args.episodes_from,
        episodes=args.episodes,
        seed=args.seed,
        budget=args.budget,
        out=args.out,
        baselines=args.baselines,
        budgets={
            "ppo": args.ppo_steps,
            "sac": args.sac_steps,
            "ppo-pixels": args.ppo_pixels_steps,
            "gcbc": args.gcbc_steps,
        },
        train_missing=not args.no_train,
        holdout=args.holdout,
        image_size=args.image_size,
        planner=args.planner,
        device=args.device,
        progress=not args.no_progress,
        resume=args.resume,
    )
    return 0


def videos_options(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Videos of several agents on the same protocol episodes (the comparison's first "
        "ones, same seed): per agent an mp4 of one episode and a grid of --episodes "
        "episodes, each frame agent | goal | step counter. Saved baselines only."
    )
    p.set_defaults(func=cmd_videos)
    p.add_argument("--env", required=True)
    p.add_argument("--agents", default="lewm,ppo,sac,random")
    p.add_argument(
        "--lewm",
        default=None,
        type=agent_path,
        help="LeWM checkpoint folder or zoo:NAME (default runs/suite/<env>/lewm)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="dataset whose held-out split gives the episodes (default: the episodes a "
        "zoo model ships, else data/suite/<env>)",
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
    from eval.video import comparison_videos

    comparison_videos(
        args.env,
        comma_list(args.agents) or [],
        lewm=args.lewm,
        data=args.data,
        baselines=args.baselines,
        episodes=args.episodes,
        columns=args.columns,
        seed=args.seed,
        budget=args.budget,
        fps=args.fps,
        holdout=args.holdout,
        out=args.out,
        device=args.device,
    )
    return 0


# --------------------------------------------------------------------------- lewm probe
def _probe_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="the dataset folder the model was trained on")
    p.add_argument("--out", default=None, help="report folder (default outputs/physics/<run>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")


def _state_options(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=cmd_probe_state)
    p.add_argument("checkpoint", type=agent_path, help="checkpoint folder or zoo:NAME")
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
    p.set_defaults(func=cmd_probe_surprise)
    p.add_argument("checkpoint", type=agent_path, help="checkpoint folder or zoo:NAME")
    _probe_common(p)
    p.add_argument("--episodes", type=int, default=100, help="held-out episodes to perturb")
    p.add_argument("--perturb", default="teleport,colour")
    p.add_argument(
        "--colour", default=None, help="new object colour R,G,B (default: the env spec's)"
    )


def _straightness_options(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=cmd_probe_straightness)
    p.add_argument(
        "checkpoints", nargs="+", type=agent_path, help="checkpoint folders or zoo:NAMEs"
    )
    _probe_common(p)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--init", action="store_true", help="also measure the untrained model")
    p.add_argument(
        "--stride", type=int, default=None, help="env steps between frames (default frameskip)"
    )


def _threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(n)


def cmd_probe_state(args: argparse.Namespace) -> int:
    from eval.probe.command import probe_state

    _threads(args.threads)
    probe_state(
        args.checkpoint,
        args.data,
        out=args.out,
        quantities=args.quantities,
        kinds=comma_list(args.kinds) or [],
        max_train_frames=args.max_train_frames,
        mlp_steps=args.mlp_steps,
        seed=args.seed,
    )
    return 0


def cmd_probe_surprise(args: argparse.Namespace) -> int:
    from eval.probe.command import parse_colour, probe_surprise

    _threads(args.threads)
    probe_surprise(
        args.checkpoint,
        args.data,
        out=args.out,
        episodes=args.episodes,
        perturbations=comma_list(args.perturb) or [],
        colour=parse_colour(args.colour) if args.colour else None,
        seed=args.seed,
    )
    return 0


def cmd_probe_straightness(args: argparse.Namespace) -> int:
    from eval.probe.command import probe_straightness

    _threads(args.threads)
    probe_straightness(
        args.checkpoints,
        args.data,
        out=args.out,
        episodes=args.episodes,
        include_init=args.init,
        stride=args.stride,
        seed=args.seed,
    )
    return 0


def probe_options(p: argparse.ArgumentParser) -> None:
    p.description = "Probes, surprise and temporal straightness of a trained LeWM checkpoint."
    sub = p.add_subparsers(dest="probe_command", required=True, metavar="COMMAND")
    _state_options(
        sub.add_parser(
            "state",
            help="linear / MLP probes of state quantities (positions, angles) from the embedding",
            description="Fit linear / MLP probes from the embeddings of training frames to "
            "state quantities (positions, angles) and score them on held-out frames.",
        )
    )
    _surprise_options(
        sub.add_parser("surprise", help="surprise of teleport / colour-change perturbations")
    )
    _straightness_options(
        sub.add_parser("straightness", help="latent straightness over checkpoints")
    )


# ----------------------------------------------------------------------------- lewm zoo
def _zoo_add_options(p: argparse.ArgumentParser) -> None:
    from eval.protocol import EPISODES, SEED

    p.set_defaults(func=cmd_zoo_add)
    p.add_argument("run", type=agent_path, help="checkpoint folder (from `lewm train`)")
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
    p.set_defaults(func=cmd_zoo_list)
    p.add_argument("--json", action="store_true")


def cmd_zoo_list(args: argparse.Namespace) -> int:
    from eval.zoo_card import list_text

    print(list_text(as_json=args.json))
    return 0


def cmd_zoo_add(args: argparse.Namespace) -> int:
    from eval.zoo import add

    add(
        args.run,
        args.name,
        args.data,
        collect_cmd=args.collect_cmd,
        train_cmd=args.train_cmd,
        dtype=args.dtype,
        max_drop=args.max_drop,
        episodes=args.episodes,
        seed=args.seed,
        note=args.note,
        force=args.force,
        planner=args.planner,
    )
    return 0


def zoo_options(p: argparse.ArgumentParser) -> None:
    p.description = "The model zoo: trained models shipped in the repository (zoo:NAME)."
    sub = p.add_subparsers(dest="zoo_command", required=True, metavar="COMMAND")
    _zoo_list_options(
        sub.add_parser("list", help="the zoo's models: env, name, size, success, CI, card")
    )
    _zoo_add_options(
        sub.add_parser("add", help="add a trained run (converts, evaluates, writes the card)")
    )


COMMANDS = {
    "eval": ("the paper's protocol on held-out episodes, one LeWM checkpoint", eval_options),
    "compare": (
        "several agents (lewm, ppo, sac, gcbc, random, scripted) on the same episodes",
        compare_options,
    ),
    "videos": ("videos of several agents on the same episodes", videos_options),
    "probe": ("latent physics: state | surprise | straightness", probe_options),
    "zoo": ("the model zoo: list | add", zoo_options),
}
"""`lewm NAME`: (help line, function adding the command's options and its `func`)."""
