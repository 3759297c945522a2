"""Tissue detection: which pixels of an image or slide are tissue, and which are glass or ink.

The gland network was trained on GlaS crops, where pale pixels are gland lumens; on a slide it
calls glass "gland" too. The tissue mask sets every prediction outside tissue to background
*before* instance labelling (:meth:`micronet.infer.Segmenter.finish`, the slide chunks), so
glass cannot create or join glands. One function, :func:`detect_tissue`, serves images and
slides (and the slide path's skipping of empty chunks).

Method (at ``TissueConfig.mpp`` µm/px, 4 by default: fine enough for gland borders, and a
10,000² image at 0.62 µm/px becomes 1,550²):

1. **Colour and texture**: a pixel is tissue when its HSV saturation exceeds ``min_saturation``
   (glass is grey-white: saturation 2-10 of 255 on the GlaS glass; pale H&E stroma is above
   25), when it is darker than the brightest glass by an optical density above ``min_density``
   (unsaturated but dense matter), or when it is slightly coloured and textured (pale mucin:
   ``min_texture``).
2. **Pen ink** (blue, green: hue 70-250°, saturated; black: very dark) is never tissue; H&E's
   pink and purple hues lie outside that band at this resolution.
3. **Clean-up**: closing (``close_um``), tissue fragments under ``min_tissue_um2`` removed,
   pale regions under ``max_hole_um2`` filled, including those open to the image's sides (gland
   lumens are pale but small and surrounded by tissue or cut by the crop; glass is large, and a
   pale border round an image touches all four sides), and the mask shrunk by
   ``shrink_um``. Ink is removed last, so a stroke over tissue never comes back as a filled hole.
4. The low-resolution mask is resized (bilinear, > 0.5) to whatever window is being segmented.
5. **Edge refinement** (``refine_edge``): a coarse pixel is 4 µm, so where tissue meets glass
   the shrunk mask either keeps a rim of glass or drops a strip of tissue, and glands cut by
   the tissue's edge lose that strip. The mask pixels on that edge (:attr:`TissueMask.edge`)
   are decided again pixel by pixel when the mask is applied to an image window
   (:meth:`TissueMask.refined`), by the same saturation and density tests on the window
   itself, lightly blurred.

It does *not* know folds, air bubbles or out-of-focus regions: those are tissue-coloured and stay
tissue (see the README). :func:`micronet.infer.glass.embed_on_glass` lays images on synthetic
glass, to test all this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import InputError

__all__ = ["TissueConfig", "TissueMask", "EdgeCue", "detect_tissue", "darkest_channel_texture",
           "slide_tissue", "read_tissue_mask"]


@dataclass(frozen=True)
class TissueConfig:
    """Tissue-detection parameters, tuned on GlaS (H&E, 0.62 µm/px) and synthetic glass.

    Attributes:
        mpp: µm/px the mask is computed at (inputs are area-downsampled to it).
        min_saturation: HSV saturation (0..255) above which a pixel is tissue.
        min_density: optical density (``-log10(I / white)``, largest over R, G, B; white = the
            99th percentile brightness, at least 200) above which a pixel is tissue.
        min_texture: a pixel whose darkest channel varies by more than this (standard
            deviation, grey levels, over the full-resolution pixels it covers) and whose
            saturation exceeds ``texture_saturation`` is tissue: pale goblet-cell mucin is
            nearly as pale as glass (saturation ~10) but full of membranes; glass varies by
            scanner noise only (<= 5 on GlaS glass and 5-level synthetic noise).
        texture_saturation: see ``min_texture``.
        ink_hue: OpenCV hue range (0..180 = 0..360°) of blue/green pen ink.
        ink_saturation: saturation above which a pixel in ``ink_hue`` is ink.
        ink_dark: brightest channel below this (0..255) = black ink.
        ink_margin_um: ink regions grow by this much (their pale fringes).
        close_um: radius of the closing that joins tissue across small gaps.
        min_tissue_um2: tissue fragments smaller than this are dropped (dust, specks).
        max_hole_um2: pale regions smaller than this become tissue (lumens); the largest GlaS
            training gland is 137,700 µm², its lumen far less.
        shrink_um: the final mask shrinks by this much (not at the image border): coarse
            pixels half tissue, half glass leave a rim of glass inside the mask, and the
            network calls that rim a ring-shaped gland round the tissue. Tissue this close to
            its own edge is lost instead.
        texture_mpp: a slide's texture cue is measured on its coarsest pyramid level at least
            this fine (µm/px; level 0 when none is): a level already at ``mpp`` has no texture
            left, and pale mucin would be cut out as glass.
        refine_edge: decide the mask's edge pixels (those the shrink removes, and one more
            outwards) per image pixel by saturation and density (module docstring, step 5).
    """

    mpp: float = 4.0
    min_saturation: int = 20
    min_density: float = 0.15
    min_texture: float = 6.0
    texture_saturation: int = 5
    ink_hue: tuple[int, int] = (35, 125)
    ink_saturation: int = 60
    ink_dark: int = 50
    ink_margin_um: float = 8.0
    close_um: float = 8.0
    min_tissue_um2: float = 5_000.0
    max_hole_um2: float = 60_000.0
    shrink_um: float = 4.0
    texture_mpp: float = 1.0
    refine_edge: bool = True

    def __post_init__(self) -> None:
        if not self.mpp > 0:
            raise ValueError(f"TissueConfig.mpp must be > 0, got {self.mpp}")


class EdgeCue(NamedTuple):
    """The per-pixel tissue test :meth:`TissueMask.refined` applies on the mask's edge."""

    min_saturation: int
    min_density: float
    white: float  # brightness of the glass (optical density 0)

    def tissue(self, image: np.ndarray) -> np.ndarray:
        """``(H, W) bool``: pixels of an RGB window that are tissue by colour (5×5 box blur)."""
        import cv2

        smooth = cv2.blur(np.ascontiguousarray(image), (5, 5))
        sat = cv2.cvtColor(smooth, cv2.COLOR_RGB2HSV)[..., 1]
        return self.passes(sat, smooth.min(axis=2).astype(np.float32))

    def passes(self, sat: np.ndarray, darkest: np.ndarray) -> np.ndarray:
        """Tissue by saturation or optical density (of the darkest channel), the colour part
        of :func:`detect_tissue`; the density keeps ``darkest``'s float precision."""
        density = -np.log10(np.maximum(darkest, 1) / self.white)
        return (sat > self.min_saturation) | (density > self.min_density)


