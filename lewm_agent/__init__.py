"""lewm-agent: LeWorldModel as a Gymnasium-compatible model-based RL agent.

Names are imported lazily so that light users of the package (dataset
writers inside collection workers) do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "WorldModelAgent": "agent",
    "OnnxAgent": "onnx_agent",
    "LeWM": "model",
    "ModelConfig": "config",
    "TrainConfig": "config",
    "PlanConfig": "config",
    "PRESETS": "config",
    "get_preset": "config",
    "load_dataset": "data",
    "DatasetError": "data",
    "CheckpointError": "checkpoint",
    "ConfigError": "validation",
    "DiskFullError": "data",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
