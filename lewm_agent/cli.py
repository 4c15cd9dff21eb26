"""`lewm`: the command line. collect | train | eval | info | data.

The top floor of the package: each command imports what it needs from `envs`,
`agents` and `eval` inside its own function, so `lewm_agent` itself never
depends on them. It is the one module allowed to import every floor
(`lewm_agent.layers.TOP_FLOOR`). It sits in `lewm_agent` rather than above it so that
the `lewm` console script (`lewm_agent.cli:main`) ships with the method package, and
so that `python -m lewm_agent.train` (torchrun's entry) can hand its arguments to the
same parser. Training and planning options are generated from the config
dataclasses (their field comments are the help texts).

Size (~800 lines, over the ~500 guide): the one argument parser of every command
plus each command's short glue; a command's work lives in the floor it calls.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import os
import sys
import textwrap
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

from .config import PRESETS, ModelConfig, PlanConfig, TrainConfig


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (Python drops them at runtime)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            docs[node.target.id] = str(nxt.value.value)
    return docs


def add_config_options(parser: argparse.ArgumentParser, cls: type, prefix: str) -> None:
    """One `--{prefix}{field}` option per dataclass field, default None (= preset)."""
    group = parser.add_argument_group(f"{cls.__name__} overrides (default: the preset's)")
    docs = field_docs(cls)
    for f in fields(cls):
        flag = f"--{prefix}{f.name.replace('_', '-')}"
        kind = type(f.default)
        kw: dict[str, Any] = {
            "default": None,
            "dest": f"{prefix.replace('-', '_')}{f.name}",
            "help": docs.get(f.name, ""),
        }
        if kind is bool:
            kw["type"] = lambda s: s.lower() in ("1", "true", "yes", "on")
            kw["metavar"] = "BOOL"
        elif kind is tuple:
            kw["type"] = lambda s: tuple(int(x) for x in s.split(","))
            kw["metavar"] = "A,B,..."
        else:
            kw["type"] = kind
        group.add_argument(flag, **kw)


def collect_overrides(args: argparse.Namespace, cls: type, prefix: str) -> dict[str, Any]:
    dest = prefix.replace("-", "_")
    return {
        f.name: getattr(args, dest + f.name)
        for f in fields(cls)
        if getattr(args, dest + f.name) is not None
    }


def _headless() -> None:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("MUJOCO_GL", "egl")


# ----------------------------------------------------------------------------- commands
def _json_dict(text: str) -> dict[str, Any]:
    """argparse type: a JSON object (`--env-kwargs '{"obs_type": "pixels"}'`)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e}): {text!r}") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value


