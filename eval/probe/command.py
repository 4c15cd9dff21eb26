"""`lewm probe state|surprise|straightness` / `python -m eval.physics`: `run_probe` (the
parser is `lewm_agent.cli`'s)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eval.probe.experiments import load, run_probes, run_straightness, run_surprise
from eval.probe.plots import format_p
from eval.probe.state import parse_quantity_spec


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


def run_probe(args: Any) -> int:
    """`lewm probe state|surprise|straightness` / `python -m eval.physics` (the parser is
    `lewm_agent.cli`'s): `args.probe_command` is state (old name probe), surprise or straightness.
    """
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    if args.probe_command == "straightness":
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
    if args.probe_command in ("state", "probe"):
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
