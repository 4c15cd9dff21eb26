"""Where tensors run: the device choice ("auto" -> CUDA or CPU) and its precision context.

Shared by the trainer, the agent, the policy head and the GCBC baseline, so none of
them imports another for two small functions.
"""

from __future__ import annotations

from typing import Any

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" -> CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' requested but CUDA is not available; use device='auto' or 'cpu'"
        )
    return dev


def autocast_context(device: torch.device) -> Any:
    """bf16 autocast on CUDA; a no-op on CPU (fp32 is faster there)."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return torch.autocast(device_type="cpu", enabled=False)
