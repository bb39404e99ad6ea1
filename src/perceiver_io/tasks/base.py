"""A Task = model preset + data + loss + metrics + evaluation + predict, configured by one typed config.

Every task's config has three sections: ``model`` (the model's typed config), ``data`` and
``train`` (:class:`~perceiver_io.training.TrainConfig`). The trainer only talks to a task through
this interface:

* ``prepare_data()`` (rank 0: fetch) and ``setup()`` (every rank: load, split) set ``train_data``,
  an indexable sequence of examples;
* ``collate(items, seeds)`` turns examples into a batch dict of tensors; all randomness (e.g.
  masking) comes from the per-example ``seeds``, so batches depend only on (seed, step);
  ``step`` is the training step being collated (set by the trainer, also after a resume), for
  recipes that change over training;
* ``count(batch)`` is the number of units the loss is summed over (examples, masked bytes);
* ``loss(model, batch)`` returns the *summed* loss (0-d tensor); the trainer divides by the global count;
* ``evaluate(model, split)`` -> metrics; ``report(model, metrics)`` -> lines for the final printout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from perceiver_io.config import Config, ConfigError

__all__ = ["Task", "TASKS", "register_task", "get_task_class", "build_config", "DataUnavailable", "example_generator"]


class DataUnavailable(RuntimeError):
    """The task's data set is missing and could not be fetched; the message says how to get it."""


TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


def get_task_class(name: str) -> type[Task]:
    _import_tasks()
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; available: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def _import_tasks() -> None:
    from perceiver_io.tasks import av, clm, flow, hip_mae, image_classification, mlm, text_classification  # noqa: F401


def build_config(
    name: str,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> Config:
    """The one way a task's config is assembled (train, resume, evaluate, tests): the task's
    defaults, then ``base`` (a saved run's flattened config, when resuming or evaluating), then the
    YAML file's values, then the dotted ``overrides``; finally the task's ``finalize_config``."""
    from perceiver_io.training.overrides import apply_overrides, load_yaml

    cls = get_task_class(name)
    cfg = cls.config_class()
    if base:
        cfg = apply_overrides(cfg, base)
    if config_file is not None:
        cfg = apply_overrides(cfg, load_yaml(config_file))
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return cls.finalize_config(cfg)


_MASK64 = 2**64 - 1


def mix_seed(seed: int) -> int:
    """A 64-bit seed hashed (SplitMix64's finaliser) and folded to the 32 bits a CPU generator keeps.

    ``torch.Generator().manual_seed`` seeds its Mersenne Twister with the low 32 bits only, so seeds
    that differ by a multiple of 2^32 (e.g. run seed 2 vs 0 in the trainer's ``seed·(2^31-1) + k``)
    would otherwise give identical streams.
    """
    z = (int(seed) + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return (z ^ (z >> 32)) & 0xFFFFFFFF


def example_generator(seed: int) -> torch.Generator:
    """A CPU generator for one example's randomness (any integer seed; see :func:`mix_seed`)."""
    return torch.Generator().manual_seed(mix_seed(seed))


class Task(ABC):
    """Base class of the training tasks; see the module docstring for the contract."""

    name: ClassVar[str]
    config_class: ClassVar[type[Config]]

    def __init__(self, config: Config, log: Callable[[str], None] = print) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(f"task {self.name} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.log = log
        self.train_data: Sequence[Any] | None = None
        self.step = 0  # the training step being collated; the trainer sets it

    @classmethod
    def finalize_config(cls, cfg: Config) -> Config:
        """Make derived settings consistent (e.g. the model's max_seq_len = data.seq_len)."""
        return cfg

    def prepare_data(self) -> None:
        """Download what ``setup`` needs (called on rank 0 only, before ``setup``)."""
        return None

    @abstractmethod
    def setup(self) -> None:
        """Load and split the data; set ``self.train_data``."""

    @abstractmethod
    def build_model(self) -> nn.Module: ...

    @abstractmethod
    def collate(self, items: list[Any], seeds: list[int]) -> dict[str, Tensor]: ...

    def count(self, batch: dict[str, Tensor]) -> int:
        """Units the summed loss of ``batch`` covers (default: examples)."""
        return int(next(iter(batch.values())).shape[0])

    @abstractmethod
    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """Summed loss over the batch's ``count`` units, a 0-d tensor."""

    @abstractmethod
    def evaluate(self, model: nn.Module, split: str = "valid", max_batches: int | None = None) -> dict[str, float]: ...

    def report(self, model: nn.Module, metrics: dict[str, float]) -> list[str]:
        """Lines printed at the end of training / by ``perceiver-io evaluate``."""
        return [f"{k}: {v:.4f}" for k, v in metrics.items()]


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
