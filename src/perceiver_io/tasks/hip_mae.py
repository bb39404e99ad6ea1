"""Masked auto-encoding of upscaled digit or garment images with HiP, and a linear probe of its latents.

Images ``uint8 (N, 28, 28)`` are upscaled (bilinear) to ``data.image_size``², normalised and read as
``S²`` pixel inputs of one channel, each with its own *learned* position embedding (no Fourier
features: the model must learn where each pixel is). Square patches of ``data.mask_patch``² pixels
are hidden with probability ``data.mask_ratio`` (exactly that fraction of the patches per image); the
model never sees a hidden pixel (value or position) and reconstructs every pixel from its position
query. The loss is the mean squared error on hidden pixels.

**Default masking: 75 % of 8×8 patches.** The HiP paper's exact recipe is not public. 75 % is MAE's
ratio for images (He et al. 2022), and patches rather than single pixels, because a hidden pixel
whose neighbours are visible can be filled in by interpolation without any global model of the
image. Both are config values.

Metrics: MSE and PSNR on hidden pixels (PSNR on the ``[0, 1]`` scale), beside filling each hidden
pixel with the mean of the image's visible pixels. :func:`linear_probe` fits a linear classifier to
the mean processor latent of frozen images (the report prints its test accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perceiver_io.config import Config, ConfigError
from perceiver_io.metrics import psnr_from_mse
from perceiver_io.models.hip import HiP, HiPConfig, hip_cpu
from perceiver_io.tasks.base import DataUnavailable, Task, example_generator, register_task
from perceiver_io.training.trainer import TrainConfig

__all__ = [
    "HiPMAEDataConfig",
    "HiPMAEConfig",
    "HiPMAETask",
    "patch_mask",
    "upscale",
    "linear_probe",
    "psnr",
    "reconstruction_panels",
    "position_similarity",
    "MEAN",
    "STD",
]

MEAN, STD = 0.1307, 0.3081  # MNIST statistics (applied to the upscaled images)


@dataclass
class HiPMAEDataConfig(Config):
    """``dataset``: "mnist", "fashion-mnist" or a folder of IDX files; ``image_size`` S (pixels per side
    after upscaling); ``mask_ratio`` of the ``mask_patch``² patches hidden; ``probe_train``/``probe_test``:
    images for the linear probe."""

    dataset: str = "mnist"
    image_size: int = 64
    mask_ratio: float = 0.75
    mask_patch: int = 8
    eval_batch_size: int = 64
    eval_images: int = 1000
    probe_train: int = 2000
    probe_test: int = 1000
    max_train_examples: int | None = None
    cache_dir: str | None = None

    def validate(self) -> None:
        self._positive("image_size", "mask_patch", "eval_batch_size", "eval_images", "probe_train", "probe_test")
        self._positive("max_train_examples", allow_none=True)
        if not isinstance(self.mask_ratio, (int, float)) or not 0 < self.mask_ratio < 1:
            raise ConfigError(f"HiPMAEDataConfig.mask_ratio must be in (0, 1), got {self.mask_ratio!r}")
        if self.image_size % self.mask_patch:
            raise ConfigError(
                f"HiPMAEDataConfig.mask_patch ({self.mask_patch}) must divide image_size ({self.image_size})"
            )


def _mae_train() -> TrainConfig:
    return TrainConfig(
        max_steps=400,
        batch_size=32,
        lr=1e-3,
        warmup_steps=40,
        weight_decay=0.05,
        eval_every=200,
        checkpoint_every=100,
    )


@dataclass
class HiPMAEConfig(Config):
    model: HiPConfig = field(default_factory=hip_cpu)
    data: HiPMAEDataConfig = field(default_factory=HiPMAEDataConfig)
    train: TrainConfig = field(default_factory=_mae_train)


def patch_mask(size: int, patch: int, ratio: float, generator: torch.Generator) -> Tensor:
    """``(size², )`` bool, ``True`` = visible: ``round(ratio·P)`` of the ``P = (size/patch)²`` square
    patches hidden, chosen at random (row-major pixel order)."""
    n = size // patch
    hidden = torch.randperm(n * n, generator=generator)[: round(ratio * n * n)]
    grid = torch.ones(n * n, dtype=torch.bool)
    grid[hidden] = False
    grid = grid.view(n, n).repeat_interleave(patch, 0).repeat_interleave(patch, 1)
    return grid.reshape(-1)


def upscale(images: Tensor, size: int) -> Tensor:
    """``uint8 (B, h, w)`` -> normalised pixels ``(B, size², 1)`` (bilinear)."""
    x = images.float().div(255.0).unsqueeze(1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.sub(MEAN).div(STD).flatten(2).transpose(1, 2).contiguous()


@register_task
class HiPMAETask(Task):
    """``perceiver-io train hip-mae`` (HiP by default; ``--config configs/hip-mae-flat.yaml`` for the
    flat Perceiver IO it is compared with)."""

    name = "hip-mae"
    config_class = HiPMAEConfig
    config: HiPMAEConfig

    def __init__(self, config: Config, log=print) -> None:
        super().__init__(config, log)
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}  # loaded on first use

    @classmethod
    def finalize_config(cls, cfg: Config) -> Config:
        assert isinstance(cfg, HiPMAEConfig)
        s = cfg.data.image_size
        return cfg.replace(model={"modalities": ("image",), "input_index_dims": (s * s,), "input_channels": (1,)})

    def prepare_data(self) -> None:
        from perceiver_io.data import DATASETS, fetch

        d = self.config.data
        if d.dataset in DATASETS:
            try:
                fetch(d.dataset, cache_dir=d.cache_dir)
            except Exception as e:
                raise DataUnavailable(
                    f"data set {d.dataset!r} is not available ({str(e).splitlines()[0]}); "
                    f"try `perceiver-io data fetch {d.dataset}`"
                ) from None

    def _load(self, split: str) -> tuple[Tensor, Tensor]:
        from perceiver_io import data

        try:
            images, labels = data.load_image_classification(
                self.config.data.dataset, split, cache_dir=self.config.data.cache_dir
            )
        except (FileNotFoundError, OSError, ValueError) as e:
            raise DataUnavailable(f"cannot load {self.config.data.dataset!r} ({split}): {e}") from None
        return torch.as_tensor(images), torch.as_tensor(labels).long()

    def setup(self) -> None:
        images, labels = self._load("train")
        if self.config.data.max_train_examples:
            images, labels = (
                images[: self.config.data.max_train_examples],
                labels[: self.config.data.max_train_examples],
            )
        self.splits["train"] = (images, labels)
        self.train_data = list(zip(images, labels, strict=True))
        d = self.config.data
        self.log(
            f"{d.dataset}: {len(images):,} training images upscaled to {d.image_size}² = {d.image_size**2:,} "
            f"pixel inputs; {d.mask_ratio:.0%} of {d.mask_patch}×{d.mask_patch} patches hidden"
        )

    def split_data(self, split: str) -> tuple[Tensor, Tensor]:
        if split not in self.splits:
            self.splits[split] = self._load(split)
        return self.splits[split]

    def build_model(self) -> HiP:
        return HiP(self.config.model)

    def collate(self, items: list[tuple[Tensor, Tensor]], seeds: list[int]) -> dict[str, Tensor]:
        """-> ``pixels (B, S², 1)``, ``visible (B, S²)`` bool, ``labels (B,)``."""
        d = self.config.data
        pixels = upscale(torch.stack([x for x, _ in items]), d.image_size)
        visible = torch.stack(
            [patch_mask(d.image_size, d.mask_patch, d.mask_ratio, example_generator(s)) for s in seeds]
        )
        return {"pixels": pixels, "visible": visible, "labels": torch.stack([y for _, y in items])}

    def count(self, batch: dict[str, Tensor]) -> int:
        return int((~batch["visible"]).sum())

    def squared_errors(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """``(B, S²)`` squared error of every pixel's reconstruction (normalised units)."""
        out = model({"image": batch["pixels"]}, {"image": batch["visible"]})
        return (out.reconstruction["image"].float() - batch["pixels"]).squeeze(-1).square()

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return (self.squared_errors(model, batch) * ~batch["visible"]).sum()

    def eval_batches(self, split: str, limit: int | None = None):
        """Fixed batches of ``split`` (masks seeded by image index), for evaluation and pictures."""
        images, labels = self.split_data(split)
        n = min(len(images), limit or self.config.data.eval_images)
        bs = self.config.data.eval_batch_size
        for lo in range(0, n, bs):
            hi = min(n, lo + bs)
            items = list(zip(images[lo:hi], labels[lo:hi], strict=True))
            yield self.collate(items, [10**9 + i for i in range(lo, hi)])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "valid", max_batches: int | None = None) -> dict[str, float]:
        device = next(model.parameters()).device
        se = base = 0.0
        hidden = 0
        for b, batch in enumerate(self.eval_batches(split)):
            if max_batches is not None and b >= max_batches:
                break
            batch = {k: v.to(device) for k, v in batch.items()}
            h = ~batch["visible"]
            se += float((self.squared_errors(model, batch) * h).sum())
            x = batch["pixels"].squeeze(-1)
            mean_visible = (x * batch["visible"]).sum(1, keepdim=True) / batch["visible"].sum(1, keepdim=True)
            base += float(((x - mean_visible).square() * h).sum())
            hidden += int(h.sum())
        mse, mse_base = se / hidden, base / hidden
        return {
            "loss": mse,
            "psnr": psnr(mse),
            "baseline_mean_visible_mse": mse_base,
            "baseline_mean_visible_psnr": psnr(mse_base),
            "hidden_pixels": float(hidden),
        }

    def report(self, model: nn.Module, metrics: dict[str, float]) -> list[str]:
        test = self.evaluate(model, "test")
        d = self.config.data
        probe = linear_probe(self, model, d.probe_train, d.probe_test)
        self.test_metrics = {**test, **probe}
        return [
            f"{d.dataset} test, hidden pixels: MSE {test['loss']:.4f}, PSNR {test['psnr']:.2f} dB "
            f"(mean of visible pixels: {test['baseline_mean_visible_psnr']:.2f} dB)",
            f"linear probe on the processor latents ({d.probe_train:,} train / {d.probe_test:,} test images): "
            f"top-1 accuracy {probe['probe_accuracy']:.2%}",
        ]


