"""Segmentation benchmark: `micronet bench segment` plus a precision check, as one script.

    python benchmarks/bench_segment.py --size 4000 --widths 0.125,0.25 --device cuda --check

Prints the benchmark table (each row measured in a fresh process: MPx/s, peak RSS, speed vs a
plain non-overlapping tile loop) and, with ``--check``, how far autocast (bf16/fp16) moves the
class probabilities from fp32 on the same device and on the CPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from micronet.infer import Segmenter
from micronet.infer.bench import format_rows, run_segment_benchmark, synthetic_image
from micronet.models import create


def precision_check(device: str, width: float = 0.25, size: int = 1024) -> None:
    """Max |Δp| of auto precision vs fp32 (same device), and vs CPU fp32 on one tile."""
    torch.manual_seed(0)
    model = create("micronet508", width=width).eval()
    image = synthetic_image(size)
    out = {}
    for precision in ("auto", "fp32"):
        seg = Segmenter(model, device=device, precision=precision)
        seg.predict(image[:508, :508], progress=False)  # warm-up
        start = time.perf_counter()
        out[precision] = seg.predict(image, return_probabilities=True, progress=False)
        print(f"{seg!r}: {size}x{size} in {time.perf_counter() - start:.2f} s")
    a = out["auto"].probabilities.astype(np.float32)
    b = out["fp32"].probabilities.astype(np.float32)
    agree = (a.argmax(0) == b.argmax(0)).mean()
    print(f"auto vs fp32 on {device}: max |dp| {np.abs(a - b).max():.4f}, "
          f"mean {np.abs(a - b).mean():.5f}, argmax agreement {agree:.5f}")
    tile = image[None, :508, :508]
    cpu = Segmenter(model, device="cpu", precision="fp32").predict_tiles(tile)
    dev = Segmenter(model, device=device, precision="auto").predict_tiles(tile)
    print(f"{device} auto vs cpu fp32, one tile: max |dp| {np.abs(cpu - dev).max():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--widths", default="0.125,0.25")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--check", action="store_true", help="also run the precision check")
    args = parser.parse_args()
    if args.check:
        precision_check(args.device)
    rows = run_segment_benchmark(args.size, [float(w) for w in args.widths.split(",")],
                                 batch_size=args.batch_size, device=args.device,
                                 baseline=not args.no_baseline)
    print(format_rows(rows))


if __name__ == "__main__":
    main()
