"""Per-image gland morphology features, from an instance label map and (optionally) the image.

Pathologists grade colorectal tissue by how its glands look: benign glands are round, regular,
evenly spaced and have open lumens; as differentiation is lost they become irregular, fused,
crowded and cribriform (Sirinukunwattana et al. 2015). Each feature below measures one of these
cues; areas and distances are in µm (``mpp``, GlaS: 0.62 µm/px). Glands under
``MIN_GLAND_UM2`` are ignored (specks, not glands). Shape features are area-weighted means, so
a few tiny fragments do not outweigh the glands that make up the tissue.

=====================  ==========================================================================
feature                definition
=====================  ==========================================================================
gland_count            number of glands (instances of at least ``MIN_GLAND_UM2``)
gland_density          glands per mm² of tissue (tissue: gland pixels plus non-background pixels)
gland_fraction         fraction of the tissue covered by gland
area_log_mean          mean of log10(gland area / µm²)
area_cv                coefficient of variation (std / mean) of the gland areas
large_fraction         fraction of gland area in glands over ``LARGE_GLAND_UM2`` (fused glands)
eccentricity           area-weighted mean eccentricity of the glands' fitted ellipses (0 = circle)
solidity               area-weighted mean of area / convex-hull area
convexity              area-weighted mean of convex-hull perimeter / perimeter (1 = smooth)
irregular_fraction     fraction of gland area in glands with solidity under ``IRREGULAR_SOLIDITY``
lumen_fraction         fraction of the glands' filled area that is lumen: holes in the label, or
                       pale unstained pixels (HSV value > 0.8, saturation < 0.2) when given an image
nn_distance            median distance from each gland's centroid to its nearest neighbour's (µm);
                       the image diagonal when there are fewer than two glands
=====================  ==========================================================================

Shape features of an image without glands are NaN (undefined, not zero); the classifier fills
them with its training medians.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path
from ..errors import InputError
from ..models.card import DEFAULT_MPP

__all__ = ["FEATURES", "GLAS_MPP", "image_features", "feature_definitions", "read_feature_table",
           "write_feature_table"]

GLAS_MPP = DEFAULT_MPP  # µm per pixel of GlaS (20x): the one constant, in models.card
MIN_GLAND_UM2 = 100.0  # ~260 px at 0.62 µm/px
LARGE_GLAND_UM2 = 20000.0  # ~52,000 px at 0.62 µm/px; over 95 % of benign GT glands (train)
IRREGULAR_SOLIDITY = 0.8
_PALE_VALUE, _PALE_SATURATION = 0.8, 0.2
_BACKGROUND_VALUE, _BACKGROUND_SATURATION = 0.85, 0.1  # slide background: bright and grey


def _definitions() -> dict[str, str]:
    rows = __doc__.split("=====\n", 2)[2].split("\n=====")[0] if __doc__ else ""
    out: dict[str, str] = {}
    name = ""
    for line in rows.splitlines():
        if not line.strip():
            continue
        if line[0] != " ":
            name, text = line.split(None, 1)
            out[name] = text.strip()
        else:
            out[name] += " " + line.strip()
    return out


FEATURES: tuple[str, ...] = tuple(_definitions())


def feature_definitions() -> dict[str, str]:
    """One-line definition of each feature, in :data:`FEATURES` order (from this module's table)."""
    return _definitions()


def image_features(labels: np.ndarray, image: np.ndarray | None = None, *,
                   mpp: float = GLAS_MPP) -> dict[str, float]:
    """The :data:`FEATURES` of one image.

    Args:
        labels: ``(H, W)`` integer instance map, 0 = background, 1..N = one gland each.
        image: the ``(H, W, 3) uint8`` RGB image (tissue mask and pale lumens); ``None``: the
            whole image is tissue and only label holes count as lumen.
        mpp: µm per pixel of ``labels``.

    Returns:
        ``{feature: value}`` in :data:`FEATURES` order (NaN where undefined).

    Raises:
        InputError: ``labels`` is not a 2-D integer array, ``image`` does not match it, or
            ``mpp`` is not positive.
    """
    from skimage.measure import perimeter, regionprops

    labels = _check(labels, image, mpp)
    px_um2 = mpp * mpp
    pale, tissue = _pixel_masks(labels, image)
    tissue_um2 = max(float(np.count_nonzero(tissue)), 1.0) * px_um2
    glands = [r for r in regionprops(labels) if r.area * px_um2 >= MIN_GLAND_UM2]
    out = dict.fromkeys(FEATURES, math.nan)
    out.update(gland_count=float(len(glands)), gland_density=len(glands) / tissue_um2 * 1e6,
               large_fraction=0.0, irregular_fraction=0.0)
    diagonal = math.hypot(*labels.shape) * mpp
    out["nn_distance"] = _nn_distance(np.array([r.centroid for r in glands]) * mpp, diagonal)
    if not glands:
        out["gland_fraction"] = 0.0
        return out
    areas = np.array([r.area for r in glands], float) * px_um2
    ecc = np.array([r.eccentricity for r in glands])
    solidity = np.array([r.solidity for r in glands])
    convexity = np.array([min(perimeter(r.image_convex) / max(perimeter(r.image), 1e-9), 1.0)
                          for r in glands])
    lumen = filled = 0.0
    for r in glands:
        window = labels[r.slice]
        inside = r.image_filled
        lumen += np.count_nonzero(inside & (window == 0))  # holes
        if pale is not None:
            lumen += np.count_nonzero(r.image & pale[r.slice])
        filled += np.count_nonzero(inside)
    weights = areas / areas.sum()
    out.update(
        gland_fraction=float(np.count_nonzero(labels[tissue])
                             / max(int(np.count_nonzero(tissue)), 1)),
        area_log_mean=float(np.mean(np.log10(areas))),
        area_cv=float(areas.std() / areas.mean()),
        large_fraction=float(weights[areas > LARGE_GLAND_UM2].sum()),
        eccentricity=float(weights @ ecc),
        solidity=float(weights @ solidity),
        convexity=float(weights @ convexity),
        irregular_fraction=float(weights[solidity < IRREGULAR_SOLIDITY].sum()),
        lumen_fraction=float(lumen / filled),
    )
    return out


def _check(labels: Any, image: Any, mpp: float) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be a 2-D integer instance map, got {labels.dtype} "
                         f"array of shape {labels.shape}")
    if labels.size and labels.min() < 0:
        raise InputError("labels must be >= 0 (0 = background)")
    if image is not None:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.shape != (*labels.shape, 3):
            raise InputError(f"image must be (H, W, 3) uint8 matching labels {labels.shape}, got "
                             f"{image.dtype} array of shape {image.shape}")
    if not (isinstance(mpp, int | float) and math.isfinite(mpp) and mpp > 0):
        raise InputError(f"mpp must be a positive number of µm per pixel, got {mpp!r}")
    return labels.astype(np.int32, copy=False)


