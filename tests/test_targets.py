"""Three-class targets: contour bands per instance, width, background untouched."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from micronet.data.targets import (
    BACKGROUND,
    CONTOUR,
    DEFAULT_CONTOUR_WIDTH,
    GLAND,
    three_class_targets,
)


def touching_rectangles() -> np.ndarray:
    labels = np.zeros((40, 60), np.int32)
    labels[5:35, 5:30] = 1
    labels[5:35, 30:55] = 2  # shares the column border 29|30 with gland 1
    return labels


def test_touching_glands_are_separated_by_contour() -> None:
    labels = touching_rectangles()
    assert ndi.label(labels > 0)[1] == 1  # as a binary mask the glands merge
    width = DEFAULT_CONTOUR_WIDTH
    target = three_class_targets(labels)
    _, cores = ndi.label(target == GLAND)
    assert cores == 2
    # 2 * width contour columns between the gland cores on every interior row
    rows = slice(5 + width, 35 - width)
    assert (target[rows, 30 - width:30 + width] == CONTOUR).all()
    assert (target[rows, 30 - width - 1] == GLAND).all()
    assert (target[rows, 30 + width] == GLAND).all()


@pytest.mark.parametrize("width", [1, 2, 3, 5])
def test_band_has_the_configured_width(width: int) -> None:
    labels = np.zeros((50, 50), np.int32)
    labels[10:40, 10:40] = 7
    target = three_class_targets(labels, width)
    middle = target[25]
    assert middle[10:10 + width].tolist() == [CONTOUR] * width
    assert middle[10 + width] == GLAND
    assert middle[40 - width:40].tolist() == [CONTOUR] * width
    assert middle[40 - width - 1] == GLAND
    # the band is the set of instance pixels within `width` of the outside
    depth = ndi.distance_transform_edt(labels > 0)
    assert np.array_equal(target == CONTOUR, (labels > 0) & (depth <= width))


def test_background_unchanged_and_glands_labelled(synthetic_glands) -> None:
    _, labels = synthetic_glands
    target = three_class_targets(labels)
    assert target.dtype == np.uint8 and target.shape == labels.shape
    assert (target[labels == 0] == BACKGROUND).all()
    assert np.isin(target[labels > 0], [GLAND, CONTOUR]).all()
    # every gland keeps a core of gland pixels
    for index in range(1, labels.max() + 1):
        assert (target[labels == index] == GLAND).any()


def test_width_one_is_the_inner_boundary(synthetic_glands) -> None:
    _, labels = synthetic_glands
    expected = find_boundaries(labels, mode="inner") & (labels > 0)
    assert np.array_equal(three_class_targets(labels, 1) == CONTOUR, expected)


@given(arrays(np.int32, (12, 14), elements=st.integers(0, 4)), st.integers(1, 3))
def test_band_is_inner_side_of_each_instance(labels: np.ndarray, width: int) -> None:
    target = three_class_targets(labels, width)
    assert (target[labels == 0] == BACKGROUND).all()
    boundary = find_boundaries(labels, mode="inner") & (labels > 0)
    assert (target[boundary] == CONTOUR).all()  # the band always includes the 1-px boundary


def test_image_border_is_not_a_contour() -> None:
    labels = np.zeros((30, 30), np.int32)
    labels[:, :15] = 1  # a gland cut by the top, bottom and left image edges
    target = three_class_targets(labels, 2)
    assert (target[10, 0:13] == GLAND).all() and (target[10, 13:15] == CONTOUR).all()
    assert (target[0, 0:13] == GLAND).all()
    whole = three_class_targets(np.ones((8, 8), np.int32))
    assert (whole == GLAND).all()


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 4, 2), np.int32), "2-D"),
    (np.zeros((4, 4), np.float32), "integers"),
    (-np.ones((4, 4), np.int32), "non-negative"),
])
def test_bad_labels_are_refused(bad: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        three_class_targets(bad)


def test_bad_width_is_refused() -> None:
    with pytest.raises(ValueError, match="contour_width"):
        three_class_targets(touching_rectangles(), 0)
