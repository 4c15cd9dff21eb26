"""`lewm train`, `lewm train-policy`, `lewm train-cost`, `lewm train-predictor`, `lewm info`: the world model and its parts.

Training and planning options are generated from the config dataclasses (their field
comments are the help texts). `lewm train` has one code path (`cmd_train`: the
library's `train`, the agent built by `WorldModelAgent.from_train_result`, as `fit`
does). Multi-GPU: `lewm train --nproc N` re-launches itself under torchrun with the
user's own argv (`args.argv`, set by `main`), i.e.
`torchrun --standalone --nproc-per-node N -m lewm_agent.cli -- train ARGV`, which may
also be typed by hand.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..config import PRESETS, ModelConfig, PlanConfig, TrainConfig
from .options import add_config_options, agent_path, collect_overrides, is_zoo_folder


def policy_head_options(args: argparse.Namespace) -> dict[str, Any]:
    """PolicyHeadConfig overrides from `lewm train --policy-head-steps N`."""
    steps = args.policy_head_steps
    return {"steps": steps} if steps else {}


def fit_and_save_policy_head(agent: Any, data: str, out: str, **head_config: Any) -> None:
    """Train the latent policy head on `agent`'s frozen embeddings, save it into `out`.

    Only the head's two files are written: the checkpoint's own files stay as they are.
    """
    from ..policy_head import save_policy_head

    meta = agent.fit_policy_head(data, **head_config)
    save_policy_head(out, agent.policy_head, meta)
    t = meta["training"]
    held = t["heldout_loss"]
    print(
        f"saved policy head to {out} ({t['seconds']:.0f} s; loss {t['first_loss']:.3f} -> "
        f"{t['final_loss']:.3f}, held-out {'-' if held is None else f'{held:.3f}'}); act with "
        f'WorldModelAgent.load("{out}", planner="policy" | "cem-prior")'
    )


def _head_output(args: argparse.Namespace, head: str) -> str:
    """The folder a `train-policy` / `train-cost` run writes `head` into (RUN, or --out),
    after setting the thread count; a zoo folder is refused (its card hashes its files)."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.out is None and is_zoo_folder(args.run):
        raise SystemExit(
            f"{args.run} is a zoo model's folder (its card records its files' hashes): pass "
            f"--out DIR, a new checkpoint folder that gets the model and the new {head}"
        )
    return args.out or args.run