def psnr(mse_normalised: float) -> float:
    """PSNR in dB on the ``[0, 1]`` pixel scale from an MSE in normalised units."""
    return psnr_from_mse(mse_normalised * STD**2)


@torch.no_grad()
def probe_features(task: HiPMAETask, model: HiP, split: str, n: int) -> tuple[Tensor, Tensor]:
    """Mean processor latent ``(n, D)`` of the first ``n`` full (unmasked) images of ``split``, and labels."""
    images, labels = task.split_data(split)
    n = min(n, len(images))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    feats = []
    s = task.config.data.image_size
    for lo in range(0, n, task.config.data.eval_batch_size):
        x = upscale(images[lo : min(n, lo + task.config.data.eval_batch_size)], s).to(device)
        feats.append(model({"image": x}, decode=False).latents.float().mean(1).cpu())
    model.train(was_training)
    return torch.cat(feats), labels[:n]


def linear_probe(task: HiPMAETask, model: HiP, num_train: int, num_test: int, epochs: int = 300) -> dict[str, float]:
    """Fit a logistic-regression probe (full batch, L-BFGS, standardised features, weight decay 1e-4)
    on frozen features of ``num_train`` training images; its accuracy on ``num_test`` test images."""
    xtr, ytr = probe_features(task, model, "train", num_train)
    xte, yte = probe_features(task, model, "test", num_test)
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    num_classes = int(max(ytr.max(), yte.max())) + 1
    head = nn.Linear(xtr.shape[1], num_classes)
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=epochs, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(xtr), ytr) + 1e-4 * head.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        train_acc = float((head(xtr).argmax(1) == ytr).float().mean())
        acc = float((head(xte).argmax(1) == yte).float().mean())
    return {"probe_accuracy": acc, "probe_train_accuracy": train_acc, "probe_test_images": float(len(yte))}


