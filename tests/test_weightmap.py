"""U-Net weight maps: hand-computed values, brute-force distances, class balancing."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from scipy import ndimage as ndi

from micronet.data.targets import three_class_targets
from micronet.data.weightmap import class_balance_weights, nearest_two_distances, unet_weight_map

ONES = (1.0, 1.0, 1.0)


def two_squares(gap: int) -> np.ndarray:
    """Two 10x10 squares side by side, ``gap`` background columns apart (columns 10..10+gap-1)."""
    labels = np.zeros((30, 30 + gap), np.int32)
    labels[10:20, 0:10] = 1
    labels[10:20, 10 + gap:20 + gap] = 2
    return labels


def test_hand_values_three_pixel_gap() -> None:
    labels = two_squares(3)
    weight = unet_weight_map(labels, w0=10.0, sigma=5.0, class_weights=ONES)
    # column 11 is the middle of the gap: d1 = d2 = 2 (distance to the nearest pixel of each)
    assert weight[15, 11] == pytest.approx(1 + 10 * np.exp(-16 / 50), rel=1e-6)
    # columns 10 and 12: d1 = 1, d2 = 3
    assert weight[15, 10] == pytest.approx(1 + 10 * np.exp(-16 / 50), rel=1e-6)
    # glands carry only their class weight
    assert (weight[labels > 0] == 1.0).all()


def test_hand_values_four_pixel_gap() -> None:
    labels = two_squares(4)
    weight = unet_weight_map(labels, w0=10.0, sigma=5.0, class_weights=ONES)
    for column in range(10, 14):  # d1 + d2 = 5 across the gap
        assert weight[15, column] == pytest.approx(1 + 10 * np.exp(-25 / 50), rel=1e-6)
    # pixel (9, 11), a row above the gap: nearest pixels (10, 9) and (10, 14), d1 = sqrt(1 + 4),
    # d2 = sqrt(1 + 9)
    expected = 1 + 10 * np.exp(-((np.sqrt(5) + np.sqrt(10)) ** 2) / 50)
    assert weight[9, 11] == pytest.approx(expected, rel=1e-6)


def test_far_and_lonely_pixels_keep_class_weight() -> None:
    labels = np.zeros((80, 80), np.int32)
    labels[5:15, 5:15] = 1
    labels[60:75, 60:75] = 2  # far away: d1 + d2 > 4 sigma everywhere
    weight = unet_weight_map(labels, class_weights=(0.5, 2.0, 3.0))
    target = three_class_targets(labels)
    assert np.array_equal(weight, np.array([0.5, 2.0, 3.0], np.float32)[target])
    single = unet_weight_map(labels * (labels == 1), class_weights=ONES)
    assert (single == 1.0).all()


def test_median_frequency_class_weights() -> None:
    target = np.array([0] * 50 + [1] * 30 + [2] * 20, np.uint8).reshape(10, 10)
    # frequencies 0.5, 0.3, 0.2 -> median 0.3
    np.testing.assert_allclose(class_balance_weights(target), [0.6, 1.0, 1.5], rtol=1e-6)
    only_background = np.zeros((5, 5), np.uint8)
    np.testing.assert_allclose(class_balance_weights(only_background), [1.0, 1.0, 1.0])


def test_default_class_weights_come_from_the_target(synthetic_glands) -> None:
    _, labels = synthetic_glands
    target = three_class_targets(labels)
    weight = unet_weight_map(labels, w0=0.0)
    np.testing.assert_allclose(weight, class_balance_weights(target)[target])
    # contour is the rarest class, so it gets the largest weight
    assert weight[target == 2].min() > weight[target == 1].max() > 0


def brute_force_distances(labels: np.ndarray) -> np.ndarray:
    """(N, H, W) full-image distance transform to every instance, sorted per pixel."""
    ids = [i for i in np.unique(labels) if i]
    return np.sort(np.stack([ndi.distance_transform_edt(labels != i) for i in ids]), axis=0)


def test_windowed_distances_match_full_transforms(synthetic_glands) -> None:
    _, labels = synthetic_glands
    exact = brute_force_distances(labels)
    d1, d2 = nearest_two_distances(labels, max_distance=20.0)
    for got, want in ((d1, exact[0]), (d2, exact[1])):
        within = want <= 20.0
        np.testing.assert_allclose(got[within], want[within], atol=1e-4)
        assert np.isinf(got[~within]).all()


def test_weight_map_matches_formula_up_to_truncation(synthetic_glands) -> None:
    _, labels = synthetic_glands
    exact = brute_force_distances(labels)
    border = 10 * np.exp(-((exact[0] + exact[1]) ** 2) / 50)
    expected = 1 + np.where(labels == 0, border, 0)
    full = unet_weight_map(labels, class_weights=ONES, truncate=100.0)
    np.testing.assert_allclose(full, expected, rtol=1e-5)
    default = unet_weight_map(labels, class_weights=ONES)
    assert np.abs(default - expected).max() <= 10 * np.exp(-8) + 1e-6
    assert (default > 5).sum() > 20  # the touching pair makes real high-weight pixels


@pytest.mark.parametrize("kwargs, message", [
    ({"class_weights": (1.0, 2.0)}, "3 values"),
    ({"sigma": 0.0}, "sigma"),
    ({"w0": -1.0}, "w0"),
    ({"target": np.zeros((3, 3), np.uint8)}, "shape"),
])
def test_bad_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        unet_weight_map(two_squares(3), **kwargs)


@pytest.mark.data
def test_glas_weight_map_is_sane(glas_zip) -> None:
    from PIL import Image

    root = "Warwick QU Dataset (Released 2016_07_08)/"
    with zipfile.ZipFile(glas_zip) as archive:
        labels = np.asarray(Image.open(io.BytesIO(archive.read(f"{root}train_3_anno.bmp"))))
    labels = labels.astype(np.int32)
    target = three_class_targets(labels)
    weight = unet_weight_map(labels, target=target)
    assert weight.shape == labels.shape and weight.dtype == np.float32
    assert np.isfinite(weight).all() and weight.min() > 0
    assert weight.max() <= class_balance_weights(target).max() + 10.0
