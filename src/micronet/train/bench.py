"""``micronet bench train``: a naive fp32 NCHW training step vs the optimised step, one process.

Both steps use the same model weights, batch and loss; the optimised one adds channels_last and
bf16 autocast (where the device runs bf16 natively) and optionally ``torch.compile``, and on a CPU
runs after :func:`~micronet._allocator.keep_freed_memory` as ``micronet train`` does (without it
the bench under-reports the training speed: ~0.8 vs 1.19 samples/s on an AVX2 VM). Warm-up
(first steps, compilation, autotuning) is timed separately from the steady state.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch

from .._allocator import keep_freed_memory
from .._device import resolve_device, resolve_precision
from ..models import DEFAULT_ARCH, count_flops, create
from .step import training_step

__all__ = ["StepTiming", "bench_train", "time_steps", "matmul_tflops", "BF16_PEAK_TFLOPS"]

# Dense bf16 tensor-core peaks (TFLOP/s) by device-name fragment, from NVIDIA's data sheets.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0,
                    "4090": 165.0, "V100": 125.0}


@dataclass
class StepTiming:
    """Timing of one training-step variant."""

    name: str
    warmup_s: float
    step_s: float
    tflops: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], object], device: torch.device, steps: int,
               warmup: int = 1) -> tuple[float, float]:
    """Run ``step()`` ``warmup`` times, then ``steps`` times, waiting for the device around each
    phase.

    Returns:
        ``(warm-up seconds in all, seconds per steady step)``.
    """
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return warm, (time.perf_counter() - t0) / steps


def matmul_tflops(device: torch.device, dtype: torch.dtype | None, size: int = 2048,
                  repeats: int = 8) -> float:
    """The device's measured dense matmul rate (TFLOP/s, best of ``repeats`` ``size``² products,
    ``dtype`` or fp32): on a CPU the honest ceiling to report a step's GFLOP/s against, since
    data sheets do not say what two threads of a shared VM reach."""
    a = torch.randn(size, size, device=device, dtype=dtype or torch.float32)
    b = torch.randn(size, size, device=device, dtype=dtype or torch.float32)
    # one untimed first call (kernel selection), then the best of single timed products
    best = min(time_steps(lambda: a @ b, device, 1, warmup=int(i == 0))[1]
               for i in range(repeats))
    return 2 * size**3 / best / 1e12


def _time_steps(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor,
                weight: torch.Tensor, device: torch.device, amp: torch.dtype | None,
                channels_last: bool, steps: int, warmup: int,
                compile_: bool) -> tuple[float, float]:
    model = copy.deepcopy(model).train()
    if channels_last:
        # Module.to takes memory_format at run time; torch's overloads for it omit the keyword
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    # compiling a Module gives an OptimizedModule (a Module); torch types it as a callable
    net = cast(torch.nn.Module, torch.compile(model)) if compile_ else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        training_step(net, opt, x, target, weight, amp=amp, aux_weight=1.0)

    return time_steps(step, device, steps, warmup)


def bench_train(width: float = 0.125, batch_size: int = 2, device: str = "auto",
                steps: int = 3, warmup: int = 1, compile_: bool = False,
                model_name: str = DEFAULT_ARCH) -> dict[str, Any]:
    """Time naive and optimised training steps; returns figures and the speed-up ratio."""
    dev = resolve_device(device)
    torch.manual_seed(0)
    model = create(model_name, width=width).to(dev)
    s = model.input_size
    x = torch.randn(batch_size, 3, s, s, device=dev)
    target = torch.randint(0, 3, (batch_size, s, s), device=dev)
    weight = torch.ones(batch_size, s, s, device=dev)
    flops = count_flops(model) * 3 * batch_size  # fwd + 2× bwd
    amp = resolve_precision("auto", dev)
    # the naive step first: keep_freed_memory is process-wide and cannot be undone
    keep = dev.type == "cpu"
    variants = [("naive fp32 NCHW", None, False, False, False),
                (f"optimised ({'bf16' if amp else 'fp32'}, channels_last"
                 f"{', compiled' if compile_ else ''}{', kept freed memory' if keep else ''})",
                 amp, True, compile_, keep)]
    timings = []
    for name, a, cl, comp, keep_memory in variants:
        if keep_memory:
            keep_freed_memory()
        warm, step_s = _time_steps(model, x, target, weight, dev, a, cl, steps,
                                   warmup if not comp else max(warmup, 2), comp)
        timings.append(StepTiming(name, warm, step_s, flops / step_s / 1e12))
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "model": model_name, "width": width,
        "batch_size": batch_size, "gflop_per_step": flops / 1e9,
        "timings": [t.__dict__ for t in timings],
        "speedup": timings[0].step_s / timings[1].step_s}
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
        if peak:
            result["peak_tflops"], result["peak_source"] = peak, "data sheet, bf16"
    else:  # measured in this run, in the optimised step's precision
        result["peak_tflops"] = matmul_tflops(dev, amp)
        result["peak_source"] = f"measured {'bf16' if amp else 'fp32'} matmul"
    if "peak_tflops" in result:
        result["fraction_of_peak"] = timings[1].tflops / result["peak_tflops"]
    return result
