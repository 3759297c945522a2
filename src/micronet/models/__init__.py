"""Micro-Net models: ``create(name, width=..., pretrained=...)`` and ``list_models()``.

>>> from micronet.models import create
>>> model = create("micronet508", width=0.25)
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import MicronetError
from ._pretrained import PretrainedCfg, get_pretrained, list_pretrained, load_pretrained
from ._registry import get_builder, list_models, register_model
from .micronet import MicroNet, MicroNetOutput, MicroNetSpec

__all__ = ["create", "list_models", "list_pretrained", "register_model", "MicroNet",
           "MicroNetOutput", "MicroNetSpec", "PretrainedCfg", "get_pretrained", "normalize",
           "count_parameters", "count_flops"]


def create(name: str, width: float | None = None, num_classes: int | None = None,
           pretrained: str | None = None, **kwargs: Any) -> MicroNet:
    """Build a registered model, optionally with shipped weights.

    Args:
        name: architecture (see :func:`list_models`), or ``arch.tag`` for shipped weights.
        width: channel multiplier; ``None`` = 1.0, or the weights' width when ``pretrained``.
        num_classes: output classes; ``None`` = 3 (background, gland, contour).
        pretrained: weights tag or dataset (``"glas"``), see :func:`list_pretrained`.
        **kwargs: passed to the builder (``dropout``, ``in_channels``). ``None`` values are
            dropped so unset CLI options keep the defaults.

    Raises:
        ValueError: unknown architecture or bad width.
        MicronetError: unknown weights, or weights that disagree with ``width``/``num_classes``.
    """
    if "." in name and pretrained is None:
        name, pretrained = name.split(".", 1)
    builder = get_builder(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    cfg = None
    if pretrained:
        cfg = get_pretrained(name, pretrained)
        if width is not None and abs(width - cfg.width) > 1e-9:
            raise MicronetError(f"weights {cfg.name} are for width {cfg.width}, not {width}")
        if num_classes is not None and num_classes != cfg.num_classes:
            raise MicronetError(f"weights {cfg.name} have {cfg.num_classes} classes, "
                                f"not {num_classes}")
        width, num_classes = cfg.width, cfg.num_classes
    model = builder(width=1.0 if width is None else width,
                    num_classes=3 if num_classes is None else num_classes, **kwargs)
    if cfg is not None:
        load_pretrained(model, cfg)
    return model


def normalize(images: torch.Tensor, mean: tuple[float, ...] = (0.5, 0.5, 0.5),
              std: tuple[float, ...] = (0.5, 0.5, 0.5)) -> torch.Tensor:
    """Scale uint8 ``(B, 3, H, W)`` images (or floats in 0..255) to the network's input range.

    The default maps 0..255 to -1..1, which suits tanh activations.
    """
    x = images.float() / 255.0
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: MicroNet) -> float:
    """FLOPs (2 × multiply-adds) of one forward pass on one tile, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    s = model.input_size
    x = torch.empty(1, model.in_channels, s, s, device="meta")
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    model.train(was_training)
    return float(counter.get_total_flops())
