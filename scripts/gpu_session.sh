#!/usr/bin/env bash
# One device call: CUDA tests, a GlaS training part within a time budget, CUDA benchmarks.
# Results go to $OUT: fp16 weight shards (< 16 MiB each) and meta.tar (logs, config, figures).
#
# The device accepts 64 MiB of working tree: the shipped weights (57 MB) plus the training pack
# (56 MB) do not fit. `scripts/device_carry.sh prepare GLAS_ZIP` packs the training split into
# .pack/glas_train (carry it) and parks the shipped weights outside the tree; `... restore`
# puts them back after the device calls.
#   first part:          MINUTES=8 BUDGET=16 TRAIN_ONLY=1 scripts/gpu_session.sh
#   next part, same warm machine:  RESUME=1 MINUTES=7 EXPORT=best TRAIN_ONLY=1 scripts/gpu_session.sh
set -u
export PYTHONPATH=$PWD/src MICRONET_NO_PROGRESS=1 PYTHONUNBUFFERED=1
M=${MINUTES:-5.5}
mkdir -p "$OUT/meta"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/meta/gpu.txt"
[ -z "${TRAIN_ONLY:-}" ] && timeout 90 python -m pytest -q -m gpu -p no:cacheprovider tests/test_models.py tests/test_sampling.py tests/test_augment.py \
  2>&1 | tail -3 | tee "$OUT/meta/gpu_tests.txt"
EXPORT_ARGS=()
[ -n "${EXPORT:-}" ] && EXPORT_ARGS=(--export "$OUT/w" --export-which "$EXPORT")
if [ -n "${RESUME:-}" ]; then
  python scripts/gpu_train.py --resume runs/gpu --minutes "$M" "${EXPORT_ARGS[@]}" 2>&1 | tee "$OUT/meta/train.log"
else
  python scripts/gpu_train.py --data .pack/glas_train --out runs/gpu --width 0.25 --batch-size 16 \
    --epochs 25 --minutes "$M" --budget-minutes "${BUDGET:-$M}" --val-every 2 --workers 12 \
    --best-metric val_f1_tuned --set data.val_split=grade --set data.val_fraction=0.15 \
    "${EXPORT_ARGS[@]}" 2>&1 | tee "$OUT/meta/train.log"
fi
[ -z "${TRAIN_ONLY:-}" ] && timeout 60 python -m micronet bench train --device cuda --width 0.25 --batch-size 16 --steps 10 \
  --json "$OUT/meta/bench_w025.json" 2>&1 | tee -a "$OUT/meta/bench.txt"
[ -z "${TRAIN_ONLY:-}" ] && timeout 120 python -m micronet bench train --device cuda --width 1 --batch-size 4 --steps 3 \
  --warmup 2 --compile --json "$OUT/meta/bench_w1_compiled.json" 2>&1 | tee -a "$OUT/meta/bench.txt"
cp runs/gpu/log.jsonl runs/gpu/config.json runs/gpu/split.json runs/gpu/postprocess.json runs/gpu/gpu_summary.json runs/gpu_gpu_util.csv "$OUT/meta/" 2>/dev/null
tar -C "$OUT" -cf "$OUT/meta.tar" meta && rm -rf "$OUT/meta"
ls -la "$OUT" "$OUT/w" 2>/dev/null