class TissueMask(NamedTuple):
    """A low-resolution tissue mask covering an image (or slide) of ``shape`` ``(H, W)``;
    ``edge`` (same grid) marks the pixels to decide again per image pixel with ``cue``."""

    mask: np.ndarray  # (h, w) bool
    shape: tuple[int, int]
    edge: np.ndarray | None = None  # (h, w) bool
    cue: EdgeCue | None = None

    def region(self, y0: int, x0: int, height: int, width: int, grid: np.ndarray | None = None,
               above: float = 0.5) -> np.ndarray:
        """``(height, width) bool`` tissue of an image window, resized from the mask (or from
        ``grid``, another array on the mask's grid), bilinear, ``> above``; a window reaching
        outside the image sees the nearest edge values."""
        import cv2

        grid = self.mask if grid is None else grid
        sy, sx = grid.shape[0] / self.shape[0], grid.shape[1] / self.shape[1]
        # only the grid pixels the window's bilinear samples touch are converted and warped
        (r0, r1), (c0, c1) = (_touched(start, size, scale, n) for start, size, scale, n in
                              ((y0, height, sy, grid.shape[0]), (x0, width, sx, grid.shape[1])))
        m = np.array([[sx, 0, (x0 + 0.5) * sx - 0.5 - c0], [0, sy, (y0 + 0.5) * sy - 0.5 - r0]])
        out = cv2.warpAffine(grid[r0:r1, c0:c1].astype(np.float32), m, (int(width), int(height)),
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)
        return out > above

    def refined(self, y0: int, x0: int, image: np.ndarray) -> np.ndarray:
        """Tissue of the image window ``image`` (``(h, w, 3)`` RGB) at ``(y0, x0)``: the
        resized mask, with the edge pixels decided per image pixel by colour (``cue``)."""
        h, w = image.shape[:2]
        inside = self.region(y0, x0, h, w)
        if self.edge is None or self.cue is None:
            return inside
        # any edge pixel in reach (cv2 weights are multiples of 1/32: 1e-4 is "not zero")
        band = self.region(y0, x0, h, w, grid=self.edge, above=1e-4)
        if band.any():
            inside |= band & self.cue.tissue(image)
        return inside

    def resized_to(self, shape: tuple[int, int]) -> TissueMask:
        """The same mask covering an image of ``shape`` (the same field of view)."""
        return self._replace(shape=(int(shape[0]), int(shape[1])))

    def full(self) -> np.ndarray:
        """The mask at the image's size."""
        return self.region(0, 0, *self.shape)

    def any_in(self, y0: int, x0: int, y1: int, x1: int) -> bool:
        """Whether the image box ``[y0, y1) × [x0, x1)`` holds any tissue (one mask px slack)."""
        sy, sx = self.mask.shape[0] / self.shape[0], self.mask.shape[1] / self.shape[1]
        r0, c0 = max(int(y0 * sy) - 1, 0), max(int(x0 * sx) - 1, 0)
        r1, c1 = math.ceil(y1 * sy) + 1, math.ceil(x1 * sx) + 1
        return bool(self.mask[r0:r1, c0:c1].any())

    @property
    def fraction(self) -> float:
        """Share of the image that is tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0


def _touched(start: int, size: int, scale: float, n: int) -> tuple[int, int]:
    """Grid rows (or columns) ``[lo, hi)`` that bilinear samples of image pixels ``[start,
    start + size)`` read, one spare each side, within ``[0, n)`` and never empty."""
    first = (start + 0.5) * scale - 0.5
    last = (start + max(size, 1) - 0.5) * scale - 0.5
    lo = min(max(math.floor(first) - 1, 0), n - 1)
    hi = max(min(math.ceil(last) + 2, n), lo + 1)
    return lo, hi


def _disk(radius_px: float) -> np.ndarray:
    r = max(int(round(radius_px)), 0)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy * yy + xx * xx <= r * r + r).astype(np.uint8)  # +r: round, not diamond-like


def _drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    """``mask`` without its 8-connected components of fewer than ``min_px`` pixels."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_px
    keep[0] = False
    return keep[labels]


