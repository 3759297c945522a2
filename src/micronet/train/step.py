"""One optimisation step, shared by the training loop, ``micronet bench train`` and scripts.

Keeping the step in one place means the benchmark times exactly what training runs.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..models import normalize
from .loss import micronet_loss

__all__ = ["model_input", "training_step"]


def model_input(image: Tensor, channels_last: bool) -> Tensor:
    """A ``(B, 3, H, W)`` image batch (0..255) normalised for the model, in its memory format."""
    x = normalize(image)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def training_step(net: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, target: Tensor,
                  weight: Tensor, *, amp: torch.dtype | None, aux_weight: float,
                  grad_clip: float = 0.0, parameters: Iterable[Tensor] | None = None,
                  dice_weight: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Forward (autocast to ``amp`` when given), the paper's loss, backward, optimiser step.

    Returns the detached total loss and its parts; reading them synchronises a GPU, so callers
    convert them to floats only when they log.
    """
    with torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        out = net(x)
    loss, parts = micronet_loss(out, target, weight, aux_weight, dice_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(list(parameters or net.parameters()), grad_clip)
    optimizer.step()
    return loss.detach(), parts
