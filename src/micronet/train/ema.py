"""Exponential moving average of the weights (``schedule.ema_decay``; not in the paper).

A short CPU run validates a network whose weights still jump from step to step (the hold-out's
object F1 moves ±0.02 between validations at the end of a cosine schedule). Validating and
saving an average of the recent weights instead gives a smoother, usually better model at the
cost of one in-place ``lerp`` per step. The decay warms up as ``min(decay, (1+n)/(10+n))``
(timm's ``ModelEmaV3``) so the average is not dominated by the random initial weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """EMA of a model's parameters and floating-point buffers (kept in the model's dtypes)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), not {decay}")
        self.model, self.decay, self.updates = model, decay, 0
        self.average = [t.detach().clone() for t in self._tracked()]

    def _tracked(self) -> list[Tensor]:
        buffers = [b for b in self.model.buffers() if b.is_floating_point()]
        return [p.data for p in self.model.parameters()] + buffers

    def current_decay(self) -> float:
        """The decay the next update uses (warm-up while few updates have been made)."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the model's current weights (call after each step)."""
        weight = 1.0 - self.current_decay()
        torch._foreach_lerp_(self.average, self._tracked(), weight)
        self.updates += 1

    @contextmanager
    @torch.no_grad()
    def applied(self) -> Iterator[nn.Module]:
        """The model with the averaged weights swapped in (for validation or saving); the
        training weights are put back on exit."""
        live = self._tracked()
        saved = [t.clone() for t in live]
        self.copy_to_model()
        try:
            yield self.model
        finally:
            torch._foreach_copy_(live, saved)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Overwrite the model's weights with the average (at the end of training)."""
        torch._foreach_copy_(self._tracked(), self.average)

    def state_dict(self) -> dict[str, object]:
        return {"average": [t.clone() for t in self.average], "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        average = list(state["average"])
        if len(average) != len(self.average):
            raise ValueError(f"EMA state has {len(average)} tensors; the model has "
                             f"{len(self.average)}")
        torch._foreach_copy_(self.average, average)
        self.updates = int(state["updates"])
