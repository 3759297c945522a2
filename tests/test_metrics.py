"""GlaS metrics: hand-worked cases, a naive per-object reference, and hypothesis properties."""

from __future__ import annotations

import io
import math
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from scipy.spatial.distance import cdist, directed_hausdorff

from micronet.metrics import (
    compact_labels,
    matching,
    object_dice,
    object_f1,
    object_hausdorff,
    object_hausdorff_distances,
    pixel_f1,
    pool_scores,
    score_image,
    score_split,
)
from strategies import label_image_pairs, label_images, relabel

# --------------------------------------------------------------------------- naive reference


def _set_hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Hausdorff distance between the pixel sets of two masks (all pixel pairs)."""
    pa, pb = np.argwhere(a), np.argwhere(b)
    if len(pa) * len(pb) <= 4_000_000:
        d = cdist(pa, pb)
        return float(max(d.min(axis=1).max(), d.min(axis=0).max()))
    return max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])


def _reference_side(own: np.ndarray, other: np.ndarray):
    """Per object of ``own``: (area, Dice with partner, Hausdorff to partner, is_tp), one loop each.

    Partner = the object of ``other`` overlapping most; ties -> smaller area -> nearest.
    ``is_tp`` applies the > 50 % rule with ``other`` as ground truth.
    """
    other_ids = [i for i in np.unique(other) if i]
    rows = []
    for obj in (i for i in np.unique(own) if i):
        mask = own == obj
        hits = other[mask]
        hits = hits[hits > 0]
        if hits.size:
            vals, counts = np.unique(hits, return_counts=True)
            best = counts.max()
            cands = vals[counts == best]
            areas = np.array([(other == c).sum() for c in cands])
            tied = cands[areas == areas.min()]
            area = areas.min()
            dice = 2 * best / (mask.sum() + area)
            hd = min(_set_hausdorff(mask, other == c) for c in tied)
            tp = 2 * best > area
        elif other_ids:
            dice, tp = 0.0, False
            hd = min(_set_hausdorff(mask, other == c) for c in other_ids)
        else:
            dice, tp, hd = 0.0, False, math.hypot(*own.shape)
        rows.append((mask.sum(), dice, hd, tp))
    return rows


def _reference(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    g_rows, p_rows = _reference_side(gt, pred), _reference_side(pred, gt)
    tp = sum(r[3] for r in p_rows)
    fp, fn = len(p_rows) - tp, len(g_rows) - tp
    f1 = 1.0 if not (g_rows or p_rows) else 2 * tp / (2 * tp + fp + fn)

    def two_sided(k: int, empty: float) -> float:
        sides = [sum(r[0] * r[k] for r in rows) / sum(r[0] for r in rows)
                 for rows in (g_rows, p_rows) if rows]
        return float(np.mean(sides)) if sides else empty

    return {"tp": tp, "fp": fp, "fn": fn, "f1": f1, "object_dice": two_sided(1, 1.0),
            "object_hausdorff": two_sided(2, 0.0)}


def _assert_matches_reference(gt: np.ndarray, pred: np.ndarray) -> None:
    s, ref = score_image(gt, pred), _reference(gt, pred)
    assert (s.tp, s.fp, s.fn) == (ref["tp"], ref["fp"], ref["fn"])
    for key in ("f1", "object_dice", "object_hausdorff"):
        assert getattr(s, key) == pytest.approx(ref[key], rel=1e-9, abs=1e-9), key


# --------------------------------------------------------------------------- hand-worked cases


def test_split_gland_golden():
    gt = np.zeros((12, 12), np.int32)
    gt[1:11, 1:11] = 7  # one 10x10 gland
    pred = np.zeros_like(gt)
    pred[1:11, 1:7] = 3  # 60 px: covers 60 % of the gland -> TP
    pred[1:11, 7:11] = 9  # 40 px: FP
    m = matching(gt, pred)
    assert m.gt_ids.tolist() == [7] and m.pred_ids.tolist() == [3, 9]
    assert m.overlap.tolist() == [[60, 40]]
    assert m.gt_partner.tolist() == [0] and m.pred_partner.tolist() == [0, 0]
    assert m.pred_is_tp.tolist() == [True, False]
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    s = score_image(gt, pred)
    assert (s.precision, s.recall, s.f1) == pytest.approx((0.5, 1.0, 2 / 3))
    # GT side: Dice(G, A) = 120/160; pred side: 0.6 * 0.75 + 0.4 * 80/140.
    assert s.object_dice == pytest.approx(5 / 7)
    # GT side: H(G, A) = 4; pred side: 0.6 * 4 + 0.4 * H(B, G) = 0.6 * 4 + 0.4 * 6.
    assert s.object_hausdorff == pytest.approx(4.4)
    assert s.pixel_f1 == 1.0
    _assert_matches_reference(gt, pred)


def test_merged_glands_golden():
    gt = np.zeros((10, 20), np.int32)
    gt[:, :10], gt[:, 10:] = 1, 2  # two touching glands: must stay two objects
    pred = np.ones_like(gt)  # one object over both
    s = score_image(gt, pred)
    assert (s.tp, s.fp, s.fn) == (1, 0, 1)
    assert (s.precision, s.recall, s.f1) == pytest.approx((1.0, 0.5, 2 / 3))
    assert s.object_dice == pytest.approx(2 / 3)  # every Dice is 200 / 300
    assert s.object_hausdorff == pytest.approx(10.0)  # far column of the other gland
    _assert_matches_reference(gt, pred)


def test_touching_glands_keep_their_ids():
    gt = np.zeros((10, 20), np.int32)
    gt[:, :10], gt[:, 10:] = 1, 2
    s = score_image(gt, np.where(gt == 1, 8, np.where(gt == 2, 9, 0)))
    assert (s.tp, s.fp, s.fn, s.f1, s.object_dice, s.object_hausdorff) == (2, 0, 0, 1, 1, 0)


def test_disconnected_parts_of_one_id_are_one_object():
    gt = np.zeros((10, 30), np.int32)
    gt[2:6, 2:7] = 4
    gt[2:6, 20:25] = 4  # one gland id in two pieces: never re-labelled into two
    pred = (gt > 0).astype(np.int32)
    assert (matching(gt, pred).n_gt, score_image(gt, pred).f1) == (1, 1.0)


def test_false_positive_touching_nothing():
    gt = np.zeros((30, 30), np.int32)
    gt[:10, :10] = 1
    pred = gt.copy()
    pred[20:22, 20:22] = 2
    s = score_image(gt, pred)
    assert (s.tp, s.fp, s.fn) == (1, 1, 0)
    assert s.f1 == pytest.approx(2 / 3)
    assert s.object_dice == pytest.approx((1 + 100 / 104) / 2)
    # The FP pairs with the only GT object: H = |(0, 0) - (20, 20)| = sqrt(800).
    assert s.object_hausdorff == pytest.approx(4 / 104 * math.sqrt(800) / 2)
    assert s.pixel_f1 == pytest.approx(200 / 204)
    _assert_matches_reference(gt, pred)


def test_unmatched_objects_pair_with_the_nearest_object():
    gt = np.zeros((40, 40), np.int32)
    gt[0:4, 0:4] = 1
    gt[30:34, 30:34] = 2
    pred = np.zeros_like(gt)
    pred[25:27, 25:27] = 5  # touches neither gland
    s = score_image(gt, pred)
    assert (s.tp, s.fp, s.fn, s.f1, s.object_dice) == (0, 1, 2, 0.0, 0.0)
    near = math.sqrt(98)  # H(FP, gland 2): (33, 33) -> (26, 26)
    far = math.sqrt(1250)  # H(gland 1, FP): (0, 0) -> (25, 25)
    assert s.object_hausdorff == pytest.approx((near + (far + near) / 2) / 2)
    _assert_matches_reference(gt, pred)


def test_nearest_object_search_is_exact_not_boundary_ordered():
    # A GT disk inside a predicted thin ring, with a small predicted blob between them. By
    # boundary distances the ring looks nearer (16 < 18), but the disk's centre is 20 px from
    # the ring: the nearest object by true Hausdorff distance is the blob (18 px).
    yy, xx = np.mgrid[:51, :51]
    r = np.hypot(yy - 25, xx - 25)
    gt = (r <= 4).astype(np.int32)
    pred = np.zeros_like(gt)
    pred[(r >= 19.5) & (r <= 20.5)] = 1
    pred[np.hypot(yy - 25, xx - 40) <= 1] = 2
    gt_hd, pred_hd = object_hausdorff_distances(matching(gt, pred))
    ring = _set_hausdorff(gt == 1, pred == 1)
    assert ring > 19.5 and gt_hd.tolist() == [18.0] and pred_hd.tolist() == [ring, 18.0]
    _assert_matches_reference(gt, pred)


def test_partner_distance_sees_an_unfilled_lumen():
    # Prediction = the gland as a ring (lumen left out): the lumen centre is 6 px from it,
    # although every boundary pixel of the gland lies on the ring.
    yy, xx = np.mgrid[:31, :31]
    r = np.hypot(yy - 15, xx - 15)
    gt = (r <= 12).astype(np.int32)
    pred = ((r <= 12) & (r > 6)).astype(np.int32)
    assert object_hausdorff(gt, pred) == pytest.approx(_set_hausdorff(gt > 0, pred > 0))
    assert object_hausdorff(gt, pred) > 6


def test_exactly_half_is_not_a_true_positive():
    gt = np.zeros((10, 10), np.int32)
    gt[:, :] = 1
    pred = np.zeros_like(gt)
    pred[:, :5] = 1  # 50 %, not more
    assert (matching(gt, pred).tp, object_f1(gt, pred)) == (0, 0.0)


def test_overlap_ties_go_to_the_smaller_gland_whatever_the_ids():
    for small, large in ((1, 2), (2, 1)):
        gt = np.zeros((1, 40), np.int32)
        gt[0, :10], gt[0, 10:] = small, large  # areas 10 and 30
        pred = np.zeros_like(gt)
        pred[0, 4:16] = 1  # 6 px in each: more than half of the small one only
        m = matching(gt, pred)
        assert m.gt_ids[m.pred_partner[0]] == small and m.tp == 1


def test_empty_prediction():
    gt = np.zeros((30, 40), np.int32)
    gt[2:8, 2:8], gt[15:20, 20:30] = 1, 2
    s = score_image(gt, np.zeros_like(gt))
    assert (s.tp, s.fp, s.fn, s.precision, s.recall, s.f1) == (0, 0, 2, 0, 0, 0)
    assert (s.object_dice, s.pixel_f1) == (0.0, 0.0)
    assert s.object_hausdorff == pytest.approx(50.0)  # the image diagonal


def test_empty_ground_truth():
    pred = np.zeros((30, 40), np.int32)
    pred[5:9, 5:9] = 3
    s = score_image(np.zeros_like(pred), pred)
    assert (s.tp, s.fp, s.fn, s.f1, s.object_dice, s.pixel_f1) == (0, 1, 0, 0, 0, 0)
    assert s.object_hausdorff == pytest.approx(50.0)


def test_both_empty():
    z = np.zeros((5, 7), np.uint8)
    s = score_image(z, z)
    assert (s.f1, s.precision, s.recall, s.object_dice, s.object_hausdorff, s.pixel_f1) == \
        (1, 1, 1, 1, 0, 1)


def test_single_metric_functions_agree_with_score_image():
    gt = np.zeros((12, 12), np.int32)
    gt[1:11, 1:11] = 7
    pred = np.zeros_like(gt)
    pred[1:11, 1:7], pred[1:11, 7:11] = 3, 9
    s = score_image(gt, pred)
    assert object_f1(gt, pred) == s.f1 and object_dice(gt, pred) == s.object_dice
    assert object_hausdorff(gt, pred) == s.object_hausdorff and pixel_f1(gt, pred) == s.pixel_f1


def test_pooled_versus_per_image_mean():
    gt1 = np.zeros((20, 20), np.int32)
    gt1[:10, :10] = 1  # 100 px, predicted perfectly
    gt2 = np.zeros((30, 40), np.int32)
    gt2[:15, :20] = 1  # 300 px, missed (empty prediction, diagonal 50)
    split = score_split([(gt1, gt1), (gt2, np.zeros_like(gt2))], names=["a", "b"], name="x")
    assert (split.name, split.n_images, split.tp, split.fp, split.fn) == ("x", 2, 1, 0, 1)
    assert [s.name for s in split.per_image] == ["a", "b"]
    assert (split.f1, split.precision, split.recall) == pytest.approx((2 / 3, 1.0, 0.5))
    assert split.object_dice == pytest.approx((0.25 + 1.0) / 2)  # GT side 100/400, pred side 1
    assert split.object_hausdorff == pytest.approx((300 / 400 * 50 + 0) / 2)
    assert split.pixel_f1 == pytest.approx(200 / 500)
    mean = split.image_mean
    assert (mean.f1, mean.precision, mean.recall) == pytest.approx((0.5, 0.5, 0.5))
    assert (mean.object_dice, mean.object_hausdorff, mean.pixel_f1) == pytest.approx((0.5, 25, .5))


def test_pool_of_one_image_equals_the_image(synthetic_glands):
    _, gt = synthetic_glands
    pred = np.roll(gt, (3, -2), axis=(0, 1))
    image = score_image(gt, pred)
    assert pool_scores([image]).pooled == image.scores


def test_empty_split_is_an_error():
    with pytest.raises(ValueError, match="empty split"):
        pool_scores([])


def test_compact_labels_dense_and_sparse_ids_agree():
    small = np.array([[0, 3, 3], [7, 0, 3]], np.int64)
    huge = np.where(small > 0, small * 10**12, 0)  # far past the lookup-table range
    for arr in (small, huge, small.astype(np.uint16), small.astype(np.uint32)):
        ids, index, areas = compact_labels(arr)
        assert index.tolist() == [[0, 1, 1], [2, 0, 1]] and areas.tolist() == [3, 1]
        assert ids.tolist() == sorted(int(i) for i in np.unique(arr) if i)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 4), np.float32), "gt: label ids must be integers"),
    (np.full((4, 4), -1, np.int32), "gt: label ids must be non-negative"),
    (np.zeros((4, 4, 3), np.uint8), "gt: expected a 2-D"),
])
def test_invalid_label_maps_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        matching(bad, bad)


def test_invalid_prediction_is_named_in_the_error():
    gt = np.zeros((4, 4), np.int32)
    with pytest.raises(ValueError, match="^pred: label ids must be integers"):
        matching(gt, gt.astype(np.float32))


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        score_image(np.zeros((4, 4), int), np.zeros((4, 5), int))


def test_bool_masks_are_one_object_each():
    gt = np.zeros((6, 6), bool)
    gt[1:4, 1:4] = True
    assert score_image(gt, gt).tp == 1


# --------------------------------------------------------------------------- properties


@settings(max_examples=200)
@given(label_image_pairs(max_side=32))
def test_matches_naive_reference(pair):
    _assert_matches_reference(*pair)


@given(label_images(max_side=48))
def test_perfect_prediction_scores_perfectly(gt):
    s = score_image(gt, gt)
    assert (s.f1, s.object_dice, s.object_hausdorff, s.pixel_f1, s.fp, s.fn) == (1, 1, 0, 1, 0, 0)


@given(label_image_pairs(max_side=48), st.integers(0, 2**32 - 1))
def test_invariant_to_relabelling(pair, seed):
    gt, pred = pair
    rng = np.random.default_rng(seed)
    a, b = score_image(gt, pred), score_image(relabel(gt, rng), relabel(pred, rng))
    assert (a.tp, a.fp, a.fn) == (b.tp, b.fp, b.fn)
    assert b.scores.to_dict() == pytest.approx(a.scores.to_dict(), rel=1e-12, abs=1e-12)


@given(label_image_pairs(max_side=48))
def test_dice_hausdorff_pixel_f1_are_symmetric(pair):
    gt, pred = pair
    a, b = score_image(gt, pred), score_image(pred, gt)
    assert b.object_dice == pytest.approx(a.object_dice, rel=1e-12, abs=1e-12)
    assert b.object_hausdorff == pytest.approx(a.object_hausdorff, rel=1e-12, abs=1e-12)
    assert b.pixel_f1 == a.pixel_f1


@given(st.lists(label_image_pairs(max_side=24), min_size=1, max_size=4))
def test_bounds_and_pooled_counts(pairs):
    split = score_split(pairs)
    assert (split.tp, split.fp, split.fn) == tuple(
        sum(getattr(s, k) for s in split.per_image) for k in ("tp", "fp", "fn"))
    diagonal = max(math.hypot(*gt.shape) for gt, _ in pairs)
    for s in (split.pooled, split.image_mean, *[i.scores for i in split.per_image]):
        assert 0 <= s.f1 <= 1 and 0 <= s.object_dice <= 1 and 0 <= s.pixel_f1 <= 1
        assert 0 <= s.object_hausdorff <= diagonal + 1e-9


# --------------------------------------------------------------------------- GlaS release


def _read_glas(zip_path, names):
    from PIL import Image

    with zipfile.ZipFile(zip_path) as z:
        members = {m.rsplit("/", 1)[-1]: m for m in z.namelist()}
        return [np.asarray(Image.open(io.BytesIO(z.read(members[n])))).astype(np.int32)
                for n in names]


def _perturb(gt: np.ndarray, seed: int) -> np.ndarray:
    """Erode every gland by 3 px (ids kept), shift by (4, -3) without wrapping, drop ~10 %."""
    rng = np.random.default_rng(seed)
    eroded = np.where(ndi.minimum_filter(gt, 7) == ndi.maximum_filter(gt, 7), gt, 0)
    pred = np.zeros_like(gt)
    pred[4:, :-3] = eroded[:-4, 3:]
    ids = np.unique(gt)[1:]
    pred[np.isin(pred, ids[rng.random(ids.size) < 0.1])] = 0
    return pred


@pytest.mark.data
def test_glas_images_against_reference(glas_zip):
    names = ["testB_3_anno.bmp", "testA_11_anno.bmp"]
    for seed, gt in enumerate(_read_glas(glas_zip, names)):
        assert score_image(gt, gt).scores.to_dict() == {
            "f1": 1, "precision": 1, "recall": 1, "object_dice": 1, "object_hausdorff": 0,
            "pixel_f1": 1}
        pred = _perturb(gt, seed)
        pred[10:25, 10:25] = 250  # a false positive blob
        _assert_matches_reference(gt, pred)
