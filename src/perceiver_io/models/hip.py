"""Hierarchical Perceiver (HiP, Carreira et al. 2022) on the shared layers.

Inputs are a dict of modalities ``{name: (B, M_i, C_i)}``. Each modality is embedded by its own
``Linear(C_i, E)`` and gets a learned position embedding ``(M_i, E)``. The inputs are then split into
``G_0`` contiguous groups (:class:`GroupLayout`: groups allocated to modalities in proportion to
their size, never mixing two, padded to a common group length and masked).

Every block of the schedule (:class:`HiPBlock`) regroups its input ``(B, G, N, C) -> (B, G', G·N/G', C)``
(merging neighbouring groups), lets ``N'`` learned latents per group cross-attend to their own group
(one head, qk = v = input width, query residual), and runs ``k`` self-attention layers within each
group, groups folded into the batch. The blocks go down to a one-group processor and back up; the
decoder block ``i`` adds the output of encoder block ``n - 1 - i`` (projected if the widths differ)
to its latent queries before attending (U-Net skips). A reconstruction head lets the position
embeddings, grouped like the inputs, cross-attend to the last block (one head, no residual); a
zero-initialised ``Linear(E, C_i)`` per modality restores the input channels.

With ``num_groups = (1,)`` the same class is the official ``PerceiverIO`` template (one block over all
inputs): the flat model HiP is compared with. ``num_classes`` adds a classifier on the mean of the
processor latents (linear probing and fine-tuning).

Layout and parameter counts follow google-deepmind/hierarchical_perceiver; the schedules are its
``VARIANTS``. Departures: padded inputs are masked out of attention (the official code attends to
them), and masked auto-encoding (not in the official code) drops masked inputs from attention,
see :meth:`HiP.forward`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from perceiver_io.config import Config, ConfigError
from perceiver_io.layers.blocks import Activation, CrossAttentionBlock, SelfAttentionBlock
from perceiver_io.layers.init import variance_scaling_
from perceiver_io.layers.position import TrainablePositionEncoding
from perceiver_io.models.base import PerceiverModel
from perceiver_io.registry import PretrainedInfo, register_model
from perceiver_io.validation import check_dtype, check_finite

__all__ = ["HiPConfig", "HiP", "HiPOutput", "GroupLayout", "assign_groups", "regroup", "HIP_SCHEDULES"]

_PER_BLOCK = (
    "num_groups",
    "num_latents",
    "num_latent_channels",
    "num_self_attention_layers",
    "num_self_attention_heads",
    "num_cross_attention_heads",
    "cross_attention_widening_factor",
    "self_attention_widening_factor",
)

# The official VARIANTS (encoder -> processor -> decoder), in our names.
HIP_SCHEDULES: dict[str, dict[str, Any]] = {
    "mini": dict(
        num_groups=(16, 1, 16),
        num_self_attention_layers=(2, 1, 1),
        num_latents=(128, 64, 128),
        num_latent_channels=(128, 1024, 128),
        num_self_attention_heads=(4, 32, 4),
        num_embedding_channels=32,
    ),
    "16": dict(
        num_groups=(16, 4, 1, 1, 1, 4, 16),
        num_self_attention_layers=(2, 2, 18, 2, 1, 1, 1),
        num_latents=(128, 256, 256, 64, 256, 256, 128),
        num_latent_channels=(128, 256, 512, 1024, 512, 256, 128),
        num_self_attention_heads=(4, 8, 16, 32, 16, 8, 4),
        num_embedding_channels=32,
    ),
    "256": dict(
        num_groups=(256, 64, 16, 4, 1, 1, 1, 4, 16, 64, 256),
        num_self_attention_layers=(1, 1, 2, 2, 18, 2, 1, 1, 1, 1, 1),
        num_latents=(32, 64, 128, 256, 256, 64, 256, 256, 128, 64, 32),
        num_latent_channels=(64, 96, 128, 256, 512, 1024, 256, 128, 64, 32, 16),
        num_self_attention_heads=(1, 2, 4, 8, 16, 32, 16, 8, 4, 2, 1),
        num_embedding_channels=16,
    ),
}


@dataclass
class HiPConfig(Config):
    """A HiP schedule: one entry per block in the tuples (encoder blocks, processor, decoder blocks).

    * ``modalities``/``input_index_dims``/``input_channels``: the inputs, ``{name: (M_i, C_i)}`` in order;
    * ``num_groups``: groups per block; the middle block must have 1 (the processor) and the first
      and last the same number (the reconstruction head reads the last block group by group);
    * ``num_latents``: latents *per group*; ``num_latent_channels``: their width;
    * ``num_embedding_channels`` E: width of the embedded inputs, positions and reconstruction queries;
    * ``position_projection_slots``: 0, or that many bias-free ``Linear(E, E)`` applied to the position
      embeddings, the ``i``-th modality of a call using the ``i``-th (what the official code builds when
      its ``num_position_encoding_channels`` differs from E; needed only to reproduce its parameter
      counts);
    * ``regroup``: ``"reshape"`` merges neighbouring groups; ``"transpose_reshape"`` interleaves them;
    * ``mask_padding``: keep padded inputs out of attention (the official code attends to them);
    * ``num_classes``: a classifier on the mean processor latent (``None``: none).
    """

    modalities: tuple[str, ...] = ("image",)
    input_index_dims: tuple[int, ...] = (1024,)
    input_channels: tuple[int, ...] = (3,)
    num_groups: tuple[int, ...] = (16, 1, 16)
    num_latents: tuple[int, ...] = (128, 64, 128)
    num_latent_channels: tuple[int, ...] = (128, 1024, 128)
    num_self_attention_layers: tuple[int, ...] = (2, 1, 1)
    num_self_attention_heads: tuple[int, ...] = (4, 32, 4)
    num_cross_attention_heads: tuple[int, ...] = (1, 1, 1)
    cross_attention_widening_factor: tuple[int, ...] = (1, 1, 1)
    self_attention_widening_factor: tuple[int, ...] = (4, 4, 4)
    num_embedding_channels: int = 32
    position_projection_slots: int = 0
    regroup: Literal["reshape", "transpose_reshape"] = "reshape"
    activation: Activation = "squared_relu"
    mask_padding: bool = True
    dropout: float = 0.0
    num_classes: int | None = None

    @property
    def num_blocks(self) -> int:
        return len(self.num_groups)

    @property
    def processor_index(self) -> int:
        return self.num_blocks // 2

    @property
    def input_shapes(self) -> dict[str, tuple[int, int]]:
        return {m: (n, c) for m, n, c in zip(self.modalities, self.input_index_dims, self.input_channels, strict=True)}

    def validate(self) -> None:
        name = type(self).__name__
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"{name}.modalities must be distinct names, got {self.modalities!r}")
        for f in ("input_index_dims", "input_channels"):
            values = getattr(self, f)
            if len(values) != len(self.modalities) or any(not isinstance(v, int) or v <= 0 for v in values):
                raise ConfigError(
                    f"{name}.{f} must hold one positive integer per modality ({len(self.modalities)}), got {values!r}"
                )
        n = self.num_blocks
        if n % 2 != 1:
            raise ConfigError(
                f"{name}.num_groups must have an odd number of blocks (encoder + processor + decoder), got {n}"
            )
        for f in _PER_BLOCK:
            values = getattr(self, f)
            if len(values) != n or any(not isinstance(v, int) or v <= 0 for v in values):
                raise ConfigError(f"{name}.{f} must hold {n} positive integers (one per block), got {values!r}")
        if self.num_groups[self.processor_index] != 1:
            raise ConfigError(
                f"{name}.num_groups[{self.processor_index}] (the processor) must be 1, got {self.num_groups!r}"
            )
        if self.num_groups[0] != self.num_groups[-1]:
            raise ConfigError(f"{name}.num_groups must start and end with the same number, got {self.num_groups!r}")
        if self.num_groups[0] < len(self.modalities):
            raise ConfigError(
                f"{name}.num_groups[0] ({self.num_groups[0]}) must be at least the number of modalities "
                f"({len(self.modalities)}): groups never mix modalities"
            )
        for i in range(1, n):
            total = self.num_groups[i - 1] * self.num_latents[i - 1]
            if total % self.num_groups[i]:
                raise ConfigError(
                    f"{name}: block {i} regroups {self.num_groups[i - 1]} groups × {self.num_latents[i - 1]} latents "
                    f"into {self.num_groups[i]} groups, which does not divide"
                )
        p = self.processor_index
        for i in range(p + 1, n):
            j = n - 1 - i
            if (self.num_groups[i], self.num_latents[i]) != (self.num_groups[j], self.num_latents[j]):
                raise ConfigError(
                    f"{name}: decoder block {i} takes the skip from block {j}, so it needs the same groups and "
                    f"latents per group ({self.num_groups[j]} × {self.num_latents[j]}), got "
                    f"{self.num_groups[i]} × {self.num_latents[i]}"
                )
        for i, (c, h, hc) in enumerate(
            zip(self.num_latent_channels, self.num_self_attention_heads, self.num_cross_attention_heads, strict=True)
        ):
            if c % h or c % hc:
                raise ConfigError(
                    f"{name}: block {i}'s num_latent_channels ({c}) must be divisible by its self-attention "
                    f"heads ({h}) and cross-attention heads ({hc})"
                )
        self._positive("num_embedding_channels")
        self._positive("num_classes", allow_none=True)
        if not isinstance(self.position_projection_slots, int) or self.position_projection_slots < 0:
            raise ConfigError(f"{name}.position_projection_slots must be >= 0, got {self.position_projection_slots!r}")
        self._probability("dropout")


def hip_config(schedule: str, **overrides: Any) -> HiPConfig:
    """A published schedule (``"mini"``, ``"16"``, ``"256"``) with ``overrides``."""
    s = dict(HIP_SCHEDULES[schedule])
    n = len(s["num_groups"])
    s.setdefault("num_cross_attention_heads", (1,) * n)
    s.setdefault("cross_attention_widening_factor", (1,) * n)
    s.setdefault("self_attention_widening_factor", (4,) * n)
    s.update(overrides)
    return HiPConfig(**s)


# -- grouping ---------------------------------------------------------------------------------------


def assign_groups(num_groups: int, index_dims: list[int]) -> tuple[list[int], int]:
    """Groups per modality and the common group length: start with one group per modality, then
    give each further group to the modality whose groups are currently the longest (the official
    ``assign_groups_to_modalities``)."""
    if len(index_dims) > num_groups:
        raise ValueError(f"{len(index_dims)} modalities need at least as many groups, got num_groups={num_groups}")
    groups = [1] * len(index_dims)
    per_group = [float(m) for m in index_dims]
    for _ in range(num_groups - len(index_dims)):
        i = max(range(len(per_group)), key=lambda j: (per_group[j], -j))  # first maximum, as np.argmax
        groups[i] += 1
        per_group[i] = index_dims[i] / groups[i]
    return groups, math.ceil(max(per_group))


@dataclass(frozen=True)
class GroupLayout:
    """Where each input row goes when ``{name: (B, M_i, C)}`` is split into ``(B, G, L, C)`` groups.

    * ``index``: ``(G·L,)`` row of the concatenated inputs for every grouped slot, ``-1`` for padding;
    * ``inverse``: ``(ΣM_i,)`` the slot of every input row;
    * ``groups``: ``{name: (first group, number of groups)}``; ``group_length`` L.

    Each modality is padded at its end to a multiple of its group count, cut into contiguous groups,
    and each group padded at its end to L (as the official ``ConstNumGrouper``).
    """

    names: tuple[str, ...]
    index_dims: tuple[int, ...]
    groups: dict[str, tuple[int, int]]
    group_length: int
    index: Tensor
    inverse: Tensor
    has_padding: bool

    @classmethod
    def build(cls, num_groups: int, names: tuple[str, ...], index_dims: tuple[int, ...]) -> GroupLayout:
        counts, length = assign_groups(num_groups, list(index_dims))
        slots, groups, offset, first = [], {}, 0, 0
        for name, m, g in zip(names, index_dims, counts, strict=True):
            local = math.ceil(m / g)
            for j in range(g):
                rows = [offset + r for r in range(j * local, min((j + 1) * local, m))]
                slots.extend(rows + [-1] * (length - len(rows)))
            groups[name] = (first, g)
            offset, first = offset + m, first + g
        inverse = [0] * offset
        for slot, row in enumerate(slots):
            if row >= 0:
                inverse[row] = slot
        index = torch.tensor(slots, dtype=torch.long)
        return cls(tuple(names), tuple(index_dims), groups, length, index, torch.tensor(inverse), len(slots) > offset)

    @property
    def num_groups(self) -> int:
        return self.index.numel() // self.group_length

    def mask(self, device=None) -> Tensor:
        """``(G, L)`` bool, ``True`` where a slot holds a real input."""
        return (self.index >= 0).view(self.num_groups, self.group_length).to(device)

    def group(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """``{name: (B, M_i, ...)}`` -> ``(B, G, L, ...)`` with zeros in the padding."""
        x = torch.cat([inputs[n] for n in self.names], dim=1)
        x = torch.cat([x, x.new_zeros(x.shape[0], 1, *x.shape[2:])], dim=1)  # row -1: padding
        out = x[:, self.index.to(x.device)]
        return out.view(x.shape[0], self.num_groups, self.group_length, *x.shape[2:])

    def ungroup(self, grouped: Tensor) -> dict[str, Tensor]:
        """``(B, G, L, ...)`` -> ``{name: (B, M_i, ...)}`` (padding dropped)."""
        b = grouped.shape[0]
        flat = grouped.reshape(b, self.num_groups * self.group_length, *grouped.shape[3:])
        rows = flat[:, self.inverse.to(grouped.device)]
        return dict(zip(self.names, rows.split(list(self.index_dims), dim=1), strict=True))


def regroup(x: Tensor, num_groups: int, how: str = "reshape") -> Tensor:
    """``(B, G, N, C) -> (B, G', G·N/G', C)``: ``"reshape"`` merges neighbouring groups,
    ``"transpose_reshape"`` interleaves their latents."""
    b, g, n, c = x.shape
    if (g * n) % num_groups:
        raise ValueError(f"cannot regroup {g} groups × {n} latents into {num_groups} groups")
    if how == "transpose_reshape":
        x = x.transpose(1, 2)
    elif how != "reshape":
        raise ValueError(f"regroup must be 'reshape' or 'transpose_reshape', got {how!r}")
    return x.reshape(b, num_groups, g * n // num_groups, c)


# -- blocks -----------------------------------------------------------------------------------------


def _latent_init_scale(num_positions: int) -> float:
    """The std of Haiku's ``VarianceScaling(1.0)`` on a ``(num_positions, C)`` array (fan-in = rows)."""
    return math.sqrt(1.0 / num_positions) / 0.87962566103423978


