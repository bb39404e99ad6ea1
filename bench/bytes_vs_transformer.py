"""The paper's headline claim in miniature: Perceiver IO vs a FLOP-matched Transformer, both on raw bytes.

Perceiver IO (Jaegle et al. 2021, Table 1) reports 80.95 GLUE for a byte-level Perceiver IO and 71.45 for
a byte-level BERT with the same forward FLOPs: on long byte sequences a Transformer that attends over all
M positions must be made shallow/narrow to fit the FLOP budget, while the Perceiver spends most of its
FLOPs on a deep stack over N << M latents. This script repeats the comparison at CPU scale:

1. **Pre-training.** Two byte-level masked LMs on the Brown corpus (held-out documents for evaluation), trained
   by the library's :class:`~perceiver_io.training.Trainer` through the ``mlm`` task: the same batches (a
   function of seed and step only), the same whole-word masking (15 %, 80/10/10) and loss, the same optimizer,
   schedule, batch size and number of steps.

   * (a) Perceiver IO: the ``mlm`` task's demo model (``demo_mlm_config``: 64 × 128 latents, 4 latent layers).
   * (b) a standard byte Transformer: token + learned position embedding, ``depth`` pre-LN
     :class:`~perceiver_io.layers.blocks.SelfAttentionBlock` s of width ``d`` over all M positions (MLP
     widening 4, heads of width >= 32), a final LayerNorm and the tied output embedding. ``(depth, d)`` is chosen so
     that its analytic forward FLOPs per example match (a)'s within ``--flop-tolerance`` (default 10 %): the
     deepest such Transformer with ``d >= --min-width`` (the paper's FLOP-matched BERT had 6 layers).

   FLOPs are counted analytically (``2·m·n·k`` per matmul: every linear layer, ``QKᵀ`` and ``AV``, the tied
   output projection; embeddings, norms, softmax and activations are not counted) and checked against
   ``torch.utils.flop_counter.FlopCounterMode`` on one example.

2. **Downstream.** Each pre-trained encoder is fine-tuned on movie-review sentence polarity (the
   ``text-classification`` task's data, splits, loss and metric) for the same steps and optimizer: the
   Perceiver with the task's class-query decoder, the Transformer with a masked mean pool and a linear head.

Prints a table and, as the last line, a JSON summary.

    nice -n 10 python bench/bytes_vs_transformer.py              # default run (~25 min on 1 busy CPU core)
    python bench/bytes_vs_transformer.py --quick                 # smoke run (~1 min)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing as mp
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from perceiver_io.adapters.text import (
    NUM_SPECIAL_TOKENS,
    PAD_ID,
    VOCAB_SIZE,
    TextAdapterConfig,
    TextInputAdapter,
)
from perceiver_io.layers.attention import MultiHeadAttention
from perceiver_io.layers.blocks import MLP, CrossAttentionBlock, SelfAttentionBlock
from perceiver_io.models.classifier import TextClassifier
from perceiver_io.models.mlm import MaskedLanguageModel, MaskedLanguageModelConfig
from perceiver_io.tasks.mlm import IGNORE_INDEX, MLMConfig, MLMDataConfig, MLMTask, demo_mlm_config
from perceiver_io.tasks.text_classification import TextClassificationConfig, TextClassificationTask, TextDataConfig
from perceiver_io.training.trainer import TrainConfig, Trainer

PAPER = {"perceiver_io_bytes_glue": 80.95, "bert_bytes_flop_matched_glue": 71.45}


# -- the standard Transformer on bytes -------------------------------------------------------------
@dataclass
class Output:
    logits: Tensor


def num_heads(width: int, head_width: int = 32) -> int:
    """The most heads of width >= ``head_width`` that divide ``width`` (at least 1)."""
    return max([h for h in range(1, width // head_width + 1) if width % h == 0] or [1])


class ByteTransformerMLM(nn.Module):
    """Token + learned position embedding -> ``depth`` pre-LN self-attention blocks over all L bytes -> LayerNorm
    -> tied output embedding. ``(input_ids (B, L), input_mask (B, L))`` -> ``Output(logits (B, L, 262))``."""

    def __init__(self, seq_len: int, width: int, depth: int, head_width: int = 32, widening_factor: int = 4) -> None:
        super().__init__()
        self.width, self.depth = width, depth
        self.input_adapter = TextInputAdapter(TextAdapterConfig(max_seq_len=seq_len, num_channels=width))
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(width, num_heads(width, head_width), widening_factor=widening_factor)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.output_bias = nn.Parameter(torch.zeros(VOCAB_SIZE))  # logits = h·Eᵀ + b (tied, as the Perceiver's)

    def encode(self, input_ids: Tensor, input_mask: Tensor | None = None) -> Tensor:
        h = self.input_adapter(input_ids).inputs
        for block in self.blocks:
            h = block(h, input_mask)
        return self.norm(h)

    def forward(self, input_ids: Tensor, input_mask: Tensor | None = None) -> Output:
        h = self.encode(input_ids, input_mask)
        return Output(h @ self.input_adapter.token_embedding.weight.t() + self.output_bias)


class ByteTransformerClassifier(nn.Module):
    """A pre-trained :class:`ByteTransformerMLM`'s encoder -> masked mean pool over the bytes -> Linear -> logits."""

    def __init__(self, mlm: ByteTransformerMLM, num_classes: int = 2) -> None:
        super().__init__()
        self.mlm = copy.deepcopy(mlm)
        self.head = nn.Linear(mlm.width, num_classes)

    def forward(self, input_ids: Tensor, input_mask: Tensor) -> Output:
        h = self.mlm.encode(input_ids, input_mask)
        m = input_mask[..., None].to(h.dtype)
        return Output(self.head((h * m).sum(1) / m.sum(1).clamp_min(1)))