def _pixel_masks(labels: np.ndarray,
                 image: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray]:
    """(pale pixels or None, tissue pixels): HSV thresholds on the image."""
    if image is None:
        return None, np.ones(labels.shape, bool)
    rgb = image.astype(np.float32) / 255.0
    value = rgb.max(axis=2)
    saturation = np.where(value > 0, (value - rgb.min(axis=2)) / np.maximum(value, 1e-6), 0.0)
    pale = (value > _PALE_VALUE) & (saturation < _PALE_SATURATION)
    background = (value > _BACKGROUND_VALUE) & (saturation < _BACKGROUND_SATURATION)
    return pale, ~background | (labels > 0)


def _nn_distance(centroids: np.ndarray, fallback: float) -> float:
    if len(centroids) < 2:
        return float(fallback)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(centroids).query(centroids, k=2)
    return float(np.median(dist[:, 1]))


def write_feature_table(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Write rows (any keys; features as ``%.9g``, NaN as empty) to CSV atomically."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})


def read_feature_table(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a :func:`write_feature_table` CSV, :data:`FEATURES` columns as floats.

    Raises:
        InputError: missing file or feature columns, or a non-numeric feature value.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    missing = [f for f in FEATURES if rows and f not in rows[0]]
    if not rows or missing:
        raise InputError(f"{path}: no rows" if not rows else
                         f"{path}: missing feature columns {', '.join(missing)}")
    for i, row in enumerate(rows, start=2):
        try:
            row.update({f: float(row[f]) if row[f] != "" else math.nan for f in FEATURES})
        except ValueError:
            raise InputError(f"{path}: line {i}: a feature value is not a number") from None
    return rows


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.9g}"
    return value
