"""Peak RAM of one full-width Micro-Net-508 training step at batch 1 with gradient checkpointing.

    python benchmarks/bench_memory.py [--width 1.0] [--no-checkpointing]

Prints the step time and the process's peak resident memory (ru_maxrss), measured in one run.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from micronet.models import create
from micronet.train.step import model_input, training_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--no-checkpointing", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = create("micronet508", width=args.width).train().to(memory_format=torch.channels_last)
    model.set_grad_checkpointing(not args.no_checkpointing)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = model_input(torch.randint(0, 256, (1, 3, 508, 508), dtype=torch.uint8), True)
    target = torch.randint(0, 3, (1, 508, 508))
    weight = torch.ones(1, 508, 508)
    t0 = time.perf_counter()
    training_step(model, opt, x, target, weight, amp=torch.bfloat16, aux_weight=1.0)
    step_s = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"micronet508 width {args.width} batch 1, gradient checkpointing "
          f"{'off' if args.no_checkpointing else 'on'}: step {step_s:.1f} s, "
          f"peak RSS {peak_gib:.2f} GiB (weights + Adam state: "
          f"{sum(p.numel() for p in model.parameters()) * 16 / 2**30:.2f} GiB)")


if __name__ == "__main__":
    main()
