"""Validation during training: segment the held-out images and score them (GlaS object F1)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["validate"]


def validate(model: torch.nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
             device: torch.device, batch_size: int = 4) -> dict[str, float]:
    """Object F1, object Dice, object Hausdorff and pixel F1 (pooled) on held-out images.

    Uses the same tiled inference and post-processing as ``micronet segment`` (default
    post-processing parameters), so the validation score is the score a user would get.
    """
    from ..infer import Segmenter
    from ..metrics import score_split

    was_training = model.training
    model.eval()
    seg = Segmenter(model=model, device=str(device), batch_size=batch_size)
    preds = [seg.predict(img, progress=False).labels for img in images]
    model.train(was_training)
    scores = score_split(list(zip(labels, preds, strict=True)))
    return {"val_f1": float(scores.f1), "val_dice": float(scores.object_dice),
            "val_hausdorff": float(scores.object_hausdorff), "val_pixel_f1": float(scores.pixel_f1)}
