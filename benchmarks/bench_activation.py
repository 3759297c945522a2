"""The activation lever's cost: the recipe's CPU training step (Micro-Net-252 w0.25, bf16,
channels_last, AdamW, the training allocator setting) with the paper's tanh, with ReLU, and with
GroupNorm + ReLU (``model.act`` / ``model.norm``). Each variant in fresh processes, alternating,
so the VM's drifting speed falls on all of them alike.

The 25-minute ablation arms (`training_runs/ablation/`) ran the ReLU arm at ~1.4× the tanh arm's
steps; arms run one after another on a VM whose speed moves by 2× within an hour, so this
benchmark is where the step-time ratio is measured.

    python benchmarks/bench_activation.py [--steps 8] [--rounds 2] [--batch 4] \
        [--out benchmarks/results/activation.md]
"""

from __future__ import annotations

import os

from bench_allocator import child as time_recipe_step  # same step, same figures
from bench_allocator import compare

VARIANTS = {
    "tanh (paper)": {"MICRONET_BENCH_STYLE": "none,tanh"},
    "ReLU": {"MICRONET_BENCH_STYLE": "none,relu"},
    "GroupNorm + ReLU": {"MICRONET_BENCH_STYLE": "group,relu"},
}


def child(steps: int, warmup: int, batch: int) -> None:
    """Time the recipe's step in this process with the variant's layers; print JSON."""
    norm, act = os.environ["MICRONET_BENCH_STYLE"].split(",")
    os.environ["MICRONET_BENCH_MALLOPT"] = "1"  # as `micronet train` runs on CPU
    time_recipe_step(steps, warmup, batch, norm=norm, act=act)


def main() -> None:
    compare(__file__, __doc__, VARIANTS, child, "Activation and normalisation: the CPU training "
            "step", "layers", "tanh (paper)", "vs tanh",
            lambda args: {"peak RSS (GiB)": lambda b: f"{b['peak_rss_gib']:.2f}"})


if __name__ == "__main__":
    main()
