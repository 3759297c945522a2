"""Train Micro-Net-508 on a CUDA GPU inside a fixed wall-time budget, then export fp16 shards.

Used for the shipped GlaS model (run on a lent H100 with the training split packed by
``micronet data pack``). Steps: measure the steady training step time (bf16, channels_last,
sampler on the GPU), size the paper's 25-epoch schedule to the budget, train with validation on
the held-out images, and write the best (or last) weights as fp16 safetensors shards under
16 MiB. A schedule longer than one device call runs in parts on the same warm machine: the first
part sizes the whole schedule (``--budget-minutes``), later parts continue from ``last.pt``
(weights, optimiser, RNG) and stop at ``--minutes`` each.

    python scripts/gpu_train.py --data .pack/glas_train --out runs/gpu --minutes 8 \
        --budget-minutes 16
    python scripts/gpu_train.py --resume runs/gpu --minutes 8 --export $OUT/w
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import torch

from micronet._device import resolve_precision
from micronet.models.weights_io import load_weights, save_weights
from micronet.train.bench import time_steps
from micronet.train.config import BEST_METRICS, TrainConfig, apply_overrides, load_config
from micronet.train.data import load_training_data
from micronet.train.loop import build_model, train
from micronet.train.step import model_input, training_step


def step_time(config: TrainConfig, device: torch.device, steps: int = 15) -> float:
    """Seconds per steady training step (after 5 warm-up steps), sampler included."""
    model = build_model(config).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    data = load_training_data(config, device)
    gen = torch.Generator().manual_seed(123)
    amp = resolve_precision(config.run.precision, device)

    def one() -> None:
        b = data.sampler.sample(config.schedule.batch_size, gen)
        training_step(model, opt, model_input(b.image, True), b.target, b.weight, amp=amp,
                      aux_weight=1.0)

    return time_steps(one, device, steps, warmup=5)[1]


def gpu_monitor(path: Path, device: torch.device) -> subprocess.Popen | None:
    """Sample GPU utilisation and memory every 5 s into ``path`` (CSV) while training runs."""
    if device.type != "cuda":
        return None
    return subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                             "--format=csv,noheader,nounits", "-l", "5"], stdout=open(path, "w"))


def gpu_summary(path: Path) -> dict[str, float]:
    """Mean utilisation and peak memory from :func:`gpu_monitor`'s CSV."""
    rows = [r.split(",") for r in path.read_text().splitlines() if r.strip()] \
        if path.exists() else []
    if not rows:
        return {}
    return {"gpu_util_mean_pct": sum(float(r[0]) for r in rows) / len(rows),
            "gpu_mem_max_mib": max(float(r[1]) for r in rows)}


def fresh_config(args: argparse.Namespace, device: torch.device) -> tuple[TrainConfig, float]:
    """Measure the step time and size the paper's schedule to ``--budget-minutes``."""
    base = apply_overrides(TrainConfig(), [
        f"data.root={args.data}", f"model.width={args.width}", f"run.out={args.out}",
        f"schedule.batch_size={args.batch_size}", f"schedule.epochs={args.epochs}",
        f"run.device={args.device}", f"run.val_every={args.val_every}",
        f"run.best_metric={args.best_metric}", f"data.workers={args.workers}",
        "run.log_every=25", "run.checkpoint_every=500", *args.set])
    dt = step_time(base, device)
    # ~12 % of the budget goes to validation and checkpoints
    steps_total = max(args.epochs, int((args.budget_minutes or args.minutes) * 60 * 0.88 / dt))
    per_epoch = max(1, steps_total // args.epochs)
    print(f"step {dt * 1000:.1f} ms at batch {args.batch_size} ({args.batch_size / dt:.0f} "
          f"samples/s); {per_epoch} steps/epoch x {args.epochs} epochs", flush=True)
    return apply_overrides(base, [f"schedule.steps_per_epoch={per_epoch}"]), dt


def export(run: Path, out: Path, which: str) -> list[str]:
    """Write ``which`` (best | last) weights of ``run`` as fp16 shards under 16 MiB, plus logs."""
    out.mkdir(parents=True, exist_ok=True)
    state, meta = load_weights(run / f"{which}.safetensors")
    files = save_weights(state, out / f"{which}_fp16.safetensors", meta, shard_mb=15,
                         dtype=torch.float16)
    for name in ("log.jsonl", "config.json", "gpu_summary.json"):
        if (run / name).exists():
            shutil.copy(run / name, out / name)
    return [f.name for f in files]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", help="training folder (fresh runs)")
    ap.add_argument("--out", help="run folder (fresh runs)")
    ap.add_argument("--resume", help="continue this run folder from its last.pt")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--minutes", type=float, default=6.0, help="wall-time limit of this part")
    ap.add_argument("--budget-minutes", type=float, default=0.0,
                    help="training time of the whole schedule over all parts (default: --minutes)")
    ap.add_argument("--val-every", type=int, default=2)
    ap.add_argument("--best-metric", default="val_f1_tuned", choices=BEST_METRICS)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--export", default=None, help="folder for fp16 shards + logs")
    ap.add_argument("--export-which", default="best", choices=["best", "last"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="any other training-config override (fresh runs; repeatable)")
    args = ap.parse_args()
    if not args.resume and not (args.data and args.out):
        ap.error("a fresh run needs --data and --out (or pass --resume RUN)")

    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    if args.resume:
        run = Path(args.resume)
        config = load_config(run / "config.json")
        dt = None
    else:
        run = Path(args.out)
        run.parent.mkdir(parents=True, exist_ok=True)
        config, dt = fresh_config(args, device)
    config = apply_overrides(config, [f"run.time_limit_min={args.minutes}"])
    steps_before = _steps_in_summary(run) if args.resume else 0
    util_csv = run.parent / f"{run.name}_gpu_util.csv"
    util = gpu_monitor(util_csv, device)
    t0 = time.monotonic()
    result = train(config, resume=run if args.resume else None, progress=False)
    train_s = time.monotonic() - t0
    if util is not None:
        util.terminate()
    summary = {"step_ms": dt * 1000 if dt else None, "steps": result.step,
               "part_steps": result.step - steps_before, "batch_size": config.schedule.batch_size,
               "part_train_s": train_s, "best_score": result.best_score,
               "best_metric": config.run.best_metric,
               "samples_per_s": (result.step - steps_before) * config.schedule.batch_size / train_s,
               "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
               **gpu_summary(util_csv)}
    print(json.dumps(summary), flush=True)
    (run / "gpu_summary.json").write_text(json.dumps(summary, indent=1))
    if args.export:
        print("exported", export(run, Path(args.export), args.export_which), flush=True)


def _steps_in_summary(run: Path) -> int:
    """Steps done before this part (from the previous part's summary)."""
    path = run / "gpu_summary.json"
    return int(json.loads(path.read_text())["steps"]) if path.exists() else 0


if __name__ == "__main__":
    main()