# -- analytic FLOPs (forward, per example) ---------------------------------------------------------
def _linear(n: int, layer: nn.Linear) -> int:
    return 2 * n * layer.in_features * layer.out_features


def _mha(a: MultiHeadAttention, nq: int, nkv: int) -> int:
    proj = _linear(nq, a.q_proj) + _linear(nkv, a.k_proj) + _linear(nkv, a.v_proj) + _linear(nq, a.o_proj)
    return proj + 2 * nq * nkv * (a.num_qk_channels + a.num_v_channels)  # QKᵀ and AV


def _mlp(m: nn.Module, n: int) -> int:
    if not isinstance(m, MLP):  # e.g. a diagnosis variant without the decoder MLP
        return 0
    return _linear(n, m[0]) + _linear(n, m[2])


def _block(b: SelfAttentionBlock | CrossAttentionBlock, nq: int, nkv: int) -> int:
    return _mha(b.attention, nq, nkv) + _mlp(b.mlp, nq)


def perceiver_flops(model: MaskedLanguageModel, seq_len: int) -> dict[str, int]:
    """Forward FLOPs of the byte Perceiver IO on one example of ``seq_len`` bytes, by part."""
    enc, n = model.encoder, model.encoder.config.num_latents
    c = model.config.text.num_channels
    parts = {
        "encoder_cross_attention": _block(enc.cross_attention, n, seq_len)
        * (1 if enc.cross_attention_shared is None else enc.config.num_blocks),
        "latent_self_attention": sum(_block(b, n, n) for b in enc.self_attention) * enc.config.num_blocks,
        "decoder_cross_attention": _block(model.decoder.cross_attention, seq_len, n),
        "output_projection": 2 * seq_len * c * VOCAB_SIZE,
    }
    if isinstance(model.decoder.projection, nn.Linear):
        parts["decoder_cross_attention"] += _linear(seq_len, model.decoder.projection)
    return parts


def transformer_flops_dims(seq_len: int, width: int, depth: int, widening_factor: int = 4) -> dict[str, int]:
    """Forward FLOPs of :class:`ByteTransformerMLM` from its dimensions (no model needed)."""
    per_layer = 2 * seq_len * width * width * (4 + 2 * widening_factor) + 4 * seq_len * seq_len * width
    return {"self_attention_layers": depth * per_layer, "output_projection": 2 * seq_len * width * VOCAB_SIZE}


def counted_flops(model: nn.Module, seq_len: int) -> int:
    """Forward FLOPs of one example as counted by ``FlopCounterMode``."""
    ids = torch.randint(6, VOCAB_SIZE, (1, seq_len))
    model.eval()
    attns = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    for a in attns:  # the einsum path: FlopCounterMode does not count the CPU SDPA kernel
        a.use_reference = True
    try:
        with FlopCounterMode(display=False) as fc:  # (under no_grad its module tracker fails on the latents' expand)
            model(ids, ids != PAD_ID)
    finally:
        for a in attns:
            a.use_reference = False
    return int(fc.get_total_flops())


