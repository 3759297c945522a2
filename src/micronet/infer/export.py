"""Write segmentations: instance labels, colour overlays, QuPath GeoJSON and per-gland CSV.

Every file goes through :func:`micronet._io.atomic_path`, so a failure never leaves half a file.

GeoJSON polygons are in pixel coordinates of the input (level 0 for slides), ``x`` right and ``y``
down, with pixel ``(row, col)`` covering ``[col, col + 1) × [row, row + 1)`` as in QuPath. They
trace the mask outline through the mid-points between pixel centres (marching squares on the
padded mask, so rings are closed and never self-intersect), lightly simplified (Douglas-Peucker,
0.5 px) unless the simplified rings would cross, in which case the exact rings are kept. Outer
rings have positive shoelace area in ``(x, y)`` (counter-clockwise in GeoJSON's right-hand rule),
holes negative.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path, write_png

__all__ = ["FORMATS", "gland_polygons", "geojson_features", "write_geojson", "write_labels",
           "write_overlay", "write_csv", "output_paths", "export_segmentation", "gland_colors",
           "flag_suspects", "write_tissue", "SUSPECT_AREA_UM2", "rasterize_polygons",
           "gland_columns", "draw_ids", "OVERLAY_HUES"]

FORMATS = ("labels", "overlay", "geojson", "csv", "tissue")
GLAND_COLOR = (0, 160, 80)
# The largest gland in the GlaS training labels (train_76: 358,105 px at 0.62 µm/px) covers
# 137,700 µm²; an object three times that is beyond anything the shipped weights saw: usually
# glass, a fold or a run of merged glands rather than one gland.
LARGEST_TRAINING_GLAND_UM2 = 137_700.0
SUSPECT_AREA_UM2 = 3 * LARGEST_TRAINING_GLAND_UM2


def flag_suspects(rows: Sequence[dict[str, Any]], mpp: float,
                  limit_um2: float = SUSPECT_AREA_UM2) -> int:
    """Mark each gland row (in place) ``suspect`` when its area exceeds ``limit_um2`` (areas in
    px of ``mpp`` µm/px); returns how many are."""
    limit_px = limit_um2 / (mpp * mpp)
    for row in rows:
        row["suspect"] = bool(row["area_px"] > limit_px)
    return sum(row["suspect"] for row in rows)


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def _drop_collinear(ring: np.ndarray) -> np.ndarray:
    """Remove vertices on a straight line between their neighbours (exact, keeps validity)."""
    pts = ring[:-1]
    prev, nxt = np.roll(pts, 1, axis=0), np.roll(pts, -1, axis=0)
    cross = (pts[:, 0] - prev[:, 0]) * (nxt[:, 1] - pts[:, 1]) - \
        (pts[:, 1] - prev[:, 1]) * (nxt[:, 0] - pts[:, 0])
    pts = pts[np.abs(cross) > 1e-9]
    return np.vstack([pts, pts[:1]])


def _orient(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.sign((q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1])
                   - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0]))


def _segments_cross(rings: Sequence[np.ndarray], block: int = 64) -> bool:
    """True when any two non-adjacent edges of ``rings`` touch or cross.

    Edges are sorted by their left end, so each block of edges is only tested against the edges
    whose x-extent can meet its own (a short prefix of the sorted list for outline edges).
    """
    a = np.concatenate([r[:-1] for r in rings])
    b = np.concatenate([r[1:] for r in rings])
    ring_id = np.concatenate([np.full(len(r) - 1, i) for i, r in enumerate(rings)])
    pos = np.concatenate([np.arange(len(r) - 1) for r in rings])
    size = np.concatenate([np.full(len(r) - 1, len(r) - 1) for r in rings])
    order = np.argsort(np.minimum(a[:, 0], b[:, 0]), kind="stable")
    a, b, ring_id, pos, size = a[order], b[order], ring_id[order], pos[order], size[order]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    for i in range(0, len(a), block):
        s = slice(i, i + block)
        reach = np.searchsorted(lo[:, 0], hi[s, 0].max(), side="right")
        cols = np.flatnonzero(hi[:reach, 0] >= lo[s, 0].min())
        p1, p2, q1, q2 = a[s, None], b[s, None], a[None, cols], b[None, cols]
        hit = (_orient(p1, p2, q1) * _orient(p1, p2, q2) <= 0) & \
            (_orient(q1, q2, p1) * _orient(q1, q2, p2) <= 0)
        # collinear segments pass the sign test anywhere on their line: boxes must meet too
        hit &= np.all((lo[s, None] <= hi[None, cols]) & (lo[None, cols] <= hi[s, None]), axis=-1)
        gap = np.abs(pos[s, None] - pos[None, cols])
        same = ring_id[s, None] == ring_id[None, cols]
        hit &= ~(same & ((gap <= 1) | (gap == size[s, None] - 1)))
        if hit.any():
            return True
    return False


def _mask_rings(mask: np.ndarray) -> list[np.ndarray]:
    """Closed ``(n, 2)`` (x, y) rings of a boolean mask, pixel centres at +0.5."""
    from skimage.measure import find_contours

    padded = np.pad(mask, 1).astype(np.float32)
    rings = []
    for c in find_contours(padded, 0.5, fully_connected="high"):
        ring = np.column_stack([c[:, 1] - 0.5, c[:, 0] - 0.5])  # -1 pad, +0.5 pixel centre
        if not np.allclose(ring[0], ring[-1]):
            ring = np.vstack([ring, ring[:1]])
        ring = _drop_collinear(ring)
        if len(ring) >= 4:
            rings.append(ring)
    return rings


def _assemble(rings: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Group rings into polygons: outer rings (positive area) with the holes they enclose."""
    from matplotlib.path import Path as MplPath

    outers = [r for r in rings if _signed_area(r) > 0]
    holes = [r for r in rings if _signed_area(r) < 0]
    polygons = [[r] for r in outers]
    areas = [_signed_area(r) for r in outers]
    for hole in holes:
        probe = hole[:-1].mean(axis=0) if len(hole) < 8 else hole[0]
        owners = [i for i, r in enumerate(outers) if MplPath(r).contains_point(probe)]
        if owners:
            polygons[min(owners, key=lambda i: areas[i])].append(hole)
    return polygons


