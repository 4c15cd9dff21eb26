"""`lewm learn`: an agent that gathers its own reward-free data (agents.learn.learn)."""

from __future__ import annotations

import argparse

from .options import add_config_options, collect_overrides, count, json_dict


def learn_options(p: argparse.ArgumentParser) -> None:
    from agents.learn import EXPLORATIONS, ExploreConfig

    p.description = (
        "Rounds of: act in the env (random actions first, then planning toward the "
        "least-visited of the agent's own recorded frames), record the episodes into "
        "OUT/data, continue training the world model on everything recorded, log a row "
        "to OUT/learn_log.csv and checkpoint OUT/checkpoints/round-N. Running it again "
        "with the same --out and settings continues after the last finished round."
    )
    p.set_defaults(func=cmd_learn)
    p.add_argument(
        "--env",
        required=True,
        help="Gymnasium id, e.g. lewm/TwoRoom-v0, or MODULE:ID (wrapped in envs.wrappers.PixelGoal)",
    )
    p.add_argument("--steps", type=count, required=True, help="env steps to act in all")
    p.add_argument("--out", required=True, help="run folder (an existing run is continued)")
    p.add_argument(
        "--data",
        default=None,
        help="a recorded dataset the first round trains on instead of acting",
    )
    p.add_argument(
        "--eval-data",
        default=None,
        help="protocol pairs scored after each round: a dataset folder (its held-out split), "
        "zoo:NAME or an episodes.json; none: no success column",
    )
    p.add_argument("--eval-episodes", type=count, default=50)
    p.add_argument("--eval-seed", type=int, default=42)
    p.add_argument("--steps-per-round", type=count, default=20_000)
    p.add_argument(
        "--train-steps-per-round",
        type=count,
        default=None,
        help="optimiser steps per round (default: the preset's)",
    )
    p.add_argument("--preset", default="cpu")
    p.add_argument("--envs", type=count, default=8, help="env copies acting together")
    p.add_argument("--exploration", choices=EXPLORATIONS, default="frontier")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (0: torch's default; 1 is fastest on a shared CPU)",
    )
    p.add_argument("--env-kwargs", type=json_dict, default=None, metavar="JSON")
    p.add_argument("--wrapper-kwargs", type=json_dict, default=None, metavar="JSON")
    add_config_options(p, ExploreConfig, "explore-")


def cmd_learn(args: argparse.Namespace) -> int:
    """`lewm learn`: run (or continue) the rounds, then print the log and the files."""
    import torch

    import envs  # noqa: F401  (registers lewm/*)
    from agents.learn import CONFIG_FILE, LOG_FILE, ExploreConfig, learn, read_log
    from envs.build import EnvBuild, EnvBuildError

    from ..validation import ConfigError

    try:
        build = EnvBuild.from_spec(args.env, args.env_kwargs, args.wrapper_kwargs)
    except EnvBuildError as e:
        raise ConfigError(str(e)) from e
    eval_fn = None
    if args.eval_data is not None:
        from eval.learn import learn_eval_episodes, protocol_eval_fn

        episodes = learn_eval_episodes(args.eval_data, args.eval_episodes, args.eval_seed)
        eval_fn = protocol_eval_fn(build.to_dict(), episodes)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    learn(
        build,
        args.steps,
        out=args.out,
        steps_per_round=args.steps_per_round,
        train_steps_per_round=args.train_steps_per_round,
        preset=args.preset,
        n_envs=args.envs,
        exploration=args.exploration,
        explore=ExploreConfig(**collect_overrides(args, ExploreConfig, "explore-")),
        data=args.data,
        eval_fn=eval_fn,
        seed=args.seed,
        device=args.device,
    )
    rows = read_log(args.out)
    for row in rows:
        print(
            f"round {row['round']}: {row['env_steps']} env steps, {row['episodes']} episodes "
            f"({row['policy']}), loss {row['train_loss']}, coverage {row['coverage'] or '-'}, "
            f"success {row['success'] or '-'}"
        )
    last = int(rows[-1]["round"]) if rows else 0
    print(
        f"wrote {args.out}/{LOG_FILE}, {args.out}/{CONFIG_FILE}, {args.out}/data/ and "
        f"{args.out}/checkpoints/round-{last:03d} (the agent: lewm eval --agent it)"
    )
    return 0


COMMANDS = {
    "learn": (
        "an agent that gathers its own data: rounds of exploring, recording and training",
        learn_options,
    ),
}
"""`lewm NAME`: (help line, function adding the command's options and its `func`)."""
