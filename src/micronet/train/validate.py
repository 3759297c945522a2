"""Validation during training: segment the held-out images and score them (GlaS measures).

Class maps are predicted once per image. They are scored with the default post-processing
(``val_f1``, ``val_dice``, ``val_hausdorff``, ``val_pixel_f1``: the score a user gets without
tuning) and searched over a small post-processing grid (``val_f1_tuned``: the object F1 after
tuning, which is what ``micronet tune`` and Test A/B will see). Default-parameter F1 can rank
checkpoints by how well their outputs happen to suit the defaults (min size 100 px on GlaS's
~4,000 px glands), so the tuned F1 is the default checkpoint criterion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..infer.postprocess import PostprocessConfig
from ..models.card import WeightsCard

__all__ = ["VALIDATION_GRID", "Validation", "validate"]

#: Searched at every validation for ``val_f1_tuned``: the span of thresholds and minimum sizes
#: ``micronet tune`` chose on GlaS (malignant glands want low thresholds and large minimum
#: sizes), with the defaults in it; 9 combinations, ~1 s on 8 GlaS images.
VALIDATION_GRID: dict[str, list[Any]] = {"threshold": [0.1, 0.35, 0.5],
                                         "min_size": [100, 1000, 3000]}


@dataclass(frozen=True)
class Validation:
    """Scores (pooled over the held-out images), and the grid's best post-processing."""

    scores: dict[str, float]
    postprocess: PostprocessConfig
    table: list[dict[str, Any]]


def validate(model: torch.nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
             device: torch.device, batch_size: int = 4, *, mpp: float | None = None,
             image_mpp: float | None = None) -> Validation:
    """Object F1 (default and tuned post-processing), object Dice, object Hausdorff and pixel
    F1 on held-out images, with the same tiled inference as ``micronet segment``: a model
    working at ``mpp`` µm/px sees the images (at ``image_mpp``) resampled, and its class maps
    are brought back to the images' size, so scores are always against full-size labels."""
    from ..infer import Segmenter
    from ..infer.postprocess import label_glands
    from ..infer.tune import TUNE_BASE, tune_postprocess
    from ..metrics import score_split

    was_training = model.training
    model.eval()
    card = None if mpp is None else WeightsCard.from_model(model, mpp=mpp,
                                                          input_mpp=image_mpp or mpp)
    seg = Segmenter(model=model, device=str(device), batch_size=batch_size, postprocess={},
                    card=card)
    maps = [seg.labelling_maps(seg.infer(img, progress=False))[0] for img in images]
    model.train(was_training)
    scores = score_split([(gt, label_glands(m, seg.postprocess))
                          for gt, m in zip(labels, maps, strict=True)])
    best, table = tune_postprocess(maps, list(labels), VALIDATION_GRID, base=TUNE_BASE)
    return Validation(
        scores={"val_f1": float(scores.f1), "val_f1_tuned": table[0]["f1"],
                "val_dice": float(scores.object_dice),
                "val_hausdorff": float(scores.object_hausdorff),
                "val_pixel_f1": float(scores.pixel_f1)},
        postprocess=best, table=table)