def _head_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The head-config fields given on the command line (steps, batch size, seed)."""
    given = {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed}
    return {k: v for k, v in given.items() if v is not None}


def cmd_train_policy(args: argparse.Namespace) -> int:
    """`lewm train-policy RUN --data DATA`: add a policy head to an existing checkpoint."""
    from ..agent import WorldModelAgent

    out = _head_output(args, "head")
    agent = WorldModelAgent.load(args.run, planner="cem", device=args.device)
    if out != args.run:
        agent.save(out)  # the model, then its head beside it
    fit_and_save_policy_head(agent, args.data, out, **_head_overrides(args))
    return 0


def cmd_train_cost(args: argparse.Namespace) -> int:
    """`lewm train-cost RUN --data DATA`: add a learned planning cost to a checkpoint."""
    from ..agent import WorldModelAgent
    from ..checkpoint import agent_sections, read_checkpoint
    from ..config import replace
    from ..cost_head import fit_cost_head, save_cost_head

    out = _head_output(args, "cost head")
    # Loaded with the latent cost: a checkpoint whose config already asks for the
    # learned one has no head yet; a copy to --out keeps the cost its config names.
    agent = WorldModelAgent.load(args.run, planner="cem", device=args.device, cost="latent")
    if out != args.run:
        saved_cost = agent_sections(read_checkpoint(args.run)).plan.cost
        agent.plan_config = replace(agent.plan_config, cost=saved_cost)
        agent.save(out)  # the model (and a policy head it has), then the cost head beside it
    over = _head_overrides(args)
    head, meta = fit_cost_head(agent, args.data, **over)
    save_cost_head(out, head, meta)
    t = meta["training"]
    held, rho = t["heldout_loss"], t["heldout_spearman"]
    print(
        f"saved cost head to {out} ({t['seconds']:.0f} s; loss {t['first_loss']:.3f} -> "
        f"{t['final_loss']:.3f}, held-out {'-' if held is None else f'{held:.3f}'}, "
        f"rank correlation with steps {'-' if rho is None else f'{rho:.2f}'}); plan with "
        f"`lewm eval --agent {out} --cost learned` or "
        f'WorldModelAgent.load("{out}", cost="learned")'
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from ..config import get_preset, to_dict
    from ..model import LeWM

    if args.agent:
        from ..checkpoint import load_checkpoint

        model, config, _ = load_checkpoint(args.agent)
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
    from ..config import from_dict, get_preset, replace
    from ..train import DEFAULT_PRESET
    from ..train_state import latest_train_state, read_train_state_meta

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


def cmd_train(args: argparse.Namespace) -> int:
    """`lewm train`: launch torchrun, or train and save the agent (the one code path).

    With `--nproc N > 1` outside torchrun this re-launches itself as
    `torchrun --standalone --nproc_per_node=N -m lewm_agent.cli -- train ARGV`, ARGV
    being the user's own arguments (`args.argv`, set by `main`) passed on unchanged:
    inside torchrun `--nproc` launches nothing. Inside torchrun (or in one process) it trains;
    rank 0 saves the agent to `--out`. `--resume` reuses the saved run's settings (see
    `saved_run_settings`).
    """
    from tqdm.auto import tqdm

    from ..agent import WorldModelAgent
    from ..device import resolve_device
    from ..distributed import (
        init_distributed,
        launch_torchrun,
        launched_by_torchrun,
        shutdown_distributed,
    )
    from ..train import DEFAULT_PRESET, run_meta, train, written_files_line

    nproc = int(args.nproc or 1)
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
            resume=args.resume,
            checkpoint_every=args.checkpoint_every,
            compile=args.compile,
            tensorboard=args.tensorboard,
            keep_train_state=args.keep_train_state,
            run_meta=run_meta(
                data,
                args.preset or (saved or {}).get("run", {}).get("preset") or DEFAULT_PRESET,
                plan_cfg,
            ),
        )
        if info.is_main:
            agent = WorldModelAgent.from_train_result(
                result, plan_cfg, result.model.enc_proj.fc1.weight.device
            )
            path = agent.save(args.out)
            final = result.log[-1] if result.log else {}
            print(
                f"saved agent to {path} ({result.seconds:.0f} s, {info.world_size} process(es)"
                f"{f', resumed at step {result.start_step}' if result.start_step else ''}; "
                f"final pred_loss {final.get('pred_loss', float('nan')):.4f}, "
                f"emb_std {final.get('emb_std', float('nan')):.2f})"
            )
            print(written_files_line(path))
            if args.policy_head:
                fit_and_save_policy_head(agent, data, args.out, **policy_head_options(args))
    finally:
        shutdown_distributed()
    return 0


def train_options(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Train LeWM on a dataset and save the agent folder. Several GPUs: --nproc N "
        "(re-launches `torchrun --standalone --nproc-per-node N -m lewm_agent.cli -- "
        "train ARGV`)."
    )
    p.set_defaults(func=cmd_train)
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


def _head_options(p: argparse.ArgumentParser, head: str, default_steps: int) -> None:
    """The options `train-policy` and `train-cost` share: RUN, --out, the data, the fit."""
    p.add_argument(
        "run",
        type=agent_path,
        help="checkpoint folder (from `lewm train`; the head is saved into it) or zoo:NAME",
    )
    p.add_argument(
        "--out",
        default=None,
        help=f"save the model and its new {head} here instead of into RUN (needed for zoo:NAME)",
    )
    p.add_argument("--data", required=True, help="the dataset the world model was trained on")
    p.add_argument(
        "--steps", type=int, default=None, help=f"optimiser steps (default {default_steps})"
    )
    p.add_argument("--batch-size", type=int, default=None, help="default 256")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    p.add_argument("--device", default="auto")


def train_policy_options(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Train the latent policy head of an existing checkpoint (its world model frozen)."
    )
    p.set_defaults(func=cmd_train_policy)
    _head_options(p, "head", 3000)


def train_cost_options(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Train the learned planning cost of an existing checkpoint (its world model frozen): "
        "env steps between two frames, for `--plan-cost learned`."
    )
    p.set_defaults(func=cmd_train_cost)
    _head_options(p, "cost head", 2000)


def train_predictor_options(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Train a fresh predictor on a checkpoint's FROZEN encoder (every frame embedded once, "
        "so a step costs a fraction of `lewm train`'s), optionally with another history or "
        "predictor size; writes a new checkpoint with the same encoder."
    )
    p.set_defaults(func=cmd_train_predictor)
    p.add_argument("run", type=agent_path, help="checkpoint folder or zoo:NAME (its encoder)")
    p.add_argument("--data", required=True, help="the dataset the world model was trained on")
    p.add_argument("--out", required=True, help="a new checkpoint folder to write")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default 8000)")
    p.add_argument("--batch-size", type=int, default=None, help="default 128")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 5e-4)")
    p.add_argument("--seed", type=int, default=None)
    for name in PREDICTOR_OPTION_FIELDS:
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=float if name == "pred_dropout" else int,
            default=None,
            help=f"the new predictor's {name} (default: the run's)",
        )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    p.add_argument("--device", default="auto")


PREDICTOR_OPTION_FIELDS = (
    "history",
    "pred_depth",
    "pred_heads",
    "pred_head_dim",
    "pred_mlp",
    "pred_dropout",
)
"""`lewm train-predictor` options that change the new predictor's shape (refit_predictor.PREDICTOR_FIELDS)."""


