"""Why does the byte Perceiver IO lag in masked language modelling? Short controlled runs, one factor at a time.

Every run trains the ``mlm`` task through the library's ``Trainer`` on the same data, the same batches (a
function of seed and step), the same number of steps and the same seed, with the **plain MLM loss** (no
auxiliary loss on visible bytes) unless the variant says otherwise. Each variant changes one thing against
``baseline`` (the demo recipe: ``demo_mlm_config`` with the paper's random initialisation, i.e. without its
``local_init``; AdamW lr 1e-3, 100 warm-up steps, cosine to 0.1×).

Measured on held-out (validation) windows of the Brown corpus, fixed masking seeds:

* masked-byte accuracy and bits/byte (over the 256 byte values), the MLM objective;
* **copy accuracy**: argmax at the *visible* (not chosen) byte positions equals the input byte. A model that
  routes "the byte at position p" through its latents to the query of position p scores ~100 %; one stuck at
  the unigram solution scores the frequency of the most common byte. This separates "cannot route position
  p to output p through the latents" from "cannot model language".

Controls: the FLOP-matched byte Transformer of ``bench/bytes_vs_transformer.py`` (same loss, data, optimizer,
steps) and a pure copy/denoising objective (loss on the visible bytes only).

    nice -n 10 python bench/mlm_diagnosis.py                      # every variant, 2 processes x 1 thread
    python bench/mlm_diagnosis.py --only baseline,fourier_positions --steps 300
    python bench/mlm_diagnosis.py --quick                          # smoke run (seconds)

Prints a table and, as the last line, a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bytes_vs_transformer import (  # noqa: E402
    ByteTransformerMLM,
    match_transformer,
    perceiver_flops,
    transformer_flops_dims,
)
from perceiver_io.adapters.text import NUM_SPECIAL_TOKENS  # noqa: E402
from perceiver_io.layers.position import sinusoid_codes  # noqa: E402
from perceiver_io.models.mlm import MaskedLanguageModel  # noqa: E402
from perceiver_io.tasks.mlm import IGNORE_INDEX, MLMConfig, MLMDataConfig, MLMTask, demo_mlm_config  # noqa: E402
from perceiver_io.training.trainer import TrainConfig, Trainer  # noqa: E402


# -- model changes that are not config options ---------------------------------------------------
def fourier_positions(model: nn.Module, scale: float = 0.02) -> None:
    """Input positions and decoder queries initialised to the same sinusoids (still trained), std ``scale``."""
    for emb in (model.input_adapter.position_embedding, model.head.query_builder.embedding):
        n, c = emb.embeddings.shape
        with torch.no_grad():
            emb.embeddings.copy_(sinusoid_codes(torch.arange(n), c) * scale * math.sqrt(2))


def aligned_positions(model: nn.Module, tie_qk: bool = False, scale: float = 0.02) -> None:
    """Routing present at initialisation: sinusoidal codes for the input positions, the decoder queries *and*
    the latents (latent ``n`` gets the code of position ``(n + 1/2)·L/N``), so that with ``tie_qk`` (the
    cross-attentions' key projection initialised equal to the query projection, ``Wqᵀ·Wk`` positive definite)
    latent ``n`` attends to the inputs near its position and query ``p`` to the latents near ``p``.
    Needs the byte, latent and query widths equal."""
    enc = model.encoder
    length, c = model.input_adapter.position_embedding.embeddings.shape
    n, d = enc.latents.embeddings.shape
    if c != d:
        raise ValueError(f"aligned_positions needs text.num_channels == num_latent_channels, got {c} and {d}")
    fourier_positions(model, scale)
    code = sinusoid_codes((torch.arange(n) + 0.5) * length / n, d)
    with torch.no_grad():
        enc.latents.embeddings.copy_(code * scale * math.sqrt(2))
        if tie_qk:
            for attn in (enc.cross_attention.attention, model.decoder.cross_attention.attention):
                attn.k_proj.weight.copy_(attn.q_proj.weight)


def zero_init_residuals(model: nn.Module) -> None:
    """Zero the last projection of every residual branch in the encoder (attention output and MLP output)."""
    enc = model.encoder
    blocks = [*enc.self_attention, enc.cross_attention]
    for b in blocks:
        if b is enc.cross_attention and not b.use_query_residual:
            continue
        nn.init.zeros_(b.attention.o_proj.weight)
        nn.init.zeros_(b.mlp[2].weight)


class _Zero(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)


def no_decoder_mlp(model: nn.Module) -> None:
    """Drop the decoder cross-attention's MLP (outputs = attention output only)."""
    model.decoder.cross_attention.mlp = _Zero()
    for p in model.decoder.cross_attention.mlp_norm.parameters():
        p.requires_grad_(False)


MUTATORS: dict[str, Callable[[nn.Module], None]] = {
    "fourier_positions": fourier_positions,
    "zero_init_residuals": zero_init_residuals,
    "aligned_positions": aligned_positions,
    "aligned_init": lambda model: aligned_positions(model, tie_qk=True),
    "no_decoder_mlp": no_decoder_mlp,
}


# -- variants -------------------------------------------------------------------------------------
@dataclass
class Variant:
    name: str
    factor: str
    change: str
    model: dict = field(default_factory=dict)  # MaskedLanguageModelConfig overrides (nested dicts)
    data: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    mutate: str | None = None  # a MUTATORS key
    objective: str = "mlm"  # "mlm" | "copy" (loss on the visible bytes only)
    arch: str = "perceiver"  # "perceiver" | "transformer"


def _aux(steps: int | None) -> dict:
    return {"unmasked_loss_weight": 0.5, "unmasked_loss_steps": steps}


def _local(alpha: float) -> dict:
    """``MaskedLanguageModelConfig.local_init``: both cross-attentions start local (Wq = Wk = alpha·I)."""
    return {"local_init": alpha}


def _enc(**overrides) -> dict:
    return {"encoder": overrides}


def variants(seq_len: int, steps: int) -> list[Variant]:
    V = Variant
    n8 = seq_len // 8  # M/N = 8
    mn8_local = {**_enc(num_latents=n8), **_local(1.5)}
    return [
        V("baseline", "-", "demo recipe, plain MLM loss"),
        V("transformer", "control", "FLOP-matched byte Transformer, same recipe", arch="transformer"),
        V("transformer_mixed", "control", "Transformer, mixed masking", arch="transformer", data={"masking": "mixed"}),
        V("copy_objective", "control", "loss on visible bytes only (copy/denoise)", objective="copy"),
        V("aux_loss", "loss", "+0.5 x loss on visible bytes, all steps", data=_aux(None)),
        V("aux_warmup", "loss", "aux loss for the first 25 % of steps, then plain MLM", data=_aux(steps // 4)),
        V("random_masking", "masking", "15 % random bytes instead of whole words", data={"masking": "random"}),
        V("mixed_masking", "masking", "whole words or random bytes, 50/50 per window", data={"masking": "mixed"}),
        V("lr_3e-4", "optimizer", "AdamW lr 3e-4", train={"lr": 3e-4}),
        V("lr_3e-3", "optimizer", "AdamW lr 3e-3", train={"lr": 3e-3}),
        V("no_warmup", "optimizer", "no warm-up", train={"warmup_steps": 0}),
        V("lamb", "optimizer", "LAMB lr 1.25e-3 (the paper's)", train={"optimizer": "lamb", "lr": 1.25e-3}),
        V("lamb_5e-3", "optimizer", "LAMB lr 5e-3", train={"optimizer": "lamb", "lr": 5e-3}),
        V("init_scale_1", "init", "token/position/query init std 1.0 (not 0.02)", model={"text": {"init_scale": 1.0}}),
        V("latent_init_1", "init", "latent init std 1.0", model={"encoder": {"latent_init_scale": 1.0}}),
        V("zero_init_residuals", "init", "zero-initialised residual branches (encoder)", mutate="zero_init_residuals"),
        V("fourier_positions", "positions", "sinusoidal input positions and queries", mutate="fourier_positions"),
        V("aligned_positions", "positions", "sinusoidal inputs, queries, latents", mutate="aligned_positions"),
        V("aligned_init", "positions", "aligned_positions + cross-attn Wk = Wq at init", mutate="aligned_init"),
        V("local_init", "positions", "aligned codes, unit latents, Wq = Wk = 3·I", model=_local(3.0)),
        V("local_init_a1.5", "positions", "local_init with Wq = Wk = 1.5·I (wider)", model=_local(1.5)),
        V("local_init_a1", "positions", "local_init with Wq = Wk = 1·I (wider)", model=_local(1.0)),
        V("local_init_a0.5", "positions", "local_init with Wq = Wk = 0.5·I (wider)", model=_local(0.5)),
        V("local_init_a6", "positions", "local_init with Wq = Wk = 6·I (sharper)", model=_local(6.0)),
        V("local_init_lr_3e-3", "positions", "local_init, AdamW lr 3e-3", model=_local(3.0), train={"lr": 3e-3}),
        V("local_init_aux_warmup", "positions", "local_init + aux loss, first 25 % of steps", model=_local(3.0),
          data=_aux(steps // 4)),
        V("pooled_latents", "init", "latents start from their input segment", model=_enc(latent_input_pooling=True)),
        V("query_residual", "decoder", "decoder query residual on", model={"decoder": {"use_query_residual": True}}),
        V("no_decoder_mlp", "decoder", "no decoder MLP", mutate="no_decoder_mlp"),
        V("latents_16", "latents", f"16 latents (M/N = {seq_len / 16:g})", model={"encoder": {"num_latents": 16}}),
        V("latents_128", "latents", f"128 latents (M/N = {seq_len / 128:g})", model={"encoder": {"num_latents": 128}}),
        V("mn8", "latents", f"N = L/8 = {n8} latents (M/N = 8)", model=_enc(num_latents=n8)),
        V("mn8_local", "latents", "M/N = 8, local_init 1.5", model=mn8_local),
        V("mn8_local_aux_warmup", "latents", "M/N = 8, local_init 1.5 + aux loss, first 25 % of steps",
          model=mn8_local, data=_aux(steps // 4)),
        V("mn8_local_xattn_heads_8", "latents", "M/N = 8, local_init 1.5, 8 encoder cross-attn heads",
          model={**mn8_local, **_enc(num_latents=n8, num_cross_attention_heads=8)}),
        V("mn8_local_heads_8", "latents", "M/N = 8, local_init 1.5, 8 encoder and 8 decoder heads (official)",
          model={**mn8_local, **_enc(num_latents=n8, num_cross_attention_heads=8), "decoder": {"num_heads": 8}}),
        V("mn8_local_query_residual", "latents", "M/N = 8, local_init 1.5, decoder query residual on",
          model={**mn8_local, "decoder": {"use_query_residual": True}}),
        V("xattn_heads_1", "cross-attention", "1 encoder cross-attn head", model=_enc(num_cross_attention_heads=1)),
        V("xattn_heads_8", "cross-attention", "8 encoder cross-attn heads", model=_enc(num_cross_attention_heads=8)),
        V("decoder_heads_1", "cross-attention", "1 decoder head", model={"decoder": {"num_heads": 1}}),
        V("decoder_heads_8", "cross-attention", "8 decoder heads", model={"decoder": {"num_heads": 8}}),
        V("layers_8", "depth", "8 latent self-attention layers", model={"encoder": {"num_self_attends_per_block": 8}}),
    ]  # fmt: skip


# -- the task with a variant's objective and masking -----------------------------------------------
class DiagnosisTask(MLMTask):
    def __init__(self, config: MLMConfig, variant: Variant, build: Callable[[], nn.Module], log=print) -> None:
        super().__init__(config, log=log)
        self.variant, self._build = variant, build

    def build_model(self) -> nn.Module:
        return self._build()

    def collate(self, items: list[bytes], seeds: list[int], masking: str | None = None) -> dict[str, Tensor]:
        batch = super().collate(items, seeds, masking)
        inputs, labels = batch["input_ids"], batch["labels"]
        visible = (labels == IGNORE_INDEX) & (inputs >= NUM_SPECIAL_TOKENS)
        batch["visible_labels"] = torch.where(visible, inputs, IGNORE_INDEX)
        return batch

    def count(self, batch: dict[str, Tensor]) -> int:
        key = "visible_labels" if self.variant.objective == "copy" else "labels"
        return int((batch[key] != IGNORE_INDEX).sum())

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        logits = model(batch["input_ids"], batch["input_mask"]).logits.flatten(0, 1).float()
        visible = batch["visible_labels"].flatten()
        if self.variant.objective == "copy":
            return F.cross_entropy(logits, visible, reduction="sum")
        loss = F.cross_entropy(logits, batch["labels"].flatten(), reduction="sum")
        d = self.config.data
        w = d.unmasked_loss_weight if d.unmasked_loss_steps is None or self.step < d.unmasked_loss_steps else 0.0
        return loss + w * F.cross_entropy(logits, visible, reduction="sum") if w > 0 else loss

    @torch.no_grad()
    def copy_accuracy(self, model: nn.Module, split: str = "valid") -> float:
        """Argmax at visible byte positions == the input byte, on the evaluation windows."""
        windows = self._eval_windows(split)
        bs = self.config.data.eval_batch_size
        correct = n = 0
        for lo in range(0, len(windows), bs):
            chunk = windows[lo : lo + bs]
            batch = self.collate(chunk, [10**12 + lo + i for i in range(len(chunk))], masking="whole_word")
            logits = model(batch["input_ids"], batch["input_mask"]).logits
            sel = batch["visible_labels"] != IGNORE_INDEX
            correct += int((logits[sel].argmax(-1) == batch["visible_labels"][sel]).sum())
            n += int(sel.sum())
        return correct / max(1, n)


def build_config(variant: Variant, args: argparse.Namespace, run_dir: str) -> MLMConfig:
    model = demo_mlm_config(args.seq_len).replace(local_init=None)  # the paper's initialisation
    if variant.model:
        model = model.replace(**variant.model)
    data = MLMDataConfig(
        seq_len=args.seq_len,
        unmasked_loss_weight=0.0,
        unmasked_loss_steps=None,
        eval_windows=args.eval_windows,
        max_bytes=args.max_bytes,
        num_fill_mask_examples=0,
    )
    if variant.data:
        data = data.replace(**variant.data)
    train = TrainConfig(
        seed=args.seed,
        max_steps=args.steps,
        batch_size=args.batch_size,
        lr=1e-3,
        warmup_steps=min(100, args.steps // 8),
        weight_decay=0.01,
        num_threads=1,
        eval_every=0,
        eval_batches=1,
        checkpoint_every=args.steps,
        keep_checkpoints=1,
        log_every=max(1, args.steps // 10),
        run_dir=run_dir,
        resume=False,
        progress=False,
        tensorboard=False,
        plot=False,
        save_model=False,
    )
    if variant.train:
        train = train.replace(**variant.train)
    return MLMConfig(model=model, data=data, train=train)


def variant_flops(variant: Variant, args: argparse.Namespace) -> int:
    """Analytic forward FLOPs per example (as ``bench/bytes_vs_transformer.py`` counts them)."""
    cfg = build_config(variant, args, "unused")
    model = MaskedLanguageModel(cfg.model)
    target = sum(perceiver_flops(model, args.seq_len).values())
    if variant.mutate and variant.arch == "perceiver":
        MUTATORS[variant.mutate](model)
        return sum(perceiver_flops(model, args.seq_len).values())
    if variant.arch == "transformer":
        depth, width = match_transformer(target, args.seq_len, 0.10, 64)
        return sum(transformer_flops_dims(args.seq_len, width, depth).values())
    return target


def _effective_keys(cross_attention: nn.Module, x_q: Tensor, x_kv: Tensor) -> float:
    """exp(entropy) of a cross-attention's weights, mean over queries and heads: how many keys a query reads."""
    attn = cross_attention.attention
    q = attn._split_heads(attn.q_proj(cross_attention.q_norm(x_q)))
    k = attn._split_heads(attn.k_proj(cross_attention.kv_norm(x_kv)))
    w = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1)
    return float((-(w * w.clamp_min(1e-12).log()).sum(-1)).exp().mean())


@torch.no_grad()
def init_widths(variant: Variant, args: argparse.Namespace) -> dict[str, float]:
    """At initialisation (seed ``args.seed``), on random bytes: how many inputs a latent reads in the encoder
    cross-attention and how many latents a query reads in the decoder (effective numbers, see above)."""
    torch.manual_seed(args.seed)
    model = MaskedLanguageModel(build_config(variant, args, "unused").model).eval()
    if variant.mutate:
        MUTATORS[variant.mutate](model)
    ids = torch.randint(NUM_SPECIAL_TOKENS, 262, (1, args.seq_len))
    inputs = model.input_adapter(ids).inputs
    latents = model.encoder.latents(1)
    queries = model.head.query_builder(1, inputs)
    return {
        "encoder_inputs_per_latent": _effective_keys(model.encoder.cross_attention, latents, inputs),
        "decoder_latents_per_query": _effective_keys(model.decoder.cross_attention, queries, latents),
    }


def run_variant(variant: Variant, args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config(variant, args, f"{tmp}/run")
        if variant.arch == "transformer":
            target = sum(perceiver_flops(MaskedLanguageModel(cfg.model), args.seq_len).values())
            depth, width = match_transformer(target, args.seq_len, 0.10, 64)

            def build() -> nn.Module:
                return ByteTransformerMLM(args.seq_len, width, depth)

            detail = f"{depth} layers x {width}"
        else:

            def build() -> nn.Module:
                model = MaskedLanguageModel(cfg.model)
                if variant.mutate:
                    MUTATORS[variant.mutate](model)
                return model

            detail = ""
        task = DiagnosisTask(cfg, variant, build, log=lambda m: None)
        t0 = time.perf_counter()
        res = Trainer(task, log=lambda m: None).fit()
        seconds = time.perf_counter() - t0
        model = res.model
        model.eval()
        metrics = task.evaluate(model, "valid")
        copy_acc = task.copy_accuracy(model, "valid")
        words = task.fill_mask_scores(model)  # whole words on held-out test sentences, both decodings
        losses = res.losses
    return {
        "name": variant.name,
        "factor": variant.factor,
        "change": variant.change + (f" ({detail})" if detail else ""),
        "params": sum(p.numel() for p in model.parameters()),
        "accuracy": metrics["accuracy"],
        "bits_per_byte": metrics["bits_per_byte"],
        "copy_accuracy": copy_acc,
        "fill_mask": words,
        "baseline_most_frequent_accuracy": metrics["baseline_most_frequent_accuracy"],
        "baseline_unigram_bits_per_byte": metrics["baseline_unigram_bits_per_byte"],
        "masked_bytes": int(metrics["masked_bytes"]),
        "loss_curve": {str(k): round(v, 4) for k, v in sorted(losses.items())},
        "seconds": round(seconds, 1),
    }


COLUMNS = [  # (header, width, row -> text)
    ("variant", -22, lambda r: r["name"]),
    ("factor", -16, lambda r: r["factor"]),
    ("change", -52, lambda r: r["change"][:52]),
    ("params", 9, lambda r: f"{r['params']:,d}"),
    ("MFLOPs", 7, lambda r: f"{r['mflops']:.1f}"),
    ("masked acc", 10, lambda r: f"{r['accuracy']:.1%}"),
    ("bits/B", 7, lambda r: f"{r['bits_per_byte']:.3f}"),
    ("copy acc", 9, lambda r: f"{r['copy_accuracy']:.1%}"),
    ("real words it/ind", 17, lambda r: _words(r.get("fill_mask"))),
    ("s", 6, lambda r: f"{r['seconds']:.0f}"),
]


def _words(w: dict | None) -> str:
    """Whole-word fill-mask: the share of filled words that are real words, iterative / independent decoding."""
    return f"{w['real_word_iterative']:.0%} / {w['real_word_independent']:.0%}" if w else "-"


def _line(cells: list[str]) -> str:
    return " ".join(f"{c:<{-w}s}" if w < 0 else f"{c:>{w}s}" for c, (_, w, _) in zip(cells, COLUMNS, strict=True))


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(
        f"byte MLM diagnosis on Brown: {args.steps} steps x {args.batch_size} windows of {args.seq_len} bytes, "
        f"seed {args.seed}; held-out validation windows ({rows[0]['masked_bytes']:,} masked bytes)"
    )
    hdr = _line([h for h, _, _ in COLUMNS])
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(_line([fmt(r) for _, _, fmt in COLUMNS]))
    r = rows[0]

    def baseline(name: str, column: str, value: str) -> str:
        cells = [""] * len(COLUMNS)
        cells[0], cells[1] = name, "baseline"
        cells[[h for h, _, _ in COLUMNS].index(column)] = value
        return _line(cells)

    print(baseline("most frequent byte", "masked acc", f"{r['baseline_most_frequent_accuracy']:.1%}"))
    print(baseline("unigram bytes", "bits/B", f"{r['baseline_unigram_bits_per_byte']:.3f}"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-len", type=int, default=64, help="bytes per example incl. [CLS]/[SEP] (the demo's 64)")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-windows", type=int, default=512)
    ap.add_argument("--max-bytes", type=int, default=None)
    ap.add_argument("--only", default=None, help="comma-separated variant names")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (1 thread each)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 variants, 6 steps, small data")
    ap.add_argument("--json", type=Path, default=None, help="also write the summary here")
    ap.add_argument(
        "--init-widths", action="store_true", help="no training: how local each variant's cross-attentions start"
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.batch_size, args.eval_windows = 6, 4, 8
        args.max_bytes = args.max_bytes or 200_000
        args.only = args.only or "baseline,transformer,copy_objective"
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    chosen = variants(args.seq_len, args.steps)
    if args.only:
        names = args.only.split(",")
        unknown = sorted(set(names) - {v.name for v in chosen})
        if unknown:
            raise SystemExit(f"--only: unknown variants {unknown}; known: {[v.name for v in chosen]}")
        chosen = [v for v in chosen if v.name in names]
    if args.init_widths:
        widths = {v.name: init_widths(v, args) for v in chosen if v.arch == "perceiver"}
        print(f"{'variant':22s} {'inputs per latent':>17s} {'latents per query':>17s}  (at init, of {args.seq_len})")
        for name, w in widths.items():
            print(f"{name:22s} {w['encoder_inputs_per_latent']:17.1f} {w['decoder_latents_per_query']:17.1f}")
        print(json.dumps({"seq_len": args.seq_len, "seed": args.seed, "init_widths": widths}))
        return widths
    t0 = time.perf_counter()
    results: dict[str, dict] = {}
    if args.jobs <= 1:
        for v in chosen:
            results[v.name] = run_variant(v, args)
            print(f"done {v.name}: {results[v.name]['accuracy']:.1%}", file=sys.stderr, flush=True)
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(run_variant, v, args): v for v in chosen}
            for fut in as_completed(futures):
                r = fut.result()
                results[r["name"]] = r
                done = f"masked {r['accuracy']:.1%}, copy {r['copy_accuracy']:.1%} ({r['seconds']:.0f} s)"
                print(f"done {r['name']}: {done}", file=sys.stderr, flush=True)
    rows = [results[v.name] for v in chosen]
    for v, r in zip(chosen, rows, strict=True):
        r["mflops"] = variant_flops(v, args) / 1e6
    print_table(rows, args)
    summary = {
        "seq_len": args.seq_len,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "variants": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
