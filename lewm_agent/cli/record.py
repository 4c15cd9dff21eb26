"""`lewm collect` and `lewm data info|verify|rerender|export-minari`: record and inspect datasets."""

from __future__ import annotations

import argparse
import json

from .options import json_dict


def collect_options(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Record a reward-free dataset: a vector env of recording workers driven by a data "
        "policy (envs.collect.collect)."
    )
    p.set_defaults(func=cmd_collect)
    p.add_argument(
        "--env",
        required=True,
        help="Gymnasium id, e.g. lewm/TwoRoom-v0, or MODULE:ID for an env another package "
        "registers, e.g. gym_pusht:gym_pusht/PushT-v0 (wrapped in envs.wrappers.PixelGoal)",
    )
    p.add_argument(
        "--policy",
        default="scripted",
        help="data policy: scripted (the env's noisy heuristic) | expert | oracle | random",
    )
    p.add_argument("--episodes", type=int, required=True)
    p.add_argument("--workers", type=int, default=2, help="worker processes (vector env)")
    p.add_argument("--out", required=True, help="dataset folder")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="default: the number of episodes already in --out, so a second run into the "
        "same folder continues the seed sequence instead of repeating its episodes",
    )
    p.add_argument(
        "--env-kwargs",
        type=json_dict,
        default=None,
        metavar="JSON",
        help='env constructor kwargs, e.g. \'{"obs_type": "pixels_agent_pos"}\' (checked '
        "against the env's signature; recorded in meta.json for `lewm eval`)",
    )
    p.add_argument(
        "--wrapper-kwargs",
        type=json_dict,
        default=None,
        metavar="JSON",
        help="PixelGoal kwargs for an env outside lewm/, functions as 'module:function' or "
        '\'file.py:function\', e.g. \'{"state_fn": "examples.third_party_env:state_fn", '
        '"frame_from": "obs"}\'',
    )
    p.add_argument(
        "--frameskip", type=int, default=5, help="training hint stored in meta.json (default 5)"
    )


def cmd_collect(args: argparse.Namespace) -> int:
    """`lewm collect`: record, then print the speed and the files written."""
    import time
    from pathlib import Path

    import envs  # noqa: F401  (registers lewm/*; the command line knows every floor)
    from envs.collect import collect, default_seed

    def counts() -> tuple[int, int]:
        meta_path = Path(args.out) / "meta.json"
        if not meta_path.exists():
            return 0, 0
        meta = json.loads(meta_path.read_text())
        return int(meta["num_episodes"]), int(meta["num_steps"])

    seed = default_seed(args.out) if args.seed is None else args.seed
    eps0, steps0 = counts()
    t0 = time.perf_counter()
    path = collect(
        args.env,
        args.policy,
        args.episodes,
        args.out,
        workers=args.workers,
        image_size=args.image_size,
        seed=seed,
        frameskip=args.frameskip,
        env_kwargs=args.env_kwargs,
        wrapper_kwargs=args.wrapper_kwargs,
    )
    elapsed = time.perf_counter() - t0
    eps1, steps1 = counts()
    n_eps, n_steps = eps1 - eps0, steps1 - steps0
    frames = n_steps + n_eps  # T+1 frames per episode
    print(
        f"recorded {args.episodes} episodes into {path} (seed {seed}): +{n_steps} steps "
        f"(mean length {n_steps / max(n_eps, 1):.1f}) in {elapsed:.1f} s = "
        f"{frames / max(elapsed, 1e-9):.0f} frames/s with {args.workers} workers; the dataset "
        f"now has {eps1} episodes, {steps1} steps"
    )
    files = sorted((path / "episodes").glob("*.npz"))
    print(f"wrote {path / 'meta.json'} and {path / 'episodes'}/ ({len(files)} episode files)")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """`lewm data info|verify|rerender|export-minari DIR`."""
    from ..data import dataset_info, export_minari, format_dataset_info, verify_dataset

    if args.data_command == "info":
        info = dataset_info(args.dir)
        print(json.dumps(info, indent=2) if args.json else format_dataset_info(info))
        return 1 if info["unreadable"] else 0
    if args.data_command == "verify":
        report = verify_dataset(args.dir)
        if args.json:
            print(
                json.dumps(
                    {
                        "checked": report.checked,
                        "bad": report.bad,
                        "duplicates": report.duplicates,
                        "notes": report.notes,
                    },
                    indent=2,
                )
            )
        else:
            print(report.summary())
        return 0 if report.ok else 1
    if args.data_command == "rerender":
        from envs.rerender import rerender_dataset  # the command line knows every floor

        out = rerender_dataset(args.dir, args.out, image_size=args.image_size)
        print(f"re-rendered {args.dir} at {args.image_size}px into {out}")
        return 0
    path = export_minari(
        args.dir,
        args.id,
        minari_root=args.minari_root,
        include_states=not args.no_states,
    )
    print(f"exported {args.dir} to Minari dataset {args.id!r} at {path}")
    return 0


def data_options(p: argparse.ArgumentParser) -> None:
    p.description = "Dataset tools: counts, integrity, re-rendering, Minari export."
    p.set_defaults(func=cmd_data)
    sub = p.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    _dir_json(sub.add_parser("info", help="counts and sizes (from file headers: fast)"))
    _dir_json(sub.add_parser("verify", help="read every episode file; exit 1 naming corrupt ones"))
    _rerender_options(
        sub.add_parser(
            "rerender", help="the same episodes drawn at another image size from their states"
        )
    )
    _export_options(
        sub.add_parser("export-minari", help="export to a Minari dataset (needs the extra)")
    )


def _dir(p: argparse.ArgumentParser, help: str = "dataset folder") -> None:
    p.add_argument("dir", help=help)


def _dir_json(p: argparse.ArgumentParser) -> None:
    _dir(p)
    p.add_argument("--json", action="store_true")


def _rerender_options(p: argparse.ArgumentParser) -> None:
    _dir(p, "dataset folder (its env must have render_state)")
    p.add_argument("--out", required=True, help="new dataset folder (must not exist)")
    p.add_argument("--image-size", type=int, required=True, help="new frame side in pixels")


def _export_options(p: argparse.ArgumentParser) -> None:
    _dir(p)
    p.add_argument("--id", required=True, help="Minari dataset id, e.g. lewm/tworoom-v0")
    p.add_argument("--minari-root", default=None, help="Minari datasets folder")
    p.add_argument("--no-states", action="store_true", help="pixels only, no state vectors")


COMMANDS = {
    "collect": ("record a reward-free dataset with a data policy", collect_options),
    "data": ("dataset tools: info | verify | rerender | export-minari", data_options),
}
"""`lewm NAME`: (help line, function adding the command's options and its `func`)."""