def _simplify(polygon: list[np.ndarray], tolerance: float) -> list[np.ndarray]:
    """Douglas-Peucker on each closed ring (OpenCV's, ~30x faster than skimage's Python loop);
    the exact outline is kept where simplifying would break the polygon."""
    import cv2

    if tolerance <= 0:
        return polygon
    simple = []
    eps = tolerance * (1 - 1e-6)  # keep points exactly `tolerance` off (skimage does; cv2 not)
    for ring in polygon:  # rings repeat their first point last; OpenCV wants it once
        s = cv2.approxPolyDP(ring[:-1].astype(np.float32).reshape(-1, 1, 2), eps, True)
        s = s.reshape(-1, 2).astype(ring.dtype)
        simple.append(np.vstack([s, s[:1]]))
    if any(len(r) < 4 or abs(_signed_area(r)) < 1e-9 for r in simple):
        return polygon
    if any(np.sign(_signed_area(s)) != np.sign(_signed_area(r))
           for s, r in zip(simple, polygon, strict=True)):
        return polygon
    return polygon if _segments_cross(simple) else simple


def gland_polygons(labels: np.ndarray, offset: tuple[float, float] = (0.0, 0.0),
                   scale: float = 1.0, tolerance: float = 0.5,
                   ids: Iterable[int] | None = None) -> dict[int, dict[str, Any]]:
    """GeoJSON geometry (``Polygon`` or ``MultiPolygon``) of every gland, keyed by id.

    Args:
        labels: ``(H, W)`` instance map.
        offset: ``(x, y)`` added after scaling (a chunk's position on a slide).
        scale: output pixels per label pixel (level-0 px per working px on a slide).
        tolerance: simplification tolerance in label pixels (0 = exact outlines).
        ids: only these glands (default: all).
    """
    from scipy import ndimage as ndi

    boxes = ndi.find_objects(labels)
    wanted = range(1, len(boxes) + 1) if ids is None else ids
    out = {}
    for gid in wanted:
        box = boxes[gid - 1] if 0 < gid <= len(boxes) else None
        if box is None:
            continue
        rings = _mask_rings(labels[box] == gid)
        polys = [_simplify(p, tolerance) for p in _assemble(rings)]
        if not polys:
            continue
        shift = np.array([box[1].start, box[0].start], float)
        coords = [[(((r + shift) * scale) + np.asarray(offset)).round(3).tolist() for r in p]
                  for p in polys]
        out[gid] = ({"type": "Polygon", "coordinates": coords[0]} if len(coords) == 1 else
                    {"type": "MultiPolygon", "coordinates": coords})
    return out


