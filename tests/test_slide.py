"""Whole-slide segmentation on small pyramidal TIFFs written by the tests."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fakes import PurpleGlandModel, purple_image, write_pyramid
from micronet.errors import InputError
from micronet.infer import PostprocessConfig, Segmenter
from micronet.infer.slide import SlideReader, choose_level, merge_chunks, plan_slide, segment_chunk
from micronet.infer.tissue import slide_tissue

# level-0 ellipses (row, col, r_radius, c_radius); several cross the 96 px chunk borders of
# the working level (= level 0 / 2), i.e. level-0 rows/cols 192 and 384
GLANDS = [(120, 180, 50, 60), (200, 420, 60, 40), (330, 120, 40, 70), (300, 560, 50, 30),
          (60, 520, 30, 50)]


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    image, truth = purple_image((400, 640), GLANDS)
    path = write_pyramid(tmp_path_factory.mktemp("slide") / "slide.tif", image, mpp=0.31)
    return path, image, truth


def make_segmenter(tile=64):
    return Segmenter(PurpleGlandModel(tile), device="cpu", precision="fp32",
                     postprocess=PostprocessConfig(min_size=30))


def test_reader_and_level_choice(slide):
    path, image, _ = slide
    reader = SlideReader(path)
    assert reader.mpp == pytest.approx(0.31)
    assert reader.dimensions[0] == (640, 400) and reader.downsamples[:2] == [1.0, 2.0]
    assert choose_level(reader, 0.62) == (1, 1.0)  # level 1 is exactly 0.62 µm/px
    assert choose_level(reader, 0.31) == (0, 1.0)
    level, factor = choose_level(reader, 0.5)  # no level within 10 %: finer one, resampled
    assert level == 0 and factor == pytest.approx(0.62)
    np.testing.assert_array_equal(reader.read(0, 10, 20, 30, 5), image[20:25, 10:40])
    reader.close()


def test_slide_glands_match_truth_and_whole_image(slide, tmp_path):
    path, image, truth = slide
    seg = make_segmenter()
    result = seg.predict_slide(path, chunk=96, margin=64, out_dir=tmp_path)
    assert result.level == 1 and result.working_mpp == pytest.approx(0.62)
    assert result.chunks == 3 * 4
    assert result.num_glands == len(GLANDS)  # chunk-crossing glands counted once
    assert not any(g["truncated"] for g in result.glands)
    # each gland is one whole instance in level-0 coordinates
    for g in result.glands:
        label = truth[int(round(g["centroid_y"])), int(round(g["centroid_x"]))]
        ys, xs = np.nonzero(truth == label)
        assert g["centroid_x"] == pytest.approx(xs.mean(), abs=2.5)
        assert g["centroid_y"] == pytest.approx(ys.mean(), abs=2.5)
        assert g["area_px"] == pytest.approx(len(ys), rel=0.06)
        assert g["area_um2"] == pytest.approx(g["area_px"] * 0.31**2, rel=1e-3)
    # same glands as segmenting the working level as one image
    level1 = SlideReader(path).read(1, 0, 0, 320, 200)
    whole = seg.predict(level1)
    assert sorted(r["area_px"] * 4 for r in whole.glands) == pytest.approx(
        sorted(g["area_px"] for g in result.glands), rel=0.01)
    # outputs: QuPath GeoJSON in level-0 coordinates, CSV, thumbnail overlay
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["slide.geojson", "slide_glands.csv", "slide_overlay.png", "slide_tissue.png"]
    features = json.loads((tmp_path / "slide.geojson").read_text())["features"]
    assert len(features) == len(GLANDS)
    ring = np.asarray(features[0]["geometry"]["coordinates"][0])
    x, y = ring[:, 0], ring[:, 1]
    cross = x[:-1] * y[1:] - x[1:] * y[:-1]  # shoelace: the polygon's area centroid
    cx = np.sum((x[:-1] + x[1:]) * cross) / (3 * cross.sum())
    cy = np.sum((y[:-1] + y[1:]) * cross) / (3 * cross.sum())
    first = result.glands[0]
    assert cx == pytest.approx(first["centroid_x"], abs=2)
    assert cy == pytest.approx(first["centroid_y"], abs=2)


def test_chunks_segmented_apart_in_any_order_merge_to_the_same_slide(slide):
    """segment_slide's three steps, as a cluster runs them: a pickled plan, chunks in any order."""
    import pickle

    path, _, _ = slide
    seg = make_segmenter()
    whole = seg.predict_slide(path, chunk=96, margin=64)
    plan = pickle.loads(pickle.dumps(plan_slide(seg, path, chunk=96, margin=64)))
    assert len(plan.cores) == whole.chunks and len(plan.todo) == whole.chunks - whole.skipped
    parts = [segment_chunk(seg, plan, i) for i in reversed(plan.todo)]
    merged = merge_chunks(plan, parts)
    assert merged.glands == whole.glands and merged.polygons == whole.polygons
    with pytest.raises(ValueError, match="chunks"):
        merge_chunks(plan, parts[1:])


