"""Training tasks: ``mlm`` (byte-level masked LM), ``clm`` (Perceiver AR causal LM), ``image-classification``,
``text-classification``, ``flow``, ``hip-mae``, ``av-autoencode``, ``av-classify``."""

from perceiver_io.tasks.base import TASKS, DataUnavailable, Task, build_config, get_task_class, register_task

__all__ = ["TASKS", "DataUnavailable", "Task", "build_config", "get_task_class", "register_task"]
