"""Labels: a one-hot label is one input row; one learned query decodes the class logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perceiver_io.adapters.base import AdaptedInputs, InputAdapter
from perceiver_io.heads import ModalityHead
from perceiver_io.queries import LearnedQueries

__all__ = ["LabelInputAdapter", "LabelHead"]


class LabelInputAdapter(InputAdapter):
    """One-hot labels ``(B, K)`` (or class ids ``(B,)`` int64) -> one input row ``(B, 1, K)``."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_channels = num_classes

    def forward(self, labels: Tensor) -> AdaptedInputs:
        if labels.dim() == 1 and not labels.is_floating_point():
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise ValueError(f"label ids must be in [0, {self.num_classes}), got {labels.tolist()}")
            labels = F.one_hot(labels, self.num_classes).to(torch.get_default_dtype())
        if labels.dim() != 2 or labels.shape[1] != self.num_classes:
            raise ValueError(
                f"labels must be one-hot (B, {self.num_classes}) or class ids (B,), got shape {tuple(labels.shape)}"
            )
        return AdaptedInputs(labels[:, None, :], index_shape=(1,))

    def example_inputs(self, batch_size: int = 1) -> Tensor:
        return torch.randint(0, self.num_classes, (batch_size,))


class LabelHead(ModalityHead):
    """One learned query; ``Linear(F, K)``; the decoded row -> logits ``(B, K)``."""

    def __init__(self, num_query_channels: int, num_input_channels: int, num_classes: int, init_scale: float = 0.02):
        super().__init__(LearnedQueries(1, num_query_channels, init_scale), nn.Linear(num_input_channels, num_classes))

    def arrange(self, y: Tensor, subsampled: bool = False) -> Tensor:
        """Projected row ``(B, 1, num_classes)`` -> logits ``(B, num_classes)``."""
        return y[:, 0]
