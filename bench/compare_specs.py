"""The configurations that ``bench/compare.py`` runs side by side (one ``Spec`` per configuration).

A ``Spec`` builds each implementation (this library, ``transformers``, ``perceiver-pytorch``) with
matched weights and inputs, says how to run it, and gives its analytic FLOPs. Add a configuration
here and name it in ``SPECS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import decoder_flops, encoder_flops, linear_flops  # noqa: E402

IMPLS = ("ours", "hf", "lucid")
LETTERS = {"a": "language", "b": "imagenet", "c": "flow", "d": "multimodal", "e": "generic"}


# -- configurations ------------------------------------------------------------------------------


class Spec:
    """One benchmark configuration: how to build each implementation and run it on matched inputs."""

    name = ""
    hf_class = ""
    train_impls: tuple[str, ...] = IMPLS  # implementations whose training step is timed
    impls: tuple[str, ...] = IMPLS

    def __init__(self, quick: bool, args: argparse.Namespace) -> None:
        self.quick = quick
        self.args = args

    def hf_config(self, check: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def build_hf(self, check: bool = False) -> nn.Module:
        import transformers

        cfg = transformers.PerceiverConfig(attention_probs_dropout_prob=0.0, **self.hf_config(check))
        return getattr(transformers, self.hf_class)(cfg).eval()

    def build_ours(self, check: bool = False, hf: nn.Module | None = None) -> nn.Module:
        """Ours, from the transformers model's config and weights (random ones if ``hf`` is None)."""
        from perceiver_io.checkpoints.transformers import CONVERTERS

        module, fn = CONVERTERS[self.hf_class].split(":")
        convert = getattr(__import__(module, fromlist=[fn]), fn)
        hf = hf if hf is not None else self.build_hf(check)
        return convert(hf.config.to_dict(), hf.state_dict()).eval()

    def build_lucid(self, ours: nn.Module) -> nn.Module:
        raise NotImplementedError

    def inputs(self, batch: int, check: bool = False) -> Any:
        raise NotImplementedError

    def runner(self, impl: str, model: nn.Module, x: Any, train: bool, ours: nn.Module | None) -> Callable[[], Tensor]:
        """A no-argument function running ``model`` on ``x`` and returning one output tensor."""
        raise NotImplementedError

    def analytic_flops(self, ours: nn.Module, batch: int) -> int:
        raise NotImplementedError

    def extra(self) -> str:
        return ""


def _ours_core_flops(ours: nn.Module, num_inputs: int, num_queries: int, batch: int) -> int:
    enc = ours.encoder
    return encoder_flops(enc.config, num_inputs, enc.num_input_channels, batch) + decoder_flops(
        ours.decoder.config, num_queries, enc.config.num_latents, ours.decoder.num_latent_channels, batch
    )


def _lucid_io(**kw: Any) -> nn.Module:
    from perceiver_pytorch import PerceiverIO

    return PerceiverIO(**kw)


class Language(Spec):
    name = "language"
    hf_class = "PerceiverForMaskedLM"

    def hf_config(self, check: bool = False) -> dict[str, Any]:
        if self.quick:
            return dict(
                d_model=32,
                max_position_embeddings=64,
                num_latents=16,
                d_latents=64,
                qk_channels=32,
                v_channels=64,
                num_self_attends_per_block=2,
            )
        return dict(qk_channels=256, v_channels=1280)  # defaults: 256 × 1280 latents, 26 layers, d_model 768

    def build_lucid(self, ours: nn.Module) -> nn.Module:
        from perceiver_pytorch.perceiver_io import PerceiverLM

        c = ours.config
        e = c.encoder
        return PerceiverLM(
            dim=c.text.num_channels,
            num_tokens=c.text.vocab_size,
            max_seq_len=c.text.max_seq_len,
            depth=e.num_self_attends_per_block,
            num_latents=e.num_latents,
            latent_dim=e.num_latent_channels,
            cross_heads=e.num_cross_attention_heads,
            cross_dim_head=e.cross_attention_qk_channels // e.num_cross_attention_heads,
            latent_heads=e.num_self_attention_heads,
            latent_dim_head=e.num_latent_channels // e.num_self_attention_heads,
        )

    def inputs(self, batch: int, check: bool = False) -> Tensor:
        length = self.hf_config()["max_position_embeddings"] if self.quick else 2048
        return torch.randint(6, 262, (batch, length), generator=torch.Generator().manual_seed(0))

    def runner(self, impl, model, x, train, ours):
        if impl == "hf":
            return lambda: model(inputs=x).logits
        if impl == "ours":
            return lambda: model(x).logits
        args, kw = self.lucid_args(x, ours)
        return lambda: model(*args, **kw)

    def lucid_args(self, x, ours):
        return (x,), {}

    def analytic_flops(self, ours, batch):
        n = ours.config.text.max_seq_len
        return _ours_core_flops(ours, n, n, batch) + batch * linear_flops(
            n, ours.decoder.num_output_channels, ours.config.text.vocab_size
        )


