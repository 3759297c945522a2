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

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .postprocess import label_glands, measure_glands
from .shared import ChunkSegmenter, mask_outside, tile_progress
from .slide_io import SLIDE_SUFFIXES, SlideReader, WorkingImage, choose_level, write_slide
from .tiling import TileGrid, aligned_starts
from .tissue import TissueMask, slide_tissue

__all__ = ["SLIDE_SUFFIXES", "DEFAULT_CHUNK", "SlideReader", "SlideSegmentation", "SlidePlan",
           "ChunkGlands", "segment_slide", "plan_slide", "segment_chunk", "merge_chunks",
           "choose_level", "write_slide", "write_slide_outputs", "thumbnail_overlay"]

DEFAULT_CHUNK = 4096  # working px per chunk core


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


@dataclass
class SlidePlan:
    """How a slide is segmented (:func:`plan_slide`): its working image, chunks and tissue.
    Everything :func:`segment_chunk` needs besides the segmenter; picklable, so a cluster can
    run the chunks of one slide on several workers (:mod:`micronet.infer.cohort`).

    Attributes:
        path, mpp, dimensions: the slide, its level-0 µm/px and ``(width, height)``.
        given_mpp: the ``mpp=`` the slide is opened with (``None``: from its metadata).
        level, factor, working_mpp, size: the pyramid level read, its resize factor, and the
            working image's µm/px and ``(height, width)``.
        margin: ring around each core, working px; ``grid``: ``(origin, step)`` of the tile
            grid of the whole working image.
        cores: ``(y0, x0, y1, x1)`` per chunk, row by row; ``todo``: the indices of those
            segmented (the others hold no tissue and are skipped).
        masking: the tissue mask predictions are masked with (level 0; ``None``: none).
    """

    path: Path
    mpp: float
    given_mpp: float | None
    dimensions: tuple[int, int]
    level: int
    factor: float
    working_mpp: float
    size: tuple[int, int]
    margin: int
    grid: tuple[int, int]
    cores: list[tuple[int, int, int, int]]
    todo: list[int]
    masking: TissueMask | None = field(default=None, repr=False)
    thumbnail: np.ndarray | None = field(default=None, repr=False)
    thumbnail_scale: float = 1.0

    @property
    def to_level0(self) -> float:
        """Level-0 px per working px."""
        return self.working_mpp / self.mpp


@dataclass
class ChunkGlands:
    """The glands one chunk keeps (:func:`segment_chunk`): rows with ids local to the chunk,
    level-0 coordinates, and their GeoJSON polygons in the same order."""

    index: int
    glands: list[dict[str, Any]]
    polygons: list[dict[str, Any]]


