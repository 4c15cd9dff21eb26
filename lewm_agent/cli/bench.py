"""`lewm bench ...`, `lewm suite`, `lewm demo`: benchmarks, the SB3 comparison suite, the demo.

`lewm bench` without a benchmark runs `planning` with its defaults (`make bench`);
`make bench-suite` is `lewm suite`, `make demo` is `lewm demo`.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

from .options import agent_path, comma_list, count


def _describe(p: argparse.ArgumentParser, module: str) -> None:
    """Show `module`'s docstring (imported now: only the chosen command is built) as -h."""
    p.description = importlib.import_module(module).__doc__ or ""
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def _write_json(path: str | None, obj: Any, note: str = "") -> None:
    """Write `obj` to `path` (its folder made) when a path was given; say so."""
    if not path:
        if note:
            print(note)
        return
    from ..atomic import atomic_write_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(path), obj)
    print(f"wrote {path}")


# ---------------------------------------------------------------------------- lewm bench
def _planning_options(p: argparse.ArgumentParser) -> None:
    _describe(p, "eval.bench")
    p.set_defaults(func=cmd_planning)
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
    import torch

    from eval.bench import bench_planning  # the command line knows every floor

    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench_planning(
        args.repeats, comma_list(args.presets) or [], [int(x) for x in comma_list(args.envs) or []]
    )
    _write_json(args.json, result, "wrote no file (pass --json PATH to save these figures)")
    return 0


def _recorder_options(p: argparse.ArgumentParser) -> None:
    from eval.bench_recorder import EPISODES

    _describe(p, "eval.bench_recorder")
    p.set_defaults(func=cmd_recorder)
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
    from eval.bench_recorder import bench_recorder

    results = bench_recorder(
        args.envs, rounds=args.rounds, episodes=args.episodes, compress=not args.uncompressed
    )
    _write_json(args.json, results)
    return 0


def _expert_options(p: argparse.ArgumentParser) -> None:
    _describe(p, "eval.bench_expert")
    p.set_defaults(func=cmd_expert)
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--budget", type=int, default=200, help="env steps per pair")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--candidates", type=int, default=None, help="pushes simulated per choice")
    p.add_argument("--json", default=None, help="also write the summary to this JSON file")


def cmd_expert(args: argparse.Namespace) -> int:
    from eval.bench_expert import bench_expert

    kw = {} if args.candidates is None else {"candidates": args.candidates}
    result = bench_expert(args.pairs, args.budget, args.seed, **kw)
    lo, hi = result["ci95"]
    print(
        f"Push-T expert: {result['successes']}/{result['pairs']} pairs solved within "
        f"{result['budget']} steps (95% CI {lo:.0%}-{hi:.0%}), median "
        f"{result['median_steps_to_success']} steps to success, "
        f"{result['ms_per_env_step']:.2f} ms per env step (decision + physics)"
    )
    _write_json(args.json, result)
    return 0


def _ceiling_options(p: argparse.ArgumentParser) -> None:
    _describe(p, "eval.ceiling")
    p.set_defaults(func=cmd_ceiling)
    p.add_argument("--data", required=True, help="dataset folder whose held-out episodes to play")
    p.add_argument("--episodes", type=int, default=30, help="protocol episodes (seed 42)")
    p.add_argument(
        "--cost",
        default=None,
        help="block_pose | latent_surrogate | distance (default: the env's first); with "
        "--agent: latent | learned | latent+learned (default latent)",
    )
    p.add_argument(
        "--agent",
        default=None,
        type=agent_path,
        help="score states with this checkpoint's plan cost on their rendered frames "
        "(exact dynamics, the checkpoint's encoder and cost)",
    )
    p.add_argument("--over", default="final", choices=("final", "blocks"))
    p.add_argument("--contact-weight", type=float, default=0.0, help="per 100 px pusher-block gap")
    p.add_argument(
        "--goal-pusher-weight", type=float, default=0.0, help="per 100 px from the goal's pusher"
    )
    p.add_argument("--planner", default="cem", choices=("cem", "mppi"))
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--elites", type=int, default=20)
    p.add_argument("--horizon", type=int, default=5, help="blocks of frameskip env steps")
    p.add_argument("--receding-horizon", type=int, default=5, help="blocks executed per plan")
    p.add_argument("--noise-beta", type=float, default=2.0, help="0 white, 2 coloured noise")
    p.add_argument("--expert", action="store_true", help="also run the env's goal expert")
    p.add_argument("--random", action="store_true", help="also run uniform random actions")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")


