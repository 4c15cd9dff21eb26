"""`lewm export`: an agent's ONNX graphs + agent.json, for the torch-free OnnxAgent;
`lewm import`: an official LeWM checkpoint (weights.pt + config.json) as a checkpoint folder."""

from __future__ import annotations

import argparse

from .options import agent_path


def export_options(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Write the ONNX graphs an agent acts with (encoder, predictor step, policy head "
        "and learned cost where the run has them) and agent.json (plan config, action bounds and "
        "normaliser, SHA-256 of every file) to a new folder. Load it without torch: "
        "lewm_agent.onnx_agent.OnnxAgent.load(DIR) (pip install 'lewm-agent[onnx]')."
    )
    p.set_defaults(func=cmd_export)
    p.add_argument("run", type=agent_path, help="checkpoint folder or zoo:NAME")
    p.add_argument("--out", required=True, help="folder to write (new or empty)")


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import export_agent

    try:
        out = export_agent(args.run, args.out)
    except (FileExistsError, ImportError) as e:
        raise SystemExit(f"lewm: error: {e}") from None
    print(f"wrote {out}")
    return 0


def import_options(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Convert an official LeWM checkpoint folder (weights.pt + config.json, as the "
        "released lewm-pusht/-cube/-tworooms/-reacher repositories hold; download it "
        "yourself, nothing is fetched) into a checkpoint folder that `lewm eval --agent` "
        "and WorldModelAgent.load take. weights.pt is read without unpickling objects; "
        "a tensor, shape, _target_ or config value that does not fit is refused by name "
        "and nothing is written."
    )
    p.set_defaults(func=cmd_import)
    p.add_argument("source", help="folder holding weights.pt and config.json")
    p.add_argument("--out", required=True, help="checkpoint folder to write (new or empty)")
    p.add_argument(
        "--env",
        required=True,
        help="[MODULE:]ID of the env the model acts in: its action bounds and id are recorded",
    )
    p.add_argument(
        "--action-stats",
        default=None,
        help='JSON file {"mean": [...], "std": [...]}: the per-dimension mean and std of the '
        "training data's actions (the model was trained on z-scored actions; the reference "
        "checkpoint does not carry them)",
    )
    p.add_argument(
        "--identity-action-stats",
        action="store_true",
        help="no --action-stats: use mean 0, std 1 (only right if the actions were not z-scored)",
    )
    p.add_argument(
        "--frameskip",
        type=int,
        default=5,
        help="env steps per action block the model was trained with (released models: 5)",
    )


def _action_stats(path: str | None) -> tuple[object, object]:
    import json

    from ..validation import ConfigError

    if path is None:
        return None, None
    try:
        stats = json.loads(open(path).read())
    except (OSError, ValueError) as e:
        raise ConfigError(f"--action-stats {path}: cannot read it as JSON ({e})") from None
    if not isinstance(stats, dict) or set(stats) != {"mean", "std"}:
        raise ConfigError(
            f'--action-stats {path} must hold {{"mean": [...], "std": [...]}}, got {stats!r}'
        )
    return stats["mean"], stats["std"]


def cmd_import(args: argparse.Namespace) -> int:
    from envs.build import EnvBuild

    from ..import_reference import import_reference

    mean, std = _action_stats(args.action_stats)
    build = EnvBuild.from_spec(args.env)
    env = build.make()
    try:
        low, high = env.action_space.low, env.action_space.high
    finally:
        env.close()
    out = import_reference(
        args.source,
        args.out,
        action_low=low.tolist(),
        action_high=high.tolist(),
        action_mean=mean,
        action_std=std,
        identity_action_stats=args.identity_action_stats,
        frameskip=args.frameskip,
        env_id=build.id,
        env_build=build.to_dict(),
    )
    print(f"wrote {out}; evaluate it with: lewm eval --agent {out} --episodes-from env")
    return 0


COMMANDS = {
    "export": ("write an agent's ONNX graphs for the torch-free OnnxAgent", export_options),
    "import": ("convert an official LeWM checkpoint (weights.pt + config.json)", import_options),
}
"""`lewm NAME`: (help line, function adding the command's options and its `func`)."""
