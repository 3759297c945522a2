"""Tune post-processing for a set of weights on held-out images (never on the test splits).

Class maps are predicted once per image; the grid search then only re-runs post-processing.
The result is written as ``postprocess.json`` beside the weights, where :class:`Segmenter`
(and so ``segment`` and ``evaluate``) picks it up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path
from .postprocess import PostprocessConfig, tune_postprocess

__all__ = ["DEFAULT_GRID", "tune_on_images", "write_postprocess", "read_postprocess"]

#: GlaS glands are large (median ~4,000 px at 0.62 µm/px), so min_size goes well above the
#: default; thresholds and growth around the 3-px contour band of the targets, reaching low
#: thresholds and wide growth, which malignant glands (thin, irregular) need. 245 combinations,
#: 35 labellings per image (sizes share one).
DEFAULT_GRID: dict[str, list[Any]] = {
    "threshold": [0.0, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8],
    "min_size": [100, 500, 1000, 1500, 2000, 3000, 5000],
    "contour_growth": [3.0, 6.0, 9.0, 15.0, 20.0],
}


#: What tuning starts from: seeds only where the network sees foreground.
TUNE_BASE = PostprocessConfig(foreground_seeds=True)


def tune_on_images(segmenter: Any, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                   grid: Mapping[str, Sequence[Any]] | None = None, objective: str = "f1",
                   ) -> tuple[PostprocessConfig, list[dict[str, Any]]]:
    """Predict class maps with ``segmenter`` and grid-search its post-processing.

    Returns ``(best, table)`` as :func:`~micronet.infer.postprocess.tune_postprocess` does.
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