# -- pictures ---------------------------------------------------------------------------------------


@torch.no_grad()
def reconstruction_panels(task: HiPMAETask, model: HiP, num_images: int = 8, split: str = "test") -> list[Tensor]:
    """Per image, four ``(1, S, S)`` panels in ``[0, 1]``: original, what the model saw (hidden patches
    grey), its reconstruction, and the reconstruction with the visible pixels pasted in."""
    s = task.config.data.image_size
    batch = next(task.eval_batches(split, limit=num_images))
    device = next(model.parameters()).device
    model.eval()
    out = model({"image": batch["pixels"].to(device)}, {"image": batch["visible"].to(device)})
    rec = out.reconstruction["image"].float().cpu()

    def unit(x: Tensor) -> Tensor:
        return (x.squeeze(-1) * STD + MEAN).clamp(0, 1).view(-1, 1, s, s)

    orig, vis = unit(batch["pixels"]), batch["visible"].view(-1, 1, s, s)
    seen = torch.where(vis, orig, torch.full_like(orig, 0.5))
    recon = unit(rec)
    pasted = torch.where(vis, orig, recon)
    return [p for i in range(len(orig)) for p in (orig[i], seen[i], recon[i], pasted[i])]


@torch.no_grad()
def position_similarity(model: HiP, size: int, references: int = 4) -> tuple[Tensor, list[tuple[int, int]]]:
    """Cosine similarity of the learned position embedding of ``references``² reference pixels (an even
    grid) with every pixel's: ``(references², size, size)`` in ``[-1, 1]``, and the reference (row, col)."""
    pos = model.position_embeddings(("image",), 1)["image"][0].float()  # (S², E)
    if pos.shape[0] != size * size:
        raise ValueError(f"the model's image positions ({pos.shape[0]}) are not {size}² = {size * size}")
    pos = F.normalize(pos, dim=-1)
    step = size / references
    refs = [(int((i + 0.5) * step), int((j + 0.5) * step)) for i in range(references) for j in range(references)]
    maps = torch.stack([pos @ pos[r * size + c] for r, c in refs]).view(-1, size, size)
    return maps, refs