def cmd_train_predictor(args: argparse.Namespace) -> int:
    """`lewm train-predictor RUN --data DATA --out OUT`: a new predictor on RUN's encoder."""
    from pathlib import Path

    from ..agent import WorldModelAgent
    from ..checkpoint import CONFIG_FILE
    from ..refit_predictor import PredictorRefitConfig, refit_predictor

    if (Path(args.out) / CONFIG_FILE).exists():
        raise SystemExit(
            f"{args.out} already holds a checkpoint: pass a new folder to --out "
            "(nothing is overwritten)"
        )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    given = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    model = {f: getattr(args, f) for f in PREDICTOR_OPTION_FIELDS if getattr(args, f) is not None}
    cfg = PredictorRefitConfig(**{k: v for k, v in given.items() if v is not None}, model=model)
    agent = WorldModelAgent.load(args.run, device=args.device)
    new, report = refit_predictor(agent, args.data, cfg)
    folder = new.save(args.out)
    held = report["heldout_rollout_error"] or {}
    line = f"saved {folder} ({report['seconds']:.0f} s, history {report['history']}; "
    line += f"loss {report['first_loss']:.4f} -> {report['final_loss']:.4f})"
    if "refit" in held:
        fmt = ", ".join
        line += (
            f"; held-out rollout error per planned block: {args.run}'s predictor "
            f"[{fmt(f'{e:.1f}' for e in held['source'])}], new "
            f"[{fmt(f'{e:.1f}' for e in held['refit'])}]"
        )
    print(line)
    print(
        "its policy / cost heads (if RUN had any) are not copied: retrain them with "
        f"`lewm train-policy {args.out} --data DATA` / `lewm train-cost {args.out} --data DATA`"
    )
    return 0


def info_options(p: argparse.ArgumentParser) -> None:
    p.description = "Parameter counts by part of a preset or a checkpoint."
    p.set_defaults(func=cmd_info)
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    p.add_argument(
        "--agent",
        default=None,
        type=agent_path,
        help="a checkpoint folder (or zoo:NAME) instead of a preset",
    )
    p.add_argument("--json", action="store_true")


COMMANDS = {
    "train": ("train LeWM on a dataset and save the agent folder", train_options),
    "train-policy": (
        "train the latent policy head of an existing checkpoint (frozen world model)",
        train_policy_options,
    ),
    "train-cost": (
        "train the learned planning cost of an existing checkpoint (frozen world model)",
        train_cost_options,
    ),
    "train-predictor": (
        "train a fresh predictor on an existing checkpoint's frozen encoder (cached embeddings)",
        train_predictor_options,
    ),
    "info": ("parameter counts by part of a preset or checkpoint", info_options),
}
"""`lewm NAME`: (help line, function adding the command's options and its `func`)."""