def cmd_collect(args: argparse.Namespace) -> int:
    _headless()
    import envs  # noqa: F401
    from envs.collect import collect, default_seed

    seed = default_seed(args.out) if args.seed is None else args.seed
    path = collect(
        args.env,
        args.policy,
        args.episodes,
        args.out,
        workers=args.workers,
        image_size=args.image_size,
        seed=seed,
        env_kwargs=args.env_kwargs,
        wrapper_kwargs=args.wrapper_kwargs,
    )
    files = sorted((path / "episodes").glob("*.npz"))
    print(f"recorded {args.episodes} episodes into {path} (seed {seed})")
    print(f"wrote {path / 'meta.json'} and {path / 'episodes'}/ ({len(files)} episode files)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if wants_train_engine(args):
        return cmd_train_engine(args)
    from .agent import WorldModelAgent
    from .train import DEFAULT_PRESET, written_files_line

    if args.data is None:
        raise SystemExit("lewm train needs --data DIR, the dataset folder `lewm collect` wrote")
    preset = args.preset or DEFAULT_PRESET
    plan_overrides = collect_overrides(args, PlanConfig, "plan-")
    agent = WorldModelAgent.fit(
        args.data,
        preset=preset,
        device=args.device,
        log_dir=args.out,
        model_overrides=collect_overrides(args, ModelConfig, "model-"),
        train_overrides=collect_overrides(args, TrainConfig, ""),
        plan_overrides=plan_overrides,
        keep_train_state=args.keep_train_state,
    )  # `fit` records the run's settings (run_meta) as cmd_train_engine does
    path = agent.save(args.out)
    final = agent.training_stats.get("final", {})
    print(
        f"saved agent to {path} ({agent.training_stats['seconds']:.0f} s; final pred_loss "
        f"{final.get('pred_loss', float('nan')):.4f}, emb_std {final.get('emb_std', float('nan')):.2f})"
    )
    print(written_files_line(path))
    if getattr(args, "policy_head", False):
        fit_and_save_policy_head(agent, args.data, args.out, **policy_head_options(args))
    return 0


def policy_head_options(args: argparse.Namespace) -> dict[str, Any]:
    """PolicyHeadConfig overrides from `lewm train --policy-head-steps N`."""
    steps = getattr(args, "policy_head_steps", None)
    return {"steps": steps} if steps else {}


def fit_and_save_policy_head(agent: Any, data: str, out: str, **head_config: Any) -> None:
    """Train the latent policy head on `agent`'s frozen embeddings, save it into `out`.

    Only the head's two files are written: the checkpoint's own files stay as they are.
    """
    from .policy_head import save_policy_head

    meta = agent.fit_policy_head(data, **head_config)
    save_policy_head(out, agent.policy_head, meta)
    t = meta["training"]
    held = t["heldout_loss"]
    print(
        f"saved policy head to {out} ({t['seconds']:.0f} s; loss {t['first_loss']:.3f} -> "
        f"{t['final_loss']:.3f}, held-out {'-' if held is None else f'{held:.3f}'}); act with "
        f'WorldModelAgent.load("{out}", planner="policy" | "cem-prior")'
    )


def cmd_train_policy(args: argparse.Namespace) -> int:
    """`lewm train-policy RUN --data DATA`: add a policy head to an existing checkpoint."""
    from .agent import WorldModelAgent

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    agent = WorldModelAgent.load(args.run, planner="cem", device=args.device)
    over = {
        k: v
        for k, v in {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed}.items()
        if v is not None
    }
    fit_and_save_policy_head(agent, args.data, args.run, **over)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    _headless()
    import numpy as np

    import envs  # noqa: F401
    from envs.build import EnvBuild, make_env
    from envs.scripted import RandomPolicy
    from eval.compare import CHART_FILE, compare, markdown_table, results_dict, write_results
    from eval.protocol import (
        describe_goals,
        episode_goal_image,
        format_goals,
        run_protocol,
        sample_env_episodes,
        sample_episodes,
    )

    from .agent import WorldModelAgent
    from .heldout import load_heldout, trained_holdout
    from .zoo import is_zoo_ref

    plan_over = collect_overrides(args, PlanConfig, "plan-")
    agent = WorldModelAgent.load(args.agent, planner=args.planner, device=args.device, **plan_over)
    # The env as the training data was recorded (module, kwargs, wrappers), unless --env.
    env: Any = args.env or agent.env_build or agent.env_id
    if not env:
        raise SystemExit("the checkpoint does not name its env: pass --env ID")
    env_name = EnvBuild.coerce(env).id
    env_kwargs = {"image_size": agent.model_config.image_size}
    if args.episodes_from == "env":
        episodes = sample_env_episodes(
            env, n=args.episodes, seed=args.seed, image_size=agent.model_config.image_size
        )
    elif args.data is None and is_zoo_ref(args.agent):
        # A zoo model ships its protocol episodes (drawn from its data as below).
        from eval.zoo import protocol_episodes

        episodes = protocol_episodes(args.agent, n=args.episodes, seed=args.seed)
    else:
        if args.data is None:
            raise SystemExit(
                "lewm eval needs --data DIR: the protocol's start/goal pairs come from the "
                "held-out episodes of the dataset the agent was trained on; or sample them "
                "from the env itself with --episodes-from env"
            )
        heldout = load_heldout(args.data, trained_holdout(agent)).heldout
        episodes = sample_episodes(heldout, n=args.episodes, seed=args.seed)
    agents: dict[str, Any] = {"lewm": agent}
    if args.random:
        space_env = make_env(env, **env_kwargs)
        agents["random"] = RandomPolicy(space_env.action_space, seed=args.seed)
        space_env.close()
    if args.expert:
        import agents as registry

        agents["expert"] = registry.make("expert", env_id=env_name, seed=args.seed)
    goals = describe_goals(env, episodes, env_kwargs)
    print(format_goals(goals))
    results = results_dict(compare(env, agents, episodes, env_kwargs=env_kwargs))
    print(markdown_table(results))
    written: list[str] = []
    if args.out:
        paths = write_results(results, args.out, header=f"# {env_name}, paper protocol")
        goals_path = Path(args.out) / "goals.json"
        goals_path.write_text(json.dumps(goals, indent=2) + "\n")
        written += [*map(str, paths), str(Path(args.out) / CHART_FILE), str(goals_path)]
    if args.video:
        from eval.video import side_by_side_frames, write_video

        ep = episodes[0]
        fresh = WorldModelAgent.load(
            args.agent, planner=args.planner, device=args.device, **plan_over
        )
        _, frames = run_protocol(
            env, fresh, [ep], name="video", record=True, env_kwargs=env_kwargs, progress=False
        )
        goal = episode_goal_image(env, ep, env_kwargs)
        path = write_video(
            side_by_side_frames(np.stack(frames[0]), goal, label="LeWM"), args.video, fps=10
        )
        written.append(str(path))
    print("wrote " + ", ".join(written) if written else "wrote no files (pass --out / --video)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .config import get_preset, to_dict
    from .model import LeWM

    if args.agent:
        from .checkpoint import load_checkpoint
        from .zoo import resolve

        model, config, _ = load_checkpoint(resolve(args.agent))
        title = f"agent {args.agent}"
    else:
        preset = get_preset(args.preset)
        model, config = LeWM(preset.model), {"model": to_dict(preset.model)}
        title = f"preset {args.preset!r}: {preset.description}"
    counts = model.parameter_counts()
    if args.json:
        print(json.dumps({"parameters": counts, **config}, indent=2))
        return 0
    print(title)
    cfg = model.cfg
    enc = (
        f"ViT p{cfg.vit_patch} {cfg.vit_depth}x{cfg.vit_width} ({cfg.vit_heads} heads)"
        if cfg.encoder == "vit"
        else f"CNN {list(cfg.cnn_channels)}"
    )
    print(
        f"  image {cfg.image_size} px, encoder {enc}, embedding {cfg.embed_dim}, history "
        f"{cfg.history}, predictor {cfg.pred_depth} layers x {cfg.pred_heads} heads x "
        f"{cfg.pred_head_dim}, MLP {cfg.pred_mlp}, AdaLN-zero, projectors "
        f"{cfg.embed_dim}-{cfg.projector_hidden}-{cfg.embed_dim} (BatchNorm)"
    )
    for part, n in counts.items():
        print(f"  {part:<22}{n / 1e6:8.3f} M")
    return 0


def add_train_engine_options(parser: argparse.ArgumentParser) -> None:
    """`lewm train` options for multi-process, resumable, watched training."""
    g = parser.add_argument_group("scaling and resuming")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint in OUT/train_state with the saved run's "
        "settings and data (flags given now override them)",
    )
    g.add_argument(
        "--keep-train-state",
        action="store_true",
        help="keep OUT/train_state (optimiser state, ~3x the model) after the run finishes, "
        "to extend it later; by default a finished run deletes it",
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="steps between resumable checkpoints in OUT/train_state (default: ~10 per run; 0: off)",
    )
    g.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel processes (launches torchrun; --batch-size stays the global batch)",
    )
    g.add_argument(
        "--compile", action="store_true", help="torch.compile encoder and predictor (GPU)"
    )
    g.add_argument(
        "--tensorboard", action="store_true", help="also log to OUT/tensorboard (needs the extra)"
    )