class HiPBlock(nn.Module):
    """Regroup, grouped cross-attention from learned latents, ``k`` self-attention layers per group.

    ``(B, G_in, N_in, C_in)`` -> ``(B, G, N, D)``; ``skip (B, G, N, D_skip)`` is added to the latent
    queries before attention; ``input_mask (B, G, N_in)`` keeps padded or masked inputs out.
    """

    def __init__(
        self,
        num_groups: int,
        num_latents: int,
        num_channels: int,
        num_input_channels: int,
        num_self_attention_layers: int,
        num_self_attention_heads: int,
        num_cross_attention_heads: int = 1,
        cross_attention_widening_factor: int = 1,
        self_attention_widening_factor: int = 4,
        skip_channels: int | None = None,
        activation: Activation = "squared_relu",
        dropout: float = 0.0,
        regroup: str = "reshape",
    ) -> None:
        super().__init__()
        self.num_groups, self.num_latents, self.regroup = num_groups, num_latents, regroup
        self.latents = TrainablePositionEncoding(
            num_groups * num_latents, num_channels, init_scale=_latent_init_scale(num_groups * num_latents)
        )
        self.skip_projection: nn.Linear | None = None
        if skip_channels is not None and skip_channels != num_channels:
            self.skip_projection = nn.Linear(skip_channels, num_channels)
            variance_scaling_(self.skip_projection.weight)
            nn.init.zeros_(self.skip_projection.bias)
        self.cross_attention = CrossAttentionBlock(
            num_q_input_channels=num_channels,
            num_kv_input_channels=num_input_channels,
            num_heads=num_cross_attention_heads,
            widening_factor=cross_attention_widening_factor,
            use_query_residual=True,
            activation=activation,
            dropout=dropout,
        )
        self.self_attention = nn.ModuleList(
            SelfAttentionBlock(
                num_channels,
                num_heads=num_self_attention_heads,
                widening_factor=self_attention_widening_factor,
                activation=activation,
                dropout=dropout,
            )
            for _ in range(num_self_attention_layers)
        )

    def forward(self, x: Tensor, skip: Tensor | None = None, input_mask: Tensor | None = None) -> Tensor:
        b = x.shape[0]
        if x.shape[1] != self.num_groups:
            x = regroup(x, self.num_groups, self.regroup)
        g, n_in = x.shape[1], x.shape[2]
        q = self.latents(b).reshape(b, g, self.num_latents, -1)
        if skip is not None:
            q = q + (skip if self.skip_projection is None else self.skip_projection(skip))
        mask = None if input_mask is None else input_mask.reshape(b * g, n_in)
        z = self.cross_attention(q.reshape(b * g, self.num_latents, -1), x.reshape(b * g, n_in, -1), kv_mask=mask)
        for layer in self.self_attention:
            z = layer(z)
        return z.view(b, g, self.num_latents, -1)


