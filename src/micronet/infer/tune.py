"""Tune post-processing for a set of weights on held-out images (never on the test splits).

Class maps are predicted once per image; the grid search (:func:`tune_postprocess`) then only
re-runs post-processing.
The result is written as the run's ``postprocess.json``
(:class:`~micronet.infer.run_folder.RunFolder`), where :class:`Segmenter` (and so ``segment``
and ``evaluate``) picks it up.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .postprocess import (
    ClassMaps,
    PostprocessConfig,
    instance_confidence,
    label_glands,
    remove_small,
)

if TYPE_CHECKING:
    from .segmenter import Inference
    from .tissue import TissueMask

__all__ = ["DEFAULT_GRID", "TUNE_OBJECTIVES", "MapSegmenter", "tune_postprocess", "tune_on_images",
           "holdout_maps", "score_with"]

#: GlaS glands are large (median ~4,000 px at 0.62 µm/px), so min_size goes well above the
#: default; thresholds and growth around the 3-px contour band of the targets, reaching low
#: thresholds and wide growth, which malignant glands (thin, irregular) need; min_confidence
#: around where the shipped model's extra objects on background (mean 0.22) part from its matched
#: glands (0.71). 980 combinations, 35 labellings per image (sizes and confidences share one).
DEFAULT_GRID: dict[str, list[Any]] = {
    "threshold": [0.0, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8],
    "min_size": [100, 500, 1000, 1500, 2000, 3000, 5000],
    "contour_growth": [3.0, 6.0, 9.0, 15.0, 20.0],
    "min_confidence": [0.0, 0.2, 0.3, 0.4],
}


#: What :func:`tune_postprocess` can maximise: pooled object F1, pooled object Dice, or their mean.
TUNE_OBJECTIVES = ("f1", "dice", "f1+dice")


def tune_postprocess(probabilities_list: Sequence[ClassMaps | np.ndarray],
                     labels_list: Sequence[np.ndarray],
                     grid: Mapping[str, Sequence[Any]],
                     base: PostprocessConfig | None = None,
                     objective: str = "f1",
                     ) -> tuple[PostprocessConfig, list[dict[str, Any]]]:
    """Grid-search post-processing parameters for the best pooled GlaS score.

    Combinations that differ only in ``min_size`` and ``min_confidence`` share one labelling
    (those filters are the last step), and only the object matching is computed (no Hausdorff
    distances), so a grid costs a fraction of labelling and fully scoring every combination.

    Args:
        probabilities_list: per image, ``(3, H, W)`` probabilities or :class:`ClassMaps`
            (e.g. predictions on the validation split).
        labels_list: the matching ground-truth instance maps.
        grid: parameter name → values to try, e.g. ``{"threshold": [0.3, 0.5],
            "min_size": [50, 100]}``; other parameters come from ``base``.
        base: starting configuration (default :class:`PostprocessConfig`).
        objective: ``"f1"`` (object F1: detection, the GlaS headline), ``"dice"`` (object Dice:
            per-gland shape, which favours keeping small glands) or ``"f1+dice"`` (their mean).

    Returns:
        ``(best_config, table)``; ``table`` has one dict per combination (its parameters,
        ``f1`` and ``dice``), best first. Ties keep the earlier combination in grid order.
    """
    if len(probabilities_list) != len(labels_list):
        raise ValueError(f"{len(probabilities_list)} predictions for {len(labels_list)} labels")
    if not grid:
        raise ValueError("empty grid")
    if objective not in TUNE_OBJECTIVES:
        raise ValueError(f"objective {objective!r}: expected one of {', '.join(TUNE_OBJECTIVES)}")
    from ..metrics.glas import pooled_f1_dice
    from ..metrics.matching import matching

    base = base or PostprocessConfig()
    maps = [m if isinstance(m, ClassMaps) else ClassMaps.from_probabilities(m)
            for m in probabilities_list]
    names = list(grid)
    configs = [dataclasses.replace(base, **dict(zip(names, values, strict=True)))
               for values in itertools.product(*(grid[n] for n in names))]
    unfiltered: dict[PostprocessConfig, list[tuple[np.ndarray, np.ndarray | None]]] = {}
    weak_too = any(cfg.min_confidence > 0 for cfg in configs)
    table = []
    for cfg in configs:
        key = dataclasses.replace(cfg, min_size=0, min_confidence=0.0)
        if key not in unfiltered:
            labelled = [label_glands(m, key) for m in maps]
            unfiltered[key] = [(labels, instance_confidence(labels, m) if weak_too else None)
                               for labels, m in zip(labelled, maps, strict=True)]
        f1, dice = pooled_f1_dice([
            matching(gt, remove_small(labels, cfg.min_size, confidence=confidence,
                                      min_confidence=cfg.min_confidence))
            for gt, (labels, confidence) in zip(labels_list, unfiltered[key], strict=True)])
        table.append({**{n: getattr(cfg, n) for n in names}, "f1": float(f1),
                      "dice": float(dice), "_config": cfg})

    def score(row: dict[str, Any]) -> float:
        return {"f1": row["f1"], "dice": row["dice"],
                "f1+dice": (row["f1"] + row["dice"]) / 2}[objective]

    order = sorted(range(len(table)), key=lambda i: (-score(table[i]), i))
    best = table[order[0]]["_config"]
    rows = [{k: v for k, v in table[i].items() if k != "_config"} for i in order]
    return best, rows


class MapSegmenter(Protocol):
    """What tuning needs of a segmenter (:class:`~micronet.infer.Segmenter` is one): an image's
    class maps as they are labelled."""

    def infer(self, image: np.ndarray, *, mpp: float | None = None,
              progress: Any = None) -> Inference:
        """The network's class maps of ``image`` at ``mpp`` µm/px (``None``: the default
        input µm/px; ``progress=False``: no progress bar)."""
        ...

    def labelling_maps(self, inference: Inference) -> tuple[ClassMaps, TissueMask | None]:
        """The class maps instances are labelled from, and the tissue mask used."""
        ...


#: What tuning starts from: seeds only where the network sees foreground.
TUNE_BASE = PostprocessConfig(foreground_seeds=True)


def holdout_maps(segmenter: MapSegmenter, images: Sequence[np.ndarray],
                 mpp: float | None = None) -> list[ClassMaps]:
    """The class maps ``segmenter`` labels each image from (predicted once, then re-labelled);
    ``mpp``: the images' µm/px (``None``: the segmenter's default input µm/px)."""
    return [segmenter.labelling_maps(segmenter.infer(image, mpp=mpp, progress=False))[0]
            for image in images]


def tune_on_images(segmenter: MapSegmenter, images: Sequence[np.ndarray],
                   labels: Sequence[np.ndarray], grid: Mapping[str, Sequence[Any]] | None = None,
                   objective: str = "f1") -> tuple[PostprocessConfig, list[dict[str, Any]]]:
    """Predict class maps with ``segmenter`` and grid-search its post-processing.

    Returns ``(best, table)`` as :func:`tune_postprocess` does.
    """
    return tune_postprocess(holdout_maps(segmenter, images), list(labels),
                            grid or DEFAULT_GRID, base=TUNE_BASE, objective=objective)


def score_with(maps: Sequence[ClassMaps], labels: Sequence[np.ndarray],
               config: PostprocessConfig) -> dict[str, float]:
    """Every pooled GlaS score (object F1, precision, recall, Dice, Hausdorff, pixel F1) of
    ``maps`` labelled with ``config``: what the tuned values give on the images they were tuned
    on, Hausdorff included (the grid search skips it)."""
    from ..metrics import score_split

    scores = score_split([(gt, label_glands(m, config))
                          for gt, m in zip(labels, maps, strict=True)])
    return {k: float(getattr(scores, k)) for k in
            ("f1", "precision", "recall", "object_dice", "object_hausdorff", "pixel_f1")}