def wants_train_engine(args: argparse.Namespace) -> bool:
    """Whether `lewm train` must go through `cmd_train_engine` (new flags or torchrun)."""
    from .distributed import launched_by_torchrun

    return bool(
        (getattr(args, "nproc", 1) or 1) > 1
        or getattr(args, "resume", False)
        or getattr(args, "compile", False)
        or getattr(args, "tensorboard", False)
        or getattr(args, "checkpoint_every", None) is not None
        or launched_by_torchrun()
    )


def saved_run_settings(
    args: argparse.Namespace,
) -> tuple[str, ModelConfig, TrainConfig, Any, dict[str, Any] | None]:
    """(data, model config, train config, plan config, saved meta) of a `lewm train` call.

    A fresh run: the preset (default `cpu`) with the flags given. `--resume` with a
    checkpoint in OUT/train_state: the SAVED run's configs, data folder and plan config,
    with only the flags given explicitly now on top (every config flag defaults to
    None, so "given" is exact). An explicit `--preset` replaces the saved configs by
    that preset's (and the resume check then names what differs).
    """
    from .config import from_dict, get_preset, replace
    from .train import DEFAULT_PRESET
    from .train_state import latest_train_state, read_train_state_meta

    model_over = collect_overrides(args, ModelConfig, "model-")
    train_over = collect_overrides(args, TrainConfig, "")
    plan_over = collect_overrides(args, PlanConfig, "plan-")
    saved: dict[str, Any] | None = None
    if getattr(args, "resume", False):
        path = latest_train_state(args.out)
        saved = read_train_state_meta(path) if path is not None else None
    run = (saved or {}).get("run") or {}
    if saved is not None and args.preset is None:
        model_cfg = replace(from_dict(ModelConfig, saved["model_config"]), **model_over)
        train_cfg = replace(from_dict(TrainConfig, saved["train_config"]), **train_over)
        base_plan = (
            from_dict(PlanConfig, run["plan_config"])
            if run.get("plan_config")
            else get_preset(run.get("preset") or DEFAULT_PRESET).plan
        )
        plan_cfg = replace(base_plan, **plan_over)
    else:
        p = get_preset(args.preset or DEFAULT_PRESET)
        model_cfg = replace(p.model, **model_over)
        train_cfg = replace(p.train, **train_over)
        plan_cfg = replace(p.plan, **plan_over)
    data = args.data or run.get("data")
    if not data:
        raise SystemExit(
            "lewm train needs --data DIR, the dataset folder `lewm collect` wrote"
            + (
                f" (the checkpoint in {args.out}/train_state does not record one)"
                if saved is not None
                else f" (no checkpoint in {args.out}/train_state to resume from)"
                if getattr(args, "resume", False)
                else ""
            )
        )
    return str(data), model_cfg, train_cfg, plan_cfg, saved