def match_transformer(
    target: int, seq_len: int, tolerance: float, min_width: int, max_depth: int = 12
) -> tuple[int, int]:
    """The deepest ``(depth, width)`` (width a multiple of 16, >= ``min_width``) within ``tolerance`` of ``target``;
    at each depth the width closest in FLOPs. Falls back to the closest overall if none is within tolerance."""
    best: tuple[float, int, int] | None = None
    chosen = None
    for depth in range(1, max_depth + 1):
        cands = [
            (abs(sum(transformer_flops_dims(seq_len, w, depth).values()) / target - 1), w) for w in range(16, 2049, 16)
        ]
        err, width = min(cands)
        if best is None or err < best[0]:
            best = (err, depth, width)
        if err <= tolerance and width >= min_width:
            chosen = (depth, width)
    if chosen is None:
        assert best is not None
        chosen = (best[1], best[2])
    return chosen


def perceiver_config(args: argparse.Namespace) -> MaskedLanguageModelConfig:
    """``demo_mlm_config(seq_len)`` with the shape arguments applied (latents, latent width, layers, C)."""
    cfg = demo_mlm_config(args.seq_len)
    enc = {
        k: v
        for k, v in (
            ("num_latents", args.num_latents),
            ("num_latent_channels", args.num_latent_channels),
            ("num_self_attends_per_block", args.num_latent_layers),
        )
        if v is not None
    }
    if enc:
        cfg = cfg.replace(encoder=enc)
    if args.num_channels is not None:
        cfg = cfg.replace(text={"num_channels": args.num_channels})
    return cfg.replace(local_init=args.local_init)  # default None: the paper's initialisation


def describe_perceiver(cfg: MaskedLanguageModelConfig) -> str:
    e = cfg.encoder
    return (
        f"Perceiver IO ({e.num_latents}x{e.num_latent_channels} latents, "
        f"{e.num_blocks * e.num_self_attends_per_block} latent layers, C={cfg.text.num_channels}"
        + (f", local_init {cfg.local_init:g})" if cfg.local_init else ")")
    )