class ImageNet(Spec):
    name = "imagenet"
    hf_class = "PerceiverForImageClassificationFourier"

    def size(self) -> int:
        return 16 if self.quick else 224

    def hf_config(self, check: bool = False) -> dict[str, Any]:
        if self.quick:
            return dict(
                num_latents=16,
                d_latents=64,
                d_model=261,
                num_blocks=2,
                num_self_attends_per_block=2,
                num_cross_attention_heads=1,
                num_self_attention_heads=8,
                num_labels=10,
                image_size=16,
            )
        return dict(
            num_latents=512,
            d_latents=1024,
            d_model=261,
            num_blocks=8,
            num_self_attends_per_block=6,
            num_cross_attention_heads=1,
            num_self_attention_heads=8,
            num_labels=1000,
            image_size=224,
        )

    def build_lucid(self, ours):
        e = ours.config.encoder
        c_in = ours.encoder.num_input_channels
        return _lucid_io(
            dim=c_in,
            queries_dim=e.num_latent_channels,
            logits_dim=ours.decoder.num_output_channels,
            depth=e.num_blocks * e.num_self_attends_per_block,
            num_latents=e.num_latents,
            latent_dim=e.num_latent_channels,
            cross_heads=1,
            cross_dim_head=c_in,
            latent_heads=e.num_self_attention_heads,
            latent_dim_head=e.num_latent_channels // e.num_self_attention_heads,
        )

    def inputs(self, batch, check=False):
        return torch.randn(batch, 3, self.size(), self.size(), generator=torch.Generator().manual_seed(0))

    def runner(self, impl, model, x, train, ours):
        if impl == "hf":
            return lambda: model(inputs=x).logits
        if impl == "ours":
            return lambda: model(x).logits
        args, kw = self.lucid_args(x, ours)
        return lambda: model(*args, **kw)

    def lucid_args(self, x, ours):
        feats = ours.input_adapter(x).inputs.detach()
        return (feats,), {"queries": torch.randn(1, ours.config.encoder.num_latent_channels, device=x.device)}

    def analytic_flops(self, ours, batch):
        return _ours_core_flops(ours, self.size() ** 2, 1, batch)


