"""Device and precision choices shared by training and inference."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from .errors import MicronetError

__all__ = ["resolve_device", "cpu_has_fast_bf16", "autocast_dtype"]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; an unavailable CUDA request is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MicronetError(f"device {name!r} requested but CUDA is not available here")
    return device


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 dot products (AVX512-BF16 or AMX), where oneDNN's bf16
    convolutions beat fp32; on older CPUs bf16 is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` (auto | bf16 | fp16 | fp32); ``None`` = no autocast."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise MicronetError(f"precision {precision!r}: expected auto, bf16, fp16 or fp32")
    if device.type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_fast_bf16() else None