# -- metrics with standard errors -----------------------------------------------------------------
@torch.no_grad()
def mlm_metrics_with_se(task: MLMTask, model: nn.Module, split: str = "test") -> dict[str, float]:
    """Masked-byte accuracy and bits/byte with cluster standard errors (windows are the clusters).

    The same windows and masking seeds as ``MLMTask.evaluate``. Bytes of one window (and of one masked
    word) are not independent, so the SE of a ratio ``sum_w a_w / sum_w n_w`` is computed over windows:
    ``sqrt(W/(W-1) · sum_w (a_w - r·n_w)^2) / sum_w n_w``.
    """
    windows = task._eval_windows(split)
    bs = task.config.data.eval_batch_size
    per_window: list[tuple[int, float, float]] = []  # (masked bytes, correct, bits)
    for lo in range(0, len(windows), bs):
        chunk = windows[lo : lo + bs]
        batch = task.collate(chunk, [10**12 + lo + i for i in range(len(chunk))], masking="whole_word")
        logits = model(batch["input_ids"], batch["input_mask"]).logits.float()
        labels = batch["labels"]
        for row in range(len(chunk)):
            sel = labels[row] != IGNORE_INDEX
            if not sel.any():
                continue
            tb = labels[row][sel] - NUM_SPECIAL_TOKENS
            logp = logits[row][sel][:, NUM_SPECIAL_TOKENS:].log_softmax(-1)
            bits = float(-logp.gather(1, tb[:, None]).sum()) / math.log(2)
            per_window.append((len(tb), float((logp.argmax(-1) == tb).sum()), bits))
    n = torch.tensor([w[0] for w in per_window], dtype=torch.float64)
    out: dict[str, float] = {"masked_bytes": float(n.sum()), "windows": float(len(n))}
    for key, col in (("accuracy", 1), ("bits_per_byte", 2)):
        a = torch.tensor([w[col] for w in per_window], dtype=torch.float64)
        r = float(a.sum() / n.sum())
        w = len(n)
        out[key] = r
        out[f"{key}_se"] = float(((a - r * n).square().sum() * w / max(1, w - 1)).sqrt() / n.sum())
    return out


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` over ``n`` independent examples."""
    return math.sqrt(p * (1 - p) / max(1, n))


# -- tasks with the two models ------------------------------------------------------------------
class _MLM(MLMTask):
    def __init__(self, config: MLMConfig, build, log=print) -> None:
        super().__init__(config, log=log)
        self._build = build

    def build_model(self) -> nn.Module:
        return self._build()


class _Sentiment(TextClassificationTask):
    def __init__(self, config: TextClassificationConfig, build, log=print) -> None:
        super().__init__(config, log=log)
        self._build = build

    def build_model(self) -> nn.Module:
        return self._build()


def _train_cfg(args: argparse.Namespace, steps: int, lr: float, weight_decay: float, run_dir: str) -> TrainConfig:
    return TrainConfig(
        seed=args.seed,
        max_steps=steps,
        batch_size=args.batch_size,
        lr=lr,
        warmup_steps=max(1, steps // 20),
        weight_decay=weight_decay,
        num_threads=args.threads,
        eval_every=0,
        eval_batches=2,
        checkpoint_every=steps,
        keep_checkpoints=1,
        log_every=max(1, steps // 20),
        run_dir=run_dir,
        resume=False,
        progress=args.progress,
        tensorboard=False,
        plot=False,
        save_model=False,
    )


def _shapes(args: argparse.Namespace) -> tuple[MaskedLanguageModelConfig, int, int]:
    """The Perceiver's config and the FLOP-matched Transformer's ``(depth, width)``."""
    p_cfg = perceiver_config(args)
    if args.tf_depth and args.tf_width:
        return p_cfg, args.tf_depth, args.tf_width
    target = sum(perceiver_flops(MaskedLanguageModel(p_cfg), args.seq_len).values())
    return p_cfg, *match_transformer(target, args.seq_len, args.flop_tolerance, args.min_width)


def build_mlm(name: str, args: argparse.Namespace) -> nn.Module:
    p_cfg, depth, width = _shapes(args)
    if name == "perceiver_io":
        return MaskedLanguageModel(p_cfg)
    return ByteTransformerMLM(args.seq_len, width, depth)


def describe(name: str, args: argparse.Namespace) -> dict:
    """Description, parameters and FLOPs (analytic by part, and counted) of one of the two models."""
    p_cfg, depth, width = _shapes(args)
    model = build_mlm(name, args)
    if name == "perceiver_io":
        text, parts = describe_perceiver(p_cfg), perceiver_flops(model, args.seq_len)
    else:
        text = f"Transformer ({depth} layers x width {width}, {num_heads(width)} heads, MLP x4)"
        parts = transformer_flops_dims(args.seq_len, width, depth)
    return {
        "description": text,
        "params": sum(p.numel() for p in model.parameters()),
        "flops_parts": parts,
        "flops_per_example": sum(parts.values()),
        "flops_counted": counted_flops(model, args.seq_len),
    }


def train_one(name: str, args: argparse.Namespace) -> dict:
    """Pre-train one model on byte MLM, then fine-tune its encoder on sentence polarity (own process/thread)."""
    torch.set_num_threads(args.threads)
    log = (lambda m: print(f"[{name}] {m}", file=sys.stderr, flush=True)) if args.verbose else (lambda m: None)
    L = args.seq_len
    p_cfg, _, _ = _shapes(args)
    data = MLMDataConfig(
        seq_len=L,
        masking=args.masking,
        unmasked_loss_weight=args.unmasked_loss_weight,
        eval_windows=args.eval_windows,
        max_bytes=args.max_bytes,
        num_fill_mask_examples=0,
    )
    ft_len = min(args.ft_seq_len, L)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = MLMConfig(model=p_cfg, data=data, train=_train_cfg(args, args.steps, args.lr, 0.01, f"{tmp}/mlm"))
        task = _MLM(cfg, lambda: build_mlm(name, args), log=log)
        t0 = time.perf_counter()
        res = Trainer(task, log=log).fit()
        train_s = time.perf_counter() - t0
        model = res.model
        model.eval()
        with torch.no_grad():
            test = task.evaluate(model, "test")
            test_se = mlm_metrics_with_se(task, model, "test")
        print(
            f"{name}: pre-trained {args.steps} steps in {train_s:.0f} s, test masked-byte accuracy "
            f"{test['accuracy']:.1%}, {test['bits_per_byte']:.3f} bits/byte",
            file=sys.stderr,
            flush=True,
        )

        # downstream: sentiment, fine-tuned from this encoder
        if name == "perceiver_io":
            c_cfg = TextClassificationConfig().model.replace(text=p_cfg.text, encoder=p_cfg.encoder)

            def build_clf() -> nn.Module:
                clf = TextClassifier(c_cfg)
                clf.input_adapter.load_state_dict(model.input_adapter.state_dict())
                clf.encoder.load_state_dict(model.encoder.state_dict())
                return clf

        else:
            c_cfg = TextClassificationConfig().model.replace(text={"max_seq_len": L})

            def build_clf() -> nn.Module:
                return ByteTransformerClassifier(model)

        ft = TextClassificationConfig(
            model=c_cfg,
            data=TextDataConfig(seq_len=ft_len),
            train=_train_cfg(args, args.ft_steps, args.ft_lr, 0.05, f"{tmp}/sentiment"),
        )
        s_task = _Sentiment(ft, build_clf, log=log)
        t0 = time.perf_counter()
        s_res = Trainer(s_task, log=log).fit()
        ft_s = time.perf_counter() - t0
        s_res.model.eval()
        with torch.no_grad():
            s_test = s_task.evaluate(s_res.model, "test")
        print(
            f"{name}: fine-tuned {args.ft_steps} steps in {ft_s:.0f} s, sentiment accuracy {s_test['accuracy']:.1%}",
            file=sys.stderr,
            flush=True,
        )
    return {
        "pretrain_seconds": round(train_s, 1),
        "final_train_loss": res.losses[max(res.losses)],
        "mlm_accuracy": test["accuracy"],
        "mlm_accuracy_se": test_se["accuracy_se"],
        "mlm_bits_per_byte": test["bits_per_byte"],
        "mlm_bits_per_byte_se": test_se["bits_per_byte_se"],
        "masked_bytes": int(test["masked_bytes"]),
        "finetune_seconds": round(ft_s, 1),
        "sentiment_accuracy": s_test["accuracy"],
        "sentiment_accuracy_se": binomial_se(s_test["accuracy"], int(s_test["examples"])),
        "sentiment_examples": int(s_test["examples"]),
        "baselines": {
            "most_frequent_byte_accuracy": test["baseline_most_frequent_accuracy"],
            "unigram_bits_per_byte": test["baseline_unigram_bits_per_byte"],
        },
    }


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    names = ("perceiver_io", "transformer")
    results = {name: describe(name, args) for name in names}
    for name, m in results.items():
        print(
            f"{name}: {m['description']}, {m['params']:,} params, forward {m['flops_per_example'] / 1e6:.1f} "
            f"MFLOPs/example (FlopCounterMode {m['flops_counted'] / 1e6:.1f})",
            file=sys.stderr,
            flush=True,
        )
    if args.jobs > 1:  # one process per model, each with args.threads threads
        with ProcessPoolExecutor(min(args.jobs, len(names)), mp_context=mp.get_context("spawn")) as pool:
            trained = dict(zip(names, pool.map(train_one, names, [args] * len(names)), strict=True))
    else:
        trained = {name: train_one(name, args) for name in names}
    for name in names:
        results[name].update(trained[name])
    baselines = results["perceiver_io"].pop("baselines")
    results["transformer"].pop("baselines")
    _, depth, width = _shapes(args)
    p, t = results["perceiver_io"], results["transformer"]
    return {
        "seq_len": args.seq_len,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "masking": args.masking,
        "unmasked_loss_weight": args.unmasked_loss_weight,
        "perceiver_local_init": args.local_init,
        "finetune_steps": args.ft_steps,
        "finetune_seq_len": min(args.ft_seq_len, args.seq_len),
        "threads": args.threads,
        "jobs": args.jobs,
        "transformer_depth": depth,
        "transformer_width": width,
        "flop_ratio_transformer_over_perceiver": t["flops_per_example"] / p["flops_per_example"],
        "models": results,
        "baselines": baselines,
        "paper_glue": PAPER,
    }


def print_table(s: dict) -> None:
    r = s["models"]
    b = s["baselines"]
    print(
        f"byte MLM on Brown: {s['steps']} steps x {s['batch_size']} windows of {s['seq_len']} bytes; sentiment: "
        f"{s['finetune_steps']} steps x {s['batch_size']} sentences of <= {s['finetune_seq_len']} bytes; "
        f"{s['threads']} thread(s)"
    )
    hdr = (
        f"{'model':60s} {'params':>9s} {'MFLOPs/ex':>10s} {'counted':>8s} {'train s':>8s} "
        f"{'MLM acc ± SE':>12s} {'bits/B ± SE':>11s} {'ft s':>6s} {'sent acc ± SE':>13s}"
    )
    print(hdr)
    print("-" * len(hdr))
    for m in r.values():
        print(
            f"{m['description']:60s} {m['params']:9,d} {m['flops_per_example'] / 1e6:10.1f} "
            f"{m['flops_counted'] / 1e6:8.1f} {m['pretrain_seconds']:8.0f} "
            f"{m['mlm_accuracy']:6.1%}±{m['mlm_accuracy_se']:.1%} "
            f"{m['mlm_bits_per_byte']:5.3f}±{m['mlm_bits_per_byte_se']:.3f} "
            f"{m['finetune_seconds']:6.0f} {m['sentiment_accuracy']:6.1%}±{m['sentiment_accuracy_se']:.1%}"
        )
    print(
        f"{'baseline: most frequent byte':60s} {'':9s} {'':10s} {'':8s} {'':8s} {b['most_frequent_byte_accuracy']:8.1%}"
    )
    print(f"{'baseline: unigram bytes':60s} {'':9s} {'':10s} {'':8s} {'':8s} {'':8s} {b['unigram_bits_per_byte']:7.3f}")
    print(
        f"FLOP ratio Transformer / Perceiver IO = {s['flop_ratio_transformer_over_perceiver']:.3f}; "
        f"paper (GLUE): Perceiver IO bytes {PAPER['perceiver_io_bytes_glue']} vs FLOP-matched BERT bytes "
        f"{PAPER['bert_bytes_flop_matched_glue']}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-len", type=int, default=256, help="bytes per MLM example incl. [CLS]/[SEP] (default 256)")
    ap.add_argument("--steps", type=int, default=1200, help="pre-training steps of each model")
    ap.add_argument("--ft-steps", type=int, default=400, help="sentiment fine-tuning steps of each model")
    ap.add_argument(
        "--ft-seq-len",
        type=int,
        default=260,
        help="sentiment bytes per example incl. [CLS]/[SEP] (<= seq-len); "
        "the default 260 truncates no sentence (the longest is 257 bytes)",
    )
    ap.add_argument("--num-latents", type=int, default=None, help="Perceiver latents N (default: the demo's 64)")
    ap.add_argument("--num-latent-channels", type=int, default=None, help="latent width D (default 128)")
    ap.add_argument("--num-latent-layers", type=int, default=None, help="latent self-attention layers (default 4)")
    ap.add_argument("--num-channels", type=int, default=None, help="byte embedding width C (default 128)")
    ap.add_argument(
        "--local-init", type=float, default=None, help="Perceiver: MaskedLanguageModelConfig.local_init (default: none)"
    )
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ft-lr", type=float, default=5e-4)
    ap.add_argument(
        "--unmasked-loss-weight", type=float, default=0.0, help="auxiliary loss on visible bytes (0: plain MLM)"
    )
    ap.add_argument("--eval-windows", type=int, default=1024, help="held-out test windows for the MLM metrics")
    ap.add_argument("--max-bytes", type=int, default=None, help="use only this many corpus bytes")
    ap.add_argument("--flop-tolerance", type=float, default=0.10)
    ap.add_argument("--min-width", type=int, default=64)
    ap.add_argument("--tf-depth", type=int, default=None, help="override the FLOP-matched Transformer depth")
    ap.add_argument("--tf-width", type=int, default=None, help="override the FLOP-matched Transformer width")
    ap.add_argument("--threads", type=int, default=1, help="threads per model")
    ap.add_argument("--jobs", type=int, default=1, help="2: train the two models in parallel processes")
    ap.add_argument(
        "--masking", default="whole_word", choices=["whole_word", "random", "mixed"], help="training masking"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", action="store_true", help="tqdm progress bars")
    ap.add_argument("--verbose", action="store_true", help="the trainer's log lines")
    ap.add_argument("--quick", action="store_true", help="smoke run: 64 bytes, 20 + 10 steps, small data")
    ap.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = ap.parse_args(argv)
    if args.quick:
        args.seq_len, args.steps, args.ft_steps, args.batch_size = 64, 20, 10, 8
        args.eval_windows, args.max_bytes = 32, args.max_bytes or 300_000
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    t0 = time.perf_counter()
    summary = run(args)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    summary["machine"] = f"{platform.processor() or platform.machine()}, torch {torch.__version__}"
    print_table(summary)
    print(f"total wall time {summary['wall_seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
