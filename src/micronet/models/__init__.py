"""Micro-Net models: ``create(name, width=..., pretrained=...)`` and ``list_models()``.

>>> from micronet.models import create
>>> model = create("micronet508", width=0.25)
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from ..errors import MicronetError
from ._pretrained import get_pretrained, list_pretrained, load_pretrained, weights_dir
from ._registry import get_builder, list_models, register_model
from .card import DEFAULT_ARCH, DEFAULT_MPP, WeightsCard
from .micronet import MicroNet, MicroNetOutput, MicroNetSpec

__all__ = ["create", "list_models", "list_pretrained", "register_model", "MicroNet",
           "MicroNetOutput", "MicroNetSpec", "WeightsCard", "DEFAULT_ARCH", "DEFAULT_MPP",
           "get_pretrained", "load_pretrained", "load_init_weights", "weights_dir", "input_size",
           "normalize", "count_parameters", "count_flops"]


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
    card = None
    if pretrained:
        card = get_pretrained(name, pretrained)
        if width is not None and abs(width - card.width) > 1e-9:
            raise MicronetError(f"weights {card.name} are for width {card.width}, not {width}")
        if num_classes is not None and num_classes != card.num_classes:
            raise MicronetError(f"weights {card.name} have {card.num_classes} classes, "
                                f"not {num_classes}")
        width, num_classes = card.width, card.num_classes
        kwargs = {**card.model_kwargs, **kwargs}
    model = builder(width=1.0 if width is None else width,
                    num_classes=3 if num_classes is None else num_classes, **kwargs)
    if not hasattr(model, "build_kwargs"):  # what rebuilds it: see WeightsCard.model_kwargs
        model.build_kwargs = {**_constructor_defaults(type(model)), **kwargs}
    if card is not None:
        load_pretrained(model, card)
    return model


def load_init_weights(model: torch.nn.Module, source: str | Path) -> None:
    """Copy weights into ``model`` (fine-tuning): from a weights file, a run folder, or a
    shipped tag / dataset of the model's architecture (``"glas"``).

    Raises:
        MicronetError: unknown source, or weights that do not fit ``model``.
    """
    from .weights_io import load_state_into, load_weights

    if Path(source).exists():
        state, _ = load_weights(source)
        load_state_into(model, state, str(source))
    else:
        load_pretrained(model, get_pretrained(str(getattr(model, "name", "")), str(source)))


def input_size(arch: str) -> int:
    """The square tile size ``arch`` takes (built on the meta device: no memory, no init)."""
    with torch.device("meta"):
        return int(create(arch, width=1 / 64).input_size)


def _constructor_defaults(cls: type[torch.nn.Module]) -> dict[str, Any]:
    """Keyword defaults of a model class beyond width, classes and name."""
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty
            and p.name not in ("width", "num_classes", "name")}


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
    """FLOPs (2 × multiply-adds) of one forward pass on one tile, counted on the meta device
    (the model's own weights, wherever they are, are neither used nor moved)."""
    from torch.func import functional_call
    from torch.utils.flop_counter import FlopCounterMode

    s = model.input_size
    x = torch.empty(1, model.in_channels, s, s, device="meta")
    on_meta = {name: torch.empty_like(t, device="meta")
               for name, t in [*model.named_parameters(), *model.named_buffers()]}
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        functional_call(model, on_meta, (x,))
    model.train(was_training)
    return float(counter.get_total_flops())