def _fill_holes(tissue: np.ndarray, max_px: float, cut_edges: bool = True) -> np.ndarray:
    """``tissue`` with its pale 8-connected regions under ``max_px`` pixels filled, unless they
    touch all four sides of the image (a pale border or frame; a lumen cut by the crop can
    touch three: GlaS testA_15), or, without ``cut_edges`` (a whole slide), any side."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats((~tissue).astype(np.uint8),
                                                           connectivity=8)
    sides = np.zeros(n, np.int64)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        touched = np.zeros(n, bool)
        touched[edge] = True
        sides += touched
    fill = (stats[:, cv2.CC_STAT_AREA] < max_px) & (sides < (4 if cut_edges else 1))
    fill[0] = False  # label 0: the tissue itself
    return tissue | fill[labels]


def darkest_channel_texture(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The texture cue (``TissueConfig.min_texture``): the standard deviation of an RGB image's
    darkest channel over the pixels each cell of an area resize to ``size`` ``(w, h)`` covers."""
    import cv2

    grey = image.min(axis=2).astype(np.float32)
    mean = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    grey *= grey
    square = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return np.sqrt(np.maximum(square - mean * mean, 0))


def detect_tissue(image: np.ndarray, mpp: float, config: TissueConfig | None = None,
                  cut_edges: bool = True, texture: np.ndarray | None = None) -> TissueMask:
    """Tissue of an RGB image (see the module docstring for the method).

    Args:
        image: ``(H, W, 3) uint8`` RGB.
        mpp: the image's µm per pixel.
        config: parameters (``None``: the defaults).
        cut_edges: the image may be a crop cut through tissue, so a pale region open to its
            edges can be a cut lumen (``False`` for whole slides: what reaches the slide's
            edge is glass).
        texture: the texture cue (see ``TissueConfig.min_texture``) of an image already
            shrunk to about the mask's resolution (then not resized again), measured on finer
            pixels (a slide's :meth:`~micronet.infer.slide_io.SlideReader.read_scaled_texture`).

    Returns:
        A :class:`TissueMask` at ``config.mpp`` (never coarser than the image itself).
    """
    import cv2

    cfg = config or TissueConfig()
    if not mpp > 0:
        raise InputError(f"mpp must be a positive number of µm per pixel, got {mpp}")
    h, w = image.shape[:2]
    if texture is None:
        f = min(1.0, mpp / cfg.mpp)
        size = (max(1, round(w * f)), max(1, round(h * f)))
        small = image if f == 1.0 else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        texture = darkest_channel_texture(image, size)
    elif texture.shape == (h, w):  # already shrunk: used as is (its µm/px rounds near cfg.mpp)
        f, small = 1.0, image
    else:
        raise ValueError(f"texture {texture.shape} does not match the image {(h, w)}")
    px_um = mpp / f  # µm per mask pixel
    small = cv2.medianBlur(np.ascontiguousarray(small), 3)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hue, sat, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    white = max(float(np.percentile(value, 99)), 200.0)
    cue = EdgeCue(cfg.min_saturation, cfg.min_density, white)
    ink = ((hue >= cfg.ink_hue[0]) & (hue <= cfg.ink_hue[1]) & (sat > cfg.ink_saturation)) | \
        (value < cfg.ink_dark)
    if ink.any() and cfg.ink_margin_um > 0:
        ink = cv2.dilate(ink.astype(np.uint8), _disk(cfg.ink_margin_um / px_um)) > 0
    tissue = (cue.passes(sat, small.min(axis=2))
              | ((texture > cfg.min_texture) & (sat > cfg.texture_saturation))) & ~ink
    if cfg.close_um > 0:
        k = _disk(cfg.close_um / px_um)
        pad = k.shape[0]
        padded = cv2.copyMakeBorder(tissue.astype(np.uint8), pad, pad, pad, pad,
                                    cv2.BORDER_REFLECT)
        tissue = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, k)[pad:-pad, pad:-pad] > 0
    area = px_um * px_um
    tissue = _drop_small(tissue, cfg.min_tissue_um2 / area)
    if tissue.any():  # (glass alone is no "hole")
        tissue = _fill_holes(tissue, cfg.max_hole_um2 / area, cut_edges)
    whole = tissue
    if cfg.shrink_um > 0:  # OpenCV's default border does not erode at the image edge
        tissue = cv2.erode(tissue.astype(np.uint8), _disk(cfg.shrink_um / px_um)) > 0
    if not cfg.refine_edge:
        return TissueMask(tissue & ~ink, (h, w))
    edge = (cv2.dilate(whole.astype(np.uint8), _disk(1)) > 0) & ~tissue & ~ink
    return TissueMask(tissue & ~ink, (h, w), edge, cue)


