"""lewm-agent: LeWorldModel as a Gymnasium-compatible model-based RL agent."""

from .agent import WorldModelAgent
from .checkpoint import CheckpointError
from .config import PRESETS, ModelConfig, PlanConfig, TrainConfig, get_preset
from .data import DatasetError, load_dataset
from .model import LeWM

__all__ = [
    "WorldModelAgent",
    "LeWM",
    "ModelConfig",
    "TrainConfig",
    "PlanConfig",
    "PRESETS",
    "get_preset",
    "load_dataset",
    "DatasetError",
    "CheckpointError",
]
__version__ = "0.1.0"
