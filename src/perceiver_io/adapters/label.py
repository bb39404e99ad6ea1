"""Label adapters: a one-hot label is one input row; one learned query decodes class logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LabelInputAdapter", "LabelOutputAdapter"]


class LabelInputAdapter(nn.Module):
    """One-hot labels ``(B, K)`` (or class ids ``(B,)`` int64) -> one input row ``(B, 1, K)``."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    @property
    def num_channels(self) -> int:
        return self.num_classes

    def forward(self, labels: Tensor) -> Tensor:
        if labels.dim() == 1 and not labels.is_floating_point():
            labels = F.one_hot(labels, self.num_classes).to(torch.get_default_dtype())
        if labels.dim() != 2 or labels.shape[1] != self.num_classes:
            raise ValueError(
                f"labels must be one-hot (B, {self.num_classes}) or class ids (B,), got shape {tuple(labels.shape)}"
            )
        return labels[:, None, :]


class LabelOutputAdapter(nn.Module):
    """Decoded label row ``(B, 1, F)`` -> logits ``(B, K)``."""

    def __init__(self, num_input_channels: int, num_classes: int) -> None:
        super().__init__()
        self.projection = nn.Linear(num_input_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.arrange(self.projection(x))

    def arrange(self, y: Tensor) -> Tensor:
        """Projected row ``(B, 1, num_classes)`` -> logits ``(B, num_classes)``."""
        return y[:, 0]
