"""`lewm bench ...`, `lewm suite`, `lewm demo`: benchmarks, the SB3 comparison suite, the demo.

Also `python -m eval.bench [planning|recorder|expert|planning-quality]`,
`python -m eval.bench_paper_prior` (= `lewm bench paper-prior`), `python -m eval.suite`
(`make bench-suite`) and `python -m eval.demo` (`make demo`): the same `Command`s as
their parsers' roots. `lewm bench` without a benchmark runs `planning` (`make bench`).
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable

from .options import comma_list, count
from .tree import Command, make_parser, populate


def _doc(module: str) -> Callable[[], str]:
    """A module's docstring, imported when its command is built."""
    return lambda: importlib.import_module(module).__doc__ or ""


# ---------------------------------------------------------------------------- lewm bench
def _planning_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--presets", default="paper,cpu")
    p.add_argument("--envs", default="1,4,16")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for plans and peak alike (default: torch's); on a shared "
        "machine 1 thread is far less disturbed than 2 threads waiting at barriers",
    )


def cmd_planning(args: argparse.Namespace) -> int:
    from eval.bench import run_planning  # the command line knows every floor

    return run_planning(args)


def _recorder_options(p: argparse.ArgumentParser) -> None:
    from eval.bench_recorder import EPISODES

    p.add_argument("--rounds", type=count, default=3)
    p.add_argument("--envs", nargs="*", default=list(EPISODES), choices=list(EPISODES))
    p.add_argument("--episodes", type=int, default=None, help="episodes per run (default: per env)")
    p.add_argument(
        "--uncompressed",
        action="store_true",
        help="record uncompressed npz files (RecordEpisodes(compress=False))",
    )
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")


def cmd_recorder(args: argparse.Namespace) -> int:
    from eval.bench_recorder import run_recorder

    return run_recorder(args)


def _expert_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--budget", type=int, default=200, help="env steps per pair")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--candidates", type=int, default=None, help="pushes simulated per choice")
    p.add_argument("--json", default=None, help="also write the summary to this JSON file")


def cmd_expert(args: argparse.Namespace) -> int:
    from eval.bench_expert import run_expert

    return run_expert(args)


def _quality_options(p: argparse.ArgumentParser) -> None:
    from eval.bench_quality import SETTINGS

    p.add_argument("--agent", required=True, help="checkpoint folder (with a policy head)")
    p.add_argument("--data", required=True, help="the dataset it was trained on")
    p.add_argument("--env", default=None, help="env id (default: the checkpoint's)")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--budget", type=int, default=50)
    p.add_argument(
        "--planners",
        default=",".join(SETTINGS),
        help=f"comma list of {', '.join(SETTINGS)}",
    )
    p.add_argument(
        "--cap",
        default="",
        help="fewer episodes for slow rows, e.g. cem-300x30=20 (the first N of the same list)",
    )
    p.add_argument("--json", default="outputs/bench/planning-quality.json")
    p.add_argument("--png", default=None, help="default: the JSON path with .png")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's; per worker with --workers, default 1 there)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="play the rows in N processes, the most expensive first (the JSON keeps "
        "the --planners order)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the finished rows of --json (same agent, data, settings, episodes)",
    )
    p.add_argument(
        "--timing-repeats",
        type=int,
        default=0,
        metavar="N",
        help="also time one decision per setting in N interleaved rounds (same load for all)",
    )
    p.add_argument(
        "--timing", default=None, help="comma list of the settings to time (default: all run)"
    )


def cmd_quality(args: argparse.Namespace) -> int:
    from eval.bench_quality import run_planning_quality

    return run_planning_quality(args)