@dataclass
class HiPOutput:
    """* ``reconstruction``: ``{name: (B, M_i, C_i)}`` (empty when not decoded);
    * ``latents``: the processor's latents ``(B, N, D)``;
    * ``logits``: ``(B, num_classes)`` when the model has a classifier, else ``None``."""

    latents: Tensor
    reconstruction: dict[str, Tensor] = field(default_factory=dict)
    logits: Tensor | None = None


class HiP(PerceiverModel):
    """``model({name: (B, M_i, C_i)})`` -> :class:`HiPOutput`; a bare ``(B, M, C)`` tensor is taken as the
    first modality. Any subset of the configured modalities may be given (e.g. one data set's)."""

    config_class = HiPConfig
    config: HiPConfig

    def __init__(self, config: HiPConfig) -> None:
        super().__init__(config)
        c = config
        e = c.num_embedding_channels
        self.embed = nn.ModuleDict({m: nn.Linear(ch, e) for m, ch in zip(c.modalities, c.input_channels, strict=True)})
        self.unembed = nn.ModuleDict(
            {m: nn.Linear(e, ch) for m, ch in zip(c.modalities, c.input_channels, strict=True)}
        )
        for m in c.modalities:
            variance_scaling_(self.embed[m].weight)
            nn.init.zeros_(self.embed[m].bias)
            nn.init.zeros_(self.unembed[m].weight)  # VarianceScaling(0.0): starts at zero
            nn.init.zeros_(self.unembed[m].bias)
        self.positions = nn.ModuleDict(
            {
                m: TrainablePositionEncoding(n, e, init_scale=_latent_init_scale(n))
                for m, n in zip(c.modalities, c.input_index_dims, strict=True)
            }
        )
        self.position_projections = nn.ModuleList(
            nn.Linear(e, e, bias=False) for _ in range(c.position_projection_slots)
        )
        for p in self.position_projections:
            variance_scaling_(p.weight)
        blocks, widths = [], []
        for i in range(c.num_blocks):
            skip = widths[c.num_blocks - 1 - i] if i > c.processor_index else None
            blocks.append(
                HiPBlock(
                    num_groups=c.num_groups[i],
                    num_latents=c.num_latents[i],
                    num_channels=c.num_latent_channels[i],
                    num_input_channels=e if i == 0 else c.num_latent_channels[i - 1],
                    num_self_attention_layers=c.num_self_attention_layers[i],
                    num_self_attention_heads=c.num_self_attention_heads[i],
                    num_cross_attention_heads=c.num_cross_attention_heads[i],
                    cross_attention_widening_factor=c.cross_attention_widening_factor[i],
                    self_attention_widening_factor=c.self_attention_widening_factor[i],
                    skip_channels=skip,
                    activation=c.activation,
                    dropout=c.dropout,
                    regroup=c.regroup,
                )
            )
            widths.append(c.num_latent_channels[i])
        self.blocks = nn.ModuleList(blocks)
        self.reconstruction_head = CrossAttentionBlock(
            num_q_input_channels=e,
            num_kv_input_channels=c.num_latent_channels[-1],
            num_heads=1,
            widening_factor=1,
            use_query_residual=False,
            activation=c.activation,
        )
        self.classifier: nn.Sequential | None = None
        if c.num_classes is not None:
            d = c.num_latent_channels[c.processor_index]
            self.classifier = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, c.num_classes))
            variance_scaling_(self.classifier[1].weight)
            nn.init.zeros_(self.classifier[1].bias)
        self._layouts: dict[tuple[str, ...], GroupLayout] = {}

    # -- inputs -------------------------------------------------------------------------------------
    def layout(self, names: tuple[str, ...]) -> GroupLayout:
        """The grouping of the modalities ``names`` (in configured order), cached."""
        if names not in self._layouts:
            dims = self.config.input_shapes
            self._layouts[names] = GroupLayout.build(self.config.num_groups[0], names, tuple(dims[n][0] for n in names))
        return self._layouts[names]

    def _check(self, inputs: Any, input_mask: Any) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
        c = self.config
        if isinstance(inputs, Tensor):
            inputs = {c.modalities[0]: inputs}
            if isinstance(input_mask, Tensor):
                input_mask = {c.modalities[0]: input_mask}
        if not isinstance(inputs, Mapping) or not inputs:
            raise TypeError(
                f"inputs must be a tensor or a non-empty dict of modalities {c.modalities}, got {type(inputs).__name__}"
            )
        shapes, batch = c.input_shapes, None
        for name, x in inputs.items():
            if name not in shapes:
                raise KeyError(f"inputs[{name!r}]: unknown modality; the model has {c.modalities}")
            if not isinstance(x, Tensor) or x.dim() != 3 or tuple(x.shape[1:]) != shapes[name]:
                got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(
                    f"inputs[{name!r}] must have shape (B, {shapes[name][0]}, {shapes[name][1]}), got {got}"
                )
            if not x.is_floating_point():
                raise TypeError(f"inputs[{name!r}] must be floating point, got {x.dtype}")
            if batch is not None and x.shape[0] != batch:
                raise ValueError(f"inputs[{name!r}] has batch size {x.shape[0]}, the other modalities {batch}")
            batch = x.shape[0]
        if input_mask is not None:
            if not isinstance(input_mask, Mapping):
                raise TypeError(f"input_mask must be a dict like inputs, got {type(input_mask).__name__}")
            for name, m in input_mask.items():
                if name not in inputs:
                    raise KeyError(f"input_mask[{name!r}] has no matching input")
                want = (batch, shapes[name][0])
                if not isinstance(m, Tensor) or m.dtype != torch.bool or tuple(m.shape) != want:
                    got = (tuple(m.shape), m.dtype) if isinstance(m, Tensor) else type(m).__name__
                    raise ValueError(f"input_mask[{name!r}] must be a bool tensor of shape {want}, got {got}")
        if batch == 0:
            raise ValueError("inputs have batch size 0: pass at least one example")
        dtype = next(iter(self.embed.values())).weight.dtype
        checked = {}
        for name, x in inputs.items():
            check_dtype(f"inputs[{name!r}]", x, dtype)
            hidden_rows = None if input_mask is None or name not in input_mask else ~input_mask[name]
            if hidden_rows is not None:  # whatever a hidden input holds (NaN included) reaches nothing
                x = x.masked_fill(hidden_rows[..., None], 0.0)
            check_finite(f"inputs[{name!r}]", x)
            checked[name] = x
        order = {n: i for i, n in enumerate(c.modalities)}
        inputs = dict(sorted(checked.items(), key=lambda kv: order[kv[0]]))
        return inputs, input_mask

    def position_embeddings(self, names: tuple[str, ...], batch_size: int) -> dict[str, Tensor]:
        """``{name: (B, M_i, E)}``: the learned positions (projected by slot when configured)."""
        out = {}
        for slot, name in enumerate(names):
            p = self.positions[name](batch_size)
            if self.position_projections:
                p = self.position_projections[slot](p)
            out[name] = p
        return out

    # -- forward ------------------------------------------------------------------------------------
    def forward(
        self,
        inputs: Tensor | Mapping[str, Tensor],
        input_mask: Mapping[str, Tensor] | Tensor | None = None,
        *,
        decode: bool = True,
    ) -> HiPOutput:
        """Encode, process and (``decode=True``) reconstruct every input position.

        ``input_mask {name: (B, M_i)}`` bool, ``False`` = hidden from the model (masked auto-encoding:
        a hidden input is dropped from attention, value and position alike; its reconstruction is
        still produced, from its position query). ``decode=False`` stops at the processor (probing).
        """
        inputs, input_mask = self._check(inputs, input_mask)
        c = self.config
        names = tuple(inputs)
        layout = self.layout(names)
        b = next(iter(inputs.values())).shape[0]
        pos = self.position_embeddings(names, b)
        z = layout.group({n: self.embed[n](x) + pos[n] for n, x in inputs.items()})  # (B, G, L, E)
        mask = None
        if c.mask_padding and layout.has_padding:
            mask = layout.mask(z.device).expand(b, -1, -1)
        if input_mask is not None:
            visible = {
                n: input_mask.get(n, torch.ones(b, x.shape[1], dtype=torch.bool, device=x.device))
                for n, x in inputs.items()
            }
            grouped = layout.group({n: v.unsqueeze(-1) for n, v in visible.items()}).squeeze(-1)
            mask = grouped if mask is None else mask & grouped
        hidden: list[Tensor] = []
        latents = None
        last = c.num_blocks if decode else c.processor_index + 1
        for i in range(last):
            skip = hidden[c.num_blocks - 1 - i] if i > c.processor_index else None
            z = self.blocks[i](z, skip=skip, input_mask=mask if i == 0 else None)
            hidden.append(z)
            if i == c.processor_index:
                latents = z[:, 0]
        assert latents is not None
        logits = None if self.classifier is None else self.classifier(latents.mean(dim=1))
        if not decode:
            return HiPOutput(latents=latents, logits=logits)
        queries = layout.group(pos)  # (B, G, L, E): the position embeddings are the queries
        g, length = queries.shape[1], queries.shape[2]
        rows = self.reconstruction_head(queries.reshape(b * g, length, -1), z.reshape(b * g, z.shape[2], -1))
        rows = layout.ungroup(rows.view(b, g, length, -1))
        reconstruction = {n: self.unembed[n](r) for n, r in rows.items()}
        return HiPOutput(latents=latents, reconstruction=reconstruction, logits=logits)

    def example_inputs(self, batch_size: int = 1) -> dict[str, Any]:
        """Random values for every configured modality."""
        return {"inputs": {m: torch.randn(batch_size, n, ch) for m, (n, ch) in self.config.input_shapes.items()}}


