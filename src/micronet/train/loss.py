"""The paper's loss: pixel-weighted cross-entropy on the main and the three auxiliary outputs.

l_k = Σ_x w(x)·(−log p_k(x)) for k in {main, aux1, aux2, aux3}, total = l_main + Σ l_aux / epoch.
The sum over pixels is divided by the number of pixels so the scale does not depend on the patch
size or batch (this only rescales the learning rate's effect by a constant).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models import MicroNetOutput

__all__ = ["weighted_cross_entropy", "micronet_loss"]


def weighted_cross_entropy(logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Mean over pixels of ``weight · CE``; logits ``(B,C,H,W)``, target ``(B,H,W)`` int64."""
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    return (ce * weight).mean()


def micronet_loss(out: MicroNetOutput, target: Tensor, weight: Tensor,
                  aux_weight: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its detached parts (``main``, ``aux``) for logging (not synchronised: read
    them with ``float()`` only when logging, as that waits for a GPU)."""
    main = weighted_cross_entropy(out.main, target, weight)
    aux = torch.stack([weighted_cross_entropy(a, target, weight) for a in out.aux]).sum()
    total = main + aux_weight * aux
    return total, {"main": main.detach(), "aux": aux.detach()}
