"""Gland instances from three-class probability maps, measurements and tuning."""

from __future__ import annotations

import numpy as np
import pytest

from micronet.data.targets import three_class_targets
from micronet.infer.postprocess import (
    ClassMaps,
    PostprocessConfig,
    instance_confidence,
    label_glands,
    measure_glands,
    remove_small,
)
from micronet.infer.tune import tune_postprocess


def one_hot(classes: np.ndarray) -> np.ndarray:
    """(3, H, W) float32 probabilities that are certain of ``classes``."""
    return np.stack([(classes == k).astype(np.float32) for k in range(3)])


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renumbering of the instances."""
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
    one_to_one = len(pairs) == len(np.unique(a)) == len(np.unique(b))
    return one_to_one and all((x == 0) == (y == 0) for x, y in pairs)


def test_perfect_probabilities_give_back_the_instances(synthetic_glands):
    _, labels = synthetic_glands
    out = label_glands(one_hot(three_class_targets(labels)))
    assert out.dtype == np.int32 and out.shape == labels.shape
    assert out.max() == labels.max() == 5
    assert same_partition(out, labels)


def test_touching_glands_separated_by_contour_are_two_instances():
    labels = np.zeros((60, 100), np.int32)
    labels[10:50, 10:50], labels[10:50, 50:90] = 1, 2  # share a border
    probs = one_hot(three_class_targets(labels))
    out = label_glands(probs)
    assert out.max() == 2
    assert same_partition(out, labels)
    # without the contour class the two would be one blob
    merged = one_hot((labels > 0).astype(np.int64))
    assert label_glands(merged).max() == 1


def test_small_objects_are_removed():
    labels = np.zeros((80, 80), np.int32)
    labels[5:35, 5:35] = 1  # 900 px
    labels[50:58, 50:58] = 2  # 64 px
    probs = one_hot(three_class_targets(labels))
    assert label_glands(probs, PostprocessConfig(min_size=100)).max() == 1
    kept = label_glands(probs, PostprocessConfig(min_size=64))
    assert kept.max() == 2 and np.sum(kept == 2) == 64


def test_rescaled_sizes_keep_the_same_glands_at_half_resolution():
    """Sizes tuned at one µm/px, labelling at half of it: the rescaled config keeps the glands
    the original keeps at full size (a 900 px gland stays, a 256 px one goes at min_size 400)."""
    import cv2

    labels = np.zeros((120, 120), np.int32)
    labels[10:40, 10:40] = 1  # 900 px
    labels[70:86, 70:86] = 2  # 256 px
    cfg = PostprocessConfig(min_size=400, contour_growth=6.0, max_hole_size=50)
    assert label_glands(one_hot(three_class_targets(labels)), cfg).max() == 1
    half = cv2.resize(labels, (60, 60), interpolation=cv2.INTER_NEAREST)
    half_cfg = cfg.rescaled(0.5)
    assert (half_cfg.min_size, half_cfg.contour_growth, half_cfg.max_hole_size) == (100, 3.0, 12)
    assert label_glands(one_hot(three_class_targets(half)), cfg).max() == 0  # unscaled: lost
    assert label_glands(one_hot(three_class_targets(half)), half_cfg).max() == 1
    assert cfg.rescaled(1.0) is cfg and PostprocessConfig().rescaled(2.0).max_hole_size is None
    with pytest.raises(ValueError):
        cfg.rescaled(0)


def _ring_gland(size=60, hole=(25, 35)):
    labels = np.zeros((size, size), np.int32)
    labels[10:50, 10:50] = 1
    classes = three_class_targets(labels)
    classes[hole[0]:hole[1], hole[0]:hole[1]] = 0  # lumen predicted as background
    return labels, classes


def test_holes_are_filled():
    labels, classes = _ring_gland()
    filled = label_glands(one_hot(classes))
    assert filled.max() == 1 and np.array_equal(filled > 0, labels > 0)
    kept = label_glands(one_hot(classes), PostprocessConfig(fill_holes=False))
    assert np.sum(kept[25:35, 25:35]) == 0
    small_only = label_glands(one_hot(classes), PostprocessConfig(max_hole_size=50))
    assert np.sum(small_only[25:35, 25:35]) == 0  # the 100 px hole is above the limit


def test_hole_between_two_glands_is_not_filled_and_does_not_merge_them():
    # two U-shaped seeds closing around a background pocket
    classes = np.zeros((60, 60), np.int64)
    classes[10:50, 10:29] = 1
    classes[10:50, 31:50] = 1
    classes[10:50, 29:31] = 2  # contour between them
    classes[25:35, 20:40] = 0  # pocket enclosed by both seeds and the contour
    out = label_glands(one_hot(classes), PostprocessConfig(contour_growth=0, min_size=1))
    assert out.max() == 2
    assert np.sum(out[25:35, 22:38] > 0) == 0


def test_banded_growth_equals_whole_image(rng):
    from skimage.draw import ellipse

    labels = np.zeros((300, 200), np.int32)
    for i in range(1, 30):
        rr, cc = ellipse(rng.integers(0, 300), rng.integers(0, 200), rng.integers(5, 25),
                         rng.integers(5, 25), shape=labels.shape)
        labels[rr, cc] = i
    probs = one_hot(three_class_targets(labels))
    probs = np.clip(probs + rng.normal(0, 0.2, probs.shape), 0, None)
    probs /= probs.sum(0, keepdims=True)
    whole = label_glands(probs, band=10_000)
    for band in (7, 16, 33):
        np.testing.assert_array_equal(label_glands(probs, band=band), whole)


def test_float_and_compact_inputs_agree(synthetic_glands):
    _, labels = synthetic_glands
    probs = one_hot(three_class_targets(labels)) * 0.9 + 0.1 / 3
    np.testing.assert_array_equal(label_glands(probs),
                                  label_glands(ClassMaps.from_probabilities(probs)))
    maps = ClassMaps.from_probabilities(probs)
    assert maps.gland.dtype == np.uint8 and maps.shape == labels.shape
    np.testing.assert_allclose(maps.gland / 255, probs[1], atol=0.5 / 255 + 1e-6)


def test_empty_and_background_only_maps():
    assert label_glands(np.stack([np.ones((10, 12)), np.zeros((10, 12)),
                                  np.zeros((10, 12))])).max() == 0
    assert measure_glands(np.zeros((5, 5), np.int32)) == []


def test_config_from_dict_and_validation():
    cfg = PostprocessConfig.from_dict({"threshold": 0.4, "min_size": 10})
    assert cfg.threshold == 0.4 and cfg.min_size == 10 and cfg.fill_holes
    assert PostprocessConfig.from_dict(None) == PostprocessConfig()
    with pytest.raises(ValueError, match="unknown"):
        PostprocessConfig.from_dict({"thresh": 0.4})
    with pytest.raises(ValueError):
        PostprocessConfig(threshold=1.5)
    with pytest.raises(ValueError):
        PostprocessConfig(min_size=-1)


def test_measure_glands_units_offset_and_scale(synthetic_glands):
    image, labels = synthetic_glands
    rows = measure_glands(labels, image, mpp=0.5)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    for r in rows:
        ys, xs = np.nonzero(labels == r["id"])
        assert r["area_px"] == len(ys)
        assert r["centroid_x"] == pytest.approx(xs.mean(), abs=0.01)
        assert r["centroid_y"] == pytest.approx(ys.mean(), abs=0.01)
        assert r["area_um2"] == pytest.approx(len(ys) * 0.25, rel=1e-3)
        assert r["mean_r"] == pytest.approx(image[labels == r["id"], 0].mean(), abs=0.01)
        assert 0 <= r["eccentricity"] < 1 and 0 < r["solidity"] <= 1
    moved = measure_glands(labels, None, offset=(100, 50), scale=2.0)
    assert "mean_r" not in moved[0] and "area_um2" not in moved[0]
    assert moved[0]["centroid_x"] == pytest.approx(rows[0]["centroid_x"] * 2 + 100, abs=0.02)
    assert moved[0]["area_px"] == pytest.approx(rows[0]["area_px"] * 4)


def test_tune_postprocess_finds_the_threshold_that_splits_glands():
    """Unsure interiors (p_gland 0.6): 0.5 finds nothing, -0.5 merges the pair, 0.3 is right."""
    labels = np.zeros((64, 120), np.int32)
    labels[8:56, 8:60], labels[8:56, 60:112] = 1, 2
    classes = three_class_targets(labels)
    probs = np.zeros((3, *labels.shape), np.float32)
    probs[1] = np.select([classes == 1, classes == 2], [0.6, 0.3], 0.0)
    probs[2] = np.select([classes == 1, classes == 2], [0.2, 0.6], 0.0)
    probs[0] = 1 - probs[1] - probs[2]
    grid = {"threshold": [0.5, 0.3, -0.5], "min_size": [100]}
    best, table = tune_postprocess([probs], [labels], grid)
    assert best.threshold == 0.3 and best.min_size == 100
    assert [row["threshold"] for row in table] == [0.3, -0.5, 0.5]
    assert [row["f1"] for row in table] == pytest.approx([1.0, 2 / 3, 0.0])
    with pytest.raises(ValueError):
        tune_postprocess([probs], [], grid)


def test_tune_scores_every_combination_as_labelling_and_scoring_it_would(rng):
    """The shared labelling per min-size group and match-only F1 change nothing in the table."""
    from micronet.metrics import score_split

    maps, gts = [], []
    for _ in range(3):
        gt = np.zeros((96, 96), np.int32)
        for k, (y, x) in enumerate(rng.integers(8, 80, size=(6, 2)), start=1):
            r = int(rng.integers(3, 12))
            gt[max(y - r, 0):y + r, max(x - r, 0):x + r] = k
        noisy = one_hot(three_class_targets(gt)) + rng.uniform(0, 0.8, (3, 96, 96))
        maps.append(ClassMaps.from_probabilities(noisy / noisy.sum(0)))
        gts.append(gt)
    grid = {"threshold": [0.0, 0.3], "min_size": [1, 40, 150], "contour_growth": [2.0, 6.0],
            "min_confidence": [0.0, 0.3, 0.5]}
    _, table = tune_postprocess(maps, gts, grid)
    assert len({row["f1"] for row in table}) > 2  # the grid matters on these maps
    for row in table:
        cfg = PostprocessConfig(**{k: v for k, v in row.items() if k not in ("f1", "dice")})
        pairs = [(g, label_glands(m, cfg)) for m, g in zip(maps, gts, strict=True)]
        expected = score_split(pairs)
        assert row["f1"] == pytest.approx(expected.f1)
        assert row["dice"] == pytest.approx(expected.object_dice)
    for objective, key in (("f1", lambda r: r["f1"]), ("dice", lambda r: r["dice"]),
                           ("f1+dice", lambda r: r["f1"] + r["dice"])):
        best, ranked = tune_postprocess(maps, gts, grid, objective=objective)
        assert key(ranked[0]) == pytest.approx(max(key(r) for r in table))
        assert best.threshold == ranked[0]["threshold"]
    with pytest.raises(ValueError, match="objective 'hd'"):
        tune_postprocess(maps, gts, grid, objective="hd")


def test_foreground_seeds_drop_seeds_the_network_calls_background(rng):
    probs = np.zeros((3, 40, 40), np.float32)
    probs[0], probs[1] = 0.7, 0.3  # p_gland 0.3 everywhere: background wins, yet 0.3 > 0.1
    probs[:, 10:30, 10:30] = np.array([0.1, 0.9, 0.0])[:, None, None]  # one real gland
    loose = PostprocessConfig(threshold=0.1, contour_growth=0, min_size=1)
    assert label_glands(probs, loose).max() == 1 and (label_glands(probs, loose) > 0).all()
    strict = label_glands(probs, PostprocessConfig(threshold=0.1, contour_growth=0, min_size=1,
                                                   foreground_seeds=True))
    assert strict.max() == 1 and (strict > 0).sum() == 400
    # at threshold >= foreground threshold a seed is always foreground: no difference
    noisy = rng.dirichlet([1, 1, 1], size=(60, 60)).transpose(2, 0, 1).astype(np.float32)
    for t in (0.5, 0.7):
        base = PostprocessConfig(threshold=t, min_size=1)
        np.testing.assert_array_equal(
            label_glands(noisy, base),
            label_glands(noisy, PostprocessConfig(threshold=t, min_size=1,
                                                  foreground_seeds=True)))


def _strong_gland_and_weak_blob() -> np.ndarray:
    probs = np.zeros((3, 40, 80), np.float32)
    probs[0] = 1.0
    probs[:, 5:35, 5:35] = np.array([0.1, 0.9, 0.0])[:, None, None]  # evidence 0.9
    probs[:, 5:35, 45:75] = np.array([0.4, 0.45, 0.15])[:, None, None]  # foreground, evidence 0.3
    return probs


def test_min_confidence_drops_weak_blobs_and_keeps_glands():
    probs = _strong_gland_and_weak_blob()
    base = PostprocessConfig(threshold=0.1, contour_growth=0, min_size=1, foreground_seeds=True)
    both = label_glands(probs, base)
    assert both.max() == 2
    confidence = instance_confidence(both, ClassMaps.from_probabilities(probs))
    assert confidence.tolist() == pytest.approx([0.0, 230 / 255, 77 / 255])
    strict = label_glands(probs, PostprocessConfig(threshold=0.1, contour_growth=0, min_size=1,
                                                   foreground_seeds=True, min_confidence=0.4))
    assert strict.max() == 1 and (strict > 0).sum() == 900 and strict[20, 20] == 1
    assert label_glands(probs, PostprocessConfig(**{**base.__dict__, "min_confidence": 0.3})
                        ).max() == 2  # 0.302 passes 0.3
    labels = np.zeros((40, 80), np.int32)
    labels[5:35, 5:35] = 1  # the weak blob is not a gland: tuning learns to drop it
    best, _ = tune_postprocess([probs], [labels], {"threshold": [0.1], "min_size": [1],
                                                   "min_confidence": [0.0, 0.4]},
                               base=PostprocessConfig(foreground_seeds=True, contour_growth=0))
    assert best.min_confidence == 0.4
    with pytest.raises(ValueError, match="min_confidence"):
        PostprocessConfig(min_confidence=1.0)
    with pytest.raises(ValueError, match="confidence"):
        remove_small(both, 1, min_confidence=0.2)


def test_remove_small_keeps_order_and_renumbers():
    labels = np.array([[3, 3, 0, 5], [3, 0, 7, 7], [0, 0, 7, 7]], np.int32)
    assert remove_small(labels, 3).tolist() == [[1, 1, 0, 0], [1, 0, 2, 2], [0, 0, 2, 2]]
    assert remove_small(labels, 5).max() == 0 and labels.max() == 7  # input untouched


def test_expand_labels_equals_skimage_ties_included():
    from skimage.segmentation import expand_labels as skimage_expand

    from micronet.infer.postprocess import expand_labels

    rng = np.random.default_rng(0)
    for _ in range(50):
        seeds = (rng.random((40, 50)) < 0.02) * rng.integers(1, 6, (40, 50))
        distance = float(rng.integers(0, 12)) + float(rng.choice([0.0, 0.5]))
        assert np.array_equal(expand_labels(seeds, distance), skimage_expand(seeds, distance))
    assert not expand_labels(np.zeros((4, 4), np.int32), 3.0).any()


def test_solidity_of_hand_worked_shapes_and_close_to_skimage(synthetic_glands):
    from skimage.measure import regionprops_table

    from micronet.infer.postprocess import solidity

    labels = np.zeros((10, 10), np.int32)
    labels[1:5, 1:5] = 1  # a square: its own hull
    labels[6:8, 6:8] = 2
    labels[6, 7] = 0  # an L of 3 pixels: hull of the pixel squares has area 3.5
    assert solidity(labels, np.array([1, 2])) == pytest.approx([1.0, 3 / 3.5])
    _, glands = synthetic_glands
    ours = solidity(glands, np.unique(glands)[1:])
    reference = regionprops_table(glands, properties=("solidity",))["solidity"]
    assert np.abs(ours - reference).max() < 0.02