def rasterize_polygons(polygons: dict[int, dict[str, Any]], shape: tuple[int, int]
                       ) -> np.ndarray:
    """``(H, W) int32`` labels from gland geometries in pixel coordinates (e.g. a slide's
    ``polygons``, to score it): a pixel takes a gland's id when its centre lies inside the
    gland's outer ring and outside its holes; the inverse of :func:`gland_polygons` with
    ``tolerance=0``."""
    from skimage.draw import polygon as fill

    labels = np.zeros(shape, np.int32)
    for gid, geom in polygons.items():
        parts = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
        for outer, *holes in parts:
            ring = np.asarray(outer) - 0.5  # pixel centres at +0.5 here, on integers there
            rows, cols = fill(ring[:, 1], ring[:, 0], shape)
            inside = np.ones(len(rows), bool)
            for hole in holes:
                h = np.asarray(hole) - 0.5
                hr, hc = fill(h[:, 1], h[:, 0], shape)
                inside &= ~np.isin(rows * shape[1] + cols, hr * shape[1] + hc)
            labels[rows[inside], cols[inside]] = gid
    return labels


def geojson_features(polygons: dict[int, dict[str, Any]], rows: Sequence[dict[str, Any]] = (),
                     object_type: str = "annotation") -> list[dict[str, Any]]:
    """QuPath features (one per gland), measurements taken from the per-gland ``rows``; flags
    (``suspect``, ``truncated``) become properties, since QuPath measurements are numbers."""
    by_id = {int(r["id"]): r for r in rows}
    features = []
    for gid, geometry in polygons.items():
        row = by_id.get(gid, {})
        measurements = {k: v for k, v in row.items()
                        if k != "id" and isinstance(v, int | float) and not isinstance(v, bool)}
        flags = {k: v for k, v in row.items() if isinstance(v, bool)}
        features.append({"type": "Feature", "geometry": geometry, "properties": {
            "objectType": object_type, "name": f"Gland {gid}",
            "classification": {"name": "Gland", "color": list(GLAND_COLOR)},
            "measurements": measurements, **flags}})
    return features


def write_geojson(path: str | Path, features: list[dict[str, Any]]) -> None:
    """Write a GeoJSON FeatureCollection atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump({"type": "FeatureCollection", "features": features}, f,
                      separators=(",", ":"))


def write_labels(stem: str | Path, labels: np.ndarray) -> Path:
    """``STEM_labels.png`` (uint16) for up to 65,535 glands, else ``STEM_labels.tif`` (uint32)."""
    stem = Path(stem)
    if int(labels.max(initial=0)) <= np.iinfo(np.uint16).max:
        path = stem.parent / f"{stem.name}_labels.png"
        write_png(path, labels.astype(np.uint16))
        return path
    import tifffile

    path = stem.parent / f"{stem.name}_labels.tif"
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, labels.astype(np.uint32), compression="zlib")
    return path


# Hues that stand out on H&E: yellow through green to cyan (45-195°). Eosin pink, haematoxylin
# purple and their magenta/blue neighbours would hide outlines (a magenta gland on eosin).
OVERLAY_HUES = (45.0, 195.0)


def gland_colors(n: int) -> np.ndarray:
    """``(n + 1, 3) uint8`` distinct colours per id (golden-ratio steps through
    :data:`OVERLAY_HUES`, alternating two brightnesses); row 0 unused."""
    from matplotlib.colors import hsv_to_rgb

    lo, hi = (h / 360 for h in OVERLAY_HUES)
    ids = np.arange(n + 1)
    hue = lo + (ids * 0.618033988749895 % 1.0) * (hi - lo)
    hsv = np.column_stack([hue, np.full(n + 1, 1.0), np.where(ids % 2, 1.0, 0.8)])
    return (hsv_to_rgb(hsv) * 255).astype(np.uint8)


def draw_ids(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Write each gland's id (as in the CSV and GeoJSON) at its centre, white on black, in
    place; returns ``image``."""
    import cv2
    from scipy import ndimage as ndi

    n = int(labels.max(initial=0))
    if n == 0:
        return image
    scale = max(0.4, min(labels.shape) / 1200)  # ~11 px digits on a GlaS tile
    thick = max(1, round(scale * 1.5))
    centres = ndi.center_of_mass(np.ones(labels.shape, np.uint8), labels, range(1, n + 1))
    for gid, (r, c) in enumerate(centres, start=1):
        if not np.isfinite(r):
            continue  # id without pixels
        text = str(gid)
        (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        org = (int(c - w / 2), int(r + h / 2))
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2,
                    cv2.LINE_AA)
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)
    return image