# -- presets ----------------------------------------------------------------------------------------

_OFFICIAL = "google-deepmind/hierarchical_perceiver perceiver_test.py (ImageNet + AudioSet mock inputs)"


def _image(size: int, channels: int = 3) -> dict[str, Any]:
    return dict(modalities=("image",), input_index_dims=(size * size,), input_channels=(channels,))


@register_model("hip-16", HiP, info=PretrainedInfo(paper_params="99,224,996 (" + _OFFICIAL + ")"))
def hip_16() -> HiPConfig:
    """HiP-16 on 224² RGB pixels (50,176 inputs)."""
    return hip_config("16", **_image(224))


@register_model("hip-256", HiP, info=PretrainedInfo(paper_params="95,585,188 (" + _OFFICIAL + ")"))
def hip_256() -> HiPConfig:
    """HiP-256 on 224² RGB pixels."""
    return hip_config("256", **_image(224))


@register_model("hip-mini", HiP, info=PretrainedInfo(paper_params="18,709,668 (" + _OFFICIAL + ")"))
def hip_mini() -> HiPConfig:
    """HiP-Mini (16 groups, 1-group processor, 16 groups) on 224² RGB pixels."""
    return hip_config("mini", **_image(224))


@register_model("hip-cpu", HiP)
def hip_cpu() -> HiPConfig:
    """A CPU-sized 5-block HiP for 64² grey images (4,096 pixels): 16 -> 4 -> 1 -> 4 -> 16 groups."""
    return HiPConfig(
        **_image(64, 1),
        num_groups=(16, 4, 1, 4, 16),
        num_latents=(32, 64, 64, 64, 32),
        num_latent_channels=(64, 128, 256, 128, 64),
        num_self_attention_layers=(1, 1, 4, 1, 1),
        num_self_attention_heads=(2, 4, 8, 4, 2),
        num_cross_attention_heads=(1,) * 5,
        cross_attention_widening_factor=(1,) * 5,
        self_attention_widening_factor=(4,) * 5,
        num_embedding_channels=32,
    )