def cmd_train_engine(args: argparse.Namespace) -> int:
    """`lewm train` with the engine flags: launch torchrun, or train and save the agent.

    With `--nproc N > 1` outside torchrun this re-launches itself as
    `torchrun --standalone --nproc_per_node=N -m lewm_agent.cli -- train ARGV`, ARGV
    being the user's own arguments (`args.argv`, set by `main`) passed on unchanged:
    inside torchrun `--nproc` launches nothing. Inside torchrun (or in one process) it trains;
    rank 0 saves the agent to `--out`. `--resume` reuses the saved run's settings (see
    `saved_run_settings`).
    """
    from tqdm.auto import tqdm

    from .agent import agent_from_result
    from .device import resolve_device
    from .distributed import (
        init_distributed,
        launch_torchrun,
        launched_by_torchrun,
        shutdown_distributed,
    )
    from .train import DEFAULT_PRESET, run_meta, train, written_files_line

    nproc = int(getattr(args, "nproc", None) or 1)
    if nproc > 1 and not launched_by_torchrun():
        argv = getattr(args, "argv", None)
        if argv is None:
            raise ValueError("a --nproc relaunch needs the command's argv (args.argv)")
        # "--": torchrun's own parser would otherwise read the user's options too (and
        # stop at `--nproc`, an abbreviation of its --nproc-per-node); main() drops it.
        return launch_torchrun(nproc, "lewm_agent.cli", ["--", *argv])
    dev = resolve_device(args.device)
    info = init_distributed(dev)
    try:
        data, model_cfg, train_cfg, plan_cfg, saved = saved_run_settings(args)
        if saved is not None and info.is_main:
            tqdm.write(
                f"resume: reusing the saved run's settings (data {data}, "
                f"{train_cfg.steps} steps); flags given now override them"
            )
        result = train(
            data,
            model_cfg,
            train_cfg,
            log_dir=args.out,
            device=dev,
            resume=bool(getattr(args, "resume", False)),
            checkpoint_every=getattr(args, "checkpoint_every", None),
            compile=bool(getattr(args, "compile", False)),
            tensorboard=bool(getattr(args, "tensorboard", False)),
            keep_train_state=bool(getattr(args, "keep_train_state", False)),
            run_meta=run_meta(
                data,
                args.preset or (saved or {}).get("run", {}).get("preset") or DEFAULT_PRESET,
                plan_cfg,
            ),
        )
        if info.is_main:
            agent = agent_from_result(result, plan_cfg, result.model.enc_proj.fc1.weight.device)
            path = agent.save(args.out)
            final = result.log[-1] if result.log else {}
            print(
                f"saved agent to {path} ({result.seconds:.0f} s, {info.world_size} process(es)"
                f"{f', resumed at step {result.start_step}' if result.start_step else ''}; "
                f"final pred_loss {final.get('pred_loss', float('nan')):.4f}, "
                f"emb_std {final.get('emb_std', float('nan')):.2f})"
            )
            print(written_files_line(path))
            if getattr(args, "policy_head", False):
                fit_and_save_policy_head(agent, args.data, args.out, **policy_head_options(args))
    finally:
        shutdown_distributed()
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """`lewm data info|verify|rerender|export-minari DIR`."""
    from .data import dataset_info, export_minari, format_dataset_info, verify_dataset

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