def overlay_image(image: np.ndarray, labels: np.ndarray, alpha: float = 0.35,
                  block: int = 1024, ids: bool = True) -> np.ndarray:
    """The image with glands filled in translucent colours, outlined in solid colour (hues
    that stand out on H&E) and, with ``ids``, labelled with their ids."""
    from skimage.segmentation import find_boundaries

    colors = gland_colors(int(labels.max(initial=0))).astype(np.float32)
    out = image.copy()
    h = labels.shape[0]
    for r in range(0, h, block):
        a, b = max(r - 1, 0), min(r + block + 1, h)
        lab = labels[a:b]
        edge = find_boundaries(lab, mode="inner")[r - a:r - a + min(block, h - r)]
        lab = lab[r - a:r - a + min(block, h - r)]
        dst = out[r:r + block]
        inside = lab > 0
        mixed = dst[inside] * (1 - alpha) + colors[lab[inside]] * alpha
        dst[inside] = mixed.astype(np.uint8)
        dst[edge] = colors[lab[edge]].astype(np.uint8)
    return draw_ids(out, labels) if ids else out


def write_overlay(path: str | Path, image: np.ndarray, labels: np.ndarray) -> None:
    """Write :func:`overlay_image` as PNG atomically."""
    write_png(path, overlay_image(image, labels))


GLAND_COLUMNS = ("id", "centroid_x", "centroid_y", "area_px", "perimeter_px", "eccentricity",
                 "solidity", "mean_r", "mean_g", "mean_b")
UM_COLUMNS = ("centroid_x_um", "centroid_y_um", "area_um2", "perimeter_um")


def gland_columns(mpp: float | None, flags: Sequence[str] = ("suspect",)) -> tuple[str, ...]:
    """The per-gland CSV header: the same for every image of a run, one without glands
    included (µm columns when the µm/px is known; ``flags``: ``suspect``, ``truncated``)."""
    return GLAND_COLUMNS + (UM_COLUMNS if mpp else ()) + tuple(flags)


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]],
              first: Sequence[str] = GLAND_COLUMNS) -> None:
    """Write rows atomically: ``first`` columns, then the others in first-seen order; a header
    even if empty (per-gland rows by default)."""
    columns: list[str] = list(first)
    for row in rows:
        columns += [k for k in row if k not in columns]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)


def write_tissue(path: str | Path, mask: np.ndarray) -> None:
    """The tissue mask used, as a small 8-bit PNG (255 = tissue), atomically."""
    write_png(path, np.where(mask, 255, 0).astype(np.uint8))


def output_paths(out_dir: str | Path, name: str, formats: Sequence[str],
                 labels_tif: bool = False) -> dict[str, Path]:
    """Where each format of input ``name`` goes."""
    out_dir = Path(out_dir)
    names = {"labels": f"{name}_labels.{'tif' if labels_tif else 'png'}",
             "overlay": f"{name}_overlay.png", "geojson": f"{name}.geojson",
             "csv": f"{name}_glands.csv", "tissue": f"{name}_tissue.png"}
    return {f: out_dir / names[f] for f in formats}


def export_segmentation(segmentation: Any, image: np.ndarray, out_dir: str | Path, name: str,
                        formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write the chosen formats of one :class:`~micronet.infer.Segmentation` (``tissue``: the
    mask used, ``NAME_tissue.png``, when there was one); returns the paths."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown output formats {unknown}; choose from {', '.join(FORMATS)}")
    labels = segmentation.labels
    paths = output_paths(out_dir, name, formats)
    written = []
    if "labels" in formats:
        written.append(write_labels(Path(out_dir) / name, labels))
    if "overlay" in formats:
        write_overlay(paths["overlay"], image, labels)
        written.append(paths["overlay"])
    if "geojson" in formats:
        write_geojson(paths["geojson"], geojson_features(gland_polygons(labels),
                                                         segmentation.glands))
        written.append(paths["geojson"])
    if "csv" in formats:
        write_csv(paths["csv"], segmentation.glands, gland_columns(segmentation.mpp))
        written.append(paths["csv"])
    tissue = getattr(segmentation, "tissue", None)
    if "tissue" in formats and tissue is not None:
        written.append(output_paths(out_dir, name, ["tissue"])["tissue"])
        write_tissue(written[-1], tissue.mask)
    return written
