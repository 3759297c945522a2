"""Pixel-level F1 (gland foreground vs background), the semantic counterpart of object F1."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["PixelCounts", "pixel_counts", "pixel_f1"]


class PixelCounts(NamedTuple):
    """Foreground pixel counts of one image (or summed over a split, for the pooled F1)."""

    intersection: int
    gt: int
    pred: int

    @property
    def f1(self) -> float:
        """2 |G ∩ S| / (|G| + |S|) over foreground pixels; 1.0 when both are empty."""
        total = self.gt + self.pred
        return 2.0 * self.intersection / total if total else 1.0

    def __add__(self, other: tuple) -> PixelCounts:
        """Element-wise sum, so ``sum(counts, PixelCounts(0, 0, 0))`` pools a split."""
        return PixelCounts(*(int(a) + int(b) for a, b in zip(self, other, strict=True)))


def pixel_counts(gt: np.ndarray, pred: np.ndarray) -> PixelCounts:
    """Count foreground pixels (label > 0) in ``gt``, ``pred`` and both.

    Args:
        gt: (H, W) label map (instance or binary), 0 = background.
        pred: (H, W) label map, same shape.
    """
    if np.shape(gt) != np.shape(pred):
        raise ValueError(f"gt shape {np.shape(gt)} != pred shape {np.shape(pred)}")
    g = np.asarray(gt) > 0
    p = np.asarray(pred) > 0
    return PixelCounts(int(np.count_nonzero(g & p)), int(np.count_nonzero(g)),
                       int(np.count_nonzero(p)))


def pixel_f1(gt: np.ndarray, pred: np.ndarray) -> float:
    """Pixel F1 (= Dice of the foreground masks) of one image; 1.0 when both are empty."""
    return pixel_counts(gt, pred).f1