def add_data_parser(sub: Any) -> None:
    """The `data` command: inspect, check and export dataset folders."""
    p = sub.add_parser("data", help="dataset tools: info | verify | rerender | export-minari")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("info", help="counts and sizes (from file headers: fast)")
    q.add_argument("dir", help="dataset folder")
    q.add_argument("--json", action="store_true")
    q = dsub.add_parser("verify", help="read every episode file; exit 1 naming corrupt ones")
    q.add_argument("dir", help="dataset folder")
    q.add_argument("--json", action="store_true")
    q = dsub.add_parser(
        "rerender", help="the same episodes drawn at another image size from their states"
    )
    q.add_argument("dir", help="dataset folder (its env must have render_state)")
    q.add_argument("--out", required=True, help="new dataset folder (must not exist)")
    q.add_argument("--image-size", type=int, required=True, help="new frame side in pixels")
    q = dsub.add_parser("export-minari", help="export to a Minari dataset (needs the extra)")
    q.add_argument("dir", help="dataset folder")
    q.add_argument("--id", required=True, help="Minari dataset id, e.g. lewm/tworoom-v0")
    q.add_argument("--minari-root", default=None, help="Minari datasets folder")
    q.add_argument("--no-states", action="store_true", help="pixels only, no state vectors")
    p.set_defaults(func=cmd_data)


