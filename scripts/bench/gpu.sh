#!/usr/bin/env bash
# The GPU benchmark, as one script to run on a machine with an NVIDIA GPU.
#
# Build here (no CUDA toolkit needed at build time) and carry the binaries:
#   CARGO_TARGET_DIR=target-gpu cargo bench --features cuda --no-run --bench encoders --bench train_step
#   mkdir -p bench-bin && cp target-gpu/release/deps/{encoders,train_step}-* bench-bin/   (executables only)
# Then on the GPU machine:
#   scripts/bench/gpu.sh bench-bin OUT_DIR
#
# Measures ViT-B/16 inference at batch 256 and the CLIP-HandID training step at batch 20
# (the paper's ViT-B/16 batch) with our cuda backend, the peak GPU memory of each (nvidia-smi
# polled every 100 ms: device memory in use, so the CUDA context is included), and, when
# PyTorch and open_clip are importable there, PyTorch's figures (fp32 and bf16 inference,
# fp32 training, torch.cuda.max_memory_allocated) via pytorch_compare.py.
set -euo pipefail
bin_dir=${1:?usage: gpu.sh BIN_DIR OUT_DIR}
out=${2:?usage: gpu.sh BIN_DIR OUT_DIR}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"

exe() { find "$bin_dir" -maxdepth 1 -type f -executable -name "$1-*" | head -n 1; }

# Runs a command while sampling the GPU's memory in use; prints the peak in MiB.
with_peak_memory() {
  local log=$1; shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$log.mem" &
  local sampler=$!
  "$@" > "$log" 2>&1 || { kill $sampler; cat "$log"; return 1; }
  kill $sampler
  sort -n "$log.mem" | tail -n 1
}

peak=$(CLIP_HANDID_BENCH_BATCH=256 with_peak_memory "$out/ours-vit-b256.log" "$(exe encoders)" --bench '^image_encoder/vit-b-16/b256$')
echo "ours image_encoder/vit-b-16/b256: $(grep -E 'time:|thrpt:' "$out/ours-vit-b256.log" | tr -s ' ' | head -n 2 | tr '\n' ' ') peak ${peak} MiB" | tee -a "$out/summary.txt"

peak=$(CLIP_HANDID_BENCH_BATCH=20 with_peak_memory "$out/ours-train-b20.log" "$(exe train_step)" --bench '^train_step/vit-b-16/b20$')
echo "ours train_step/vit-b-16/b20: $(grep -E 'time:|thrpt:' "$out/ours-train-b20.log" | tr -s ' ' | head -n 2 | tr '\n' ' ') peak ${peak} MiB" | tee -a "$out/summary.txt"

if python3 -c 'import torch, open_clip' 2>/dev/null; then
  python3 "$(dirname "$0")/pytorch_compare.py" --skip-rust --device cuda --groups image_encoder,train_step \
    --batch-infer 256 --batch-train 20 --bf16 --seconds 5 --json "$out/pytorch.json" | tee -a "$out/summary.txt"
else
  echo "PyTorch/open_clip not importable on this machine: PyTorch side skipped" | tee -a "$out/summary.txt"
fi
