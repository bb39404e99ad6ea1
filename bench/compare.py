"""Side by side: this library vs ``transformers``' Perceiver vs lucidrains' ``perceiver-pytorch``.

Configurations (``--only`` picks a subset by letter or name):

* ``a`` / ``language``: ``deepmind/language-perceiver`` (2048 bytes, 256 × 1280 latents, 26 layers), ``--batch`` sizes;
* ``b`` / ``imagenet``: ``deepmind/vision-perceiver-fourier`` at 224 × 224 (50,176 pixels, 8 × 6 shared layers);
* ``c`` / ``flow``: ``deepmind/optical-flow-perceiver`` at 368 × 496 (182,528 pixels in and out), inference
  (ours decodes with ``chunk_size=--flow-chunk-size``, default ``auto``: the library's default call;
  transformers and perceiver-pytorch in one piece);
* ``d`` / ``multimodal``: ``deepmind/multimodal-perceiver`` reconstructing all 804,737 output points
  (802,816 video pixels, 1,920 audio patches, 1 label). Ours encodes once and decodes in chunks;
  ``transformers`` runs its documented loop over ``subsampled_output_points`` chunks, which re-runs the
  encoder for every chunk (``--mm-chunks``, 128 as in its docs); to save time only ``--mm-measure-chunks``
  of those chunks are timed and the loop's time is that × chunks / measured (every chunk does the same work);
* ``e`` / ``generic``: a generic encoder–decoder (C = 64 channels, 256 × 256 latents, 4 layers) with
  O = M given queries, as M grows.

``transformers`` models have the identical architecture: each is built with random weights, converted
to ours by this library's checkpoint converters, and the outputs are checked equal (max |diff| printed)
before anything is timed. ``perceiver-pytorch`` (``PerceiverIO``) gets its nearest configuration (same
latents, widths, heads, depth; its MLPs are GEGLU ×4 and untied), so its parameter count and FLOPs are
reported too; it has no adapters, so it is given our adapters' output (preprocessing excluded from its time).

Every measurement (implementation × mode × precision × compile) runs in a fresh subprocess: peak memory
is the growth of ``ru_maxrss`` from before the model is built (model + optimizer state + activations;
``max_memory_allocated`` on CUDA). Times are medians after one warm-up call (a first call slower than
``--long`` seconds counts as a sample instead). ``train`` = forward + backward + AdamW step. FLOPs are
analytic (``bench/flops.py``), checked against ``torch.utils.flop_counter``; MFU = model FLOPs / time /
the matmul peak measured in the same run (large square matmuls, fp32 and bf16).

    python bench/compare.py --quick --no-compile        # smoke test, tiny sizes (< 30 s)
    python bench/compare.py --only a,c --reps 3         # two configurations
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import count_flops, decoder_flops, encoder_flops, linear_flops  # noqa: E402

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


# -- worker side ---------------------------------------------------------------------------------


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def measure(job: dict, args: argparse.Namespace) -> dict:
    """One timing measurement (runs inside its own process)."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    spec = SPECS[job["config"]](args.quick, args)
    impl, train = job["impl"], job["mode"] == "train"
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    base = rss_mib()
    m = job.get("m")
    ours = spec.build_ours()
    if impl == "hf":
        model = spec.build_hf()
    elif impl == "lucid":
        model = spec.build_lucid(ours).eval()
    else:
        model = ours
    if impl != "ours" and not (impl == "lucid" and spec.name in ("imagenet", "flow")):
        ours = None  # the adapters are only needed to feed perceiver-pytorch
    model.to(device)
    if ours is not None:
        ours.to(device)
    x = spec.inputs(job["batch"], m=m) if m else spec.inputs(job["batch"])
    x = _to(x, device)
    if train:
        model.train()
        for mod in model.modules():  # dropout off: same work in every implementation
            if isinstance(mod, nn.Dropout):
                mod.p = 0.0
    with torch.no_grad():
        fn = spec.runner(impl, model, x, train, ours)
    if job["compile"]:
        fn = torch.compile(fn)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5) if train else None
    ctx = _autocast(job["precision"], device)

    def step() -> None:
        if train:
            with ctx:
                out = fn()
            out.float().square().mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(), ctx:
                fn()

    times: list[float] = []
    deadline = time.perf_counter() + args.max_time
    first = None
    for i in range(args.reps + 1):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        dt = time.perf_counter() - t0
        if i == 0:
            first = dt
            if not (dt > args.long or args.quick) or job["compile"]:
                continue  # warm-up (compilation included)
        times.append(dt)
        if time.perf_counter() > deadline:
            break
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        base = 0.0
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    scale = spec.time_scale(impl) if hasattr(spec, "time_scale") else 1.0
    return {
        **job,
        "time_s": statistics.median(times) * scale,
        "reps": len(times),
        "first_s": first * scale,
        "peak_mib": peak - base,
    }


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, Tensor):
        return x.to(device)
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_to(v, device) for v in x)
    return x


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check(job: dict, args: argparse.Namespace) -> dict:
    """Parity (transformers → ours, fp32), parameter counts and FLOP counts (runs in its own process)."""
    torch.manual_seed(0)
    spec = SPECS[job["config"]](args.quick, args)
    result: dict[str, Any] = {"config": spec.name}
    big = not args.quick and spec.name in ("flow", "multimodal")  # parity at a reduced input size
    m = job.get("m")
    if "hf" in spec.impls:
        hf = spec.build_hf(check=big)
        ours = spec.build_ours(check=big, hf=hf)
        x = spec.inputs(1, check=big)
        run_ours = spec.runner("ours", ours, x, False, ours)

        def ours_rows(autocast: bool = False) -> Tensor:
            """Our output as transformers lays it out (multimodal video: ``(1, pixels, 3)``)."""
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out = run_ours().float()
            return out.permute(0, 1, 3, 4, 2).reshape(1, -1, 3) if spec.name == "multimodal" else out

        got = ours_rows()
        with torch.no_grad():
            kw = {"check": True} if spec.name == "multimodal" else {}
            expected = spec.runner("hf", hf, x, False, None, **kw)()
        result["max_abs_diff"] = (got - expected).abs().max().item()
        low = ours_rows(autocast=True)  # accuracy of our bf16 path
        result["bf16_rel_err"] = ((low - got).norm() / got.norm()).item()
        result["check_size"] = "reduced" if big else "full"
        result["params_hf"] = _num_params(hf)
        if big:
            with torch.device("meta"):
                hf_full = spec.build_hf()
            result["params_hf"] = _num_params(hf_full)
            del hf_full
        del hf
        if big:
            # FlopCounterMode on the reduced size checks the analytic formula (same code path)
            result["flops_counted_at_check_size"] = count_flops(spec.runner("ours", ours, x, False, ours), ours)
            result["flops_analytic_at_check_size"] = spec.analytic_flops(ours, 1, check=True)
            ours = spec.build_ours()
    else:
        ours = spec.build_ours()
    result["params_ours"] = _num_params(ours)
    batch = 1
    xf = spec.inputs(batch, m=m) if m else spec.inputs(batch)
    analytic = spec.analytic_flops(ours, batch, m=m) if m else spec.analytic_flops(ours, batch)
    result["flops_analytic"] = analytic
    if not big:
        result["flops_counted"] = count_flops(spec.runner("ours", ours, xf, False, ours), ours)
    if "lucid" in spec.impls:
        with torch.no_grad():
            largs, lkw = spec.lucid_args(xf, ours)
        largs = tuple(a.to("meta") for a in largs)
        lkw = {k: v.to("meta") for k, v in lkw.items()}
        with torch.device("meta"):  # perceiver-pytorch materialises every attention matrix: count on meta
            lucid = spec.build_lucid(ours).eval()
        result["params_lucid"] = _num_params(lucid)
        result["flops_lucid"] = count_flops(lambda: lucid(*largs, **lkw))
    return result


