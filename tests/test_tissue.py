"""Tissue masking (issue 19): glass, pale borders and pen ink never become glands."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakes import PaleGlandModel, make_synthetic_glands, write_pyramid
from micronet.infer import PostprocessConfig, Segmenter
from micronet.infer.export import SUSPECT_AREA_UM2, export_segmentation, flag_suspects
from micronet.infer.glass import embed_on_glass
from micronet.infer.tissue import TissueConfig, TissueMask, detect_tissue

INK = {"blue": (25, 45, 190), "green": (30, 150, 60), "black": (25, 25, 25)}


def lumen_glands(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic H&E with a pale lumen in each gland (pale like glass, as in GlaS)."""
    image, truth = make_synthetic_glands(size)
    for gid in range(1, int(truth.max()) + 1):
        ys, xs = np.nonzero(truth == gid)
        cv2.circle(image, (int(xs.mean()), int(ys.mean())), 7, (246, 244, 247), -1)
    return image, truth


def segmenter(**kwargs) -> Segmenter:
    return Segmenter(PaleGlandModel(64), device="cpu", precision="fp32",
                     postprocess=PostprocessConfig(min_size=30), **kwargs)


def outside(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    y0, x0, h, w = box
    mask = np.ones(shape, bool)
    mask[y0:y0 + h, x0:x0 + w] = False
    return mask


def test_detect_tissue_keeps_lumens_and_drops_glass():
    image, truth = lumen_glands()
    assert detect_tissue(image, 0.62).full().all()  # lumens are holes in tissue: filled
    glass = embed_on_glass([image], gap=120, tone=0.8)  # dark glass: 80 % of white
    tissue = detect_tissue(glass.image, 0.62)
    y0, x0, h, w = glass.boxes[0]
    full = tissue.full()  # all tissue but a rim of <= 4 µm (6.5 px), no glass
    assert full[y0 + 14:y0 + h - 14, x0 + 14:x0 + w - 14].all()
    assert not full[outside(full.shape, (y0 - 2, x0 - 2, h + 4, w + 4))].any()
    assert tissue.mask.shape[0] == round(glass.image.shape[0] * 0.62 / 4)  # at ~4 µm/px
    assert not detect_tissue(glass.image[:100, :100], 0.62).mask.any()  # glass only


def test_glass_around_tissue_gives_no_gland_on_the_glass():
    image, truth = lumen_glands()
    glass = embed_on_glass([image], [truth], gap=100)
    off = segmenter(tissue=False).predict(glass.image)
    on = segmenter().predict(glass.image)
    around = outside(glass.image.shape[:2], glass.boxes[0])
    assert off.labels[around].mean() > 0.9  # the failure guarded against: glass = one gland
    assert not on.labels[around].any()
    assert on.num_glands == segmenter().predict(image).num_glands == 4  # the touching pair: one


def test_pale_border_equals_the_unbordered_image_inside_the_tissue():
    image, truth = lumen_glands()
    alone = segmenter().predict(image)
    glass = embed_on_glass([image], gap=64, tone=0.95, soft_edge=0)
    bordered = segmenter().predict(glass.image)
    y0, x0, h, w = glass.boxes[0]
    np.testing.assert_array_equal(bordered.labels[y0:y0 + h, x0:x0 + w], alone.labels)
    assert not bordered.labels[outside(bordered.labels.shape, glass.boxes[0])].any()
    assert [g["area_px"] for g in bordered.glands] == [g["area_px"] for g in alone.glands]


def draw_ink(image: np.ndarray) -> np.ndarray:
    """Three pen strokes (25 µm wide; real ones are wider) across tissue and glass; returns the
    stroke mask."""
    strokes = np.zeros(image.shape[:2], np.uint8)
    h, w = strokes.shape
    for k, colour in enumerate(INK.values()):
        line = np.zeros_like(strokes)
        cv2.line(line, (0, h // 5 + k * h // 4), (w - 1, h // 4 + k * h // 4), 1, 40)
        image[line > 0] = colour
        strokes |= line
    return strokes > 0


def test_ink_strokes_give_no_glands():
    image, truth = lumen_glands(512)  # big enough for tissue strips between the strokes
    glass = embed_on_glass([image], [truth], gap=60)
    canvas = glass.image.copy()
    ink = draw_ink(canvas)
    tissue = detect_tissue(canvas, 0.62)
    assert not tissue.full()[ink].any()
    off = segmenter(tissue=False).predict(canvas)
    on = segmenter().predict(canvas)
    near_ink = cv2.dilate(ink.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    assert off.labels[ink].mean() > 0.5  # ink is dark or pale enough to fool the model
    assert not on.labels[ink].any()
    for gid in range(1, on.num_glands + 1):  # every gland found is a true gland, not ink
        pixels = on.labels == gid
        assert (glass.labels[pixels] > 0).mean() > 0.8 and not (pixels & ~near_ink &
                                                                (glass.labels == 0)).all()


def test_caller_mask_replaces_the_detected_one(tmp_path):
    image, truth = lumen_glands()
    left = np.zeros((10, 10), np.uint8)
    left[:, :5] = 1  # any size: stretched over the image
    result = segmenter().predict(image, tissue_mask=left)
    assert result.num_glands > 0 and not result.labels[:, 129:].any()
    files = export_segmentation(result, image, tmp_path, "x", ["csv", "tissue"])
    assert [p.name for p in files] == ["x_glands.csv", "x_tissue.png"]
    assert cv2.imread(str(tmp_path / "x_tissue.png"), cv2.IMREAD_UNCHANGED).shape == (10, 10)
    assert segmenter(tissue=False).predict(image).tissue is None


def test_pale_textured_mucin_open_to_glass_is_tissue_in_a_slide_as_in_an_image(tmp_path):
    """Pale goblet-cell mucin (saturation ~10, membranes) reaching the glass: the texture cue
    keeps it tissue. A slide's mask is made from a pyramid level already at the mask's
    resolution, which has lost that texture; it is measured on a finer level instead."""
    from micronet.infer.slide_io import SlideReader, write_slide
    from micronet.infer.tissue import slide_tissue

    rng = np.random.default_rng(0)
    tissue = np.empty((400, 400, 3), np.uint8)
    tissue[:] = (200, 120, 190)  # stroma
    mucin = tissue[:, 200:]
    mucin[:] = (236, 226, 233)
    yy, xx = np.mgrid[:400, :200]
    mucin[(yy % 7 == 0) | (xx % 7 == 0)] = (205, 190, 205)  # membranes
    tissue = np.clip(tissue + rng.normal(0, 3, tissue.shape), 0, 255).astype(np.uint8)
    glass = embed_on_glass([tissue], gap=200)
    y0, x0, h, w = glass.boxes[0]
    mucin_box = (slice(y0, y0 + h), slice(x0 + 200, x0 + w))
    image_mask = detect_tissue(glass.image, 0.62, cut_edges=False).full()
    reader = SlideReader(write_slide(tmp_path / "mucin.tif", glass.image, 0.62), None)
    try:
        slide_mask = slide_tissue(reader).full()
    finally:
        reader.close()
    for mask in (image_mask, slide_mask):
        assert mask[mucin_box].mean() > 0.9
        assert not mask[:y0 - 20].any()  # the glass above stays glass


def test_slide_glass_and_user_mask(tmp_path):
    image, truth = lumen_glands()
    glass = embed_on_glass([image, image[:, ::-1]], gap=120, columns=2)
    path = write_pyramid(tmp_path / "s.tif", glass.image, mpp=0.62)
    result = segmenter().predict_slide(path, chunk=192, margin=64, out_dir=tmp_path)
    assert result.num_glands == 8 and result.skipped > 0
    for g in result.glands:
        assert not outside(glass.image.shape[:2], glass.boxes[0])[
            int(g["centroid_y"]), int(g["centroid_x"])] or g["centroid_x"] > glass.boxes[1][1]
    assert (tmp_path / "s_tissue.png").exists()
    half = np.zeros((4, 4), np.uint8)
    half[:, :2] = 1
    mine = segmenter().predict_slide(path, chunk=192, margin=64, tissue_mask=half)
    assert mine.num_glands >= 4  # the user's mask is used as it is: glass in it is "tissue"
    assert all(g["centroid_x"] < glass.image.shape[1] / 2 for g in mine.glands)


def test_tissue_mask_region_matches_full():
    mask = np.zeros((8, 12), bool)
    mask[2:6, 3:9] = True
    tissue = TissueMask(mask, (80, 120))
    full = tissue.full()
    assert full.shape == (80, 120) and full[22:58, 32:88].all() and not full[:15].any()
    np.testing.assert_array_equal(tissue.region(17, 25, 30, 40), full[17:47, 25:65])
    assert tissue.any_in(0, 0, 25, 35) and not tissue.any_in(0, 0, 10, 120)


def test_refined_edge_follows_the_tissue_not_the_coarse_grid():
    """A coarse 4 µm pixel straddles the tissue's edge; refinement decides it per pixel, so the
    edge lies within the 5×5 blur of the true one instead of a shrunk coarse pixel inside it."""
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(236, 3, (300, 300, 3)), 0, 255).astype(np.uint8)  # glass
    truth = np.zeros((300, 300), bool)
    truth[61:239, 67:233] = True  # edges off the coarse grid (6.45 px at 0.62 µm/px)
    image[truth] = (205, 130, 175)  # pale pink stroma
    mask = detect_tissue(image, 0.62)
    coarse, refined = mask.full(), mask.refined(0, 0, image)
    near = cv2.dilate(truth.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    deep = cv2.erode(truth.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    assert not coarse[deep].all()  # the shrunk coarse mask loses more than 3 px of tissue
    assert refined[deep].all() and not refined[~near].any()  # refined: within 3 px
    off = TissueMask(*detect_tissue(image, 0.62, TissueConfig(refine_edge=False))[:2])
    assert off.edge is None and np.array_equal(off.refined(0, 0, image), coarse)
    window = mask.refined(50, 60, image[50:150, 60:260])  # a window matches the whole
    assert np.array_equal(window[3:-3, 3:-3], refined[53:147, 63:257])  # (but the blur's rim)


def test_runaway_objects_are_flagged(tmp_path):
    rows = [{"id": 1, "area_px": 1000}, {"id": 2, "area_px": 2_000_000}]
    assert flag_suspects(rows, 0.62) == 1
    assert [r["suspect"] for r in rows] == [False, True]
    assert 2_000_000 * 0.62**2 > SUSPECT_AREA_UM2 > 1000 * 0.62**2
    image, _ = lumen_glands()
    seg = Segmenter(PaleGlandModel(256), device="cpu", precision="fp32", tissue=False)
    result = seg.predict(embed_on_glass([image], gap=600).image, mpp=0.62)  # 0.8 mm² of glass
    assert sum(g["suspect"] for g in result.glands) == 1  # the glass, as one huge "gland"
    export_segmentation(result, np.zeros((*result.labels.shape, 3), np.uint8), tmp_path, "g",
                        ["geojson", "csv"])
    props = [f["properties"] for f in json.loads((tmp_path / "g.geojson").read_text())["features"]]
    assert sorted(p["suspect"] for p in props) == [False] * (len(props) - 1) + [True]
    assert all("suspect" not in p["measurements"] for p in props)
    rows = list(csv.DictReader((tmp_path / "g_glands.csv").open()))
    assert sum(r["suspect"] == "True" for r in rows) == 1


def test_tissue_config_is_checked():
    with pytest.raises(ValueError, match="mpp"):
        TissueConfig(mpp=0)


# --------------------------------------------------------------------------- GlaS release

ROOT = "Warwick QU Dataset (Released 2016_07_08)/"
SIX = [f"testA_{i}" for i in range(1, 7)]


def read_glas(zip_path, names):
    from PIL import Image

    with zipfile.ZipFile(zip_path) as z:
        return [(np.asarray(Image.open(io.BytesIO(z.read(f"{ROOT}{n}.bmp"))).convert("RGB")),
                 np.asarray(Image.open(io.BytesIO(z.read(f"{ROOT}{n}_anno.bmp")))).astype(
                     np.int32)) for n in names]


@pytest.mark.data
def test_glas_glands_are_tissue_and_synthetic_glass_is_not(glas_zip):
    pairs = read_glas(glas_zip, SIX + ["train_67", "testA_11"])  # the last two hold real glass
    for image, truth in pairs:
        assert detect_tissue(image, 0.62).full()[truth > 0].mean() > 0.985
    glass = embed_on_glass([p[0] for p in pairs[:6]], [p[1] for p in pairs[:6]], tone=0.85)
    full = detect_tissue(glass.image, 0.62).full()
    far = np.ones(full.shape, bool)
    for y0, x0, h, w in glass.boxes:
        far[max(y0 - 2, 0):y0 + h + 2, max(x0 - 2, 0):x0 + w + 2] = False
    assert not full[far].any()
    assert full[glass.labels > 0].mean() > 0.95  # lumens open to the glass at crop edges: lost


@pytest.mark.slow
@pytest.mark.data
def test_glas_images_on_glass_in_a_slide_score_like_alone(glas_zip, tmp_path):
    """Six Test A images on glass in a slide: pooled object F1 within 0.03 of the images alone
    (issue 19's target). Measured with the shipped ReLU weights: 0.878 against 0.875
    (training_runs/cpu_recipe_relu_b4_glass35_115min/embedded_on_glass.json); with the tanh
    weights before them 0.944 against 0.968 (0.932 before the mask's edge was refined;
    training_runs/cpu_recipe_w025_alloc_120min/embedded_on_glass.json); the same on the AMD and
    the Intel VMs."""
    from micronet.infer.export import rasterize_polygons
    from micronet.infer.slide import write_slide
    from micronet.metrics.glas import score_split

    pairs = read_glas(glas_zip, SIX)
    seg = Segmenter.from_pretrained("glas", device="cpu")
    alone = score_split([(t, seg.predict(im, progress=False).labels) for im, t in pairs])
    glass = embed_on_glass([p[0] for p in pairs], [p[1] for p in pairs], columns=3)
    path = write_slide(tmp_path / "six.tif", glass.image, 0.62)
    labels = rasterize_polygons(seg.predict_slide(path, progress=False).polygons,
                                glass.image.shape[:2])
    embedded = score_split([(t, labels[y0:y0 + h, x0:x0 + w]) for (_, t), (y0, x0, h, w)
                            in zip(pairs, glass.boxes, strict=True)])
    assert embedded.f1 == pytest.approx(alone.f1, abs=0.03)


def test_rasterized_polygons_give_back_the_labels():
    from micronet.infer.export import gland_polygons, rasterize_polygons

    _, truth = make_synthetic_glands(128)
    truth[60:70, 20:30] = 9  # a hole-free square and ellipses; a gland with a hole:
    truth[90:120, 90:120], truth[100:110, 100:110] = 7, 0
    exact = rasterize_polygons(gland_polygons(truth, tolerance=0), truth.shape)
    np.testing.assert_array_equal(exact, truth)


def test_a_given_texture_is_used_at_the_image_size_whatever_the_rounding():
    """A slide's shrunk level comes out a hair finer than TissueConfig.mpp (its width is
    rounded); a tall one was resized again, 2,128 rows to 2,127, and no longer matched its
    texture (a six-column-tall slide of GlaS images on glass failed this way)."""
    image, _ = make_synthetic_glands(64)
    tall = np.ascontiguousarray(np.tile(image, (34, 8, 1))[:2128, :460])
    texture = np.zeros(tall.shape[:2], np.float32)
    mask = detect_tissue(tall, 3.999, texture=texture)
    assert mask.mask.shape == tall.shape[:2]
    assert mask.full().mean() == pytest.approx(detect_tissue(tall, 4.0).full().mean(), abs=0.02)
    with pytest.raises(ValueError, match="does not match"):
        detect_tissue(tall, 4.0, texture=texture[1:])


@given(grid_h=st.integers(1, 30), grid_w=st.integers(1, 30), zoom=st.floats(1.0, 16.0),
       y0=st.integers(-200, 400), x0=st.integers(-200, 400), h=st.integers(1, 300),
       w=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_region_reads_only_the_windows_part_of_the_grid(grid_h, grid_w, zoom, y0, x0, h, w, seed):
    """A window of the mask is the whole grid resized and then cut (nearest edge values outside
    the image): cropping the grid first is only a speed-up."""
    grid = np.random.default_rng(seed).random((grid_h, grid_w)) > 0.5
    tissue = TissueMask(grid, (max(1, int(grid_h * zoom)), max(1, int(grid_w * zoom))))
    sy, sx = grid_h / tissue.shape[0], grid_w / tissue.shape[1]
    to_grid = np.array([[sx, 0, (x0 + 0.5) * sx - 0.5], [0, sy, (y0 + 0.5) * sy - 0.5]])
    whole = cv2.warpAffine(grid.astype(np.float32), to_grid, (w, h),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
    # 0.37 is no sum of cv2's 1/32-step bilinear weights, so no rounding tie decides a pixel
    np.testing.assert_array_equal(tissue.region(y0, x0, h, w, above=0.37), whole > 0.37)