@register_model("flat-cpu", HiP)
def flat_cpu() -> HiPConfig:
    """The flat Perceiver IO ``hip-cpu`` is compared with: one block of 256 × 256 latents over all
    4,096 pixels, 5 self-attention layers (about the same parameters as ``hip-cpu``)."""
    return HiPConfig(
        **_image(64, 1),
        num_groups=(1,),
        num_latents=(256,),
        num_latent_channels=(256,),
        num_self_attention_layers=(5,),
        num_self_attention_heads=(8,),
        num_cross_attention_heads=(1,),
        cross_attention_widening_factor=(1,),
        self_attention_widening_factor=(4,),
        num_embedding_channels=32,
    )


@register_model("test-hip", HiP, info=PretrainedInfo(tiny=True))
def test_hip() -> HiPConfig:
    """Tiny: two modalities (one padded), 4 -> 2 -> 1 -> 2 -> 4 groups, a classifier."""
    return HiPConfig(
        modalities=("image", "audio"),
        input_index_dims=(30, 7),
        input_channels=(3, 2),
        num_groups=(4, 2, 1, 2, 4),
        num_latents=(4, 4, 6, 4, 4),
        num_latent_channels=(16, 24, 32, 24, 16),
        num_self_attention_layers=(1, 1, 1, 1, 1),
        num_self_attention_heads=(2, 2, 4, 2, 2),
        num_cross_attention_heads=(1,) * 5,
        cross_attention_widening_factor=(1,) * 5,
        self_attention_widening_factor=(2,) * 5,
        num_embedding_channels=8,
        num_classes=3,
    )