# ------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lewm", description="LeWorldModel agent toolkit")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of expected errors too"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("collect", help="record a reward-free dataset with a data policy")
    p.add_argument(
        "--env",
        required=True,
        help="Gymnasium id, e.g. lewm/TwoRoom-v0, or MODULE:ID for an env another package "
        "registers, e.g. gym_pusht:gym_pusht/PushT-v0 (wrapped in envs.wrappers.PixelGoal)",
    )
    p.add_argument(
        "--policy",
        default="scripted",
        help="data policy: scripted (the env's noisy heuristic; old name: heuristic) | "
        "expert | oracle | random",
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
        type=_json_dict,
        default=None,
        metavar="JSON",
        help='env constructor kwargs, e.g. \'{"obs_type": "pixels_agent_pos"}\' (checked '
        "against the env's signature; recorded in meta.json for `lewm eval`)",
    )
    p.add_argument(
        "--wrapper-kwargs",
        type=_json_dict,
        default=None,
        metavar="JSON",
        help="PixelGoal kwargs for an env outside lewm/, functions as 'module:function' or "
        '\'file.py:function\', e.g. \'{"state_fn": "examples.third_party_env:state_fn", '
        '"frame_from": "obs"}\'',
    )
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("train", help="train LeWM on a dataset and save the agent folder")
    p.add_argument(
        "--data",
        default=None,
        help="dataset folder (from `lewm collect`); with --resume: the saved run's",
    )
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument(
        "--preset",
        default=None,
        choices=sorted(PRESETS),
        help="named configuration (default cpu; with --resume: the saved run's settings)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    add_config_options(p, TrainConfig, "")
    add_config_options(p, ModelConfig, "model-")
    add_config_options(p, PlanConfig, "plan-")
    add_train_engine_options(p)
    p.add_argument(
        "--policy-head",
        action="store_true",
        help="after the model, train the latent policy head (planner 'policy' / 'cem-prior')",
    )
    p.add_argument(
        "--policy-head-steps",
        type=int,
        default=None,
        metavar="N",
        help="optimiser steps of the policy head (default 3000)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "train-policy",
        help="train the latent policy head of an existing checkpoint (frozen world model)",
    )
    p.add_argument("run", help="checkpoint folder (from `lewm train`); the head is saved into it")
    p.add_argument("--data", required=True, help="the dataset the world model was trained on")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default 3000)")
    p.add_argument("--batch-size", type=int, default=None, help="default 256")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_train_policy)

    p = sub.add_parser(
        "eval",
        help="the paper's protocol on held-out episodes (`lewm eval --compare -h`: several "
        "agents; `lewm eval --videos -h`: videos of several agents)",
        description="Run a LeWM checkpoint on the paper's protocol. Two more modes have "
        "their own options: `lewm eval --compare ...` (several agents on the same "
        "episodes; `lewm eval --compare -h`) and `lewm eval --videos ...` (videos of "
        "several agents; `lewm eval --videos -h`).",
    )
    modes = p.add_argument_group("other modes (their own options: add -h)")
    modes.add_argument(
        "--compare",
        action="store_true",
        help="several agents (lewm, ppo, sac, random, scripted) on the same episodes",
    )
    modes.add_argument("--videos", action="store_true", help="videos of several agents")
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
    p.add_argument(
        "--planner", default=None, choices=["cem", "mppi", "cem-prior", "mppi-prior", "policy"]
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
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("info", help="parameter counts by part of a preset or checkpoint")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    p.add_argument(
        "--agent", default=None, help="a checkpoint folder (or zoo:NAME) instead of a preset"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    add_data_parser(sub)
    # Listed for `lewm -h`; main() hands its arguments to eval.physics's own parser.
    sub.add_parser(
        "probe", help="latent physics: state | surprise | straightness (`lewm probe -h`)"
    )
    sub.add_parser("zoo", help="the model zoo: list | add (`lewm zoo -h`)")
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors about the user's files, values or disk: their message says what to fix."""
    from .checkpoint import CheckpointError
    from .data import DatasetError, DiskFullError
    from .train_state import TrainStateError
    from .validation import ConfigError

    return (CheckpointError, DatasetError, DiskFullError, TrainStateError, ConfigError)


def main(argv: list[str] | None = None) -> int:
    """`lewm ...`: an expected error prints `lewm: error: <message>` alone and returns 1.

    `lewm --debug ...` lets it raise instead, with its full traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m lewm_agent.cli -- train ...` (the relaunch)
        argv = argv[1:]
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    try:
        return _main(argv)
    except Exception as e:
        if debug or not isinstance(e, _expected_errors()):
            raise
        print(f"lewm: error: {e}", file=sys.stderr)
        return 1


def _main(argv: list[str]) -> int:
    # These commands have their own parsers in eval/ (they need envs and agents); the
    # mode flag may come anywhere after `eval`.
    for flag, module in (("--compare", "eval.compare"), ("--videos", "eval.video")):
        if argv[:1] == ["eval"] and flag in argv[1:]:
            _headless()
            import importlib

            rest = [a for a in argv[1:] if a != flag]
            mode_main = importlib.import_module(module).main
            return int(mode_main(rest, prog=f"lewm eval {flag}") or 0)
    if argv and argv[0] == "probe":
        _headless()
        from eval.physics import main as physics_main

        return int(physics_main(argv[1:], prog="lewm probe") or 0)
    if argv and argv[0] == "zoo":
        from eval.zoo import main as zoo_main

        return int(zoo_main(argv[1:], prog="lewm zoo") or 0)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what the user typed: `lewm train --nproc N` re-passes it to torchrun
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
