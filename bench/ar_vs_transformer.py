"""Perceiver AR vs a FLOP-matched decoder-only Transformer on bytes: training, context scaling, generation.

Three sections (``--sections train,scaling,generation``):

1. **train.** Perceiver AR (context ``L``, ``N`` latents, width ``C = D``) and a causal Transformer with
   the same forward FLOPs per *predicted* token, trained by the library's
   :class:`~perceiver_io.training.Trainer` through the ``clm`` task (bytes of Brown, held-out documents)
   for the same steps on the same batches (a function of seed and step), same optimizer and schedule.
   Perceiver AR predicts the last ``N`` positions of each window, the Transformer all ``L``; so FLOPs
   per predicted token are per-window forward FLOPs / ``N`` and / ``L``. Both are evaluated on the
   same held-out bytes: the last ``N`` bytes of each evaluation window, each with at least ``L - N``
   bytes of context (the ``clm`` task's metric), reported as bits/byte with a standard error over
   windows. Each model trains in its own subprocess, so each peak RSS is its own (``VmHWM``, see
   :func:`peak_rss_mb` for why not ``getrusage``).

   The Transformer ("decoder-only, pre-LN"): the Perceiver's token embedding and position scheme
   (rotary on the first half of each head's query/key channels, positions from the data, plus
   sinusoidal absolute positions when ``--absolute-positions sinusoidal``), ``depth`` pre-LN blocks of
   width ``d`` (the Perceiver's :class:`RotaryAttention` and squared-ReLU MLP ×4), a final LayerNorm
   and a zero-initialised output projection (as Perceiver AR's head). It is Perceiver AR without the
   cross-attention, with every position a latent. Attention is ``scaled_dot_product_attention`` with
   ``is_causal=True`` (the fast CPU kernel) when the batch has no padding, else a boolean mask.
   ``(depth, d)``: among pairs whose forward FLOPs per predicted token are within
   ``--flop-tolerance`` of the Perceiver's (``d`` a multiple of 16, ``>= --min-width``), the one with
   the width nearest the Perceiver's latent width, then the smallest FLOP error.

   FLOPs: ``2·m·n·k`` per matmul (every linear layer, QKᵀ and AV counted dense, i.e. without
   skipping the causally masked half, and the output projection; embeddings, norms, softmax,
   rotary and activations are not counted), checked against ``torch.utils.flop_counter.FlopCounterMode``
   on one window with the math SDPA backend (FlopCounterMode does not count the CPU flash kernel).

2. **scaling.** As the context grows (``--contexts``) at fixed ``N``: seconds and peak RSS per
   training step (forward, backward and AdamW step, batch ``--scaling-batch-size``) of both
   models (the Transformer is the one matched at the train section's context), each measurement
   in a fresh subprocess, repetitions interleaved. A measurement that passes ``--scaling-timeout``
   or ``--memory-limit-gb`` is reported as such; the model's larger contexts are then reported as
   skipped.

3. **generation.** New tokens per second of Perceiver AR ``generate`` with ``use_cache=True`` and
   ``use_cache=False`` and of ``perceiver-ar-pytorch`` (``pip install perceiver-ar-pytorch``; no cache,
   it re-runs the whole window for each new token) at the nearest configuration: same depth, width,
   heads, latents and context (its differences: GELU, no biases, a learned absolute position
   embedding and rotary on 32 channels per head). Random weights, greedy decoding, the same prompt
   (a full context of random bytes) and number of new tokens.

Prints a table per section and, as the last line, a JSON summary.

    nice -n 10 python bench/ar_vs_transformer.py                         # all sections (~30 min, 1 busy core)
    nice -n 10 python bench/ar_vs_transformer.py --sections train        # ~23 min
    nice -n 10 python bench/ar_vs_transformer.py --sections scaling      # ~4 min
    nice -n 10 python bench/ar_vs_transformer.py --sections generation   # ~2 min
    python bench/ar_vs_transformer.py --quick                            # smoke run (toy sizes, ~30 s)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from perceiver_io.adapters.text import NUM_SPECIAL_TOKENS, VOCAB_SIZE
from perceiver_io.layers.blocks import MLP
from perceiver_io.models.perceiver_ar import (
    ARSelfAttention,
    CausalLanguageHead,
    PerceiverAR,
    PerceiverARConfig,
    RotaryAttention,
    TokenInputAdapter,
    _masked_attention,
    causal_lm_loss,
    rotary_positions,
    sinusoidal_features,
)
from perceiver_io.tasks.clm import CLMConfig, CLMDataConfig, CLMTask
from perceiver_io.training.trainer import TrainConfig, Trainer

SECTIONS = ("train", "scaling", "generation")
MODELS = ("perceiver_ar", "transformer")
RESULT_PREFIX = "@@ "  # worker -> parent JSON lines


# -- the decoder-only Transformer ------------------------------------------------------------------
@dataclass
class Output:
    logits: Tensor


def num_heads(width: int, head_width: int) -> int:
    """The most heads of width >= ``head_width`` that divide ``width`` (at least 1)."""
    return max([h for h in range(1, width // head_width + 1) if width % h == 0] or [1])


class CausalBlock(ARSelfAttention):
    """Pre-LN causal self-attention block: ``x += Dropout(Attn(LN(x)))``; ``x += MLP(LN(x))``: Perceiver AR's
    latent self-attention layer, with a forward over all ``L`` positions (SDPA's causal kernel when unpadded)."""

    def forward(self, x: Tensor, positions: Tensor, mask: Tensor | None) -> Tensor:
        """``x (B, L, d)``; ``mask (B, 1, L, L)`` bool or ``None`` (plain causal, no padding)."""
        a = self.attention
        h = self.norm(x)
        k, v = a.keys_values(h, positions)
        b, n, _ = h.shape
        q = a.q_proj(h).view(b, n, a.num_heads, -1).transpose(1, 2)
        if a.rotary is not None:
            q = a.rotary(q, positions)
        p = a.attention_dropout if self.training else 0.0
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            out = _masked_attention(q, k, v, mask, p)
        x = x + self.dropout(a.o_proj(out.transpose(1, 2).reshape(b, n, -1)))
        return x + self.mlp(self.mlp_norm(x))


class CausalTransformer(nn.Module):
    """Token embedding (+ Perceiver AR's positions) -> ``depth`` :class:`CausalBlock` s over all ``L``
    positions -> LayerNorm -> Linear. ``(input_ids (B, L), input_mask (B, L))`` -> logits ``(B, L, V)``.

    Configured by a :class:`PerceiverARConfig`: width ``num_latent_channels``, depth
    ``num_self_attention_layers``, heads ``num_self_attention_heads`` (the rest as Perceiver AR)."""

    def __init__(self, config: PerceiverARConfig) -> None:
        super().__init__()
        c = self.config = config
        self.input_adapter = TokenInputAdapter(
            c.vocab_size, c.num_latent_channels, c.max_context_length, c.embedding_init_scale
        )
        self.blocks = nn.ModuleList(CausalBlock(c) for _ in range(c.num_self_attention_layers))
        self.head = CausalLanguageHead(c.num_latent_channels, c.vocab_size)

    def forward(self, input_ids: Tensor, input_mask: Tensor | None = None) -> Output:
        return Output(self.head.logits(self.encode(self.input_adapter.embed(input_ids), input_mask)))

    def encode(self, x: Tensor, input_mask: Tensor | None = None) -> Tensor:
        """Token embeddings ``x (B, L, d)`` -> hidden states ``(B, L, d)`` (before the final LayerNorm)."""
        c = self.config
        b, n, _ = x.shape
        device = x.device
        if input_mask is not None and bool(input_mask.all()):
            input_mask = None
        positions = rotary_positions(input_mask, b, n, c.position_origin, device)
        if c.absolute_positions == "sinusoidal":
            x = x + sinusoidal_features(positions, x.shape[-1]).to(x.dtype)
        mask = None
        if input_mask is not None:
            x = x.masked_fill(~input_mask[..., None], 0.0)
            causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
            eye = torch.eye(n, dtype=torch.bool, device=device)
            mask = ((causal[None] & input_mask[:, None, :]) | eye)[:, None]
        for block in self.blocks:
            x = block(x, positions, mask)
        return x


# -- configurations --------------------------------------------------------------------------------
def perceiver_config(args: argparse.Namespace, context: int) -> PerceiverARConfig:
    """Perceiver AR at ``context``: ``N`` latents, width ``C = D``, ``layers`` latent self-attention layers."""
    return PerceiverARConfig(
        max_context_length=context,
        num_latents=min(args.num_latents, context),
        num_input_channels=args.width,
        num_latent_channels=args.width,
        num_self_attention_layers=args.layers,
        num_cross_attention_heads=args.heads,
        num_self_attention_heads=args.heads,
        dropout=args.dropout,
        absolute_positions=args.absolute_positions,
    )


def transformer_config(args: argparse.Namespace, context: int, depth: int, width: int) -> PerceiverARConfig:
    """The Transformer's config: Perceiver AR's settings with width ``width``, ``depth`` layers and heads of
    about the Perceiver's self-attention head width."""
    h = num_heads(width, args.width // args.heads)
    return perceiver_config(args, context).replace(
        num_input_channels=width,
        num_latent_channels=width,
        num_self_attention_layers=depth,
        num_cross_attention_heads=h,
        num_self_attention_heads=h,
    )


def build(name: str, args: argparse.Namespace, context: int, depth: int, width: int) -> nn.Module:
    if name == "perceiver_ar":
        return PerceiverAR(perceiver_config(args, context))
    return CausalTransformer(transformer_config(args, context, depth, width))


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- analytic FLOPs (forward, one window of `length` tokens) ----------------------------------------
def _linear(n: int, layer: nn.Linear) -> int:
    return 2 * n * layer.in_features * layer.out_features


def _attention(a: RotaryAttention, nq: int, nkv: int) -> int:
    proj = _linear(nq, a.q_proj) + _linear(nkv, a.k_proj) + _linear(nkv, a.v_proj) + _linear(nq, a.o_proj)
    return proj + 2 * nq * nkv * (a.q_proj.out_features + a.v_proj.out_features)  # QKᵀ and AV, dense


def _mlp(m: MLP, n: int) -> int:
    return _linear(n, m[0]) + _linear(n, m[2])


def perceiver_ar_flops(model: PerceiverAR, length: int) -> dict[str, int]:
    """Forward FLOPs of Perceiver AR on one window of ``length`` tokens, by part (``min(N, length)`` latents)."""
    enc = model.encoder
    n = min(model.config.num_latents, length)
    ca = enc.cross_attention
    return {
        "cross_attention": _linear(n, enc.latent_projection) + _attention(ca.attention, n, length) + _mlp(ca.mlp, n),
        "latent_self_attention": sum(_attention(b.attention, n, n) + _mlp(b.mlp, n) for b in enc.self_attention),
        "output_projection": _linear(n, model.head.projection),
    }


def transformer_flops(model: CausalTransformer, length: int) -> dict[str, int]:
    """Forward FLOPs of :class:`CausalTransformer` on one window of ``length`` tokens, by part."""
    return {
        "self_attention_layers": sum(
            _attention(b.attention, length, length) + _mlp(b.mlp, length) for b in model.blocks
        ),
        "output_projection": _linear(length, model.head.projection),
    }


def transformer_flops_dims(
    length: int, width: int, depth: int, widening_factor: int = 4, vocab_size: int = VOCAB_SIZE
) -> int:
    """Forward FLOPs of :class:`CausalTransformer` per window, from its dimensions (no model needed)."""
    per_layer = 2 * length * width * width * (4 + 2 * widening_factor) + 4 * length * length * width
    return depth * per_layer + 2 * length * width * vocab_size


def predicted_tokens(name: str, model_config: PerceiverARConfig, length: int) -> int:
    """Tokens a window of ``length`` inputs predicts: Perceiver AR its ``N`` latents, the Transformer all."""
    return min(model_config.num_latents, length) if name == "perceiver_ar" else length


def forward_flops(name: str, model: nn.Module, length: int) -> dict[str, int]:
    return perceiver_ar_flops(model, length) if name == "perceiver_ar" else transformer_flops(model, length)


def counted_flops(model: nn.Module, length: int) -> int:
    """Forward FLOPs of one window as counted by ``FlopCounterMode`` (math SDPA backend: plain matmuls)."""
    ids = torch.randint(NUM_SPECIAL_TOKENS, VOCAB_SIZE, (1, length))
    was_training = model.training
    model.eval()
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
            model(ids)
    finally:
        model.train(was_training)
    return int(fc.get_total_flops())


def match_transformer(
    target_per_token: float,
    length: int,
    preferred_width: int,
    tolerance: float,
    min_width: int,
    max_depth: int = 24,
    widening_factor: int = 4,
) -> dict:
    """``(depth, width)`` whose forward FLOPs per predicted token are within ``tolerance`` of
    ``target_per_token``: the width nearest ``preferred_width``, then the smallest error. Widths are
    multiples of 16 from ``min_width`` to ``4·preferred_width``. Falls back to the closest pair
    overall (``matched: False``) if none is within tolerance."""
    cands = []
    for depth in range(1, max_depth + 1):
        for width in range(max(16, min_width - min_width % 16), 4 * preferred_width + 1, 16):
            if width < min_width:
                continue
            per_token = transformer_flops_dims(length, width, depth, widening_factor) / length
            cands.append((per_token / target_per_token - 1, depth, width))
    ok = [c for c in cands if abs(c[0]) <= tolerance]
    if ok:
        err, depth, width = min(ok, key=lambda c: (abs(math.log(c[2] / preferred_width)), abs(c[0]), -c[1]))
    else:
        err, depth, width = min(cands, key=lambda c: abs(c[0]))
    return {"depth": depth, "width": width, "flop_error": err, "matched": bool(ok)}


def model_specs(args: argparse.Namespace) -> dict:
    """Both models at the train context: configs, params, FLOPs (analytic and counted) per window/token."""
    L = args.context
    perceiver = PerceiverAR(perceiver_config(args, L))
    p_parts = perceiver_ar_flops(perceiver, L)
    p_per_token = sum(p_parts.values()) / predicted_tokens("perceiver_ar", perceiver.config, L)
    if args.tf_depth and args.tf_width:
        match = {"depth": args.tf_depth, "width": args.tf_width, "matched": None}
    else:
        match = match_transformer(p_per_token, L, args.width, args.flop_tolerance, args.min_width)
    depth, width = match["depth"], match["width"]
    transformer = build("transformer", args, L, depth, width)
    specs = {}
    for name, model in (("perceiver_ar", perceiver), ("transformer", transformer)):
        parts = forward_flops(name, model, L)
        total = sum(parts.values())
        k = predicted_tokens(name, model.config, L)
        counted = counted_flops(model, L) if args.count_flops else None
        c = model.config
        desc = (
            f"Perceiver AR (N={c.num_latents} latents x {c.num_latent_channels}, {c.num_self_attention_layers} "
            f"latent layers, {c.num_self_attention_heads} heads)"
            if name == "perceiver_ar"
            else f"Transformer ({depth} layers x {width}, {c.num_self_attention_heads} heads)"
        )
        specs[name] = {
            "description": desc,
            "params": num_params(model),
            "flops_per_window": total,
            "flops_per_window_counted": counted,
            "flops_parts": parts,
            "predicted_tokens_per_window": k,
            "flops_per_token": total / k,
            "flops_per_token_counted": None if counted is None else counted / k,
        }
    match["flop_ratio_per_token"] = specs["transformer"]["flops_per_token"] / specs["perceiver_ar"]["flops_per_token"]
    return {"models": specs, "transformer_depth": depth, "transformer_width": width, "match": match}


# -- process helpers -------------------------------------------------------------------------------
def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This process's peak RSS: ``VmHWM`` of ``/proc/self/status``. Not ``getrusage``'s ``ru_maxrss``: on
    Linux a child started by fork/vfork + exec inherits the parent's peak there (a 0.8 GB parent makes
    every worker report >= 0.8 GB); ``VmHWM`` belongs to the new process image only."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def available_memory_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 16.0


def emit(obj: dict) -> None:
    print(RESULT_PREFIX + json.dumps(obj), flush=True)


def start_memory_watchdog(limit_gb: float | None) -> None:
    """Exit (code 3, after an ``oom`` result line) when this process's RSS passes ``limit_gb``."""
    if not limit_gb:
        return
    limit = limit_gb * 1024

    def watch() -> None:
        while True:
            rss = current_rss_mb()
            if rss > limit:
                emit({"status": "oom", "rss_mb": round(rss), "limit_mb": round(limit), "final": True})
                os._exit(3)
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()


def run_worker(args: argparse.Namespace, spec: dict, timeout: float | None = None) -> tuple[dict, list[dict]]:
    """Run this script as a worker (``--worker spec``) in a fresh process -> (final result, progress lines)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args.argv, "--worker", json.dumps(spec)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        out, err, rc, timed_out = proc.stdout, proc.stderr, proc.returncode, False
    except subprocess.TimeoutExpired as e:
        decode = lambda s: s.decode(errors="replace") if isinstance(s, bytes) else (s or "")
        out, err, rc, timed_out = decode(e.stdout), decode(e.stderr), None, True
    wall = time.perf_counter() - t0
    lines = [json.loads(x[len(RESULT_PREFIX) :]) for x in out.splitlines() if x.startswith(RESULT_PREFIX)]
    final = next((x for x in reversed(lines) if x.get("final")), None)
    progress = [x for x in lines if not x.get("final")]
    if timed_out:
        final = {"status": "timeout", "timeout_s": timeout}
    elif final is None:
        tail = " | ".join(err.strip().splitlines()[-3:])
        reason = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exit code {rc}"
        if rc == -9:
            reason += " (likely out of memory)"
        final = {"status": "error", "error": f"{reason}: {tail}"}
    final["worker_wall_s"] = round(wall, 2)
    if args.verbose and err.strip():
        print(err, file=sys.stderr)
    return final, progress


# -- section 1: train ------------------------------------------------------------------------------
class _TimedCLM(CLMTask):
    """The ``clm`` task with the model to train given, and a timestamp + predicted-token count per step."""

    def __init__(self, config: CLMConfig, build_model, log=print) -> None:
        super().__init__(config, log=log)
        self._build = build_model
        self.stamps: list[float] = []
        self.counts: list[int] = []
        self.rss_at_first_step: float | None = None

    def build_model(self) -> nn.Module:
        return self._build()

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        if self.rss_at_first_step is None:
            self.rss_at_first_step = current_rss_mb()
        self.stamps.append(time.perf_counter())
        self.counts.append(self.count(batch))
        return self._loss(model, batch)

    def _loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return super().loss(model, batch)


class _TransformerCLM(_TimedCLM):
    """Trains on every position (the Transformer predicts all ``L``); evaluates on the latents' positions."""

    def _all_scored(self, batch: dict[str, Tensor]) -> Tensor:
        mask = batch["input_mask"]
        return mask[:, 1:] & mask[:, :-1]

    def count(self, batch: dict[str, Tensor]) -> int:
        return int(self._all_scored(batch).sum())

    def _loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        ids, mask = batch["input_ids"], batch["input_mask"]
        logits = model(ids[:, :-1], mask[:, :-1]).logits
        return causal_lm_loss(logits, ids[:, 1:], self._all_scored(batch), self.config.model.z_loss, reduction="sum")

    def _logits(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        n = min(self.config.model.num_latents, batch["input_ids"].shape[1] - 1)
        return super()._logits(model, batch)[:, -n:]  # the bytes the Perceiver is scored on


def clm_config(args: argparse.Namespace, run_dir: str) -> CLMConfig:
    steps = args.steps
    cfg = CLMConfig(
        model=perceiver_config(args, args.context),
        data=CLMDataConfig(
            task="text",
            seq_len=args.context,
            max_bytes=args.max_bytes,
            eval_windows=args.eval_windows,
            eval_batch_size=args.eval_batch_size,
            num_samples=0,
        ),
        train=TrainConfig(
            seed=args.seed,
            max_steps=steps,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_steps=max(1, steps // 10),
            weight_decay=0.01,
            grad_clip=1.0,
            num_threads=args.threads,
            eval_every=0,
            eval_batches=1,
            checkpoint_every=steps,
            keep_checkpoints=1,
            log_every=max(1, steps // 10),
            run_dir=run_dir,
            resume=False,
            progress=args.progress,
            tensorboard=False,
            plot=False,
            save_model=False,
        ),
    )
    return CLMTask.finalize_config(cfg)


@torch.no_grad()
def bits_per_byte_with_se(task: CLMTask, model: nn.Module, split: str = "test") -> dict[str, float]:
    """Bits/byte on the ``clm`` task's evaluation windows (each scores its last ``N`` bytes), with a
    cluster standard error over windows: ``sqrt(W/(W-1) · sum_w (a_w - r·n_w)^2) / sum_w n_w``."""
    windows = task._eval_windows(split)
    bs = task.config.data.eval_batch_size
    log_unigram = torch.log2(torch.from_numpy((task.byte_counts + 1) / (task.byte_counts.sum() + 256))).float()
    per_window: list[tuple[float, float, float, float]] = []  # (bytes, bits, correct, unigram bits)
    for lo in range(0, len(windows), bs):
        chunk = windows[lo : lo + bs]
        batch = task.collate(chunk, [0] * len(chunk))
        logits = task._logits(model, batch).float()
        scored = task._scored(batch)
        targets = batch["input_ids"][:, 1:][:, -logits.shape[1] :]
        nats = causal_lm_loss(logits, targets, scored, 0.0, reduction="none")
        hits = (logits.argmax(-1) == targets) & scored
        uni = -log_unigram[(targets - NUM_SPECIAL_TOKENS).clamp_min(0)].masked_fill(~scored, 0.0)
        for r in range(len(chunk)):
            per_window.append(
                (float(scored[r].sum()), float(nats[r].sum()) / math.log(2), float(hits[r].sum()), float(uni[r].sum()))
            )
    n = torch.tensor([w[0] for w in per_window], dtype=torch.float64)
    out: dict[str, float] = {"scored_bytes": float(n.sum()), "windows": float(len(n))}
    for key, col in (("bits_per_byte", 1), ("accuracy", 2), ("unigram_bits_per_byte", 3)):
        a = torch.tensor([w[col] for w in per_window], dtype=torch.float64)
        r = float(a.sum() / n.sum())
        w = len(n)
        out[key] = r
        out[f"{key}_se"] = float(((a - r * n).square().sum() * w / max(1, w - 1)).sqrt() / n.sum())
    return out


def train_one(args: argparse.Namespace, name: str, depth: int, width: int) -> dict:
    """Train one model on the ``clm`` task and evaluate it (run in its own process for a clean peak RSS)."""
    torch.set_num_threads(args.threads)
    log = (lambda m: print(m, file=sys.stderr)) if args.verbose else (lambda m: None)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = clm_config(args, f"{tmp}/{name}")
        L = args.context
        builder = (lambda: build(name, args, L, depth, width)) if name == "transformer" else None
        cls = _TransformerCLM if name == "transformer" else _TimedCLM
        task = cls(cfg, builder or (lambda: PerceiverAR(cfg.model)), log=log)
        t0 = time.perf_counter()
        res = Trainer(task, log=log).fit()
        fit_s = time.perf_counter() - t0
        peak = peak_rss_mb()  # training (and the trainer's one-batch validation), before the test evaluation
        model = res.model.eval()
        t1 = time.perf_counter()
        test = bits_per_byte_with_se(task, model, "test")
        eval_s = time.perf_counter() - t1
    s, k = task.stamps, task.counts
    if len(s) >= 3:  # steps 2 .. S-1: no first-step warm-up, no final checkpoint/evaluation
        timed_s, timed_tokens, timed_steps = s[-1] - s[1], sum(k[1:-1]), len(s) - 2
    else:
        timed_s, timed_tokens, timed_steps = fit_s, sum(k), len(s)
    losses = [res.losses[i] for i in sorted(res.losses)]
    tail = losses[-max(1, len(losses) // 10) :]
    return {
        "status": "ok",
        "params": num_params(model),
        "steps": len(s),
        "fit_seconds": round(fit_s, 2),
        "step_seconds": timed_s / max(1, timed_steps),
        "train_tokens_per_s": timed_tokens / max(timed_s, 1e-9),
        "train_windows_per_s": timed_steps * args.batch_size / max(timed_s, 1e-9),
        "predicted_tokens_trained": sum(k),
        "final_train_loss": sum(tail) / len(tail),
        "eval_seconds": round(eval_s, 2),
        "test": test,
        "rss_at_first_step_mb": round(task.rss_at_first_step or 0.0, 1),
        "peak_rss_mb": round(peak, 1),
        "corpus": getattr(task, "corpus_name", args.corpus),
    }


def section_train(args: argparse.Namespace, specs: dict) -> dict:
    results = {}
    for name in MODELS:
        spec = {
            "kind": "train",
            "model": name,
            "depth": specs["transformer_depth"],
            "width": specs["transformer_width"],
        }
        final, _ = run_worker(args, spec)
        m = specs["models"][name]
        final.update({k: m[k] for k in ("description", "flops_per_token", "flops_per_token_counted")})
        final["params_spec"] = m["params"]
        if final["status"] == "ok":
            final["train_flops_approx"] = 3 * m["flops_per_window"] * args.batch_size * final["steps"]
        results[name] = final
        print(f"train: {name} done ({final['status']}, {final['worker_wall_s']:.0f} s)", file=sys.stderr, flush=True)
    return {
        "context": args.context,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "models": results,
    }


def print_train(t: dict, specs: dict) -> None:
    print(
        f"\n[train] clm on bytes: {t['steps']} steps x {t['batch_size']} windows of {t['context']} bytes, "
        f"same batches; held-out bits/byte on the last N bytes of each test window (SE over windows)"
    )
    hdr = (
        f"{'model':60s} {'params':>9s} {'MFLOP/tok':>9s} {'counted':>8s} {'s/step':>7s} {'pred tok/s':>10s} "
        f"{'train TFLOP':>11s} {'peak RSS MB':>11s} {'bits/B ± SE':>13s} {'acc':>6s}"
    )
    print(hdr)
    print("-" * len(hdr))
    uni = None
    for m in t["models"].values():
        counted = "" if m["flops_per_token_counted"] is None else f"{m['flops_per_token_counted'] / 1e6:8.3f}"
        if m["status"] != "ok":
            print(f"{m['description']:60s} {m['params_spec']:9,d} {m['flops_per_token'] / 1e6:9.3f} {counted:>8s} "
                  f"{m['status']}: {m.get('error', '')}")  # fmt: skip
            continue
        te = m["test"]
        uni = te["unigram_bits_per_byte"]
        print(
            f"{m['description']:60s} {m['params']:9,d} {m['flops_per_token'] / 1e6:9.3f} {counted:>8s} "
            f"{m['step_seconds']:7.3f} {m['train_tokens_per_s']:10.0f} {m['train_flops_approx'] / 1e12:11.2f} "
            f"{m['peak_rss_mb']:11.0f} "
            f"{te['bits_per_byte']:6.3f}±{te['bits_per_byte_se']:.3f} {te['accuracy']:6.1%}"
        )
    if uni is not None:
        print(
            f"{'baseline: unigram bytes (train counts)':60s} {'':9s} {'':9s} {'':8s} {'':7s} {'':10s} {'':11s} "
            f"{'':11s} {uni:6.3f}"
        )
    mt = specs["match"]
    print(
        f"FLOPs per predicted token: Transformer / Perceiver AR = {mt['flop_ratio_per_token']:.3f} "
        f"(Perceiver AR predicts {specs['models']['perceiver_ar']['predicted_tokens_per_window']} of "
        f"{t['context']} positions per window, the Transformer all); train TFLOP ~ 3 x forward FLOPs of all "
        f"training windows"
    )


# -- section 2: scaling ----------------------------------------------------------------------------
def scale_one(args: argparse.Namespace, name: str, context: int, depth: int, width: int) -> None:
    """Time training steps (forward, backward, AdamW) of one model at ``context`` -> result lines."""
    torch.set_num_threads(args.threads)
    start_memory_watchdog(args.memory_limit_gb)
    torch.manual_seed(args.seed)
    model = build(name, args, context, depth, width).train()
    flops = sum(forward_flops(name, model, context).values())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(NUM_SPECIAL_TOKENS, VOCAB_SIZE, (args.scaling_batch_size, context + 1))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        if name == "perceiver_ar":
            loss = model.loss(ids)
        else:
            loss = causal_lm_loss(model(ids[:, :-1]).logits, ids[:, 1:], z_loss=model.config.z_loss)
        loss.backward()
        opt.step()

    rss0 = current_rss_mb()
    times = []
    try:
        for i in range(1 + args.scaling_steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
            emit({"step": i, "seconds": times[-1]})
    except (RuntimeError, MemoryError) as e:
        if isinstance(e, MemoryError) or "alloc" in str(e).lower() or "memory" in str(e).lower():
            emit({"status": "oom", "error": str(e).splitlines()[0][:200], "final": True})
            return
        raise
    timed = times[1:] or times
    emit(
        {
            "status": "ok",
            "final": True,
            "step_seconds": statistics.median(timed),
            "step_seconds_all": times,
            "first_step_seconds": times[0],
            "rss_start_mb": round(rss0, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "params": num_params(model),
            "flops_per_window": flops,
        }
    )


def section_scaling(args: argparse.Namespace, specs: dict) -> dict:
    depth, width = specs["transformer_depth"], specs["transformer_width"]
    runs: dict[tuple[str, int], list[dict]] = {(m, c): [] for m in MODELS for c in args.contexts}
    failed: dict[str, str] = {}  # model -> why its larger contexts are skipped
    for rep in range(args.reps):
        for context in args.contexts:
            for name in MODELS:
                if name in failed:
                    continue
                spec = {"kind": "scale", "model": name, "context": context, "depth": depth, "width": width}
                final, progress = run_worker(args, spec, timeout=args.scaling_timeout)
                if final["status"] != "ok":
                    final["completed_steps"] = [p["seconds"] for p in progress]
                    failed[name] = f"{final['status']} at context {context}"
                runs[(name, context)].append(final)
                msg = final["status"] if final["status"] != "ok" else f"{final['step_seconds']:.3f} s/step"
                print(f"scaling rep {rep + 1}: {name} @ {context}: {msg}", file=sys.stderr, flush=True)
    rows = []
    for context in args.contexts:
        row: dict = {"context": context}
        for name in MODELS:
            rs = runs[(name, context)]
            bad = next((r for r in rs if r["status"] != "ok"), None)
            if bad is not None:
                entry = {"status": bad["status"], **{k: bad[k] for k in ("error", "completed_steps") if k in bad}}
                if bad["status"] == "timeout":
                    entry["timeout_s"] = args.scaling_timeout
            elif not rs:
                entry = {"status": f"skipped ({failed.get(name, 'not run')})"}
            else:
                entry = {
                    "status": "ok",
                    "reps": len(rs),
                    "step_seconds": statistics.median(r["step_seconds"] for r in rs),
                    "step_seconds_min": min(min(r["step_seconds_all"][1:] or r["step_seconds_all"]) for r in rs),
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                    "rss_start_mb": min(r["rss_start_mb"] for r in rs),
                    "flops_per_window": rs[0]["flops_per_window"],
                    "params": rs[0]["params"],
                }
            row[name] = entry
        p, t = row["perceiver_ar"], row["transformer"]
        if p["status"] == "ok" and t["status"] == "ok":
            row["time_ratio_transformer_over_perceiver"] = t["step_seconds"] / p["step_seconds"]
        rows.append(row)
    return {
        "batch_size": args.scaling_batch_size,
        "timed_steps": args.scaling_steps,
        "reps": args.reps,
        "timeout_s": args.scaling_timeout,
        "memory_limit_gb": args.memory_limit_gb,
        "num_latents": args.num_latents,
        "transformer": f"{depth} layers x {width}",
        "rows": rows,
    }


def print_scaling(s: dict) -> None:
    print(
        f"\n[scaling] training step (forward + backward + AdamW), batch {s['batch_size']}, N = {s['num_latents']} "
        f"latents, Transformer {s['transformer']}; median of {s['timed_steps']} steps x {s['reps']} reps "
        f"(fresh process each)"
    )
    hdr = (
        f"{'context':>8s} | {'AR s/step':>10s} {'peak MB':>8s} {'Δ MB':>7s} {'GFLOP':>7s} | "
        f"{'TF s/step':>10s} {'peak MB':>8s} {'Δ MB':>7s} {'GFLOP':>7s} | {'TF/AR time':>10s}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in s["rows"]:
        cells = []
        for name in MODELS:
            e = r[name]
            if e["status"] == "ok":
                cells.append(
                    f"{e['step_seconds']:10.3f} {e['peak_rss_mb']:8.0f} {e['peak_rss_mb'] - e['rss_start_mb']:7.0f} "
                    f"{e['flops_per_window'] * s['batch_size'] / 1e9:7.2f}"
                )
            else:
                cells.append(f"{e['status'][:35]:>35s}")
        ratio = r.get("time_ratio_transformer_over_perceiver")
        print(f"{r['context']:8d} | {cells[0]} | {cells[1]} | {'' if ratio is None else f'{ratio:10.2f}'}")
    print("Δ MB: peak RSS minus RSS before the first step; GFLOP: analytic forward FLOPs of one batch")


# -- section 3: generation -------------------------------------------------------------------------
def lucidrains_model(cfg: PerceiverARConfig) -> tuple[nn.Module | None, str]:
    """``perceiver_ar_pytorch.PerceiverAR`` at the nearest configuration -> ``(model, "ok")``, or
    ``(None, why not)``."""
    try:
        from perceiver_ar_pytorch import PerceiverAR as LucidrainsPerceiverAR
    except ImportError:
        return None, "perceiver-ar-pytorch not installed"
    d, h = cfg.num_latent_channels, cfg.num_self_attention_heads
    if cfg.num_input_channels != d:
        return None, "perceiver-ar-pytorch has one width (needs C == D)"
    if d // h < 32:
        return None, "perceiver-ar-pytorch rotates 32 channels per head (needs head width >= 32)"
    if cfg.num_latents >= cfg.max_context_length:
        return None, "perceiver-ar-pytorch needs a prefix (N < context)"
    model = LucidrainsPerceiverAR(
        num_tokens=cfg.vocab_size,
        dim=d,
        depth=cfg.num_self_attention_layers,
        max_seq_len=cfg.max_context_length,
        cross_attn_seq_len=cfg.max_context_length - cfg.num_latents,
        dim_head=d // h,
        heads=h,
        ff_mult=cfg.self_attention_widening_factor,
        perceive_depth=1,
        dropout=0.0,
    )
    return model, "ok"


def lucidrains_generate(net: nn.Module, prompt: Tensor, new_tokens: int) -> Tensor:
    """Greedy decoding through the package's ``AutoregressiveWrapper.generate``: its top-k filter keeps
    ``int((1 - filter_thres) · V)`` logits, here 1, so the multinomial draw is the argmax."""
    from perceiver_ar_pytorch.autoregressive_wrapper import AutoregressiveWrapper

    v = net.to_logits.out_features
    return AutoregressiveWrapper(net).generate(prompt, new_tokens, filter_thres=1 - 1.5 / v)


def random_perceiver(cfg: PerceiverARConfig, seed: int) -> PerceiverAR:
    """Random weights; the (zero-initialised) output projection gets ``N(0, 1/D)`` so greedy tokens vary."""
    torch.manual_seed(seed)
    model = PerceiverAR(cfg).eval()
    with torch.no_grad():
        nn.init.normal_(model.head.projection.weight, std=cfg.num_latent_channels**-0.5)
    return model


def section_generation(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    T = args.new_tokens
    rows = []
    for context in args.gen_contexts:
        cfg = perceiver_config(args, context)
        ours = random_perceiver(cfg, args.seed)
        torch.manual_seed(args.seed)
        theirs, why = lucidrains_model(cfg)
        if theirs is not None:
            theirs.eval()
        prompt = torch.randint(NUM_SPECIAL_TOKENS, VOCAB_SIZE, (1, context), generator=torch.Generator().manual_seed(1))
        runs: dict[str, list[float]] = {"cached": [], "uncached": [], "perceiver_ar_pytorch": []}
        tokens: dict[str, Tensor] = {}
        with torch.no_grad():
            ours.generate(prompt, 2)  # warm-up (first-call allocations), untimed
            ours.generate(prompt, 2, use_cache=False)
            if theirs is not None:
                lucidrains_generate(theirs, prompt, 2)
            for _ in range(args.gen_reps):  # interleaved
                for key in runs:
                    if key == "perceiver_ar_pytorch" and theirs is None:
                        continue
                    t0 = time.perf_counter()
                    if key == "perceiver_ar_pytorch":
                        out = lucidrains_generate(theirs, prompt, T)
                    else:
                        out = ours.generate(prompt, T, use_cache=key == "cached").new_tokens
                    runs[key].append(time.perf_counter() - t0)
                    tokens[key] = out
        row: dict = {"context": context, "prompt_tokens": context, "new_tokens": T}
        for key, ts in runs.items():
            if not ts:
                row[key] = {"status": why}
                continue
            best = min(ts)
            row[key] = {"status": "ok", "seconds": best, "tokens_per_s": T / best, "seconds_all": ts}
        row["params_ours"] = num_params(ours)
        row["params_perceiver_ar_pytorch"] = None if theirs is None else num_params(theirs)
        row["cached_uncached_same_tokens"] = float((tokens["cached"] == tokens["uncached"]).float().mean())
        rows.append(row)
        print(f"generation: context {context} done", file=sys.stderr, flush=True)
    return {
        "new_tokens": T,
        "num_latents": args.num_latents,
        "reps": args.gen_reps,
        "recompute_every": max(1, args.num_latents // 2),
        "rows": rows,
    }


def print_generation(g: dict) -> None:
    print(
        f"\n[generation] greedy, batch 1, prompt = a full context of random bytes, {g['new_tokens']} new tokens, "
        f"random weights; tokens/s (best of {g['reps']}); cached: a full-window recompute every "
        f"{g['recompute_every']} tokens (N/2 latents)"
    )
    hdr = (
        f"{'context':>8s} {'cached tok/s':>12s} {'uncached tok/s':>14s} {'cache speedup':>13s} "
        f"{'perceiver-ar-pytorch tok/s':>26s} {'same tokens':>11s} {'params ours':>11s} {'params theirs':>13s}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in g["rows"]:
        c, u, p = r["cached"], r["uncached"], r["perceiver_ar_pytorch"]
        pt = f"{p['tokens_per_s']:26.1f}" if p["status"] == "ok" else f"{p['status'][:26]:>26s}"
        theirs = r["params_perceiver_ar_pytorch"]
        print(
            f"{r['context']:8d} {c['tokens_per_s']:12.1f} {u['tokens_per_s']:14.1f} "
            f"{c['tokens_per_s'] / u['tokens_per_s']:13.2f} {pt} {r['cached_uncached_same_tokens']:11.0%} "
            f"{r['params_ours']:11,d} {'' if theirs is None else f'{theirs:13,d}'}"
        )
    print("same tokens: fraction of greedy tokens equal between cached and uncached Perceiver AR")


# -- main ------------------------------------------------------------------------------------------
def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


# --quick: toy sizes (options given on the command line win)
QUICK = {
    "context": 128,
    "num_latents": 32,
    "width": 32,
    "layers": 2,
    "heads": 1,
    "min_width": 16,
    "steps": 8,
    "batch_size": 4,
    "eval_windows": 16,
    "max_bytes": 300_000,
    "contexts": [128, 256],
    "scaling_steps": 1,
    "reps": 1,
    "scaling_timeout": 120.0,
    "gen_contexts": [128, 256],
    "new_tokens": 24,
}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: train,scaling,generation")
    ap.add_argument("--context", type=int, default=1024, help="train section: bytes of context L")
    ap.add_argument("--num-latents", type=int, default=128, help="Perceiver AR latents N (all sections)")
    ap.add_argument("--width", type=int, default=128, help="Perceiver AR width C = D")
    ap.add_argument("--layers", type=int, default=4, help="Perceiver AR latent self-attention layers")
    ap.add_argument("--heads", type=int, default=4, help="Perceiver AR heads (cross- and self-attention)")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--absolute-positions", choices=["none", "sinusoidal"], default="none")
    ap.add_argument("--flop-tolerance", type=float, default=0.10)
    ap.add_argument("--min-width", type=int, default=64)
    ap.add_argument("--tf-depth", type=int, default=None, help="override the FLOP-matched Transformer depth")
    ap.add_argument("--tf-width", type=int, default=None, help="override the FLOP-matched Transformer width")
    ap.add_argument("--no-count-flops", dest="count_flops", action="store_false", help="skip FlopCounterMode")
    ap.add_argument("--steps", type=int, default=1000, help="train section: steps of each model")
    ap.add_argument("--batch-size", type=int, default=8, help="train section: windows per step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-windows", type=int, default=256, help="held-out test windows (each scores N bytes)")
    ap.add_argument("--eval-batch-size", type=int, default=8)
    ap.add_argument("--max-bytes", type=int, default=None, help="use only this many corpus bytes")
    ap.add_argument("--corpus", default="brown")
    ap.add_argument("--contexts", type=_ints, default=[1024, 2048, 4096, 8192, 16384], help="scaling contexts")
    ap.add_argument("--scaling-batch-size", type=int, default=1)
    ap.add_argument("--scaling-steps", type=int, default=3, help="timed steps per measurement (after 1 warm-up)")
    ap.add_argument("--reps", type=int, default=2, help="scaling repetitions (interleaved)")
    ap.add_argument(
        "--scaling-timeout", type=float, default=None, help="seconds per scaling measurement (default 600; quick 120)"
    )
    ap.add_argument(
        "--memory-limit-gb", type=float, default=None, help="RSS limit per measurement (default: 80%% free)"
    )
    ap.add_argument("--gen-contexts", type=_ints, default=None, help="generation contexts (default: --contexts)")
    ap.add_argument("--new-tokens", type=int, default=128, help="generation: new tokens per call")
    ap.add_argument("--gen-reps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", action="store_true", help="tqdm progress bars")
    ap.add_argument("--verbose", action="store_true", help="trainer log lines and worker stderr")
    ap.add_argument("--quick", action="store_true", help="smoke run: toy sizes, a few steps")
    ap.add_argument("--json", type=Path, default=None, help="also write the summary here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return ap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.quick:
        given = _parser()
        for action in given._actions:
            action.default = argparse.SUPPRESS
        explicit = set(vars(given.parse_args(argv)))
        for key, value in QUICK.items():
            if key not in explicit:
                setattr(args, key, value)
    args.gen_contexts = args.gen_contexts or args.contexts
    args.scaling_timeout = args.scaling_timeout or 600.0
    if args.memory_limit_gb is None:
        args.memory_limit_gb = round(0.8 * available_memory_gb(), 1)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    args.section_list = sections
    return args


def worker_main(args: argparse.Namespace) -> None:
    spec = json.loads(args.worker)
    if spec["kind"] == "train":
        emit({**train_one(args, spec["model"], spec["depth"], spec["width"]), "final": True})
    elif spec["kind"] == "scale":
        scale_one(args, spec["model"], spec["context"], spec["depth"], spec["width"])
    else:
        raise ValueError(f"unknown worker kind {spec['kind']!r}")


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.argv = [a for a in argv]
    if args.worker is not None:
        worker_main(args)
        return {}
    if not any(a.startswith("--memory-limit-gb") for a in argv):
        args.argv += ["--memory-limit-gb", str(args.memory_limit_gb)]  # the same limit in every worker
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    specs = model_specs(args)
    for name, m in specs["models"].items():
        counted = (
            "" if m["flops_per_token_counted"] is None else f" (FlopCounterMode {m['flops_per_token_counted']:,.0f})"
        )
        print(
            f"{name}: {m['description']}, {m['params']:,} params, {m['flops_per_token']:,.0f} forward FLOPs per "
            f"predicted token{counted}",
            file=sys.stderr,
            flush=True,
        )
    summary: dict = {
        "sections": args.section_list,
        "quick": args.quick,
        "threads": args.threads,
        "config": {
            "context": args.context,
            "num_latents": args.num_latents,
            "width": args.width,
            "layers": args.layers,
            "heads": args.heads,
            "absolute_positions": args.absolute_positions,
        },
        "transformer_depth": specs["transformer_depth"],
        "transformer_width": specs["transformer_width"],
        "flop_match": specs["match"],
        "models": specs["models"],
    }
    if "train" in args.section_list:
        summary["train"] = section_train(args, specs)
    if "scaling" in args.section_list:
        summary["scaling"] = section_scaling(args, specs)
    if "generation" in args.section_list:
        summary["generation"] = section_generation(args)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    summary["machine"] = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    )
    if "train" in summary:
        print_train(summary["train"], specs)
    if "scaling" in summary:
        print_scaling(summary["scaling"])
    if "generation" in summary:
        print_generation(summary["generation"])
    print(f"\ntotal wall time {summary['wall_seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
