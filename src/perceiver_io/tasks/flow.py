"""Optical flow on procedural pairs (:class:`~perceiver_io.data.flow.FlowPairs`), the official recipe on a CPU.

Frames ``(B, 2, 3, H, W)`` in ``[-1, 1]`` -> :class:`~perceiver_io.models.flow.OpticalFlow` (3×3 patches of
both frames per pixel, Fourier positions, the inputs as decoder queries, no query residual, output
÷ ``rescale_factor``). The network's outputs are flow ÷ :data:`FLOW_SCALE_FACTOR` (20 px), the units of
the published checkpoint, so a model trained here and an imported one are read the same way
(``perceiver-io predict flow``).

Training decodes ``data.num_queries`` random pixels per example (subsampled queries); the loss is the
end-point error in pixels, summed over the decoded pixels. The curriculum, after AutoFlow's as
DeepMind described it: augmentation whose severity rises linearly from ``augment_start`` to 1 over the
first ``1 - final_fraction`` of the steps (random flips of both frames and their flow, per-frame colour
gain/offset and noise, all scaled by the severity), then a final phase without augmentation in which
each pair appears twice in the batch, forward and reversed (frame 2 -> frame 1 with its exact backward
flow). Evaluation decodes every pixel, encode-once and chunked, on held-out pairs (disjoint seeds and
texture images) and reports :class:`~perceiver_io.metrics.FlowMetrics` (pixels pooled over the set);
the final report adds zero flow, Farnebäck and DIS on the same pairs (OpenCV, extra ``flow``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from perceiver_io.config import Config, ConfigError
from perceiver_io.inference.flow import FLOW_SCALE_FACTOR
from perceiver_io.metrics import FlowMetrics
from perceiver_io.models.flow import OpticalFlow, OpticalFlowConfig, optical_flow_perceiver_small
from perceiver_io.tasks.base import DataUnavailable, Task, example_generator, register_task
from perceiver_io.training.trainer import TrainConfig

__all__ = ["FlowDataConfig", "FlowTaskConfig", "FlowTask", "augmentation_severity", "read_pairs_dir"]


@dataclass
class FlowDataConfig(Config):
    """Procedural pairs at the model's ``image_size``.

    ``num_layers``: foreground layers (inclusive range); ``max_motion``: px bound on ``|flow|``
    (``None``: 1/8 of the smaller side); ``textures``: image source for textures and silhouettes
    (``"auto"``: the cached Fashion-MNIST / MNIST images, fetched first when possible; ``"none"``:
    procedural only; or a data-set name / folder, see :func:`~perceiver_io.data.flow.load_image_pool`).
    ``texture_families`` (``None``: all available) and ``texture_detail``: as in
    :class:`~perceiver_io.data.flow.FlowSceneConfig`; the defaults (fine multi-scale noise only) are
    the textures the CPU preset learns flow from (docs/results.md §5). ``textures`` still supplies the
    silhouette shapes; ``data.texture_families=[noise,stripes,checker,image]`` restores every family.
    ``num_queries``: pixels decoded per training example (0: all). ``augment_start``: augmentation
    severity at step 0; ``final_fraction``: fraction of the steps in the final phase (no
    augmentation, pairs forward and reversed). ``max_flip``, ``max_gain``, ``max_offset``,
    ``max_noise``: the augmentation at severity 1 (flip probability per axis, per-frame colour gain
    ``1 ± max_gain``, offset ``± max_offset``, noise σ up to ``max_noise``). ``eval_pairs``: held-out
    pairs per split. ``speed_bins``: edges (px) of the true-speed bins whose EPE the report lists
    (``epe_s0-1``, ``epe_s1-3``, ``epe_s3+``; Sintel's are 10 and 40). ``pairs_dir``: evaluate
    (test split) on a folder of the user's pairs instead (see :func:`read_pairs_dir`).
    """

    num_layers: tuple[int, int] = (2, 5)
    max_motion: float | None = None
    textures: str = "auto"
    texture_families: tuple[str, ...] | None = ("noise",)
    texture_detail: tuple[float, float] = (1.0, 1.5)
    seed: int = 0
    num_queries: int = 1024
    augment_start: float = 0.2
    final_fraction: float = 0.2
    max_flip: float = 0.5
    max_gain: float = 0.2
    max_offset: float = 0.1
    max_noise: float = 0.03
    train_pairs: int = 1_000_000
    eval_pairs: int = 256
    eval_batch_size: int = 16
    speed_bins: tuple[float, ...] = (1.0, 3.0)
    baselines: tuple[str, ...] = ("zero", "farneback", "dis-ultrafast", "dis-fast", "dis-medium")
    pairs_dir: str | None = None
    copy_steps: int = 0
    copy_weight: float = 1.0

    def validate(self) -> None:
        self._positive("train_pairs", "eval_pairs", "eval_batch_size")
        try:
            FlowMetrics(self.speed_bins)
        except ValueError as e:
            raise ConfigError(f"FlowDataConfig.{e}") from None
        if self.copy_steps < 0 or self.copy_weight < 0:
            raise ConfigError(
                f"FlowDataConfig.copy_steps and copy_weight must be >= 0, got {self.copy_steps}, {self.copy_weight}"
            )
        if self.num_queries < 0:
            raise ConfigError(f"FlowDataConfig.num_queries must be >= 0 (0: every pixel), got {self.num_queries}")
        for name in ("augment_start", "final_fraction", "max_flip"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"FlowDataConfig.{name} must be in [0, 1], got {v!r}")
        for name in ("max_gain", "max_offset", "max_noise"):
            if getattr(self, name) < 0:
                raise ConfigError(f"FlowDataConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        lo, hi = self.num_layers
        if not 0 <= lo <= hi:
            raise ConfigError(f"FlowDataConfig.num_layers must be a range 0 <= lo <= hi, got {self.num_layers}")


def _flow_train() -> TrainConfig:
    return TrainConfig(
        max_steps=5000,
        batch_size=8,
        lr=1e-3,
        warmup_steps=200,
        weight_decay=0.01,
        grad_clip=1.0,
        eval_every=1000,
        checkpoint_every=250,
    )


@dataclass
class FlowTaskConfig(Config):
    model: OpticalFlowConfig = field(default_factory=optical_flow_perceiver_small)
    data: FlowDataConfig = field(default_factory=FlowDataConfig)
    train: TrainConfig = field(default_factory=_flow_train)


def final_phase_start(max_steps: int, final_fraction: float) -> float:
    """The step at which the final phase begins: ``(1 - final_fraction) · max_steps``."""
    return (1.0 - final_fraction) * max_steps


def augmentation_severity(step: int, max_steps: int, start: float, final_fraction: float) -> float:
    """Severity in ``[0, 1]`` at ``step``: linear from ``start`` to 1 over the first ``1 - final_fraction``
    of ``max_steps``; 0 in the final phase (steps ``>=`` :func:`final_phase_start`)."""
    ramp = final_phase_start(max_steps, final_fraction)
    if step >= ramp:
        return 0.0
    return start + (1.0 - start) * step / max(ramp, 1.0)


def _augment(pair: dict[str, Tensor], severity: float, d: FlowDataConfig, g: torch.Generator) -> dict[str, Tensor]:
    """Random flips (flow signs follow) and per-frame colour gain/offset + noise, all scaled by ``severity``."""
    f1, f2, flow = pair["frame1"], pair["frame2"], pair["flow"]
    u = torch.rand(8, generator=g)
    if u[0] < d.max_flip * severity:  # left-right
        f1, f2, flow = f1.flip(-1), f2.flip(-1), flow.flip(-1) * torch.tensor([-1.0, 1.0])[:, None, None]
    if u[1] < d.max_flip * severity:  # up-down
        f1, f2, flow = f1.flip(-2), f2.flip(-2), flow.flip(-2) * torch.tensor([1.0, -1.0])[:, None, None]
    frames = []
    for k, f in enumerate((f1, f2)):
        gain = 1 + (u[2 + 3 * k] * 2 - 1) * d.max_gain * severity
        offset = (u[3 + 3 * k] * 2 - 1) * d.max_offset * severity
        sigma = u[4 + 3 * k] * d.max_noise * severity
        noise = torch.randn(f.shape, generator=g) * sigma
        frames.append((f * gain + offset + noise).clamp(0, 1))
    return {"frame1": frames[0], "frame2": frames[1], "flow": flow}


def _reverse(pair: dict[str, Tensor]) -> dict[str, Tensor]:
    return {"frame1": pair["frame2"], "frame2": pair["frame1"], "flow": pair["flow_backward"]}


def _frames(pairs: list[dict[str, Tensor]]) -> Tensor:
    """-> ``(B, 2, 3, H, W)`` in ``[-1, 1]``."""
    return torch.stack([torch.stack([p["frame1"], p["frame2"]]) for p in pairs]) * 2 - 1


@register_task
class FlowTask(Task):
    """``perceiver-io train flow``: see the module docstring."""

    name = "flow"
    config_class = FlowTaskConfig
    config: FlowTaskConfig

    @classmethod
    def finalize_config(cls, cfg: Config) -> Config:
        assert isinstance(cfg, FlowTaskConfig)
        if cfg.train.activation_checkpointing:
            cfg = cfg.replace(model={"encoder": {"activation_checkpointing": True}})
        return cfg

    def prepare_data(self) -> None:
        if self.config.data.textures != "auto":
            return
        from perceiver_io.data import fetch

        for name in ("fashion-mnist", "mnist"):
            try:
                fetch(name)
            except Exception as e:  # procedural textures remain; the log says so
                self.log(f"flow: {name} images not available for textures ({str(e).splitlines()[0]})")

    def _pairs(self, split: str, length: int):
        from perceiver_io.data.flow import FlowPairs

        d, m = self.config.data, self.config.model
        source = None if d.textures == "none" else d.textures
        try:
            return FlowPairs(
                split,
                size=m.image_size,
                length=length,
                num_layers=d.num_layers,
                max_motion=d.max_motion,
                textures=source,
                silhouettes=source,
                seed=d.seed,
                texture_detail=tuple(d.texture_detail),
                **({} if d.texture_families is None else {"texture_families": tuple(d.texture_families)}),
            )
        except (FileNotFoundError, OSError) as e:
            raise DataUnavailable(f"flow textures {d.textures!r} not available: {e}") from None

    def setup(self) -> None:
        d, m = self.config.data, self.config.model
        self.train_data = self._pairs("train", d.train_pairs)
        self._eval: dict[str, object] = {}
        src = self.train_data.sources
        used = ", ".join(src["textures"]) or "procedural only"
        h, w = m.image_size
        self.log(
            f"flow pairs {h}×{w}, {d.num_layers[0]}-{d.num_layers[1]} layers, |flow| <= "
            f"{self.train_data.config.motion_bound:.1f} px, image textures/silhouettes: {used}"
        )

    def build_model(self) -> OpticalFlow:
        return OpticalFlow(self.config.model)

    # -- training ---------------------------------------------------------------------------------

    def severity(self) -> float:
        d = self.config.data
        return augmentation_severity(self.step, self.config.train.max_steps, d.augment_start, d.final_fraction)

    def in_final_phase(self) -> bool:
        """The last ``final_fraction`` of the steps: no augmentation, pairs forward and reversed."""
        d = self.config.data
        return d.final_fraction > 0 and self.step >= final_phase_start(self.config.train.max_steps, d.final_fraction)

    def collate(self, items: list[dict[str, Tensor]], seeds: list[int]) -> dict[str, Tensor]:
        """-> ``frames (B, 2, 3, H, W)`` in [-1, 1], ``query_indices (P,)`` flat pixels, ``targets (B, P, 2)`` px."""
        d = self.config.data
        if self.in_final_phase():  # each pair forward and reversed
            half = items[: math.ceil(len(items) / 2)]
            pairs = [q for p in half for q in (p, _reverse(p))][: len(items)]
        else:
            s = self.severity()
            pairs = [_augment(p, s, d, example_generator(seed)) for p, seed in zip(items, seeds, strict=True)]
        frames = _frames(pairs)
        flows = torch.stack([p["flow"] for p in pairs]).flatten(2).transpose(1, 2)  # (B, H·W, 2)
        n = flows.shape[1]
        if d.num_queries == 0 or d.num_queries >= n:
            idx = torch.arange(n)
        else:  # one random subset per batch (the decoder takes flat indices (P,) shared by the batch)
            idx = torch.randperm(n, generator=example_generator(seeds[0] + 1))[: d.num_queries]
        targets = flows[:, idx]
        batch = {"frames": frames, "query_indices": idx, "targets": targets}
        if self.step < d.copy_steps:  # routing warm-up: the decoder also reproduces its own query
            batch["copy_weight"] = torch.tensor(d.copy_weight)
        return batch

    def count(self, batch: dict[str, Tensor]) -> int:
        return int(batch["targets"].shape[0] * batch["targets"].shape[1])

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """Summed end-point error (px) over the decoded pixels; in the routing warm-up
        (``data.copy_steps``) plus ``copy_weight`` × the summed squared error between each decoded
        row (before the flow projection) and its own (detached) query."""
        if "copy_weight" not in batch:
            pred = model(batch["frames"], query_indices=batch["query_indices"], chunk_size=None).flow
            return (pred.float() * FLOW_SCALE_FACTOR - batch["targets"]).norm(dim=-1).sum()
        net = getattr(model, "_orig_mod", model)
        net = getattr(net, "module", net)  # DDP
        seen: list[tuple[Tensor, Tensor]] = []
        hook = net.decoder.cross_attention.register_forward_hook(lambda m, args, out: seen.append((args[0], out)))
        try:
            pred = model(batch["frames"], query_indices=batch["query_indices"], chunk_size=None).flow
        finally:
            hook.remove()
        queries, rows = seen[0]
        loss = (pred.float() * FLOW_SCALE_FACTOR - batch["targets"]).norm(dim=-1).sum()
        copy = (rows.float() - queries.detach().float()).square().mean(-1).sum()
        return loss + batch["copy_weight"] * copy

    # -- evaluation -------------------------------------------------------------------------------

    def eval_pairs(self, split: str):
        if split not in self._eval:
            d = self.config.data
            if split == "test" and d.pairs_dir is not None:
                self._eval[split] = read_pairs_dir(d.pairs_dir)
            else:
                self._eval[split] = self._pairs(split, d.eval_pairs)
        return self._eval[split]

    @torch.no_grad()
    def predict_pairs(self, model: nn.Module, pairs: list[dict[str, Tensor]]) -> list[Tensor]:
        """Flow ``(H, W, 2)`` px for each pair: one batched call at the training size, else tiled."""
        from perceiver_io.inference.flow import estimate_flow

        size = tuple(self.config.model.image_size)
        device = next(model.parameters()).device
        if all(tuple(p["frame1"].shape[1:]) == size for p in pairs):
            out = model(_frames(pairs).to(device)).flow.float().cpu() * FLOW_SCALE_FACTOR
            return list(out)
        return [estimate_flow(model, p["frame1"], p["frame2"]) for p in pairs]

    def _metrics(self) -> FlowMetrics:
        return FlowMetrics(self.config.data.speed_bins)

    def _score(self, predict, split: str, max_batches: int | None = None) -> dict[str, float]:
        pairs = self.eval_pairs(split)
        bs = self.config.data.eval_batch_size
        metrics = self._metrics()
        n = len(pairs) if max_batches is None else min(len(pairs), max_batches * bs)
        for lo in range(0, n, bs):
            batch = [pairs[i] for i in range(lo, min(n, lo + bs))]
            for p, flow in zip(batch, predict(batch), strict=True):
                metrics.update(flow.permute(2, 0, 1), p["flow"], valid=p.get("valid"), occluded=p.get("occluded"))
        out = metrics.compute("pooled")
        per_image = metrics.compute("per_image")
        out.update({f"{k}_per_image": v for k, v in per_image.items() if k.startswith(("epe", "fl"))})
        return out

    def evaluate(self, model: nn.Module, split: str = "valid", max_batches: int | None = None) -> dict[str, float]:
        out = self._score(lambda batch: self.predict_pairs(model, batch), split, max_batches)
        keys = ("epe", "epe_noc", "epe_occ", "px1", "px3", "px5", "fl_all", "epe_per_image")
        speeds = self._metrics().speed_keys
        return {"loss": out["epe"], **{k: out[k] for k in (*keys, *speeds) if k in out}}

    def evaluate_baselines(self, split: str = "test") -> dict[str, dict[str, float]]:
        """The same metrics for ``data.baselines`` (zero flow, Farnebäck, DIS presets) on the same pairs."""
        from perceiver_io.classical_flow import CLASSICAL_METHODS

        results = {}
        for name in self.config.data.baselines:
            if name not in CLASSICAL_METHODS:
                raise ConfigError(f"unknown flow baseline {name!r}; available: {', '.join(CLASSICAL_METHODS)}")
            method = CLASSICAL_METHODS[name]
            results[name] = self._score(lambda batch, m=method: [m(p["frame1"], p["frame2"]) for p in batch], split)
        return results

    def report(self, model: nn.Module, metrics: dict[str, float]) -> list[str]:
        test = self._score(lambda batch: self.predict_pairs(model, batch), "test")
        self.test_metrics = test
        try:
            rows = {"perceiver": test, **self.evaluate_baselines("test")}
        except ImportError as e:
            rows = {"perceiver": test}
            note = f"(baselines skipped: {e})"
        else:
            note = ""
        pairs = self.eval_pairs("test")
        where = self.config.data.pairs_dir or f"{len(pairs)} held-out procedural pairs"
        lines = [
            f"flow, test split ({where}); pixels pooled over the set (EPE/image: per-image mean, then mean "
            "over images); EPE in px, px1/3/5 and Fl-all in %; sA-B: EPE where the true speed is in [A, B) px"
        ]
        nan = float("nan")
        speeds = self._metrics().speed_keys
        lines.append(
            f"{'method':<14}{'EPE all':>9}{'EPE noc':>9}{'EPE occ':>9}{'px1':>7}{'px3':>7}{'px5':>7}{'Fl-all':>8}"
            f"{'EPE/image':>11}" + "".join(f"{k[4:]:>9}" for k in speeds)
        )
        for name, r in rows.items():
            lines.append(
                f"{name:<14}{r['epe']:>9.3f}{r.get('epe_noc', nan):>9.3f}{r.get('epe_occ', nan):>9.3f}"
                f"{100 * r['px1']:>7.1f}{100 * r['px3']:>7.1f}{100 * r['px5']:>7.1f}{100 * r['fl_all']:>8.1f}"
                f"{r['epe_per_image']:>11.3f}" + "".join(f"{r[k]:>9.3f}" for k in speeds)
            )
        if note:
            lines.append(note)
        lines.append(json.dumps({"task": "flow", "pairs": len(pairs), "convention": "pooled", "results": rows}))
        return lines


def read_pairs_dir(directory: str | Path) -> list[dict[str, Tensor]]:
    """A user's pairs: every sub-folder (or the folder itself) holding two frames and a flow file.

    Frames: ``im0.png`` / ``im1.png`` (AutoFlow's layout) or ``frame1.*`` / ``frame2.*`` (any image
    format Pillow reads); flow: ``forward.flo`` / ``flow.flo`` (Middlebury) or ``flow.png`` (KITTI).
    -> dicts of ``frame1``, ``frame2 (3, H, W)`` float in [0, 1], ``flow (2, H, W)`` px, ``valid (H, W)``.
    """
    from perceiver_io.flow_io import read_flow
    from perceiver_io.inference.images import load_image

    root = Path(directory)
    if not root.is_dir():
        raise DataUnavailable(f"data.pairs_dir {str(root)!r} is not a folder")
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    pairs: list[dict[str, Tensor]] = []
    for folder in folders:
        frames = _find(folder, ("im0", "frame1")), _find(folder, ("im1", "frame2"))
        flow_file = next((folder / n for n in ("forward.flo", "flow.flo", "flow.png") if (folder / n).is_file()), None)
        if frames[0] is None or frames[1] is None or flow_file is None:
            continue
        f1, f2 = (load_image(f, n) / 255 for f, n in zip(frames, ("frame1", "frame2"), strict=True))
        flow, valid = read_flow(flow_file)
        flow_t = torch.from_numpy(flow).permute(2, 0, 1).float()
        if flow_t.shape[1:] != f1.shape[1:] or f2.shape != f1.shape:
            raise ValueError(
                f"{folder}: frames {tuple(f1.shape)} / {tuple(f2.shape)} and flow {tuple(flow_t.shape)} "
                "must share (H, W)"
            )
        pairs.append({"frame1": f1, "frame2": f2, "flow": flow_t, "valid": torch.from_numpy(valid).bool()})
    if not pairs:
        raise DataUnavailable(
            f"data.pairs_dir {str(root)!r} holds no pair (im0.png + im1.png + forward.flo, or frame1/frame2 + flow.flo)"
        )
    return pairs


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp")


def _find(folder: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        hits = sorted(p for p in folder.glob(stem + ".*") if p.suffix.lower() in _IMAGE_SUFFIXES)
        if hits:
            return hits[0]
    return None
