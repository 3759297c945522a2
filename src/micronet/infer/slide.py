"""Whole-slide gland segmentation (SVS, NDPI, generic pyramidal TIFF) in bounded memory.

1. **Resolution**: the slide's level-0 µm/px comes from its metadata (``tiffslide.mpp-x``), or
   from ``mpp=`` when the file has none (an error otherwise). The pyramid level used is the
   coarsest one whose µm/px is still within 10 % of the target (the weights' mpp, 0.62 for
   GlaS); when that level is more than 10 % off, regions are resampled to the target with an
   exact affine map (anti-aliased), so every chunk sees the same pixel grid.
2. **Tissue**: :func:`micronet.infer.tissue.slide_tissue` at about 4 µm/px; chunks with no
   tissue in their core are skipped, and in the others every prediction outside tissue is set
   to background before labelling, so glass and pen ink never become glands.
3. **Chunks**: the working image is cut into ``chunk`` px cores; each is predicted with a
   ``margin`` px ring around it (default 2 tiles, >= one tile), with the tile grid of the *whole*
   slide, so overlapping chunks compute the same probabilities where they overlap.
4. **Seams**: a gland belongs to the chunk whose core holds its centroid; it is kept whole from
   that chunk (the margin shows it entirely) and dropped from the others, so a gland crossing a
   chunk border comes out once, as one instance. This holds for glands that reach less than
   ``margin`` px beyond the core holding their centroid (default 2 tiles: 1016 px, 630 µm at
   0.62 µm/px, far larger than colon glands); a larger gland reaches a chunk's outer edge, is cut
   there, may come out in several pieces, and every such piece is flagged ``truncated`` (raise
   ``margin`` to avoid it).

Outputs are per-gland rows and polygons in level-0 pixel coordinates; glands far larger than any
training gland are flagged ``suspect`` (:func:`micronet.infer.export.flag_suspects`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.card import MPP_TOLERANCE
from .postprocess import label_glands, measure_glands
from .tiling import TileGrid, aligned_starts
from .tissue import TissueMask, slide_tissue

__all__ = ["SlideReader", "SlideSegmentation", "segment_slide", "choose_level", "write_slide"]

SLIDE_SUFFIXES = {".svs", ".ndpi", ".scn", ".mrxs", ".vms", ".vmu", ".bif", ".svslide"}


class SlideReader:
    """RGB regions of a pyramidal slide through tiffslide (OpenSlide when tiffslide fails)."""

    def __init__(self, path: str | Path, mpp: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: slide file not found")
        self._slide, prefix = self._open()
        props = self._slide.properties
        found = props.get(f"{prefix}.mpp-x")
        if mpp is not None:
            if not mpp > 0:
                raise InputError(f"{self.path}: mpp must be positive, got {mpp}")
            self.mpp = float(mpp)
        elif found not in (None, "", 0):
            self.mpp = float(found)
        else:
            raise InputError(f"{self.path}: no µm/px in the slide's metadata; give the level-0 "
                             "resolution with --mpp (e.g. 0.25 for 40x, 0.5 for 20x)")
        self.dimensions = [tuple(int(v) for v in d) for d in self._slide.level_dimensions]
        self.downsamples = [float(d) for d in self._slide.level_downsamples]

    def _open(self) -> tuple[Any, str]:
        try:
            import tiffslide

            return tiffslide.TiffSlide(str(self.path)), "tiffslide"
        except Exception as exc:
            try:
                import openslide
            except ImportError:
                raise InputError(f"{self.path}: not a readable slide ({exc})") from None
            try:
                return openslide.OpenSlide(str(self.path)), "openslide"
            except Exception as exc2:
                raise InputError(f"{self.path}: not a readable slide ({exc2})") from None

    def level_mpp(self, level: int) -> float:
        """µm per pixel of a pyramid level."""
        return self.mpp * self.downsamples[level]

    def read(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """``(height, width, 3) uint8`` at level coordinates; must lie inside the level."""
        ds = self.downsamples[level]
        region = self._slide.read_region((round(x * ds), round(y * ds)), level, (width, height))
        arr = np.asarray(region)
        if arr.ndim == 3 and arr.shape[2] == 4:  # OpenSlide RGBA: transparent = white glass
            alpha = arr[..., 3:4].astype(np.float32) / 255
            arr = (arr[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
        return np.ascontiguousarray(arr[..., :3])

    def thumbnail(self, max_size: int = 2048) -> tuple[np.ndarray, float]:
        """The coarsest level shrunk to at most ``max_size`` px, and its level-0 px per px."""
        level = len(self.dimensions) - 1
        w, h = self.dimensions[level]
        image = self.read_scaled(level, min(1.0, max_size / max(w, h)))
        return image, self.downsamples[level] * w / image.shape[1]

    def read_scaled(self, level: int, factor: float) -> np.ndarray:
        """The whole of ``level`` resized by ``factor`` <= 1 (area interpolation). Read in
        strips, so a slide without a real pyramid never loads its full level at once."""
        import cv2

        w, h = self.dimensions[level]
        out_w = max(1, round(w * factor))
        strip = max(1, int(round(1 / factor))) * 256
        parts = []
        for y in range(0, h, strip):
            rows = min(strip, h - y)
            part = self.read(level, 0, y, w, rows)
            if factor < 1:
                part = cv2.resize(part, (out_w, max(1, round(rows * factor))),
                                  interpolation=cv2.INTER_AREA)
            parts.append(part)
        return np.concatenate(parts, axis=0)

    def close(self) -> None:
        """Release the file."""
        self._slide.close()


def write_slide(path: str | Path, image: np.ndarray, mpp: float,
                downsamples: tuple[int, ...] = (4, 16), quality: int = 85) -> Path:
    """Write ``image`` as a tiled, JPEG-compressed pyramidal TIFF (level 0 at ``mpp`` µm/px,
    reduced levels as SubIFDs) that tiffslide and ``micronet segment`` read as a slide; for
    the bundled demo slide and slides made of images laid on glass."""
    import cv2
    import tifffile

    from .._io import atomic_path

    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp) as tif:
        for k, ds in enumerate((1, *downsamples)):
            h, w = image.shape[0] // ds, image.shape[1] // ds
            level = image if ds == 1 else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            tif.write(level, tile=(256, 256), photometric="rgb", compression="jpeg",
                      compressionargs={"level": quality},
                      subifds=len(downsamples) if k == 0 else None, subfiletype=1 if k else 0,
                      resolution=(1e4 / (mpp * ds), 1e4 / (mpp * ds)),
                      resolutionunit="CENTIMETER")
    return Path(path)


def choose_level(reader: SlideReader, target_mpp: float, tolerance: float = MPP_TOLERANCE
                 ) -> tuple[int, float]:
    """The pyramid level to read and the resize factor from it to ``target_mpp`` (1.0 = none)."""
    ok = [lv for lv in range(len(reader.dimensions))
          if reader.level_mpp(lv) <= target_mpp * (1 + tolerance)]
    level = max(ok, key=reader.level_mpp) if ok else 0
    factor = reader.level_mpp(level) / target_mpp
    return level, 1.0 if abs(factor - 1.0) <= tolerance else factor


@dataclass
class SlideSegmentation:
    """Glands of a slide, in level-0 pixel coordinates.

    Attributes:
        path: the slide.
        glands: one row per gland (see :func:`micronet.infer.postprocess.measure_glands`),
            ``truncated`` marks glands larger than the chunk margin.
        polygons: GeoJSON geometry per gland id.
        mpp: level-0 µm/px; ``level`` and ``working_mpp``: where the network ran.
        chunks, skipped: chunks in the slide, and those skipped as background.
        dimensions: level-0 ``(width, height)``.
        tissue: the tissue mask used, over level 0 (``None``: none).
    """

    path: Path
    glands: list[dict[str, Any]]
    polygons: dict[int, dict[str, Any]]
    mpp: float
    level: int
    working_mpp: float
    chunks: int
    skipped: int
    dimensions: tuple[int, int]
    thumbnail: np.ndarray | None = field(default=None, repr=False)
    thumbnail_scale: float = 1.0
    tissue: TissueMask | None = field(default=None, repr=False)

    @property
    def num_glands(self) -> int:
        """Number of glands."""
        return len(self.glands)


class _WorkingImage:
    """The slide at the working resolution: level ``level`` resized by ``factor``."""

    def __init__(self, reader: SlideReader, level: int, factor: float) -> None:
        self.reader, self.level, self.factor = reader, level, factor
        w, h = reader.dimensions[level]
        self.level_size = (w, h)
        self.width, self.height = max(1, round(w * factor)), max(1, round(h * factor))

    def read(self, y0: int, x0: int, height: int, width: int) -> np.ndarray:
        """Working-frame region (inside the working image)."""
        if self.factor == 1.0:
            return self.reader.read(self.level, x0, y0, width, height)
        import cv2

        f = self.factor
        sigma = max(0.0, (1 / f - 1) / 2)
        pad = math.ceil(4 * sigma) + 2
        lw, lh = self.level_size
        sx0 = max(math.floor((x0 + 0.5) / f - 0.5) - pad, 0)
        sy0 = max(math.floor((y0 + 0.5) / f - 0.5) - pad, 0)
        sx1 = min(math.ceil((x0 + width - 0.5) / f - 0.5) + pad + 1, lw)
        sy1 = min(math.ceil((y0 + height - 0.5) / f - 0.5) + pad + 1, lh)
        src = self.reader.read(self.level, sx0, sy0, sx1 - sx0, sy1 - sy0)
        if sigma > 0:
            src = cv2.GaussianBlur(src, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        m = np.array([[1 / f, 0, (x0 + 0.5) / f - 0.5 - sx0],
                      [0, 1 / f, (y0 + 0.5) / f - 0.5 - sy0]], np.float64)
        return cv2.warpAffine(src, m, (width, height), flags=cv2.INTER_LINEAR |
                              cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)


def segment_slide(segmenter: Any, path: str | Path, *, target_mpp: float | None = None,
                  mpp: float | None = None, chunk: int = 4096, margin: int | None = None,
                  skip_background: bool = True, progress: Any = None,
                  out_dir: str | Path | None = None,
                  formats: tuple[str, ...] = ("geojson", "csv", "overlay", "tissue"),
                  name: str | None = None, tissue_mask: np.ndarray | None = None,
                  ) -> SlideSegmentation:
    """Segment the glands of a whole-slide image (see the module docstring).

    Args:
        segmenter: a :class:`~micronet.infer.Segmenter`.
        path: SVS, NDPI or pyramidal TIFF.
        target_mpp: µm/px to run at (default: the weights' ``segmenter.mpp``).
        mpp: level-0 µm/px, overriding (or standing in for missing) slide metadata.
        chunk: core size of a chunk in working pixels.
        margin: ring around each core in working px (default two tiles; at least one tile).
        skip_background: skip chunks without tissue.
        tissue_mask: your own mask (any size, non-zero = tissue, stretched over the slide)
            instead of the detected one (``segmenter.tissue``; ``None`` there: no masking).
        progress: progress bar control (see :func:`micronet.infer.segmenter.tile_progress`).
        out_dir: when given, write ``NAME.geojson``, ``NAME_glands.csv`` and a thumbnail
            ``NAME_overlay.png`` there (``formats`` picks which).
        name: NAME of the outputs (default: the slide's file stem).

    Raises:
        InputError: unreadable slide, or no resolution known.
    """
    from .export import flag_suspects
    from .segmenter import tile_progress

    reader = SlideReader(path, mpp)
    try:
        target = float(target_mpp or segmenter.mpp)
        level, factor = choose_level(reader, target)
        work = _WorkingImage(reader, level, factor)
        working_mpp = reader.level_mpp(level) / factor
        to_level0 = working_mpp / reader.mpp
        tile, overlap = segmenter.tile, segmenter.overlap
        margin = max(2 * tile if margin is None else margin, tile)
        thumb, thumb_scale = reader.thumbnail()
        config = getattr(segmenter, "tissue", None)
        if tissue_mask is None:
            tissue_mask = getattr(segmenter, "tissue_mask", None)
        tissue = None
        if tissue_mask is not None:
            tissue = TissueMask(np.asarray(tissue_mask) > 0, reader.dimensions[0][::-1])
        elif config is not None or skip_background:
            tissue = slide_tissue(reader, config)
        masking = tissue if tissue_mask is not None or config is not None else None
        working = None if tissue is None else TissueMask(tissue.mask, (work.height, work.width))
        step, origin = tile - overlap, -(overlap // 2)
        cores = [(y, x, min(y + chunk, work.height), min(x + chunk, work.width))
                 for y in range(0, work.height, chunk) for x in range(0, work.width, chunk)]
        glands: list[dict[str, Any]] = []
        polygons: dict[int, dict[str, Any]] = {}
        skipped = 0
        with tile_progress(progress, len(cores), f"{reader.path.name}: chunks") as advance:
            for core in cores:
                if skip_background and working is not None and not working.any_in(*core):
                    skipped += 1
                else:
                    _segment_chunk(segmenter, work, core, margin, (origin, step), to_level0,
                                   reader.mpp, glands, polygons,
                                   working if masking is not None else None)
                advance(1)
        flag_suspects(glands, reader.mpp)
        result = SlideSegmentation(reader.path, glands, polygons, reader.mpp, level, working_mpp,
                                   len(cores), skipped, reader.dimensions[0], thumb, thumb_scale,
                                   masking)
    finally:
        reader.close()
    if out_dir is not None:
        write_slide_outputs(result, out_dir, formats, name)
    return result


def _segment_chunk(segmenter: Any, work: _WorkingImage, core: tuple[int, int, int, int],
                   margin: int, grid: tuple[int, int], to_level0: float, mpp0: float,
                   glands: list[dict[str, Any]], polygons: dict[int, dict[str, Any]],
                   tissue: TissueMask | None = None) -> None:
    from .export import gland_polygons
    from .segmenter import mask_outside

    cy0, cx0, cy1, cx1 = core
    ry0, rx0 = max(cy0 - margin, 0), max(cx0 - margin, 0)
    ry1, rx1 = min(cy1 + margin, work.height), min(cx1 + margin, work.width)
    origin, step, tile = grid[0], grid[1], segmenter.tile
    ys = aligned_starts(ry0, ry1, origin, step, tile)
    xs = aligned_starts(rx0, rx1, origin, step, tile)
    # read everything the tiles need that lies on the slide; beyond it, tiles mirror
    qy0, qx0 = max(int(ys[0]), 0), max(int(xs[0]), 0)
    qy1, qx1 = min(int(ys[-1]) + tile, work.height), min(int(xs[-1]) + tile, work.width)
    context = work.read(qy0, qx0, qy1 - qy0, qx1 - qx0)
    maps, _ = segmenter.predict_maps(
        context, grid=TileGrid(ys - ry0, xs - rx0, tile),
        window=(ry0 - qy0, rx0 - qx0, ry1 - ry0, rx1 - rx0), progress=False)
    if tissue is not None:
        mask_outside(maps, tissue, ry0, rx0)
    labels = label_glands(maps, segmenter.postprocess)
    del maps
    image = context[ry0 - qy0:ry1 - qy0, rx0 - qx0:rx1 - qx0]
    offset = (rx0 * to_level0, ry0 * to_level0)
    rows = measure_glands(labels, image, mpp0, offset=offset, scale=to_level0)
    edges = _edge_ids(labels, (ry0 > 0, rx0 > 0, ry1 < work.height, rx1 < work.width))
    keep = []
    for row in rows:
        cx, cy = row["centroid_x"] / to_level0, row["centroid_y"] / to_level0
        if cy0 <= cy < cy1 and cx0 <= cx < cx1:
            keep.append(row)
    shapes = gland_polygons(labels, offset=offset, scale=to_level0,
                            ids=[r["id"] for r in keep])
    for row in keep:
        new_id = len(glands) + 1
        local = row["id"]
        polygons[new_id] = shapes[local]
        glands.append({**row, "id": new_id, "truncated": local in edges})


def _edge_ids(labels: np.ndarray, inner: tuple[bool, bool, bool, bool]) -> set[int]:
    """Ids touching a region edge that is inside the slide (top, left, bottom, right)."""
    edges = [labels[0], labels[:, 0], labels[-1], labels[:, -1]]
    ids: set[int] = set()
    for is_inner, edge in zip(inner, edges, strict=True):
        if is_inner:
            ids.update(int(v) for v in np.unique(edge) if v)
    return ids


def write_slide_outputs(result: SlideSegmentation, out_dir: str | Path,
                        formats: tuple[str, ...] = ("geojson", "csv", "overlay", "tissue"),
                        name: str | None = None) -> list[Path]:
    """Write ``NAME.geojson``, ``NAME_glands.csv``, a thumbnail ``NAME_overlay.png`` and the
    tissue mask used, ``NAME_tissue.png`` (NAME defaults to the slide's file stem)."""
    from .export import (
        geojson_features,
        gland_columns,
        output_paths,
        write_csv,
        write_geojson,
        write_tissue,
    )

    name = name or result.path.stem
    paths = output_paths(out_dir, name, [f for f in formats if f not in ("labels", "tissue")])
    if "geojson" in paths:
        write_geojson(paths["geojson"], geojson_features(result.polygons, result.glands))
    if "csv" in paths:
        write_csv(paths["csv"], result.glands, gland_columns(result.mpp, ("suspect", "truncated")))
    if "overlay" in paths and result.thumbnail is not None:
        from .._io import write_png

        write_png(paths["overlay"], thumbnail_overlay(result))
    if "tissue" in formats and result.tissue is not None:
        paths["tissue"] = output_paths(out_dir, name, ["tissue"])["tissue"]
        write_tissue(paths["tissue"], result.tissue.mask)
    return list(paths.values())


def thumbnail_overlay(result: SlideSegmentation, alpha: float = 0.4) -> np.ndarray:
    """The slide thumbnail with gland polygons filled translucent and outlined."""
    import cv2

    from .export import gland_colors

    base = np.ascontiguousarray(result.thumbnail)
    fill = base.copy()
    colors = gland_colors(len(result.glands))
    outlines = []
    for gid, geom in result.polygons.items():
        parts = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
        color = tuple(int(c) for c in colors[gid])
        for part in parts:
            rings = [np.round(np.asarray(r) / result.thumbnail_scale).astype(np.int32)
                     for r in part]
            cv2.fillPoly(fill, rings, color)
            outlines.append((rings, color))
    out = cv2.addWeighted(fill, alpha, base, 1 - alpha, 0)
    for rings, color in outlines:
        cv2.polylines(out, rings, True, color, 1)
    return out
