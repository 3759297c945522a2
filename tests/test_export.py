"""Exports: polygons (valid, QuPath GeoJSON), label images, overlays, CSV, atomic writes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.path import Path as MplPath

from micronet._io import read_labels
from micronet.infer import Segmentation, measure_glands
from micronet.infer.export import (
    _segments_cross,
    _signed_area,
    export_segmentation,
    geojson_features,
    gland_polygons,
    overlay_image,
    write_csv,
    write_labels,
)

try:
    import shapely.geometry
except ImportError:  # shapely is optional: simple invariants are checked either way
    shapely = None


def rasterize(geometry: dict, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centres fall inside a (Multi)Polygon given in pixel-edge coordinates."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    centres = np.column_stack([xx.ravel() + 0.5, yy.ravel() + 0.5])
    polys = [geometry["coordinates"]] if geometry["type"] == "Polygon" else \
        geometry["coordinates"]
    inside = np.zeros(len(centres), bool)
    for rings in polys:
        part = MplPath(np.asarray(rings[0])).contains_points(centres)
        for hole in rings[1:]:
            part &= ~MplPath(np.asarray(hole)).contains_points(centres)
        inside |= part
    return inside.reshape(shape)


def check_valid(geometry: dict) -> None:
    polys = [geometry["coordinates"]] if geometry["type"] == "Polygon" else \
        geometry["coordinates"]
    for rings in polys:
        arrays = [np.asarray(r, float) for r in rings]
        for i, ring in enumerate(arrays):
            assert len(ring) >= 4 and np.array_equal(ring[0], ring[-1]), "ring not closed"
            assert (_signed_area(ring) > 0) == (i == 0), "outer CCW (+), holes CW (-)"
        assert not _segments_cross(arrays), "self-intersection"
    if shapely is not None:
        assert shapely.geometry.shape(geometry).is_valid


label_maps = st.integers(0, 2**32 - 1).map(lambda seed: _random_labels(seed))


def _random_labels(seed: int) -> np.ndarray:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    blobs = ndi.gaussian_filter(rng.random((48, 56)), 2.5) > 0.52
    labels, _ = ndi.label(blobs)
    return labels.astype(np.int32)


@given(label_maps)
def test_polygons_are_valid_and_cover_their_glands(labels):
    polys = gland_polygons(labels)
    assert set(polys) == set(np.unique(labels[labels > 0]).tolist())
    for gid, geometry in polys.items():
        check_valid(geometry)
        mask = labels == gid
        drawn = rasterize(geometry, labels.shape)
        iou = np.sum(drawn & mask) / np.sum(drawn | mask)
        assert iou > (0.6 if mask.sum() < 30 else 0.85), (gid, mask.sum(), iou)


def _crossing_reference(rings: list[np.ndarray]) -> bool:
    """Every pair of non-adjacent edges tested one by one (exact on the integer grid)."""
    edges = [(i, k, len(r) - 1, r[k], r[k + 1]) for i, r in enumerate(rings)
             for k in range(len(r) - 1)]

    def orient(p, q, r):
        return np.sign((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))

    for x, (ri, ki, ni, p1, p2) in enumerate(edges):
        for rj, kj, _, q1, q2 in edges[x + 1:]:
            if ri == rj and abs(ki - kj) in (1, ni - 1):
                continue
            boxes = all(min(p1[d], p2[d]) <= max(q1[d], q2[d]) and
                        min(q1[d], q2[d]) <= max(p1[d], p2[d]) for d in (0, 1))
            if boxes and orient(p1, p2, q1) * orient(p1, p2, q2) <= 0 and \
                    orient(q1, q2, p1) * orient(q1, q2, p2) <= 0:
                return True
    return False


@given(st.lists(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=3,
                         max_size=9), min_size=1, max_size=3))
def test_segments_cross_equals_pairwise_reference(points):
    rings = [np.array(r + r[:1], float) for r in points]
    assert _segments_cross(rings, block=4) == _crossing_reference(rings)


def test_rectangle_polygon_is_exact_and_in_pixel_edge_coordinates():
    labels = np.zeros((20, 30), np.int32)
    labels[4:10, 5:17] = 1  # 6 rows x 12 cols
    geometry = gland_polygons(labels, tolerance=0)[1]
    ring = np.asarray(geometry["coordinates"][0])
    assert geometry["type"] == "Polygon" and len(geometry["coordinates"]) == 1
    assert _signed_area(ring) == pytest.approx(72 - 0.5)  # corners cut by marching squares
    assert ring[:, 0].min() == 5 and ring[:, 0].max() == 17  # x spans the pixel edges 5..17
    assert ring[:, 1].min() == 4 and ring[:, 1].max() == 10
    moved = gland_polygons(labels, offset=(1000, 2000), scale=4, tolerance=0)[1]
    np.testing.assert_allclose(np.asarray(moved["coordinates"][0]), ring * 4 + [1000, 2000])


def test_holes_and_multipolygons():
    labels = np.zeros((40, 40), np.int32)
    labels[5:30, 5:30] = 1
    labels[12:20, 12:20] = 0  # hole
    labels[33:38, 2:8] = 2
    labels[33:38, 20:30] = 2  # same gland, two pieces
    polys = gland_polygons(labels)
    assert polys[1]["type"] == "Polygon" and len(polys[1]["coordinates"]) == 2
    assert polys[2]["type"] == "MultiPolygon" and len(polys[2]["coordinates"]) == 2
    for gid, geometry in polys.items():
        check_valid(geometry)
        assert np.array_equal(rasterize(geometry, labels.shape), labels == gid)


def test_geojson_features_are_qupath_shaped(synthetic_glands):
    image, labels = synthetic_glands
    rows = measure_glands(labels, image, mpp=0.62)
    features = geojson_features(gland_polygons(labels), rows)
    assert len(features) == 5
    f = features[0]
    assert f["type"] == "Feature" and f["geometry"]["type"] == "Polygon"
    props = f["properties"]
    assert props["objectType"] == "annotation"
    assert props["classification"]["name"] == "Gland" and len(props["classification"]["color"]) == 3
    assert props["measurements"]["area_px"] == rows[0]["area_px"]
    assert "id" not in props["measurements"]
    json.dumps(features)


def test_label_images_png_and_tif_round_trip(tmp_path):
    small = np.zeros((20, 20), np.int32)
    small[2:8, 2:8], small[10:15, 3:9] = 1, 300
    path = write_labels(tmp_path / "a", small)
    assert path.name == "a_labels.png"
    np.testing.assert_array_equal(read_labels(path), small)
    big = np.zeros((20, 20), np.int32)
    big[5:9, 5:9] = 70_000
    path = write_labels(tmp_path / "b", big)
    assert path.name == "b_labels.tif"
    np.testing.assert_array_equal(read_labels(path), big)


def test_overlay_colours_glands_only(synthetic_glands):
    image, labels = synthetic_glands
    out = overlay_image(image, labels, ids=False)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[labels == 0], image[labels == 0])
    assert np.mean(np.any(out[labels > 0] != image[labels > 0], axis=-1)) > 0.9
    np.testing.assert_array_equal(overlay_image(image, labels, block=7, ids=False), out)


def test_overlay_outlines_stand_out_on_he_and_glands_carry_their_ids(synthetic_glands):
    from matplotlib.colors import rgb_to_hsv

    from micronet.infer.export import gland_colors

    hues = rgb_to_hsv(gland_colors(200)[1:] / 255.0)[:, 0] * 360
    assert hues.min() >= 45 and hues.max() <= 195  # no pink, purple or magenta outlines
    image, labels = synthetic_glands
    plain, labelled = overlay_image(image, labels, ids=False), overlay_image(image, labels)
    changed = np.any(plain != labelled, axis=-1)
    for gid in range(1, labels.max() + 1):  # white text at each gland's centre, nowhere else
        r, c = np.argwhere(labels == gid).mean(axis=0).round().astype(int)
        assert changed[r - 6:r + 7, c - 8:c + 9].any(), gid
        assert (labelled[r - 6:r + 7, c - 8:c + 9] >= 230).all(axis=-1).any(), gid
    far = np.ones_like(changed)
    for gid in range(1, labels.max() + 1):
        r, c = np.argwhere(labels == gid).mean(axis=0).round().astype(int)
        far[max(r - 15, 0):r + 16, max(c - 20, 0):c + 21] = False
    assert not changed[far].any()


def test_csv_has_header_and_rows(tmp_path, synthetic_glands):
    image, labels = synthetic_glands
    rows = measure_glands(labels, image, mpp=0.5)
    write_csv(tmp_path / "g.csv", rows)
    with open(tmp_path / "g.csv") as f:
        read = list(csv.DictReader(f))
    assert len(read) == 5 and float(read[2]["area_um2"]) == pytest.approx(rows[2]["area_um2"])
    assert list(read[0])[:5] == ["id", "centroid_x", "centroid_y", "area_px", "perimeter_px"]
    write_csv(tmp_path / "empty.csv", [])
    assert (tmp_path / "empty.csv").read_text().startswith("id,centroid_x")


def test_export_segmentation_writes_every_format(tmp_path, synthetic_glands):
    image, labels = synthetic_glands
    seg = Segmentation(labels, None, measure_glands(labels, image))
    written = export_segmentation(seg, image, tmp_path, "img")
    names = sorted(p.name for p in written)
    assert names == ["img.geojson", "img_glands.csv", "img_labels.png", "img_overlay.png"]
    collection = json.loads((tmp_path / "img.geojson").read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temp files left
    with pytest.raises(ValueError, match="formats"):
        export_segmentation(seg, image, tmp_path, "img", ["labels", "pdf"])


def test_failed_write_leaves_no_file(tmp_path, synthetic_glands, monkeypatch):
    import micronet.infer.export as export

    image, labels = synthetic_glands
    seg = Segmentation(labels, None, measure_glands(labels, image))

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export.json, "dump", broken_dump)
    with pytest.raises(OSError):
        export_segmentation(seg, image, tmp_path, "img", ["geojson"])
    assert list(tmp_path.iterdir()) == []
