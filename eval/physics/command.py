"""`lewm probe state|surprise|straightness` / `python -m eval.physics`: the argument parser."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from eval.physics.experiments import load, run_probes, run_straightness, run_surprise
from eval.physics.plots import format_p
from lewm_agent.probe import (
    parse_quantity_spec,
)


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------
def _parse_colour(text: str) -> tuple[int, int, int]:
    parts = [int(v) for v in text.split(",")]
    if len(parts) != 3 or not all(0 <= v <= 255 for v in parts):
        raise ValueError(f"--colour must be R,G,B with values in 0..255, got {text!r}")
    return parts[0], parts[1], parts[2]


def _default_out(checkpoint: str) -> Path:
    return Path("outputs") / "physics" / Path(checkpoint).name


def main(argv: Sequence[str] | None = None, prog: str = "python -m eval.physics") -> int:
    """``python -m eval.physics state|surprise|straightness CHECKPOINT... --data DIR``.

    ``state`` was called ``probe`` (still accepted).
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Probes, surprise and temporal straightness of a trained LeWM checkpoint.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", required=True, help="the dataset folder the model was trained on")
        p.add_argument("--out", default=None, help="report folder (default outputs/physics/<run>)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")

    p = sub.add_parser(
        "state",
        aliases=["probe"],
        help="linear / MLP probes of state quantities (positions, angles) from the embedding",
        description="Fit linear / MLP probes from the embeddings of training frames to "
        "state quantities (positions, angles) and score them on held-out frames. "
        "(Called `probe` before; that name still works.)",
    )
    p.add_argument("checkpoint")
    common(p)
    p.add_argument(
        "--quantities",
        default=None,
        help='e.g. "agent_x=0,agent_y=1" or "block_angle=angle:4" (default: the env\'s spec)',
    )
    p.add_argument("--kinds", default="linear,mlp")
    p.add_argument("--max-train-frames", type=int, default=20_000)
    p.add_argument("--mlp-steps", type=int, default=500, help="optimiser steps of the MLP probe")

    p = sub.add_parser("surprise", help="surprise of teleport / colour-change perturbations")
    p.add_argument("checkpoint")
    common(p)
    p.add_argument("--episodes", type=int, default=100, help="held-out episodes to perturb")
    p.add_argument("--perturb", default="teleport,colour")
    p.add_argument(
        "--colour", default=None, help="new object colour R,G,B (default: the env spec's)"
    )

    p = sub.add_parser("straightness", help="latent straightness over checkpoints")
    p.add_argument("checkpoints", nargs="+")
    common(p)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--init", action="store_true", help="also measure the untrained model")
    p.add_argument(
        "--stride", type=int, default=None, help="env steps between frames (default frameskip)"
    )

    args = parser.parse_args(argv)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    if args.command == "straightness":
        out = Path(args.out) if args.out else _default_out(args.checkpoints[-1])
        report = run_straightness(
            args.checkpoints,
            args.data,
            out,
            episodes=args.episodes,
            include_init=args.init,
            stride=args.stride,
            seed=args.seed,
        )
        print(f"{'true state path':>24}  straightness {report['state_path']:.4f}")
        for r in report["checkpoints"]:
            print(
                f"{r['label']:>24}  straightness {r['straightness']:.4f} (std {r['std']:.3f}, {r['pairs']} pairs)"
            )
        print(f"wrote {out / 'straightness.json'} and {out / 'straightness.png'}")
        return 0

    out = Path(args.out) if args.out else _default_out(args.checkpoint)
    loaded = load(args.checkpoint, args.data)
    if args.command in ("state", "probe"):
        quantities = parse_quantity_spec(args.quantities) if args.quantities else None
        rep = run_probes(
            loaded,
            out,
            quantities=quantities,
            kinds=[k.strip() for k in args.kinds.split(",") if k.strip()],
            max_train_frames=args.max_train_frames,
            mlp_steps=args.mlp_steps,
            seed=args.seed,
        )
        for kind, r in rep["probes"].items():
            cells = "  ".join(f"{n}: r={r['r'][n]:.4f} mse={r['mse'][n]:.3g}" for n in r["names"])
            print(f"{kind:>7} probe  {cells}")
        print(f"wrote {out / 'probe.json'} and {out / 'probe_scatter.png'}")
        return 0
    rep = run_surprise(
        loaded,
        out,
        episodes=args.episodes,
        kinds=[k.strip() for k in args.perturb.split(",") if k.strip()],
        new_color=_parse_colour(args.colour) if args.colour else None,
        seed=args.seed,
    )
    for kind, r in rep["perturbations"].items():
        print(f"{kind} (n={r['episodes']} episodes): median ratio, one-sided p (sign-flip, t-test)")
        for key, what in (
            ("test_vs_before", "at k vs before k"),
            ("test_vs_original", "at k vs original at k"),
            ("test_vs_after", "at k vs after the edit"),
            ("test_after_vs_original", "after vs original after"),
        ):
            t = r[key]
            print(f"  {what:>24}: x{t['median_ratio']:.2f}  {format_p(t)}")
    print(
        f"wrote {out / 'surprise.json'}, {out / 'surprise.png'}, {out / 'perturbation_frames.png'}"
    )
    return 0