def matmul_peak(device: torch.device, quick: bool) -> dict[str, float]:
    """Best of several large square matmuls, in GFLOP/s, for fp32 and bf16."""
    n = 512 if quick else (8192 if device.type == "cuda" else 2048)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        best = float("inf")
        for i in range(3 if quick else 12):
            sync()
            t0 = time.perf_counter()
            a @ b
            sync()
            if i:
                best = min(best, time.perf_counter() - t0)
        out[name] = 2 * n**3 / best / 1e9
    return out


# -- driver --------------------------------------------------------------------------------------


def run_worker(kind: str, job: dict, args: argparse.Namespace) -> dict | None:
    if args.inprocess:  # smoke tests: no subprocess, peak memory is the process's so far
        return (check if kind == "check" else measure)(job, args)
    cmd = [sys.executable, __file__, f"--{kind}", json.dumps(job), *args.passthrough]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        print(f"  {kind} {job} failed ({proc.returncode}): {' | '.join(tail)}", flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plan(spec: Spec, args: argparse.Namespace, modes: list[str], precisions: list[str]) -> list[dict]:
    """Jobs for one configuration; peers first so that each of our rows can print its ratios."""
    jobs = []
    sizes = [("m", m) for m in spec.sizes()] if isinstance(spec, Generic) else [("batch", b) for b in args.batch]
    for key, value in sizes:
        if spec.name != "language" and key == "batch" and value != args.batch[0]:
            continue
        for mode in modes:
            if key == "batch" and value != args.batch[0] and mode == "train":
                continue  # larger language batches: inference only
            for precision in precisions:
                for impl in sorted(spec.impls, key=lambda i: i == "ours"):
                    if mode == "train" and impl not in spec.train_impls:
                        continue
                    compiles = [False]
                    if (
                        impl == "ours"
                        and not args.no_compile
                        and precision in args.compile_precisions
                        and mode in args.compile_modes
                        and spec.name in args.compile_configs
                    ):
                        compiles.append(True)
                    for comp in compiles:
                        job = {"config": spec.name, "impl": impl, "mode": mode, "precision": precision}
                        job.update({"compile": comp, "batch": 1, "m": None})
                        job[key] = value
                        jobs.append(job)
    return jobs


def parse_only(only: str, args: argparse.Namespace) -> list[tuple[str, list[str], list[str]]]:
    """``a,c:infer:fp32+bf16`` -> [(name, modes, precisions)]; omitted parts use --modes / --precisions."""
    out = []
    for item in only.split(","):
        if not item.strip():
            continue
        parts = item.strip().split(":")
        name = LETTERS.get(parts[0], parts[0])
        if name not in SPECS:
            raise SystemExit(f"--only: unknown configuration {name!r}; choose from {sorted(SPECS)} or a-e")
        modes = parts[1].split("+") if len(parts) > 1 and parts[1] else args.modes
        precisions = parts[2].split("+") if len(parts) > 2 and parts[2] else args.precisions
        out.append((name, modes, precisions))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--only",
        default="a,b,c:infer,d:infer,e",
        help="configurations (letters a-e or names), each optionally :modes:precisions, e.g. c:infer:fp32+bf16",
    )
    p.add_argument("--batch", type=lambda s: [int(v) for v in s.split(",")], default=[1, 4], help="language batches")
    p.add_argument("--modes", type=lambda s: s.split(","), default=["infer", "train"])
    p.add_argument("--precisions", type=lambda s: s.split(","), default=["fp32", "bf16"])
    p.add_argument("--compile-precisions", type=lambda s: s.split(","), default=["fp32", "bf16"])
    p.add_argument("--compile-modes", type=lambda s: s.split(","), default=["infer", "train"])
    p.add_argument(
        "--compile-configs", type=lambda s: s.split(","), default=["language", "imagenet", "flow", "generic"]
    )
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile runs")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions after the warm-up")
    p.add_argument("--max-time", type=float, default=30.0, help="stop repeating a measurement after this long")
    p.add_argument("--long", type=float, default=8.0, help="a first call slower than this counts as a sample")
    p.add_argument("--mm-chunks", type=int, default=128, help="transformers' multimodal loop: number of chunks")
    p.add_argument("--mm-measure-chunks", type=int, default=4, help="time this many of transformers' chunks")
    p.add_argument("--mm-chunk-size", type=int, default=16384, help="our multimodal decoder chunk size")
    p.add_argument(
        "--flow-chunk-size",
        type=lambda v: v if v == "auto" else int(v),
        default="auto",
        help="our flow decoder chunk size: auto (the default call), N, or 0 (one piece)",
    )
    p.add_argument("--generic-sizes", type=lambda s: [int(v) for v in s.split(",")], default=[2**13, 2**15, 2**17])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes, no warm-up (smoke test)")
    p.add_argument("--check-only", action="store_true", help="parity, bf16 accuracy, parameters and FLOPs; no timing")
    p.add_argument("--inprocess", action="store_true", help="no subprocess per measurement (smoke tests)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--check", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.mm_chunks = min(args.mm_chunks, 4)
        args.mm_chunk_size = min(args.mm_chunk_size, 100)
        if args.flow_chunk_size != "auto":
            args.flow_chunk_size = min(args.flow_chunk_size, 100)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker), args)))
        return
    if args.check:
        print(json.dumps(check(json.loads(args.check), args)))
        return
    keep = ("reps", "max_time", "long", "mm_chunks", "mm_measure_chunks", "mm_chunk_size", "flow_chunk_size", "device")
    args.passthrough = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in keep] + (
        ["--quick"] if args.quick else []
    )
    args.passthrough.append("--generic-sizes=" + ",".join(map(str, args.generic_sizes)))
    selected = parse_only(args.only, args)

    import transformers

    try:
        from importlib.metadata import version

        lucid_version = version("perceiver-pytorch")
    except Exception:  # noqa: BLE001
        lucid_version = "missing"
    device = torch.device(args.device)
    t_start = time.perf_counter()
    print(
        f"# compare: device={args.device} {platform.processor() or platform.machine()}"
        f" threads={torch.get_num_threads()}"
        f" torch={torch.__version__} transformers={transformers.__version__} perceiver-pytorch={lucid_version}"
    )
    peak = matmul_peak(device, args.quick)
    print(f"matmul peak: fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s")

    rows: list[dict] = []
    checks: dict[str, dict] = {}
    for name, modes, precisions in selected:
        spec = SPECS[name](args.quick, args)
        print(f"\n## {name}" + (f"  ({spec.extra()})" if spec.extra() else ""), flush=True)
        ms = spec.sizes() if isinstance(spec, Generic) else [None]
        for m in ms:
            c = run_worker("check", {"config": name, "m": m}, args)
            if c is None:
                continue
            key = name if m is None else f"{name}@{m}"
            checks[key] = c
            line = f"params: ours {c['params_ours']:,}"
            if "params_hf" in c:
                line += f", transformers {c['params_hf']:,}"
            if "params_lucid" in c:
                line += f", perceiver-pytorch {c['params_lucid']:,}"
            fl = f"GFLOPs fwd (batch 1{'' if m is None else f', M=O={m}'}): analytic {c['flops_analytic'] / 1e9:.1f}"
            if "flops_counted" in c:
                ratio = c["flops_counted"] / c["flops_analytic"]
                fl += f", FlopCounterMode {c['flops_counted'] / 1e9:.1f} (ratio {ratio:.3f})"
            if "flops_counted_at_check_size" in c:
                r = c["flops_counted_at_check_size"] / c["flops_analytic_at_check_size"]
                fl += f", FlopCounterMode/analytic at the check size {r:.3f}"
            if "flops_lucid" in c:
                fl += f"; perceiver-pytorch (counted) {c['flops_lucid'] / 1e9:.1f}"
            if "max_abs_diff" in c:
                diff = c["max_abs_diff"]
                print(f"parity ours vs transformers ({c['check_size']} size, fp32): max |diff| = {diff:.2e}")
                print(f"ours, bf16 autocast vs fp32: relative error {c['bf16_rel_err']:.2e} (target < 1e-2)")
                if c["max_abs_diff"] > 1e-4:
                    print("  PARITY FAILED: timings below compare different functions")
            print(line)
            print(fl, flush=True)
        header = (
            f"{'config':<11}{'batch/M':>8} {'mode':<6}{'prec':<5}{'impl':<7}{'compile':<8}{'time s':>9}"
            f"{'peak MiB':>10}{'MFU %':>7}{'vs hf':>7}{'vs lucid':>9}"
        )
        print(header)
        jobs = [] if args.check_only else plan(spec, args, modes, precisions)
        for job in jobs:
            r = run_worker("worker", job, args)
            if r is None:
                continue
            key = name if job["m"] is None else f"{name}@{job['m']}"
            c = checks.get(key, {})
            model_flops = (c.get("flops_lucid") if job["impl"] == "lucid" else c.get("flops_analytic")) or 0
            model_flops *= job["batch"] * (3 if job["mode"] == "train" else 1)
            if name == "multimodal" and job["mode"] == "train":
                model_flops = 0  # subsampled; no MFU
            r["mfu"] = model_flops / r["time_s"] / (peak[job["precision"]] * 1e9) if model_flops else None
            rows.append(r)
            print(_fmt(r, rows), flush=True)
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s")
    print(json.dumps(summary(rows, checks, peak, args)))