def plan_slide(segmenter: ChunkSegmenter, path: str | Path, *, target_mpp: float | None = None,
               mpp: float | None = None, chunk: int = DEFAULT_CHUNK, margin: int | None = None,
               skip_background: bool = True, tissue_mask: np.ndarray | None = None,
               reader: SlideReader | None = None) -> SlidePlan:
    """The first step of :func:`segment_slide` (same arguments): the level, chunks, thumbnail
    and tissue of a slide (``reader``: the slide already open, else it is opened here)."""
    own = reader is None
    reader = SlideReader(path, mpp) if reader is None else reader
    try:
        target = float(target_mpp or segmenter.mpp)
        level, factor = choose_level(reader, target)
        work = WorkingImage(reader, level, factor)
        tile, overlap = segmenter.tile, segmenter.overlap
        margin = max(2 * tile if margin is None else margin, tile)
        thumb, thumb_scale = reader.thumbnail()
        config = segmenter.tissue
        if tissue_mask is None:
            tissue_mask = segmenter.tissue_mask
        tissue = None
        if tissue_mask is not None:
            tissue = TissueMask(np.asarray(tissue_mask) > 0, reader.dimensions[0][::-1])
        elif config is not None or skip_background:
            tissue = slide_tissue(reader, config)
        working = None if tissue is None else tissue.resized_to((work.height, work.width))
        cores = [(y, x, min(y + chunk, work.height), min(x + chunk, work.width))
                 for y in range(0, work.height, chunk) for x in range(0, work.width, chunk)]
        todo = [i for i, core in enumerate(cores)
                if not (skip_background and working is not None and not working.any_in(*core))]
        masking = tissue if tissue_mask is not None or config is not None else None
        return SlidePlan(reader.path, reader.mpp, mpp, reader.dimensions[0], level, factor,
                         reader.level_mpp(level) / factor, (work.height, work.width), margin,
                         (-(overlap // 2), tile - overlap), cores, todo, masking, thumb,
                         thumb_scale)
    finally:
        if own:
            reader.close()


def segment_chunk(segmenter: ChunkSegmenter, plan: SlidePlan, index: int,
                  reader: SlideReader | None = None) -> ChunkGlands:
    """Segment chunk ``index`` of ``plan`` (its core and margin, on the slide's tile grid) and
    keep the glands whose centroid lies in its core; ``truncated`` marks those touching the
    margin's outer edge. Opens the slide unless given its ``reader``."""
    from .export import gland_polygons

    own = reader is None
    reader = SlideReader(plan.path, plan.given_mpp) if reader is None else reader
    try:
        work = WorkingImage(reader, plan.level, plan.factor)
        height, width = plan.size
        cy0, cx0, cy1, cx1 = plan.cores[index]
        ry0, rx0 = max(cy0 - plan.margin, 0), max(cx0 - plan.margin, 0)
        ry1, rx1 = min(cy1 + plan.margin, height), min(cx1 + plan.margin, width)
        (origin, step), tile = plan.grid, segmenter.tile
        ys = aligned_starts(ry0, ry1, origin, step, tile)
        xs = aligned_starts(rx0, rx1, origin, step, tile)
        # read everything the tiles need that lies on the slide; beyond it, tiles mirror
        qy0, qx0 = max(int(ys[0]), 0), max(int(xs[0]), 0)
        qy1, qx1 = min(int(ys[-1]) + tile, height), min(int(xs[-1]) + tile, width)
        context = work.read(qy0, qx0, qy1 - qy0, qx1 - qx0)
    finally:
        if own:
            reader.close()
    maps, _ = segmenter.predict_maps(
        context, grid=TileGrid(ys - ry0, xs - rx0, tile),
        window=(ry0 - qy0, rx0 - qx0, ry1 - ry0, rx1 - rx0), progress=False)
    image = context[ry0 - qy0:ry1 - qy0, rx0 - qx0:rx1 - qx0]
    if plan.masking is not None:
        mask_outside(maps, plan.masking.resized_to(plan.size), ry0, rx0, image=image)
    labels = label_glands(maps, segmenter.postprocess_at(plan.working_mpp))  # working px
    del maps
    scale = plan.to_level0
    offset = (rx0 * scale, ry0 * scale)
    rows = measure_glands(labels, image, plan.mpp, offset=offset, scale=scale)
    edges = _edge_ids(labels, (ry0 > 0, rx0 > 0, ry1 < height, rx1 < width))
    keep = [row for row in rows if cy0 <= row["centroid_y"] / scale < cy1
            and cx0 <= row["centroid_x"] / scale < cx1]
    shapes = gland_polygons(labels, offset=offset, scale=scale, ids=[r["id"] for r in keep])
    return ChunkGlands(index, [{**row, "truncated": row["id"] in edges} for row in keep],
                       [shapes[row["id"]] for row in keep])


def merge_chunks(plan: SlidePlan, chunks: Iterable[ChunkGlands]) -> SlideSegmentation:
    """The slide's glands from its chunks' (:func:`segment_chunk`, one per ``plan.todo``, in
    any order): numbered 1.. in chunk order, then flagged ``suspect`` when far too large."""
    from .export import flag_suspects

    parts = sorted(chunks, key=lambda part: part.index)
    if [part.index for part in parts] != sorted(plan.todo):
        raise ValueError(f"{plan.path}: chunks {[p.index for p in parts]} given, the plan "
                         f"segments {sorted(plan.todo)}")
    glands: list[dict[str, Any]] = []
    polygons: dict[int, dict[str, Any]] = {}
    for part in parts:
        for row, shape in zip(part.glands, part.polygons, strict=True):
            gland_id = len(glands) + 1
            polygons[gland_id] = shape
            glands.append({**row, "id": gland_id})
    flag_suspects(glands, plan.mpp)
    return SlideSegmentation(plan.path, glands, polygons, plan.mpp, plan.level, plan.working_mpp,
                             len(plan.cores), len(plan.cores) - len(plan.todo), plan.dimensions,
                             plan.thumbnail, plan.thumbnail_scale, plan.masking)


def segment_slide(segmenter: ChunkSegmenter, path: str | Path, *,
                  target_mpp: float | None = None, mpp: float | None = None,
                  chunk: int = DEFAULT_CHUNK, margin: int | None = None,
                  skip_background: bool = True, progress: Any = None,
                  out_dir: str | Path | None = None,
                  formats: tuple[str, ...] = ("geojson", "csv", "overlay", "tissue"),
                  name: str | None = None, tissue_mask: np.ndarray | None = None,
                  ) -> SlideSegmentation:
    """Segment the glands of a whole-slide image (see the module docstring): :func:`plan_slide`,
    :func:`segment_chunk` for each chunk with tissue, :func:`merge_chunks`.

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
        progress: progress bar control (see :func:`micronet.infer.shared.tile_progress`).
        out_dir: when given, write ``NAME.geojson``, ``NAME_glands.csv`` and a thumbnail
            ``NAME_overlay.png`` there (``formats`` picks which).
        name: NAME of the outputs (default: the slide's file stem).

    Raises:
        InputError: unreadable slide, or no resolution known.
    """
    reader = SlideReader(path, mpp)
    try:
        plan = plan_slide(segmenter, path, target_mpp=target_mpp, mpp=mpp, chunk=chunk,
                          margin=margin, skip_background=skip_background,
                          tissue_mask=tissue_mask, reader=reader)
        todo = set(plan.todo)
        parts = []
        with tile_progress(progress, len(plan.cores), f"{reader.path.name}: chunks") as advance:
            for index in range(len(plan.cores)):
                if index in todo:
                    parts.append(segment_chunk(segmenter, plan, index, reader))
                advance(1)
    finally:
        reader.close()
    result = merge_chunks(plan, parts)
    if out_dir is not None:
        write_slide_outputs(result, out_dir, formats, name)
    return result


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