def test_background_chunks_are_skipped(tmp_path):
    image, truth = purple_image((400, 640), [GLANDS[0], GLANDS[2], (250, 330, 50, 40)])
    image[:, 440:] = 250  # glass from working column 220: the last chunk column (240+) is empty
    path = write_pyramid(tmp_path / "half.tif", image, mpp=0.31)
    result = make_segmenter().predict_slide(path, chunk=80, margin=64)
    assert result.chunks == 3 * 4 and result.skipped == 3
    assert result.num_glands == 3
    mask = slide_tissue(SlideReader(path)).mask
    assert mask[:, : mask.shape[1] // 2].mean() > 0.95 and mask[:, -5:].mean() == 0


def test_resampled_level_keeps_level0_coordinates(tmp_path):
    """Level 0 at 0.5 µm/px: read there and resampled to 0.62 µm/px."""
    image, truth = purple_image((320, 400), [(100, 120, 45, 60), (220, 280, 60, 50)])
    path = write_pyramid(tmp_path / "r.tif", image, mpp=0.5)
    result = make_segmenter().predict_slide(path, chunk=100, margin=64)
    assert result.level == 0 and result.working_mpp == pytest.approx(0.62)
    assert result.num_glands == 2
    for g in result.glands:
        ys, xs = np.nonzero(truth == truth[int(g["centroid_y"]), int(g["centroid_x"])])
        assert g["centroid_x"] == pytest.approx(xs.mean(), abs=2)
        assert g["centroid_y"] == pytest.approx(ys.mean(), abs=2)
        assert g["area_px"] == pytest.approx(len(ys), rel=0.06)


def test_glands_larger_than_the_margin_are_flagged(tmp_path):
    image, _ = purple_image((520, 520), [(260, 260, 220, 220)])
    path = write_pyramid(tmp_path / "big.tif", image, mpp=0.31)
    small = make_segmenter().predict_slide(path, chunk=128, margin=64)
    # documented limit: a gland wider than the margin comes out in pieces, each flagged
    assert small.num_glands > 1 and all(g["truncated"] for g in small.glands)
    wide = make_segmenter().predict_slide(path, chunk=128, margin=140)
    assert wide.num_glands == 1 and not wide.glands[0]["truncated"]


def test_missing_resolution_needs_mpp(tmp_path):
    image, _ = purple_image((256, 256), [(128, 128, 40, 40)])
    path = write_pyramid(tmp_path / "nompp.tif", image, mpp=None)
    seg = make_segmenter()
    with pytest.raises(InputError, match="--mpp"):
        seg.predict_slide(path)
    assert seg.predict_slide(path, mpp=0.62, chunk=128).num_glands == 1


def test_unreadable_slide(tmp_path):
    bad = tmp_path / "bad.svs"
    bad.write_bytes(b"not a slide at all")
    with pytest.raises(InputError, match="bad.svs"):
        make_segmenter().predict_slide(bad)
    with pytest.raises(InputError, match="not found"):
        make_segmenter().predict_slide(tmp_path / "missing.svs")
    header_only = tmp_path / "pages.tif"  # a TIFF signature without pages: parsed lazily
    header_only.write_bytes(b"II*\x00" + bytes(100))
    with pytest.raises(InputError, match="pages.tif: not a readable slide"):
        make_segmenter().predict_slide(header_only, mpp=0.5)


def test_thumbnail_of_a_flat_tiff_is_read_in_strips(tmp_path):
    image, _ = purple_image((900, 1200), [(450, 600, 200, 300)])
    path = write_pyramid(tmp_path / "flat.tif", image, mpp=0.5, downsamples=())
    thumb, scale = SlideReader(path).thumbnail(max_size=256)
    assert thumb.shape[1] == 256 and abs(thumb.shape[0] - 192) <= 2
    assert scale == pytest.approx(1200 / 256)
    expected = cv2.resize(image, (256, 192), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(thumb[:190].astype(int) - expected[:190]).mean() < 8


def test_scaled_reads_in_bounded_strips_equal_one_read(tmp_path, monkeypatch):
    """read_scaled(_texture) reads whole output rows per strip; a tiny strip budget (many
    strips of one output row) gives what one strip gives, texture included."""
    from micronet.infer import slide_io

    image, _ = purple_image((300, 300), [(150, 150, 60, 80)])
    reader = SlideReader(write_pyramid(tmp_path / "s.tif", image, mpp=0.5), None)
    try:
        whole, whole_texture = reader.read_scaled_texture(0, 0.25)
        monkeypatch.setattr(slide_io, "_STRIP_PIXELS", 1)
        strips, strips_texture = reader.read_scaled_texture(0, 0.25)
    finally:
        reader.close()
    assert whole.shape == (75, 75, 3)
    np.testing.assert_array_equal(strips, whole)
    assert strips_texture is not None and whole_texture is not None
    np.testing.assert_allclose(strips_texture, whole_texture, atol=1e-3)


def test_scaled_reads_in_strips_add_up_to_the_scaled_height(tmp_path, monkeypatch):
    """With 1/factor not a whole number, strips of a few rows each still add up to
    round(h * factor) rows (rounding each strip alone gave 100 rows for 300 × 0.3)."""
    from micronet.infer import slide_io

    image, _ = purple_image((300, 200), [(150, 100, 60, 80)])
    reader = SlideReader(write_pyramid(tmp_path / "s.tif", image, mpp=0.5), None)
    monkeypatch.setattr(slide_io, "_STRIP_PIXELS", 1)
    try:
        pixels, texture = reader.read_scaled_texture(0, 0.3)
    finally:
        reader.close()
    assert pixels.shape[:2] == (90, 60)
    assert texture is not None and texture.shape == (90, 60)
