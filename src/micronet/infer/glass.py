"""Synthetic glass: lay tissue images on a pale, noisy slide background in a grid.

What a slide looks like around its tissue, for tests (glass must never become glands), the demo
slide and ``scripts/embedded_on_glass.py`` (GlaS images scored on glass vs alone).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["Embedded", "embed_on_glass", "glass_layout"]


class Embedded(NamedTuple):
    """:func:`embed_on_glass`'s output: the canvas, its labels and each input's box."""

    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray | None  # (H, W) int32, ids offset so they stay distinct
    boxes: list[tuple[int, int, int, int]]  # (y0, x0, height, width) per input


def glass_layout(shapes: Sequence[tuple[int, ...]], gap: int = 160, columns: int | None = None
                 ) -> tuple[int, int, list[tuple[int, int, int, int]]]:
    """Canvas ``(height, width)`` and ``(y0, x0, h, w)`` boxes of :func:`embed_on_glass`'s grid:
    ``columns`` images per row (default: about square), ``gap`` px of glass around each."""
    n = len(shapes)
    cols = columns or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    heights = [max(s[0] for s in shapes[r * cols:(r + 1) * cols]) for r in range(rows)]
    widths = [max(s[1] for s in shapes[c::cols]) for c in range(cols)]
    boxes = []
    for i, (h, w, *_) in enumerate(shapes):
        r, c = divmod(i, cols)
        boxes.append((gap * (r + 1) + sum(heights[:r]), gap * (c + 1) + sum(widths[:c]), h, w))
    return sum(heights) + gap * (rows + 1), sum(widths) + gap * (cols + 1), boxes


def embed_on_glass(images: Sequence[np.ndarray], labels: Sequence[np.ndarray] | None = None,
                   *, gap: int = 160, columns: int | None = None, tone: float = 0.93,
                   tint: tuple[float, float, float] = (0.012, -0.004, 0.01),
                   noise: float = 3.0, soft_edge: float = 3.0, seed: int = 0) -> Embedded:
    """Lay images on synthetic glass in a grid, ``gap`` px of glass around and between them.

    The glass is pale (``tone`` of white), slightly tinted (per-channel ``tint``), noisy
    (Gaussian, ``noise`` grey levels) and shaded by a faint gradient; each image fades into it
    over ``soft_edge`` px. Used to test that glass never becomes glands, and by
    ``scripts/embedded_on_glass.py`` to score a model on GlaS images laid on glass.

    Args:
        images: ``(h, w, 3) uint8`` images.
        labels: their instance maps (optional).
        gap: glass between and around images (px).
        columns: images per row (default: about square).

    Returns:
        :class:`Embedded`.
    """
    rng = np.random.default_rng(seed)
    height, width, boxes = glass_layout([im.shape[:2] for im in images], gap, columns)
    base = 255.0 * tone * (1 + np.asarray(tint, np.float32))
    shade = np.linspace(-2.0, 2.0, width, dtype=np.float32)[None, :, None]
    canvas = base + shade + rng.normal(0, noise, (height, width, 3)).astype(np.float32)
    out_labels = np.zeros((height, width), np.int32) if labels is not None else None
    next_id = 0
    for i, im in enumerate(images):
        y0, x0, h, w = boxes[i]
        alpha = np.ones((h, w), np.float32)
        if soft_edge > 0:
            ys = np.minimum(np.arange(h), np.arange(h)[::-1])[:, None] + 0.5
            xs = np.minimum(np.arange(w), np.arange(w)[::-1])[None, :] + 0.5
            alpha = np.clip(np.minimum(ys, xs) / soft_edge, 0, 1)
        window = canvas[y0:y0 + h, x0:x0 + w]
        canvas[y0:y0 + h, x0:x0 + w] = window * (1 - alpha[..., None]) + im * alpha[..., None]
        if out_labels is not None and labels is not None:
            lab = np.asarray(labels[i]).astype(np.int32)
            out_labels[y0:y0 + h, x0:x0 + w] = np.where(lab > 0, lab + next_id, 0)
            next_id += int(lab.max(initial=0))
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return Embedded(image, out_labels, boxes)