def _match(rows: list[dict], r: dict, impl: str, compile_: bool = False) -> dict | None:
    for o in rows:
        if (
            o["impl"] == impl
            and not o["compile"]
            and all(o[k] == r[k] for k in ("config", "mode", "precision", "batch", "m"))
        ):
            return o
    return None


def _fmt(r: dict, rows: list[dict]) -> str:
    size = r["m"] if r["m"] else r["batch"]
    ratios = ""
    for impl, width in (("hf", 7), ("lucid", 9)):
        o = _match(rows, r, impl)
        ratios += f"{o['time_s'] / r['time_s']:>{width}.2f}" if (o and r["impl"] == "ours") else " " * (width - 1) + "-"
    mfu = f"{100 * r['mfu']:>7.1f}" if r.get("mfu") else "      -"
    return (
        f"{r['config']:<11}{size:>8} {r['mode']:<6}{r['precision']:<5}{r['impl']:<7}{str(r['compile']):<8}"
        f"{r['time_s']:>9.3f}{r['peak_mib']:>10.0f}{mfu}{ratios}"
    )


def summary(rows: list[dict], checks: dict, peak: dict, args: argparse.Namespace) -> dict:
    """Headline figures: for every (config, size, mode, precision), our best time and the ratios to each peer."""
    out: dict[str, Any] = {"device": args.device, "peak_gflops": {k: round(v, 1) for k, v in peak.items()}}
    out["parity_max_abs_diff"] = {k: c.get("max_abs_diff") for k, c in checks.items() if "max_abs_diff" in c}
    out["bf16_rel_err"] = {k: c.get("bf16_rel_err") for k, c in checks.items() if "bf16_rel_err" in c}
    heads = {}
    for r in rows:
        if r["impl"] != "ours" or r["compile"]:
            continue
        size = f"M{r['m']}" if r["m"] else f"b{r['batch']}"
        key = f"{r['config']}/{size}/{r['mode']}/{r['precision']}"
        comp = [o for o in rows if o["impl"] == "ours" and o["compile"] and _match([r], o, "ours")]
        e = {"ours_s": round(r["time_s"], 4), "ours_mib": round(r["peak_mib"])}
        if r.get("mfu"):
            e["ours_mfu"] = round(r["mfu"], 3)
        if comp:
            e["ours_compiled_s"] = round(comp[0]["time_s"], 4)
        for impl in ("hf", "lucid"):
            o = _match(rows, r, impl)
            if o:
                e[f"{impl}_s"] = round(o["time_s"], 4)
                e[f"{impl}_mib"] = round(o["peak_mib"])
                e[f"speedup_vs_{impl}"] = round(o["time_s"] / r["time_s"], 3)
                e[f"memory_ratio_vs_{impl}"] = round(r["peak_mib"] / max(o["peak_mib"], 1e-9), 3)
                if o.get("mfu"):
                    e[f"{impl}_mfu"] = round(o["mfu"], 3)
        heads[key] = e
    out["results"] = heads
    return out


if __name__ == "__main__":
    main()
