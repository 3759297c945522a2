"""Tune post-processing for a set of weights on held-out images (never on the test splits).

Class maps are predicted once per image; the grid search (:func:`tune_postprocess`) then only
re-runs post-processing.
The result is written as ``postprocess.json`` beside the weights, where :class:`Segmenter`
(and so ``segment`` and ``evaluate``) picks it up.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path
from .postprocess import ClassMaps, PostprocessConfig, label_glands, remove_small

__all__ = ["DEFAULT_GRID", "TUNE_OBJECTIVES", "tune_postprocess", "tune_on_images",
           "write_postprocess", "read_postprocess"]

#: GlaS glands are large (median ~4,000 px at 0.62 µm/px), so min_size goes well above the
#: default; thresholds and growth around the 3-px contour band of the targets, reaching low
#: thresholds and wide growth, which malignant glands (thin, irregular) need. 245 combinations,
#: 35 labellings per image (sizes share one).
DEFAULT_GRID: dict[str, list[Any]] = {
    "threshold": [0.0, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8],
    "min_size": [100, 500, 1000, 1500, 2000, 3000, 5000],
    "contour_growth": [3.0, 6.0, 9.0, 15.0, 20.0],
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

    Combinations that differ only in ``min_size`` share one labelling (the size filter is the
    last step), and only the object matching is computed (no Hausdorff distances), so a grid
    costs a fraction of labelling and fully scoring every combination.

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
    unfiltered: dict[PostprocessConfig, list[np.ndarray]] = {}
    table = []
    for cfg in configs:
        key = dataclasses.replace(cfg, min_size=0)
        if key not in unfiltered:
            unfiltered[key] = [label_glands(m, key) for m in maps]
        f1, dice = pooled_f1_dice([matching(gt, remove_small(labels, cfg.min_size))
                                   for gt, labels in zip(labels_list, unfiltered[key],
                                                         strict=True)])
        table.append({**{n: getattr(cfg, n) for n in names}, "f1": float(f1),
                      "dice": float(dice), "_config": cfg})

    def score(row: dict[str, Any]) -> float:
        return {"f1": row["f1"], "dice": row["dice"],
                "f1+dice": (row["f1"] + row["dice"]) / 2}[objective]

    order = sorted(range(len(table)), key=lambda i: (-score(table[i]), i))
    best = table[order[0]]["_config"]
    rows = [{k: v for k, v in table[i].items() if k != "_config"} for i in order]
    return best, rows


#: What tuning starts from: seeds only where the network sees foreground.
TUNE_BASE = PostprocessConfig(foreground_seeds=True)


def tune_on_images(segmenter: Any, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                   grid: Mapping[str, Sequence[Any]] | None = None, objective: str = "f1",
                   ) -> tuple[PostprocessConfig, list[dict[str, Any]]]:
    """Predict class maps with ``segmenter`` and grid-search its post-processing.

    Returns ``(best, table)`` as :func:`tune_postprocess` does.
    """
    maps = [segmenter.predict_maps(image, progress=False)[0] for image in images]
    return tune_postprocess(maps, list(labels), grid or DEFAULT_GRID, base=TUNE_BASE,
                            objective=objective)


def write_postprocess(path: str | Path, config: PostprocessConfig,
                      table: Sequence[Mapping[str, Any]], names: Sequence[str],
                      objective: str = "f1") -> Path:
    """Write ``path`` (a run's ``postprocess.json``): the tuned values, what they maximise, the
    images used, and the top rows of the grid."""
    path = Path(path)
    record = {"postprocess": config.__dict__, "objective": objective, "tuned_on": list(names),
              "table": list(table[:10])}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return path


def read_postprocess(path: str | Path) -> PostprocessConfig:
    """Post-processing from a ``postprocess.json`` (as :func:`write_postprocess` writes it) or
    a JSON object of :class:`PostprocessConfig` fields.

    Raises:
        MicronetError: missing or unreadable file, or unknown / out-of-range values.
    """
    from ..errors import MicronetError

    path = Path(path)
    try:
        record = json.loads(path.read_text())
        values = record.get("postprocess", record) if isinstance(record, dict) else None
        if not isinstance(values, dict):
            raise ValueError("expected a JSON object")
        return PostprocessConfig.from_dict(values)
    except (OSError, ValueError, TypeError) as exc:
        raise MicronetError(f"{path}: not usable post-processing ({exc})") from None