def cmd_ceiling(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from eval.ceiling import (
        CEILING_PLAN,
        COSTS,
        CostConfig,
        ceiling,
        expert_success,
        protocol_episodes,
    )
    from eval.checkpoint_cost import CheckpointCost
    from lewm_agent.config import replace
    from lewm_agent.data import read_meta

    meta = read_meta(args.data)
    env_id = meta["env_id"]
    cost: CostConfig | CheckpointCost
    if args.agent is not None:
        if args.contact_weight or args.goal_pusher_weight:
            raise SystemExit(
                "lewm bench ceiling: --contact-weight / --goal-pusher-weight shape state costs; "
                "they do not apply to --agent's plan cost"
            )
        try:
            cost = CheckpointCost(agent=args.agent, cost=args.cost or "latent", over=args.over)
        except ValueError as err:
            raise SystemExit(f"lewm bench ceiling: {err}") from None
    else:
        cost = CostConfig(
            name=args.cost or COSTS.get(env_id, ("block_pose",))[0],
            over=args.over,
            contact_weight=args.contact_weight,
            goal_pusher_weight=args.goal_pusher_weight,
        )
    episodes = protocol_episodes(args.data, n=args.episodes)
    plan = replace(
        CEILING_PLAN,
        planner=args.planner,
        samples=args.samples,
        iterations=args.iterations,
        elites=args.elites,
        horizon=args.horizon,
        receding_horizon=args.receding_horizon,
        noise_beta=args.noise_beta,
    )
    frameskip = int(meta.get("frameskip", 5))
    rows = {"planner": ceiling(env_id, episodes, cost, plan, frameskip=frameskip)}
    if args.expert:
        rows["expert"] = expert_success(env_id, episodes)
    if args.random:
        floor_cost = COSTS[env_id][0] if args.agent is not None else cost  # actions ignore it
        rows["random"] = ceiling(env_id, episodes, floor_cost, plan, random_actions=True)
    for name, row in rows.items():
        lo, hi = row["ci95"]
        print(
            f"{name}: {row['successes']}/{row['episodes']} ({lo:.0%}-{hi:.0%}), mean steps "
            f"{row['mean_steps']:.1f}, {row['seconds_per_decision']:.3f} s per decision"
        )
    _write_json(
        args.json, {"env_id": env_id, "cost": rows["planner"]["cost"], "plan": asdict(plan), **rows}
    )
    return 0


def _cost_screen_options(p: argparse.ArgumentParser) -> None:
    _describe(p, "eval.cost_screen")
    p.set_defaults(func=cmd_cost_screen)
    p.add_argument("--agent", required=True, type=agent_path, help="checkpoint folder or zoo:NAME")
    p.add_argument("--data", required=True, help="the dataset it was trained on (held-out part)")
    p.add_argument(
        "--costs",
        default=None,
        help="comma-separated plan costs (default: latent, and the learned ones with a cost head)",
    )
    p.add_argument("--pairs", type=int, default=4000, help="(start, reached, goal) triples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the result to this JSON file")


def cmd_cost_screen(args: argparse.Namespace) -> int:
    from eval.cost_screen import screen_costs

    costs = [c.strip() for c in args.costs.split(",")] if args.costs else None
    result = screen_costs(args.agent, args.data, costs=costs, pairs=args.pairs, seed=args.seed)
    print(
        f"{result['env']}: {result['pairs']} pairs, {result['steps']} env steps; rank correlation "
        f"with the state cost {result['state_cost']!r} (prediction error "
        f"{result['prediction_error']:.1f} vs goal spread {result['goal_spread']:.1f})"
    )
    for row in result["rows"]:
        sens = row.get("sensitivity_true") or {}
        print(
            f"  {row['cost']:16s} predicted {row['spearman_predicted']:.3f}   "
            f"true {row['spearman_true']:.3f}   "
            + "  ".join(f"{k} {v:.2f}" for k, v in sens.items())
        )
    _write_json(args.json, result)
    return 0


def _quality_options(p: argparse.ArgumentParser) -> None:
    from eval.bench_quality import SETTINGS

    _describe(p, "eval.bench_quality")
    p.set_defaults(func=cmd_quality)
    p.add_argument(
        "--agent",
        required=True,
        type=agent_path,
        help="checkpoint folder (with a policy head) or zoo:NAME",
    )
    p.add_argument(
        "--data",
        default=None,
        help="the dataset it was trained on (not needed for zoo:NAME, which ships its episodes)",
    )
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
    from eval.bench_quality import planning_quality
    from eval.bench_quality_report import markdown, quality_chart

    if args.episodes < 1:
        raise SystemExit("--episodes must be >= 1")
    if args.workers < 1:
        raise SystemExit("--workers must be >= 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    caps = {}
    for item in comma_list(args.cap) or []:
        key, _, value = item.partition("=")
        caps[key] = int(value)
    report = planning_quality(
        args.agent,
        args.data,
        episodes=args.episodes,
        planners=comma_list(args.planners),
        seed=args.seed,
        budget=args.budget,
        env_id=args.env,
        device=args.device,
        progress=not args.no_progress,
        episodes_per_planner=caps,
        json_path=args.json,
        resume=args.resume,
        timing_repeats=args.timing_repeats,
        timing=comma_list(args.timing),
        workers=args.workers,
        threads=args.threads or 1,
    )
    _write_json(args.json, report)
    png = quality_chart(report, args.png or Path(args.json).with_suffix(".png"))
    print()
    print(markdown(report))
    print(f"\nwrote {png}")
    return 0


def _paper_prior_options(p: argparse.ArgumentParser) -> None:
    _describe(p, "eval.bench_paper_prior")
    p.set_defaults(func=cmd_paper_prior)
    p.add_argument("--preset", default="paper")
    p.add_argument("--rounds", type=count, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    p.add_argument("--json", default=None)


def cmd_paper_prior(args: argparse.Namespace) -> int:
    import torch

    from eval.bench_paper_prior import bench_paper_prior

    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench_paper_prior(args.preset, args.rounds)
    print(f"matmul peak per round (GFLOP/s): {[round(p) for p in result['peak_gflops']]}")
    for row in result["rows"]:
        print(
            f"{row['planner']}: {row['rollouts_per_plan']} rollouts, "
            f"{row['seconds_per_plan']:.3f} s per plan, {row['ratio_to_reference']:.3f} x "
            f"{result['reference']}"
        )
    _write_json(args.json, result)
    return 0


def _onnx_options(p: argparse.ArgumentParser) -> None:
    _describe(p, "eval.bench_onnx")
    p.set_defaults(func=cmd_onnx)
    p.add_argument("run", type=agent_path, help="checkpoint folder or zoo:NAME")
    p.add_argument(
        "--planners", type=comma_list, default=["policy", "cem-prior"], help="policy,cem-prior,cem"
    )
    p.add_argument("--threads", type=comma_list, default=["1", "2"], help="thread counts")
    p.add_argument("--rounds", type=count, default=3)
    p.add_argument("--json", default=None)


def cmd_onnx(args: argparse.Namespace) -> int:
    from eval.bench_onnx import bench_onnx, markdown

    threads = [int(t) for t in args.threads]
    result = bench_onnx(args.run, args.planners, threads, rounds=args.rounds)
    print(markdown(result))
    _write_json(args.json, result)
    return 0


def _gpu_options(p: argparse.ArgumentParser) -> None:
    _describe(p, "eval.bench_gpu")
    p.set_defaults(func=cmd_gpu)
    p.add_argument("--device", default="auto", help="auto | cuda | cuda:N | cpu")
    p.add_argument("--preset", default="paper")
    p.add_argument("--batch", type=count, default=None, help="training windows per step")
    p.add_argument("--samples", type=count, default=None, help="CEM samples per iteration")
    p.add_argument("--iterations", type=count, default=None, help="CEM iterations per plan")
    p.add_argument("--repeats", type=count, default=None, help="timed runs of each")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs before them")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")


def cmd_gpu(args: argparse.Namespace) -> int:
    from eval.bench_gpu import bench_gpu

    if args.warmup is not None and args.warmup < 0:
        raise SystemExit(f"--warmup must be >= 0, got {args.warmup}")
    result = bench_gpu(
        args.device,
        preset=args.preset,
        batch=args.batch,
        samples=args.samples,
        iterations=args.iterations,
        repeats=args.repeats,
        warmup=args.warmup,
    )
    _write_json(args.json, result)
    return 0


def cmd_bench_default(args: argparse.Namespace) -> int:
    """`lewm bench` alone (`make bench`): `planning` with its defaults."""
    planning = argparse.ArgumentParser(prog="lewm bench planning")
    _planning_options(planning)
    return cmd_planning(planning.parse_args([]))


def bench_options(p: argparse.ArgumentParser) -> None:
    _describe(p, "eval.bench")
    p.set_defaults(func=cmd_bench_default)
    sub = p.add_subparsers(dest="bench", required=False, metavar="BENCHMARK")
    for name, help, options in (
        (
            "planning",
            "seconds and FLOPs per CEM plan (paper, cpu presets) vs this machine's matmul peak",
            _planning_options,
        ),
        ("recorder", "the dataset recorder's CPU overhead per env", _recorder_options),
        ("expert", "the Push-T expert's success and cost on random pairs", _expert_options),
        (
            "ceiling",
            "the planners over the env's exact dynamics: is it the cost, the model or the search?",
            _ceiling_options,
        ),
        (
            "cost-screen",
            "how well each plan cost ranks outcomes, on predicted vs true embeddings",
            _cost_screen_options,
        ),
        (
            "planning-quality",
            "success, seconds and rollouts per decision of each planner setting",
            _quality_options,
        ),
        (
            "paper-prior",
            "seconds per plan of the paper preset's CEM vs the policy prior",
            _paper_prior_options,
        ),
        (
            "onnx",
            "ms per action (policy head) and s per decision (CEM 30 x 2): onnxruntime vs torch",
            _onnx_options,
        ),
        (
            "gpu",
            "ms per paper training step and s per paper CEM plan (bf16 on CUDA; reduced on CPU)",
            _gpu_options,
        ),
    ):
        options(sub.add_parser(name, help=help))


# ---------------------------------------------------------------------------- lewm suite
def _suite_options(p: argparse.ArgumentParser) -> None:
    from eval.suite import STAGES, SUITE_PLANS

    _describe(p, "eval.suite")
    p.set_defaults(func=cmd_suite)
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


# ----------------------------------------------------------------------------- lewm demo
def _demo_options(p: argparse.ArgumentParser) -> None:
    _describe(p, "eval.demo")
    p.set_defaults(func=cmd_demo)
    p.add_argument("--episodes", type=int, default=1000, help="episodes to record")
    p.add_argument("--workers", type=int, default=2, help="collection worker processes")
    p.add_argument("--steps", type=int, default=None, help="training steps (preset default)")
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--data", default="data/demo-tworoom")
    p.add_argument("--run", default="runs/demo-tworoom")
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--fresh", action="store_true", help="re-record the dataset even if complete")


def cmd_demo(args: argparse.Namespace) -> int:
    from eval.demo import demo

    demo(
        episodes=args.episodes,
        workers=args.workers,
        steps=args.steps,
        eval_episodes=args.eval_episodes,
        data=args.data,
        run=args.run,
        out=args.out,
        fresh=args.fresh,
    )
    return 0


# --------------------------------------------------------------------------- lewm report
def _report_options(p: argparse.ArgumentParser) -> None:
    _describe(p, "eval.report")
    p.set_defaults(func=cmd_report)
    p.add_argument(
        "--results", default=None, help="folder of result JSON files (default docs/results)"
    )
    p.add_argument(
        "--readme", default=None, help="README whose results block is rewritten (default README.md)"
    )


def cmd_report(args: argparse.Namespace) -> int:
    from eval.report import README, RESULTS_DIR, write_result_pages

    changed = write_result_pages(
        Path(args.results) if args.results else RESULTS_DIR,
        Path(args.readme) if args.readme else README,
    )
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print("the results pages and the README's results block are up to date")
    return 0


COMMANDS = {
    "bench": (
        "speed benchmarks: planning | recorder | expert | planning-quality | paper-prior | gpu",
        bench_options,
    ),
    "suite": (
        "LeWM vs SB3 PPO/SAC on Two-Room, Push-T, Reacher, Cube (resumable; make bench-suite)",
        _suite_options,
    ),
    "demo": (
        "make demo: record Two-Room data, train, evaluate vs random, write a video",
        _demo_options,
    ),
    "report": (
        "make docs: docs/results/*.md and the README's results table from docs/results/*.json",
        _report_options,
    ),
}
"""`lewm NAME`: (help line, function adding the command's options and its `func`)."""
