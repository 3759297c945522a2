"""Resizing arrays by a scale factor, shared by training (images, targets, weight maps) and
inference (images brought to the weights' µm/px)."""

from __future__ import annotations

import numpy as np

__all__ = ["resize_by"]


def resize_by(array: np.ndarray, factor: float, *, nearest: bool = False) -> np.ndarray:
    """``array`` (``(H, W)`` or ``(H, W, C)``) resized by ``factor`` to
    ``(max(1, round(H·factor)), max(1, round(W·factor)))``.

    Values are averaged by area when shrinking and interpolated bilinearly when enlarging;
    ``nearest=True`` keeps values as they are (class ids, labels).
    """
    import cv2

    height, width = array.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    if nearest:
        interpolation = cv2.INTER_NEAREST
    else:
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(array, size, interpolation=interpolation)
