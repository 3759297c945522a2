"""Train Micro-Net-508 on a CUDA GPU inside a fixed wall-time budget, then export fp16 shards.

Used for the shipped GlaS model (run on a lent H100 with the training split packed by
``micronet data pack``). Steps: measure the steady training step time (bf16, channels_last,
sampler on the GPU), size the paper's 25-epoch schedule to the budget, train with validation on
the held-out images, and write the best weights as fp16 safetensors shards under 16 MiB.

    python scripts/gpu_train.py --data .pack/glas_train --out runs/gpu --minutes 6 --export OUT
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import torch

from micronet.models import normalize
from micronet.models.weights_io import load_weights, save_weights
from micronet.train.config import TrainConfig, apply_overrides
from micronet.train.data import load_training_data
from micronet.train.loop import _check_model, train
from micronet.train.loss import micronet_loss


def step_time(config: TrainConfig, device: torch.device, steps: int = 15) -> float:
    """Seconds per steady training step (after 5 warm-up steps), sampler included."""
    model = _check_model(config).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    data = load_training_data(config, device)
    gen = torch.Generator().manual_seed(123)
    bs = config.schedule.batch_size

    def one() -> None:
        b = data.sampler.sample(bs, gen)
        x = normalize(b.image).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(x)
        loss, _ = micronet_loss(out, b.target, b.weight, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(5):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--val-every", type=int, default=2)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--export", default=None, help="folder for fp16 shards + logs")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    base = apply_overrides(TrainConfig(), [
        f"data.root={args.data}", f"model.width={args.width}", f"run.out={args.out}",
        f"schedule.batch_size={args.batch_size}", f"schedule.epochs={args.epochs}",
        f"run.device={args.device}", f"run.val_every={args.val_every}",
        f"data.workers={args.workers}", "run.log_every=25", "run.checkpoint_every=500"])
    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    t_start = time.monotonic()
    dt = step_time(base, device)
    calib_s = time.monotonic() - t_start
    # ~12 % of the budget goes to validation and checkpoints
    steps_total = max(args.epochs, int(args.minutes * 60 * 0.88 / dt))
    per_epoch = max(1, steps_total // args.epochs)
    print(f"step {dt * 1000:.1f} ms at batch {args.batch_size} ({args.batch_size / dt:.0f} "
          f"samples/s); {per_epoch} steps/epoch x {args.epochs} epochs; calibration "
          f"{calib_s:.0f} s", flush=True)
    config = apply_overrides(base, [f"schedule.steps_per_epoch={per_epoch}",
                                    f"run.time_limit_min={args.minutes}"])
    util = None
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if device.type == "cuda":
        util = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                 "--format=csv,noheader,nounits", "-l", "5"],
                                stdout=open(Path(args.out + "_gpu_util.csv"), "w"))
    t0 = time.monotonic()
    result = train(config, progress=False)
    train_s = time.monotonic() - t0
    if util is not None:
        util.terminate()
    summary = {"step_ms": dt * 1000, "steps": result.step, "steps_per_epoch": per_epoch,
               "batch_size": args.batch_size, "train_s": train_s, "best_val_f1": result.best_score,
               "samples_per_s": result.step * args.batch_size / train_s,
               "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}
    util_csv = Path(args.out + "_gpu_util.csv")
    if util_csv.exists():
        rows = [r.split(",") for r in util_csv.read_text().splitlines() if r.strip()]
        if rows:
            summary["gpu_util_mean_pct"] = sum(float(r[0]) for r in rows) / len(rows)
            summary["gpu_mem_max_mib"] = max(float(r[1]) for r in rows)
    print(json.dumps(summary), flush=True)
    run = Path(args.out)
    (run / "gpu_summary.json").write_text(json.dumps(summary, indent=1))
    if args.export:
        out = Path(args.export)
        out.mkdir(parents=True, exist_ok=True)
        state, meta = load_weights(run / "best.safetensors")
        files = save_weights(state, out / "best_fp16.safetensors", meta, shard_mb=15,
                             dtype=torch.float16)
        for name in ("log.jsonl", "config.json", "gpu_summary.json"):
            shutil.copy(run / name, out / name)
        print("exported", [f.name for f in files], flush=True)


if __name__ == "__main__":
    main()
