"""`lewm export`: an agent's ONNX graphs + agent.json, for the torch-free OnnxAgent."""

from __future__ import annotations

import argparse

from .options import agent_path


def export_options(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Write the ONNX graphs an agent acts with (encoder, predictor step, policy head "
        "where the run has one) and agent.json (plan config, action bounds and "
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


COMMANDS = {
    "export": ("write an agent's ONNX graphs for the torch-free OnnxAgent", export_options),
}
"""`lewm NAME`: (help line, function adding the command's options and its `func`)."""
