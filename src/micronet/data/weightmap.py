"""U-Net pixel weight maps (Ronneberger et al. 2015), as used by the Micro-Net loss.

``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))``, with ``d1``, ``d2`` the
Euclidean distances from ``x`` to the nearest and the second-nearest gland (distance to the closest
pixel of each instance). As in U-Net, the border term is added on *background* pixels only: it
up-weights the thin gaps between touching or nearly touching glands, which the network must learn
to keep open; inside a gland ``d1`` would be 0 and the term would only re-weight gland pixels near
a neighbour, which the contour class already covers.

``w_c`` balances the classes of the 3-class target (:mod:`micronet.data.targets`). By default it is
median-frequency balancing on the image's own target, ``w_c(c) = median_f / f_c`` over the classes
present (a class absent from the image gets 1; no pixel uses it), so the common classes weigh ~1 and
the rare contour class more; pass ``class_weights`` to use fixed (e.g. dataset-wide) weights.

Cost: the border term only matters where ``d1 + d2 <= truncate * sigma`` (beyond 4 sigma it is below
``w0 * 3.4e-4``), and both distances are then at most that radius. So each instance gets a distance
transform on its bounding box grown by that radius only, never a full-image transform per gland;
pixels beyond it get an exact 0 border term. Measured on GlaS training images (775x522, 4-23
glands, 1 CPU thread, ``benchmarks/bench_data.py``): 11-14 ms per image for the weight map plus
8-15 ms for its 3-class target; :class:`micronet.data.sampling.PatchSampler` computes both once
per image and caches them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from .targets import DEFAULT_CONTOUR_WIDTH, check_labels, three_class_targets

__all__ = ["unet_weight_map", "nearest_two_distances", "class_balance_weights"]


def nearest_two_distances(labels: np.ndarray, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances from every pixel to its nearest and second-nearest instance, up to a radius.

    Args:
        labels: ``(H, W)`` integer instance map (0 = background).
        max_distance: distances above this radius are not computed and reported as ``inf``.

    Returns:
        ``(d1, d2)``, each ``(H, W) float32``; ``d1 <= d2``; 0 for a pixel's own instance, so on
        background pixels they are the distances to the two closest glands.
    """
    labels = check_labels(labels)
    height, width = labels.shape
    d1 = np.full(labels.shape, np.inf, np.float32)
    d2 = np.full(labels.shape, np.inf, np.float32)
    reach = int(np.floor(max_distance))
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        # every pixel within max_distance of the instance lies in its box grown by the radius, and
        # the whole instance lies inside that window, so the windowed transform is exact there
        rows = slice(max(box[0].start - reach, 0), min(box[0].stop + reach, height))
        cols = slice(max(box[1].start - reach, 0), min(box[1].stop + reach, width))
        dist = ndi.distance_transform_edt(labels[rows, cols] != index).astype(np.float32)
        dist[dist > max_distance] = np.inf
        near, second = d1[rows, cols], d2[rows, cols]  # views: updated in place
        closer = dist < near
        second[:] = np.where(closer, near, np.minimum(second, dist))
        near[:] = np.minimum(near, dist)
    return d1, d2


def class_balance_weights(target: np.ndarray, num_classes: int = 3) -> np.ndarray:
    """Median-frequency class weights ``median_f / f_c`` of a class map (1 for absent classes).

    Returns:
        ``(num_classes,) float32``.
    """
    counts = np.bincount(np.asarray(target).ravel(), minlength=num_classes)[:num_classes]
    present = counts > 0
    weights = np.ones(num_classes, np.float32)
    if present.any():
        freq = counts[present] / counts.sum()
        weights[present] = np.median(freq) / freq
    return weights


def unet_weight_map(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0,
                    class_weights: Sequence[float] | np.ndarray | None = None, *,
                    contour_width: int = DEFAULT_CONTOUR_WIDTH, target: np.ndarray | None = None,
                    truncate: float = 4.0) -> np.ndarray:
    """U-Net weight map ``w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` (border term on background).

    Args:
        labels: ``(H, W)`` integer instance map, 0 = background.
        w0: border term amplitude (paper: 10).
        sigma: border term width in pixels (paper: 5).
        class_weights: per-class weights ``w_c`` for classes (background, gland, contour); ``None``
            = median-frequency weights of this image's 3-class target.
        contour_width: band width of the 3-class target (ignored when ``target`` is given).
        target: the image's precomputed :func:`three_class_targets`, to avoid recomputing it.
        truncate: border term computed where ``d1 + d2 <= truncate * sigma``, 0 beyond.

    Returns:
        ``(H, W) float32`` weights, all positive when the class weights are.

    Raises:
        ValueError: bad ``labels``, non-positive ``sigma`` or ``truncate``, a negative ``w0``, a
            ``target`` of another shape, or ``class_weights`` without 3 entries.
    """
    labels = check_labels(labels)
    if sigma <= 0 or truncate <= 0 or w0 < 0:
        raise ValueError(f"need sigma > 0, truncate > 0, w0 >= 0; got {sigma}, {truncate}, {w0}")
    if target is None:
        target = three_class_targets(labels, contour_width)
    elif target.shape != labels.shape:
        raise ValueError(f"target shape {target.shape} differs from labels shape {labels.shape}")
    if class_weights is None:
        class_weights = class_balance_weights(target)
    class_weights = np.asarray(class_weights, np.float32)
    if class_weights.shape != (3,):
        raise ValueError(f"class_weights needs 3 values (background, gland, contour), "
                         f"got {class_weights.shape}")
    weight = class_weights[target]
    if w0 > 0:
        radius = truncate * sigma
        d1, d2 = nearest_two_distances(labels, radius)
        gap = d1 + d2
        near = (labels == 0) & (gap <= radius)
        weight[near] += w0 * np.exp(-gap[near] ** 2 / (2 * sigma**2))
    return weight
