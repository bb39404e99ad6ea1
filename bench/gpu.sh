#!/usr/bin/env bash
# The GPU run, in one go (< 8 min on one H100/H200-class GPU):
#   1. the side-by-side suite (bench/compare.py): ours vs transformers vs perceiver-pytorch on the
#      language (deepmind/language-perceiver) and ImageNet (vision-perceiver-fourier) configurations,
#      bf16 autocast, flash SDPA, with and without torch.compile; it measures the GPU's bf16 matmul
#      peak in the same run and reports MFU = model FLOPs / time / that peak;
#   2. FSDP2 with NCCL on the GPUs present (torchrun, train.strategy=fsdp, bf16 parameters with fp32
#      gradient reduction): a short MLM run, its step rate and losses;
# and writes the tables and JSON summaries to $OUT (default bench/out/gpu).
#
#   bash bench/gpu.sh              # on a GPU machine
#   bash bench/gpu.sh --dry-run    # the same steps at tiny sizes on the CPU (gloo), in about a minute
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-bench/out/gpu}
mkdir -p "$OUT"
dry=0
[[ "${1:-}" == "--dry-run" ]] && dry=1
log() { echo "[gpu.sh $(date +%H:%M:%S)] $*"; }

if [[ $dry == 1 ]]; then
  ngpu=0; nproc=${NPROC:-2}; device=cpu
  compare=(--device cpu --quick --no-compile --inprocess --only language:train:fp32,imagenet:train:fp32 --batch 1 --reps 1)
  fsdp=(train.device=cpu train.precision=fp32 train.max_steps=3 train.batch_size=4 train.warmup_steps=1
        data.seq_len=64 data.eval_windows=4 data.num_fill_mask_examples=1 train.eval_batches=1
        model.encoder.num_latents=8 model.encoder.num_latent_channels=32 model.encoder.num_self_attends_per_block=1
        model.text.num_channels=32 model.decoder.num_query_channels=32)
else
  ngpu=$("$PY" -c "import torch; print(torch.cuda.device_count())")
  [[ $ngpu -ge 1 ]] || { echo "bench/gpu.sh: no CUDA device (use --dry-run on a CPU)" >&2; exit 2; }
  nproc=$ngpu; device=cuda
  compare=(--device cuda --only language:infer+train:bf16,imagenet:infer+train:bf16 --batch 8 --reps 3 --max-time 15
           --precisions bf16 --compile-precisions bf16 --compile-configs language,imagenet)
  fsdp=(train.device=cuda train.precision=bf16 train.max_steps=200 train.batch_size=$((64 * ngpu)) train.warmup_steps=20
        train.eval_batches=4 train.checkpoint_every=100)
fi
log "device=$device gpus=$ngpu; tables -> $OUT"
"$PY" -c "import torch, json; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda,
  'devices': [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}))" > "$OUT/device.json"

log "1/2 side by side (bench/compare.py ${compare[*]})"
"$PY" bench/compare.py "${compare[@]}" | tee "$OUT/compare.md"
tail -n 1 "$OUT/compare.md" > "$OUT/compare.json"

log "2/2 FSDP2 on $nproc process(es) ($([[ $dry == 1 ]] && echo gloo || echo nccl))"
run="$OUT/fsdp-run"
rm -rf "$run"
"$PY" -m torch.distributed.run --nproc-per-node "$nproc" --master-port "${PORT:-29521}" -m perceiver_io.cli \
  train mlm train.strategy=fsdp train.run_dir="$run" train.progress=false train.tensorboard=false train.plot=false \
  train.log_every=10 "${fsdp[@]}" 2>&1 | tee "$OUT/fsdp.log"
"$PY" - "$run" "$nproc" > "$OUT/fsdp.md" <<'PY'
import csv, json, sys
run, nproc = sys.argv[1], int(sys.argv[2])
rows = list(csv.DictReader(open(f"{run}/metrics.csv")))
train = {int(r["step"]): float(r["value"]) for r in rows if r["split"] == "train" and r["metric"] == "loss"}
rate = [float(r["value"]) for r in rows if r["metric"] == "examples_per_s"]
valid = {r["metric"]: float(r["value"]) for r in rows if r["split"] == "valid"}
print(f"| processes | steps | first loss | last loss | examples/s (last log) | valid |")
print(f"|---|---|---|---|---|---|")
print(f"| {nproc} | {max(train)} | {train[min(train)]:.4f} | {train[max(train)]:.4f} | {rate[-1]:.0f} | "
      + ", ".join(f"{k} {v:.4f}" for k, v in valid.items()) + " |")
print(json.dumps({"fsdp_processes": nproc, "steps": max(train), "last_loss": train[max(train)],
                  "examples_per_s": rate[-1], **{f"valid_{k}": v for k, v in valid.items()}}))
PY
cat "$OUT/fsdp.md"
log "done: $(ls "$OUT" | tr '\n' ' ')"