def slide_tissue(reader: Any, config: TissueConfig | None = None,
                 max_side: int = 16384) -> TissueMask:
    """Tissue of a whole slide (a :class:`~micronet.infer.slide.SlideReader`), in level-0
    coordinates: the pyramid level just finer than ``config.mpp`` is read in strips and shrunk
    to it (or coarser, so the mask's longer side stays within ``max_side``)."""
    cfg = config or TissueConfig()
    w0, h0 = reader.dimensions[0]
    target = max(cfg.mpp, reader.mpp * max(w0, h0) / max_side)
    levels = range(len(reader.dimensions))
    fine = [lv for lv in levels if reader.level_mpp(lv) <= cfg.texture_mpp]
    level = max(fine, key=reader.level_mpp) if fine else min(levels, key=reader.level_mpp)
    w, h = reader.dimensions[level]
    small, texture = reader.read_scaled_texture(level, min(1.0, reader.level_mpp(level) / target))
    mpp = reader.level_mpp(level) * w / small.shape[1]
    return detect_tissue(small, mpp, cfg, cut_edges=False, texture=texture).resized_to((h0, w0))


def read_tissue_mask(path: str | Path) -> np.ndarray:
    """A user's mask image as ``(h, w) bool`` (any size, non-zero = tissue; it is stretched over
    each image or slide it is used for).

    Raises:
        InputError: unreadable file, or an empty mask.
    """

    from .._io import _open_image

    img = _open_image(Path(path))
    mask = np.asarray(img.convert("L")) > 0
    if not mask.any():
        raise InputError(f"{path}: tissue mask is empty (no non-zero pixel)")
    return mask