class Flow(Spec):
    name = "flow"
    hf_class = "PerceiverForOpticalFlow"
    train_impls = ("ours",)

    def size(self, check: bool = False) -> tuple[int, int]:
        return (12, 16) if self.quick else ((24, 32) if check else (368, 496))

    def hf_config(self, check: bool = False) -> dict[str, Any]:
        if self.quick:
            return dict(
                num_latents=16,
                d_latents=64,
                d_model=322,
                num_blocks=1,
                num_self_attends_per_block=2,
                num_self_attention_heads=4,
                num_cross_attention_heads=1,
                train_size=list(self.size()),
            )
        return dict(
            num_latents=2048,
            d_latents=512,
            d_model=322,
            num_blocks=1,
            num_self_attends_per_block=24,
            num_self_attention_heads=16,
            num_cross_attention_heads=1,
            train_size=list(self.size(check)),
        )

    def build_lucid(self, ours):
        e = ours.config.encoder
        c_in = ours.encoder.num_input_channels
        return _lucid_io(
            dim=c_in,
            queries_dim=c_in,
            logits_dim=2,
            depth=e.num_self_attends_per_block,
            num_latents=e.num_latents,
            latent_dim=e.num_latent_channels,
            cross_heads=1,
            cross_dim_head=c_in,
            latent_heads=e.num_self_attention_heads,
            latent_dim_head=e.num_latent_channels // e.num_self_attention_heads,
        )

    def inputs(self, batch, check=False):
        h, w = self.size(check)
        return torch.randn(batch, 2, 27, h, w, generator=torch.Generator().manual_seed(0))

    def runner(self, impl, model, x, train, ours):
        if impl == "hf":
            return lambda: model(inputs=x).logits
        if impl == "ours":
            return lambda: model(x, chunk_size=self.args.flow_chunk_size or None).flow  # "auto": model(x)
        args, kw = self.lucid_args(x, ours)
        return lambda: model(*args, **kw)

    def lucid_args(self, x, ours):
        feats = ours.input_adapter(x).inputs.detach()
        return (feats,), {"queries": feats}

    def extra(self) -> str:
        chunk = self.args.flow_chunk_size
        return f"ours: decode(chunk_size={chunk or 'none'}); transformers, perceiver-pytorch: all queries at once"

    def analytic_flops(self, ours, batch, check=False):
        h, w = self.size(check)
        c = ours.config
        m = h * w
        adapter = linear_flops(m, 2 * 27, c.num_patch_channels)
        return _ours_core_flops(ours, m, m, batch) + batch * adapter


