"""Tiled transposed convolutions vs torch's: the recipe's CPU training step with the
``kernel == stride`` deconvolutions (the ×2/×4/×8 auxiliary upsampling and the decoder's ×2) run
as one matrix product and a tile shuffle (:class:`micronet.models.blocks.TiledDeconv2d`, the
default) or as oneDNN deconvolutions (``torch.nn.ConvTranspose2d.forward``). Same weights, same
results; each variant in fresh processes, alternating, with the training allocator setting.

A profile of the recipe's step (Micro-Net-252 w0.25, batch 8, bf16, channels_last) on the
2-core Intel AMX VM put the ×8 branch's deconvolution backward at 13 % of the step and all
``kernel == stride`` deconvolutions at ~18 %.

    python benchmarks/bench_deconv.py [--steps 8] [--rounds 2] [--out benchmarks/results/deconv.md]
"""

from __future__ import annotations

import os

from bench_allocator import child as time_recipe_step  # same step, same figures
from bench_allocator import compare

VARIANTS = {"tiled (default)": {}, "torch ConvTranspose2d": {"MICRONET_BENCH_TORCH_DECONV": "1"}}


def child(steps: int, warmup: int, batch: int) -> None:
    """Time the recipe's step in this process, with torch's deconvolution if asked; print JSON."""
    if os.environ.get("MICRONET_BENCH_TORCH_DECONV"):
        from torch import nn

        from micronet.models.blocks import TiledDeconv2d

        TiledDeconv2d.forward = nn.ConvTranspose2d.forward  # type: ignore[method-assign]
    os.environ["MICRONET_BENCH_MALLOPT"] = "1"  # as `micronet train` runs on CPU
    time_recipe_step(steps, warmup, batch)


def main() -> None:
    compare(__file__, __doc__, VARIANTS, child,
            "Tiled vs torch transposed convolutions in the CPU training step",
            "kernel == stride deconvolution", "torch ConvTranspose2d", "speed-up")


if __name__ == "__main__":
    main()
