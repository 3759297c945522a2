"""Tile grids, reflect-padded tile reads and a strip-wise blending buffer.

The network sees fixed ``T×T`` tiles (``T`` = its input size, 508 for Micro-Net-508). An image of
any size is covered by overlapping tiles whose predictions are blended with a Gaussian window
(nnU-Net's ``sliding_window_prediction``): a pixel's probability is the window-weighted mean over
every tile that covers it, so tile borders, where a valid-convolution network has the least
context, count least and no seams show.

Defaults, and why:

* **overlap** = ``T // 4`` (127 px for 508). Micro-Net's receptive field is larger than its tile,
  so no overlap is "enough"; the outer ~quarter of a tile is where the output is rebuilt from the
  fewest valid pixels, and the window gives it little weight.
* **border padding** = ``overlap // 2`` reflect-padded pixels around the image, so the image's own
  border does not fall on a tile's weakest rows. Images smaller than a tile are reflect-padded up
  (repeatedly mirrored when the pad exceeds the image, as ``np.pad(mode="reflect")`` would).
* **window** = Gaussian with σ = ``T/8`` (nnU-Net's choice), each axis floored at 1e-3.

Memory: :class:`StripBlender` holds one strip of ``T`` rows of the output window, never the whole
probability map; finished rows leave through a callback as soon as no later tile row touches them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["TileGrid", "default_overlap", "spread_starts", "aligned_starts", "reflect_indices",
           "read_tile", "gaussian_window", "StripBlender"]


def default_overlap(tile: int) -> int:
    """Overlap between neighbouring tiles: a quarter of the tile (see module docstring)."""
    return tile // 4


def spread_starts(length: int, tile: int, overlap: int, pad: int) -> np.ndarray:
    """Tile starts covering ``[-pad, length + pad)`` with at least ``overlap`` px between tiles.

    nnU-Net style: the number of tiles is the fewest that keeps the step ≤ ``tile - overlap``,
    and the steps are spread evenly so the first tile starts at ``-pad`` and the last one ends at
    ``length + pad``. An extent shorter than a tile gets one tile, centred on the image.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    step = tile - overlap
    if step < 1:
        raise ValueError(f"overlap {overlap} must be smaller than the tile {tile}")
    extent = length + 2 * pad
    if extent <= tile:
        return np.array([-((tile - length) // 2)], dtype=np.int64)
    n = int(np.ceil((extent - tile) / step)) + 1
    return np.round(np.linspace(-pad, length + pad - tile, n)).astype(np.int64)


def aligned_starts(lo: int, hi: int, origin: int, step: int, tile: int) -> np.ndarray:
    """Starts ``origin + k·step`` of every tile that overlaps ``[lo, hi)``.

    A grid shared by several chunks of one slide: each chunk runs exactly the tiles the whole
    slide would run over it, so overlapping chunks predict identical probabilities there.
    """
    k0 = int(np.floor((lo - tile - origin) / step)) + 1
    k1 = int(np.ceil((hi - origin) / step))
    starts = origin + step * np.arange(k0, max(k0, k1), dtype=np.int64)
    return starts[(starts + tile > lo) & (starts < hi)]


@dataclass(frozen=True)
class TileGrid:
    """Tile positions (top-left corners, output-window coordinates) of one tiled prediction."""

    ys: np.ndarray
    xs: np.ndarray
    tile: int

    @classmethod
    def spread(cls, height: int, width: int, tile: int, overlap: int | None = None,
               pad: int | None = None) -> TileGrid:
        """The grid for a whole image (see :func:`spread_starts`)."""
        overlap = default_overlap(tile) if overlap is None else overlap
        pad = overlap // 2 if pad is None else pad
        return cls(spread_starts(height, tile, overlap, pad),
                   spread_starts(width, tile, overlap, pad), tile)

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)


def reflect_indices(index: np.ndarray, n: int) -> np.ndarray:
    """Map any integer indices into ``[0, n)`` by mirroring at the edges (edge not repeated).

    Equals ``np.pad(mode="reflect")`` applied as often as needed, so pads larger than the
    image are fine; a length-1 axis maps everything to 0.
    """
    index = np.asarray(index, dtype=np.int64)
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.mod(index, period)
    return np.where(index >= n, period - index, index)


def read_tile(image: np.ndarray, y0: int, x0: int, size: int) -> np.ndarray:
    """The ``size×size`` window at ``(y0, x0)`` of an ``(H, W, ...)`` array, reflect-padded."""
    h, w = image.shape[:2]
    if y0 >= 0 and x0 >= 0 and y0 + size <= h and x0 + size <= w:
        return image[y0:y0 + size, x0:x0 + size]
    rows = reflect_indices(np.arange(y0, y0 + size), h)
    cols = reflect_indices(np.arange(x0, x0 + size), w)
    return image[rows[:, None], cols[None, :]]


def gaussian_window(tile: int, sigma_scale: float = 1 / 8, floor: float = 1e-3) -> np.ndarray:
    """``(tile, tile) float32`` Gaussian blending weights, peak 1, never 0.

    The floor applies to each axis before the outer product, so a tile's corner stays far below
    a neighbour's edge-centre (flooring the 2-D product would let corners outweigh them).
    """
    centre = (tile - 1) / 2
    axis = np.exp(-0.5 * ((np.arange(tile) - centre) / (tile * sigma_scale)) ** 2)
    axis = np.maximum(axis / axis.max(), floor)
    return np.outer(axis, axis).astype(np.float32)


class StripBlender:
    """Blend tile predictions into an output window strip by strip.

    Tiles must arrive tile-row by tile-row in increasing ``y``; call :meth:`finish_row` after the
    last tile of each row. Rows that no later tile can touch are normalised by the summed window
    weights and handed to ``emit(row0, block)`` (``block``: ``(C, n, width) float32``), then
    dropped: the buffer is ``(C + 1, tile, width)`` whatever the window's height.
    """

    def __init__(self, channels: int, height: int, width: int, grid: TileGrid,
                 emit: Callable[[int, np.ndarray], None], window: np.ndarray | None = None) -> None:
        self.channels, self.height, self.width = channels, height, width
        self.grid, self.emit = grid, emit
        self.window = gaussian_window(grid.tile) if window is None else window
        self._buffer = np.zeros((channels + 1, grid.tile, width), np.float32)
        self._top = 0  # output row held in buffer row 0
        self._row = 0  # index of the tile row being filled

    def add(self, y0: int, x0: int, probabilities: np.ndarray) -> None:
        """Add one tile's ``(C, tile, tile)`` prediction at output position ``(y0, x0)``."""
        t = self.grid.tile
        r0, r1 = max(y0, 0), min(y0 + t, self.height)
        c0, c1 = max(x0, 0), min(x0 + t, self.width)
        if r0 >= r1 or c0 >= c1:
            return
        if r0 < self._top or r1 - self._top > t:
            raise ValueError(f"tile at y={y0} arrived out of row order")
        win = self.window[r0 - y0:r1 - y0, c0 - x0:c1 - x0]
        dst = self._buffer[:, r0 - self._top:r1 - self._top, c0:c1]
        dst[:-1] += probabilities[:, r0 - y0:r1 - y0, c0 - x0:c1 - x0] * win
        dst[-1] += win

    def finish_row(self) -> None:
        """Emit the rows that are final once the current tile row is complete."""
        self._row += 1
        ys = self.grid.ys
        done = self.height if self._row >= len(ys) else min(max(int(ys[self._row]), 0),
                                                              self.height)
        n = done - self._top
        if n <= 0:
            return
        block = self._buffer[:, :n]
        weight = block[-1]
        if np.any(weight <= 0):
            raise RuntimeError("blending left output pixels without any tile (grid bug)")
        self.emit(self._top, block[:-1] / weight)
        keep = self.grid.tile - n
        self._buffer[:, :keep] = self._buffer[:, n:].copy()
        self._buffer[:, keep:] = 0
        self._top = done
