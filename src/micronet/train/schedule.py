"""The paper's schedule: lr = lr0·10^(−epoch/5) and auxiliary-loss weight 1/epoch."""

from __future__ import annotations

__all__ = ["learning_rate", "aux_weight"]


def learning_rate(epoch_index: int, lr0: float = 1e-3, decay_epochs: float = 5.0) -> float:
    """Learning rate during epoch ``epoch_index`` (0-based: the first epoch runs at ``lr0``)."""
    return lr0 * 10.0 ** (-epoch_index / decay_epochs)


def aux_weight(epoch_index: int) -> float:
    """Weight of each auxiliary loss: 1/epoch with epochs counted from 1 (Raza et al. 2019)."""
    return 1.0 / (epoch_index + 1)