def _paper_prior_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="paper")
    p.add_argument("--rounds", type=count, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    p.add_argument("--json", default=None)


def cmd_paper_prior(args: argparse.Namespace) -> int:
    from eval.bench_paper_prior import run_paper_prior

    return run_paper_prior(args)


PLANNING = Command(
    "planning",
    help="seconds and FLOPs per CEM plan (paper, cpu presets) vs this machine's matmul peak",
    description=_doc("eval.bench"),
    raw_description=True,
    options=_planning_options,
    run=cmd_planning,
)


def cmd_bench_default(args: argparse.Namespace) -> int:
    """`lewm bench` alone (`make bench`): `planning` with its defaults."""
    return cmd_planning(populate(make_parser("lewm bench planning"), PLANNING).parse_args([]))


BENCH = Command(
    "bench",
    help="speed benchmarks: planning | recorder | expert | planning-quality | paper-prior",
    description=_doc("eval.bench"),
    raw_description=True,
    dest="bench",
    required=False,
    run=cmd_bench_default,
    children=(
        PLANNING,
        Command(
            "recorder",
            help="the dataset recorder's CPU overhead per env",
            description=_doc("eval.bench_recorder"),
            raw_description=True,
            options=_recorder_options,
            run=cmd_recorder,
        ),
        Command(
            "expert",
            help="the Push-T expert's success and cost on random pairs",
            description=_doc("eval.bench_expert"),
            options=_expert_options,
            run=cmd_expert,
        ),
        Command(
            "planning-quality",
            help="success, seconds and rollouts per decision of each planner setting",
            description=_doc("eval.bench_quality"),
            raw_description=True,
            options=_quality_options,
            run=cmd_quality,
        ),
        Command(
            "paper-prior",
            help="seconds per plan of the paper preset's CEM vs the policy prior",
            description=_doc("eval.bench_paper_prior"),
            options=_paper_prior_options,
            run=cmd_paper_prior,
        ),
    ),
)


# ---------------------------------------------------------------------------- lewm suite
def _suite_options(p: argparse.ArgumentParser) -> None:
    from eval.suite import STAGES, SUITE_PLANS

    p.add_argument("--preset", default="full", choices=sorted(SUITE_PLANS))
    p.add_argument("--envs", default=None, help="comma list of tworoom, pusht, reacher, cube")
    p.add_argument("--stages", default=None, help=f"comma list of {', '.join(STAGES)}")
    p.add_argument("--root", default=".", help="folder for data/, runs/, outputs/")
    p.add_argument("--no-videos", action="store_true")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--show", action="store_true", help="print the presets' budgets and exit")


def cmd_suite(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from eval.suite import SUITE_PLANS, run_suite

    if args.show:
        print(json.dumps({k: asdict(v) for k, v in SUITE_PLANS[args.preset].items()}, indent=2))
        return 0
    report = run_suite(
        args.root,
        args.preset,
        comma_list(args.envs),
        stages=comma_list(args.stages),
        videos=not args.no_videos,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(json.dumps(report, indent=2))
    return 0


SUITE = Command(
    "suite",
    help="LeWM vs SB3 PPO/SAC on Two-Room, Push-T, Reacher, Cube (resumable; make bench-suite)",
    description=_doc("eval.suite"),
    raw_description=True,
    options=_suite_options,
    run=cmd_suite,
)


# ----------------------------------------------------------------------------- lewm demo
def _demo_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes", type=int, default=1000, help="episodes to record")
    p.add_argument("--workers", type=int, default=2, help="collection worker processes")
    p.add_argument("--steps", type=int, default=None, help="training steps (preset default)")
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--data", default="data/demo-tworoom")
    p.add_argument("--run", default="runs/demo-tworoom")
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--fresh", action="store_true", help="re-record the dataset even if complete")


def cmd_demo(args: argparse.Namespace) -> int:
    from eval.demo import run_demo

    return run_demo(args)


DEMO = Command(
    "demo",
    help="make demo: record Two-Room data, train, evaluate vs random, write a video",
    description=_doc("eval.demo"),
    raw_description=True,
    options=_demo_options,
    run=cmd_demo,
)
