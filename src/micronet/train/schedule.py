"""Learning-rate schedules and the auxiliary-loss weight.

``paper``: lr = lr0·10^(−epoch/decay) and auxiliary weight 1/epoch (Raza et al. 2019).
``cosine``: a linear warm-up from lr0/100, then cosine decay that reaches ``lr_floor`` exactly at
the run's last step; with a wall-time budget the number of steps comes from the measured step
time (:func:`budget_steps`), so the floor arrives at the end of the budget, not half-way.
"""

from __future__ import annotations

import math

__all__ = ["learning_rate", "cosine_lr", "aux_weight", "budget_steps"]


def learning_rate(epoch_index: int, lr0: float = 1e-3, decay_epochs: float = 5.0) -> float:
    """Learning rate during epoch ``epoch_index`` (0-based: the first epoch runs at ``lr0``)."""
    return lr0 * 10.0 ** (-epoch_index / decay_epochs)


def cosine_lr(step: int, total_steps: int, lr0: float, floor: float = 0.0,
              warmup_steps: int = 0) -> float:
    """Learning rate of 0-based ``step`` of ``total_steps``: linear warm-up from ``lr0/100`` over
    ``warmup_steps``, then cosine from ``lr0`` to ``floor``, which step ``total_steps - 1`` (the
    last) gets exactly."""
    warmup_steps = min(warmup_steps, total_steps - 1)
    if step >= total_steps - 1:
        return floor
    if step < warmup_steps:
        return lr0 * (0.01 + 0.99 * step / warmup_steps)
    span = max(total_steps - 1 - warmup_steps, 1)
    progress = min(max((step - warmup_steps) / span, 0.0), 1.0)
    return floor + (lr0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def aux_weight(epoch_index: int) -> float:
    """Weight of each auxiliary loss: 1/epoch with epochs counted from 1 (Raza et al. 2019)."""
    return 1.0 / (epoch_index + 1)


def budget_steps(step: int, remaining_s: float, train_s_per_step: float,
                 validation_s: float, steps_between_validations: int) -> int:
    """Total steps that fit the remaining wall time: the steps done, plus as many more as the
    measured seconds per training step and per validation (one every
    ``steps_between_validations`` steps) leave room for; at least one more."""
    per_step = train_s_per_step + validation_s / max(steps_between_validations, 1)
    return step + max(1, int(remaining_s / per_step)) if per_step > 0 else step + 1
