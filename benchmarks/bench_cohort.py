"""Does a Dask cluster pay off for a cohort? Wall time for N small slides in one process vs a
local cluster of W worker processes, with the per-slide overhead and a 1,000-slide estimate.

Slides: synthetic H&E-coloured pyramidal TIFFs (``--size`` px square at 0.62 µm/px, the model's
resolution), segmented by ``micronet508`` at ``--width`` with random weights (the cost per tile
is the real network's; the glands found do not matter here). One process: ``segment_cohort``
without a client, torch using all cores. Cluster: ``LocalCluster`` of W processes, one slide at a
time each, ``cores // W`` torch threads each; its start-up (spawning workers, loading the model
once per worker) is timed apart from the run.

    python benchmarks/bench_cohort.py                    # 8 slides, 2 workers
    python benchmarks/bench_cohort.py --slides 16 --workers 4 --size 2048 --width 0.25

Writes ``benchmarks/results/cohort.md`` unless --out.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from micronet._io import atomic_path
from micronet.infer.bench import synthetic_image
from micronet.infer.cohort import local_cluster, segment_cohort
from micronet.models import create
from micronet.models.weights_io import save_weights

REPO = Path(__file__).resolve().parents[1]


def write_slides(folder: Path, count: int, size: int) -> list[Path]:
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from fakes import write_pyramid

    return [write_pyramid(folder / f"slide{i:02d}.tif", synthetic_image(size, seed=i), mpp=0.62,
                          downsamples=(4,)) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slides", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=1024, help="slide side in px")
    parser.add_argument("--width", type=float, default=0.0625, help="micronet508 width")
    parser.add_argument("--cohort", type=int, default=1000, help="slides in the estimate")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/cohort.md")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        slides = write_slides(root, args.slides, args.size)
        torch.manual_seed(0)
        weights = root / "w.safetensors"
        save_weights(create("micronet508", width=args.width).state_dict(), weights,
                     {"arch": "micronet508", "width": str(args.width), "num_classes": "3"})
        spec = {"weights": str(weights), "device": "cpu", "precision": "fp32"}
        quiet = {"progress": False, "echo": lambda _: None}

        torch.set_num_threads(cores)
        t0 = time.perf_counter()
        assert segment_cohort(slides, root / "single", spec, threads=cores, **quiet) == []
        single = time.perf_counter() - t0

        t0 = time.perf_counter()
        from distributed import Client

        with local_cluster(args.workers, dashboard=None) as cluster, Client(cluster) as client:
            threads = max(1, cores // args.workers)
            client.run(_warm, spec, threads)  # start-up: every worker loads the model once
            startup = time.perf_counter() - t0
            t1 = time.perf_counter()
            assert segment_cohort(slides, root / "cluster", spec, client=client,
                                  threads=threads, **quiet) == []
            run = time.perf_counter() - t1
        rows = _summary(root / "cluster")
    busy = sum(float(r["seconds"]) for r in rows)
    per_slide = run * args.workers / args.slides  # worker-seconds per slide, overhead included
    overhead = (run * args.workers - busy) / args.slides
    load = os.getloadavg()[0]
    lines = [
        "# Cohort on a local Dask cluster vs one process",
        "",
        f"`python benchmarks/bench_cohort.py --slides {args.slides} --workers {args.workers} "
        f"--size {args.size} --width {args.width}`  ",
        f"{platform.processor() or platform.machine()}, {cores} cores, torch "
        f"{torch.__version__}; load average {load:.1f} at the end (the CPU is shared with "
        "other jobs, so the figures are noisy).",
        "",
        f"{args.slides} synthetic slides of {args.size}x{args.size} px at 0.62 µm/px, "
        f"micronet508 width {args.width} (random weights), CPU fp32.",
        "",
        "| run | wall time (s) | s / slide |",
        "|---|---|---|",
        f"| one process ({cores} torch threads) | {single:.1f} | {single / args.slides:.2f} |",
        f"| local cluster, {args.workers} workers x {max(1, cores // args.workers)} thread | "
        f"{run:.1f} (+ {startup:.1f} start-up) | {run / args.slides:.2f} |",
        "",
        f"Speed-up of the run: **{single / run:.2f}x** ({single / (run + startup):.2f}x with "
        "the cluster's start-up).",
        f"Per slide on a worker: {busy / args.slides:.2f} s segmenting, "
        f"{overhead:.2f} s of Dask overhead (scheduling, transfer, recording).",
        "",
        f"Estimate for {args.cohort:,} such slides: {args.cohort} x {per_slide:.2f} "
        f"worker-s / N workers = {args.cohort * per_slide / 3600:.2f} worker-hours, e.g. "
        f"{args.cohort * per_slide / 3600 / 8:.2f} h on 8 workers and "
        f"{args.cohort * per_slide / 3600 / 32:.2f} h on 32 (like-sized workers, no queue "
        "wait). A real slide holds far more tissue than these: scale by its tiles.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp_out:
        tmp_out.write_text(text)


def _warm(spec: dict, threads: int) -> None:
    """Load the worker's model (as its first slide would)."""
    from micronet.infer.cohort_tasks import warm_worker

    torch.set_num_threads(threads)
    warm_worker(spec)


def _summary(folder: Path) -> list[dict[str, str]]:
    import csv

    return list(csv.DictReader((folder / "summary.csv").open()))


if __name__ == "__main__":
    main()
