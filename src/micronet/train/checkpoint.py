"""Checkpoints in the nnU-Net shape: ``last``/``best`` weights plus a resumable training state.

``RUN/last.pt`` holds everything needed to continue exactly (model, optimizer, step, RNG states,
best score), saved with ``torch.save`` and loadable with ``torch.load(weights_only=True)``; it is
one file written atomically, so a kill at any moment leaves the previous complete state.
``RUN/last.safetensors`` and ``RUN/best.safetensors`` hold the weights for inference.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_path
from ..errors import MicronetError
from ..models.weights_io import save_weights

__all__ = ["save_state", "load_state", "save_model_weights", "model_metadata"]


def model_metadata(model: torch.nn.Module, **extra: Any) -> dict[str, str]:
    """Metadata stored in weight files so they load without a config: the model's
    :class:`~micronet.models.card.WeightsCard` (architecture and every constructor option);
    ``extra`` sets card fields (``mpp``, ``input_mpp``) and provenance (``step``, ``epoch``)."""
    from ..models.card import WeightsCard

    return WeightsCard.from_model(model, **extra).to_metadata()


def _disk_error(path: Path, exc: OSError) -> MicronetError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return MicronetError(f"{path}: out of disk space while writing a checkpoint")
    return MicronetError(f"{path}: cannot write checkpoint ({exc.strerror or exc})")


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write a resumable training state atomically (temp file, then rename)."""
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except OSError as exc:
        raise _disk_error(path, exc) from None


def load_state(path: Path) -> dict[str, Any]:
    """Read a training state with ``weights_only=True`` (no pickled code)."""
    if not path.exists():
        raise MicronetError(f"{path}: no training state to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MicronetError(f"{path}: unreadable training state ({exc})") from None


def save_model_weights(model: torch.nn.Module, path: Path, shard_mb: float = 0,
                       **extra: Any) -> list[Path]:
    """Write the model's weights as safetensors with self-describing metadata."""
    try:
        return save_weights(model.state_dict(), path, model_metadata(model, **extra), shard_mb)
    except OSError as exc:
        raise _disk_error(path, exc) from None
