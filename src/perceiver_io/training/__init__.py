"""Training engine: trainer, optimizers (AdamW, LAMB), schedule, checkpoints, DDP, metric logging."""

from perceiver_io.training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from perceiver_io.training.optim import LAMB, build_optimizer, no_decay_names, param_groups
from perceiver_io.training.overrides import apply_overrides, load_yaml, parse_overrides
from perceiver_io.training.schedule import build_scheduler, warmup_cosine
from perceiver_io.training.trainer import TrainConfig, Trainer, TrainResult

__all__ = [
    "LAMB",
    "CheckpointError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "apply_overrides",
    "build_optimizer",
    "build_scheduler",
    "latest_checkpoint",
    "load_checkpoint",
    "load_yaml",
    "no_decay_names",
    "param_groups",
    "parse_overrides",
    "save_checkpoint",
    "warmup_cosine",
]
