"""The paper's loss: pixel-weighted cross-entropy on the main and the three auxiliary outputs.

l_k = Σ_x w(x)·(−log p_k(x)) for k in {main, aux1, aux2, aux3}, total = l_main + Σ l_aux / epoch.
The sum over pixels is divided by the number of pixels so the scale does not depend on the patch
size or batch (this only rescales the learning rate's effect by a constant).

Optionally (``schedule.dice_weight``, not in the paper) a soft Dice loss on the main output's gland
class is added: it weighs each gland pixel by the size of the batch's gland area rather than by
pixel count, a common aid for object-level scores (nnU-Net trains CE + Dice).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models import MicroNetOutput

__all__ = ["weighted_cross_entropy", "soft_dice_loss", "micronet_loss"]


def weighted_cross_entropy(logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Mean over pixels of ``weight · CE``; logits ``(B,C,H,W)``, target ``(B,H,W)`` int64."""
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    return (ce * weight).mean()


GLAND_CLASS = 1  # index of the gland class in the 3-class target (background, gland, contour)


def soft_dice_loss(logits: Tensor, target: Tensor, cls: int = GLAND_CLASS,
                   smooth: float = 1.0) -> Tensor:
    """``1 − soft Dice`` of class ``cls`` over the whole batch (one ratio, so patches without
    glands do not give a noisy per-sample Dice); logits ``(B,C,H,W)``, target ``(B,H,W)``."""
    p = torch.softmax(logits.float(), dim=1)[:, cls]
    t = (target == cls).to(p.dtype)
    overlap = (p * t).sum()
    return 1 - (2 * overlap + smooth) / (p.sum() + t.sum() + smooth)


def micronet_loss(out: MicroNetOutput, target: Tensor, weight: Tensor,
                  aux_weight: float, dice_weight: float = 0.0,
                  ) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its detached parts (``main``, ``aux``, and ``dice`` when ``dice_weight``
    is set) for logging (not synchronised: read them with ``float()`` only when logging, as that
    waits for a GPU)."""
    main = weighted_cross_entropy(out.main, target, weight)
    aux = torch.stack([weighted_cross_entropy(a, target, weight) for a in out.aux]).sum()
    total = main + aux_weight * aux
    parts = {"main": main.detach(), "aux": aux.detach()}
    if dice_weight:
        dice = soft_dice_loss(out.main, target)
        total = total + dice_weight * dice
        parts["dice"] = dice.detach()
    return total, parts
