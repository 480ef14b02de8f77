#!/usr/bin/env bash
# The GPU paths, measured: run this on the first machine with a GPU (CI has none, so nothing here runs
# there). It prints its figures; copy them into README ("On a GPU") with the machine's name.
#
#   bash benchmarks/gpu_check.sh [OUT]        # default results/gpu_check; about 10 minutes on one GPU
#
# 1. torch's CUDA build, the device, whether bf16 is native there
# 2. 2-epoch training (20,000 images) at batch 32 and 512, with and without bf16: images/s
# 3. the same training twice with cuda_exact (the default): identical losses?  and once --no-cuda-exact
# 4. a 4-trial search at one GPU a trial, then 8 trials at 0.25 GPU a trial: trials per minute of each
# 5. with two GPUs or more: a 2-worker data-parallel retraining over NCCL (best.py --workers 2)
set -euo pipefail
OUT=${1:-results/gpu_check}
mkdir -p "$OUT"

python - <<'PY'
import torch
assert torch.cuda.is_available(), f"torch {torch.__version__} sees no CUDA GPU: install its CUDA build first"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} x "
      f"{torch.cuda.get_device_name(0)}, bf16 native {torch.cuda.is_bf16_supported(including_emulation=False)}")
PY

train() {  # train NAME FLAGS...: 2 epochs on 20,000 images on the GPU, quietly
  local name=$1; shift
  python -m mnist.train -e 2 --limit 20000 --device cuda --out "$OUT/$name" "$@" > "$OUT/$name.log"
}
for batch in 32 512; do
  train "b${batch}_bf16" -b "$batch" --amp
  train "b${batch}_fp32" -b "$batch" --no-amp
done
train same_a -b 512
train same_b -b 512
train fast -b 512 --no-cuda-exact

python - "$OUT" <<'PY'
import sys
from pathlib import Path
import pandas as pd
out = Path(sys.argv[1])
for name in ("b32_bf16", "b32_fp32", "b512_bf16", "b512_fp32", "fast"):
    metrics = pd.read_csv(out / name / "metrics.csv")
    print(f"train {name}: {metrics['images_per_s'].iloc[-1]:.0f} images/s (epoch 2), val_acc {metrics['val_acc'].iloc[-1]:.4f}")
a, b = (pd.read_csv(out / name / "metrics.csv") for name in ("same_a", "same_b"))
print(f"same seed twice (cuda_exact): train losses identical: {a['train_loss'].tolist() == b['train_loss'].tolist()} "
      f"({a['train_loss'].tolist()} vs {b['train_loss'].tolist()})")
PY

search() {  # search NAME SECONDS-LOG FLAGS...: a cpu-quick search on the GPUs; prints trials per minute
  local name=$1; shift
  local started=$SECONDS
  python hpo/search.py --experiment experiments/cpu-quick.yaml --storage-path "$OUT" --name "$name" "$@" \
    > "$OUT/$name.log" 2>&1
  local trials
  trials=$(python -c "import pandas as pd; print(len(pd.read_csv('$OUT/$name/trials.csv')))")
  echo "search $name: $trials trials in $((SECONDS - started)) s: $(python -c "print(f'{$trials * 60 / max(1, $SECONDS - $started):.1f}')") trials/min"
}
rm -rf "$OUT/one_gpu_each" "$OUT/quarter_gpu_each"
search one_gpu_each --num-samples 4 --gpus-per-trial 1
search quarter_gpu_each --num-samples 8 --gpus-per-trial 0.25 --max-concurrent 8

if [ "$(python -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  started=$SECONDS
  NCCL_DEBUG=WARN python hpo/best.py --search "$OUT/one_gpu_each" --workers 2 --gpus-per-worker 1 --seeds 1 \
    --epochs 2 --no-baseline > "$OUT/ddp.log" 2>&1
  echo "data-parallel retraining, 2 workers x 1 GPU (NCCL): $((SECONDS - started)) s, $(grep 'test accuracy' "$OUT/ddp.log" | tail -1)"
else
  echo "data-parallel retraining over NCCL: skipped (one GPU)"
fi