class Multimodal(Spec):
    name = "multimodal"
    hf_class = "PerceiverForMultimodalAutoencoding"
    impls = ("ours", "hf")
    train_impls = ("ours",)

    def dims(self, check: bool = False) -> dict[str, int]:
        if self.quick or check:
            return dict(frames=2, image_size=4, spf=16, spp=16, video=8)
        return dict(frames=16, image_size=56, spf=1920, spp=16, video=224)

    def hf_config(self, check: bool = False) -> dict[str, Any]:
        d = self.dims(check)
        arch = (
            dict(num_latents=16, d_latents=64, num_self_attends_per_block=2, num_self_attention_heads=4)
            if self.quick
            else dict(num_latents=784, d_latents=512, num_self_attends_per_block=8, num_self_attention_heads=8)
        )
        return dict(
            d_model=704,
            num_blocks=1,
            num_cross_attention_heads=1,
            num_labels=700,
            image_size=d["image_size"],
            num_frames=d["frames"],
            audio_samples_per_frame=d["spf"],
            samples_per_patch=d["spp"],
            output_shape=[1, d["frames"], d["video"], d["video"]],
            **arch,
        )

    def inputs(self, batch, check=False):
        d = self.dims(check)
        g = torch.Generator().manual_seed(0)
        return {
            "image": torch.randn(batch, d["frames"], 3, d["video"], d["video"], generator=g),
            "audio": torch.randn(batch, d["frames"] * d["spf"], 1, generator=g),
            "label": torch.nn.functional.one_hot(torch.randint(0, 700, (batch,), generator=g), 700).float(),
        }

    def num_points(self, check: bool = False) -> tuple[int, int]:
        d = self.dims(check)
        return d["frames"] * d["video"] ** 2, d["frames"] * d["spf"] // d["spp"]

    def runner(self, impl, model, x, train, ours, check=False):
        n_img, n_aud = self.num_points(check)
        chunks = self.args.mm_chunks
        if train:  # one subsampled chunk of points, as in training
            sub = {"image": torch.arange(n_img // chunks), "audio": torch.arange(n_aud // chunks), "label": None}
            return lambda: torch.cat([v.flatten(1) for v in model(x, query_indices=sub).to_dict().values()], 1)
        if impl == "ours":
            chunk = self.args.mm_chunk_size

            def run_ours() -> Tensor:
                out = model.decode(model.encode(x), chunk_size=chunk)
                return out.video

            return run_ours
        measured = chunks if check else min(self.args.mm_measure_chunks, chunks)

        def run_hf() -> Tensor:
            outs = []
            for i in range(measured):
                sub = {
                    "image": torch.arange(n_img // chunks * i, n_img // chunks * (i + 1)),
                    "audio": torch.arange(n_aud // chunks * i, n_aud // chunks * (i + 1)),
                    "label": None,
                }
                outs.append(model(inputs=x, subsampled_output_points=sub).logits["image"])
            return torch.cat(outs, 1)

        return run_hf

    def time_scale(self, impl: str) -> float:
        """transformers' loop is timed on ``measured`` of ``chunks`` equal chunks."""
        if impl != "hf":
            return 1.0
        return self.args.mm_chunks / min(self.args.mm_measure_chunks, self.args.mm_chunks)

    def analytic_flops(self, ours, batch, check=False):
        n_img, n_aud = self.num_points(check)
        d = self.dims(check)
        m = d["frames"] * (d["video"] // 4) ** 2 + d["frames"] * d["spf"] // d["spp"] + 1
        o = n_img + n_aud + 1
        f = ours.decoder.num_output_channels
        adapters = linear_flops(n_img, f, 3) + linear_flops(n_aud, f, d["spp"]) + linear_flops(1, f, 700)
        return _ours_core_flops(ours, m, o, batch) + batch * adapters

    def extra(self) -> str:
        a = self.args
        return (
            f"ours: encode once + decode(chunk_size={a.mm_chunk_size}); transformers: documented loop over "
            f"{a.mm_chunks} subsampled_output_points chunks (encoder re-run per chunk), timed on "
            f"{min(a.mm_measure_chunks, a.mm_chunks)} chunks and scaled by {self.time_scale('hf'):.0f}; train: "
            f"ours fwd+bwd+step on one chunk (1/{a.mm_chunks}) of points"
        )


class Generic(Spec):
    """A generic encoder–decoder (no transformers model: its ``PerceiverModel`` needs a task decoder)."""

    name = "generic"
    impls = ("ours", "lucid")
    C, N, D, L, H = 64, 256, 256, 4, 8

    def sizes(self) -> list[int]:
        return [2**8, 2**10] if self.quick else self.args.generic_sizes

    def build_ours(self, check=False, hf=None):
        from perceiver_io import DecoderConfig, EncoderConfig, PerceiverIO, PerceiverIOConfig, QueryConfig

        n, d = (16, 32) if self.quick else (self.N, self.D)
        return PerceiverIO(
            PerceiverIOConfig(
                num_input_channels=self.C,
                encoder=EncoderConfig(
                    num_latents=n,
                    num_latent_channels=d,
                    num_blocks=1,
                    num_self_attends_per_block=self.L,
                    num_self_attention_heads=self.H,
                    num_cross_attention_heads=1,
                    self_attention_widening_factor=4,
                ),
                decoder=DecoderConfig(num_query_channels=self.C, num_output_channels=self.C),
                queries=QueryConfig(kind="given"),
            )
        ).eval()

    def build_lucid(self, ours):
        e = ours.config.encoder
        return _lucid_io(
            dim=self.C,
            queries_dim=self.C,
            logits_dim=self.C,
            depth=e.num_self_attends_per_block,
            num_latents=e.num_latents,
            latent_dim=e.num_latent_channels,
            cross_heads=1,
            cross_dim_head=self.C,
            latent_heads=self.H,
            latent_dim_head=e.num_latent_channels // self.H,
            decoder_ff=True,
        )

    def inputs(self, batch, check=False, m: int = 0):
        g = torch.Generator().manual_seed(0)
        return torch.randn(batch, m, self.C, generator=g), torch.randn(batch, m, self.C, generator=g)

    def runner(self, impl, model, x, train, ours):
        data, queries = x
        if impl == "ours":
            return lambda: model(data, queries=queries).outputs
        return lambda: model(data, queries=queries)

    def lucid_args(self, x, ours):
        return (x[0],), {"queries": x[1]}

    def analytic_flops(self, ours, batch, m: int = 0):
        return _ours_core_flops(ours, m, m, batch)


SPECS: dict[str, type[Spec]] = {s.name: s for s in (Language, ImageNet, Flow, Multimodal, Generic)}
