#!/usr/bin/env bash
# One device call: CUDA tests, the GlaS training run within a time budget, CUDA benchmarks.
# Results go to $OUT: fp16 weight shards (< 16 MiB each) and meta.tar (logs, config, figures).
set -u
export PYTHONPATH=$PWD/src MICRONET_NO_PROGRESS=1 PYTHONUNBUFFERED=1
M=${MINUTES:-5.5}
mkdir -p "$OUT/meta"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/meta/gpu.txt"
[ -z "${TRAIN_ONLY:-}" ] && timeout 90 python -m pytest -q -m gpu -p no:cacheprovider tests/test_models.py tests/test_sampling.py tests/test_augment.py \
  2>&1 | tail -3 | tee "$OUT/meta/gpu_tests.txt"
python scripts/gpu_train.py --data .pack/glas_train --out runs/gpu --width 0.25 --batch-size 16 \
  --epochs 25 --minutes "$M" --val-every 2 --workers 12 --export "$OUT/w" 2>&1 | tee "$OUT/meta/train.log"
[ -z "${TRAIN_ONLY:-}" ] && timeout 60 python -m micronet bench train --device cuda --width 0.25 --batch-size 16 --steps 10 \
  --json "$OUT/meta/bench_w025.json" 2>&1 | tee -a "$OUT/meta/bench.txt"
[ -z "${TRAIN_ONLY:-}" ] && timeout 75 python -m micronet bench train --device cuda --width 1 --batch-size 4 --steps 3 \
  --warmup 2 --json "$OUT/meta/bench_w1_eager.json" 2>&1 | tee -a "$OUT/meta/bench.txt"
mv "$OUT/w/log.jsonl" "$OUT/w/config.json" "$OUT/w/gpu_summary.json" "$OUT/meta/"; cp runs/gpu_gpu_util.csv "$OUT/meta/" 2>/dev/null
tar -C "$OUT" -cf "$OUT/meta.tar" meta && rm -rf "$OUT/meta"
ls -la "$OUT" "$OUT/w"
