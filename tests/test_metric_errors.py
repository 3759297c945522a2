"""Error classes of the GlaS match (`micronet.metrics.errors`): hand-worked cases, a naive
per-object reference on random label maps, and the sums that must hold."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from micronet.metrics import ErrorCounts, error_counts, matching, score_image, score_split
from strategies import label_image_pairs


def test_each_error_class_once():
    gt = np.zeros((40, 60), np.int32)
    gt[2:12, 2:12], gt[2:12, 14:24] = 1, 2  # two glands one prediction joins: 2 is merged
    gt[20:30, 2:12] = 3  # no prediction touches it: missed
    gt[20:38, 30:58] = 4  # 504 px in two halves of 216 and 252 px (not > 50 %): split, 2 pieces
    gt[2:12, 40:50] = 5  # found, plus a 1-px-wide extra fragment
    pred = np.zeros_like(gt)
    pred[2:12, 2:24] = 1
    pred[20:38, 30:42], pred[20:38, 44:58] = 2, 3
    pred[25:35, 15:25] = 4  # on background
    pred[2:12, 40:49], pred[2:12, 49:50] = 5, 6
    s = score_image(gt, pred)
    assert (s.tp, s.fp, s.fn) == (2, 4, 3)
    assert s.errors == ErrorCounts(missed=1, merged=1, split=1, background=1, fragment=1,
                                   piece=2)
    row = s.to_dict()
    assert (row["fn_merged"], row["fp_piece"], row["fp_background"]) == (1, 2, 1)


def test_mostly_outside_is_background_even_when_touching_a_gland():
    gt = np.zeros((20, 20), np.int32)
    gt[:10, :10] = 1
    pred = np.zeros_like(gt)
    pred[:10, :10] = 1  # TP
    pred[10:20, 0:10] = 2  # 100 px, none on the gland
    gt[5:10, 10:12] = 1  # the gland reaches to the right...
    pred[5:10, 11:20] = 3  # ...where 5 of these 45 px lie on it
    e = score_image(gt, pred).errors
    assert (e.background, e.fragment, e.piece) == (2, 0, 0)


def test_perfect_and_empty_predictions():
    gt = np.zeros((10, 10), np.int32)
    gt[1:4, 1:4], gt[6:9, 6:9] = 1, 2
    assert score_image(gt, gt).errors == ErrorCounts()
    assert score_image(gt, np.zeros_like(gt)).errors == ErrorCounts(missed=2)
    assert score_image(np.zeros_like(gt), gt).errors == ErrorCounts(background=2)


def _naive_errors(gt: np.ndarray, pred: np.ndarray) -> ErrorCounts:
    """The classes straight from the definitions, one object at a time."""
    m = matching(gt, pred)
    gt_ids, pred_ids = m.gt_ids.tolist(), m.pred_ids.tolist()

    def partner(mask: np.ndarray, other: np.ndarray, ids: list[int], areas: np.ndarray) -> int:
        best, best_key = -1, None
        for k, oid in enumerate(ids):
            inter = int((mask & (other == oid)).sum())
            key = (-inter, int(areas[k]))
            if inter and (best_key is None or key < best_key):
                best, best_key = k, key
        return best

    pred_partner = [partner(pred == p, gt, gt_ids, m.gt_areas) for p in pred_ids]
    found = {pred_partner[j] for j, p in enumerate(pred_ids) if pred_partner[j] >= 0
             and 2 * ((pred == p) & (gt == gt_ids[pred_partner[j]])).sum()
             > m.gt_areas[pred_partner[j]]}
    counts = dict.fromkeys(("missed", "merged", "split", "background", "fragment", "piece"), 0)
    for i, g in enumerate(gt_ids):
        if i in found:
            continue
        j = partner(gt == g, pred, pred_ids, m.pred_areas)
        counts["missed" if j < 0 else "merged" if pred_partner[j] != i else "split"] += 1
    for j, p in enumerate(pred_ids):
        i = pred_partner[j]
        if i >= 0 and 2 * ((pred == p) & (gt == gt_ids[i])).sum() > m.gt_areas[i]:
            continue  # a true positive
        on_glands = int(((pred == p) & (gt > 0)).sum())
        counts["background" if 2 * on_glands <= m.pred_areas[j]
               else "fragment" if i in found else "piece"] += 1
    return ErrorCounts(**counts)


@given(label_image_pairs(max_side=32))
def test_matches_the_naive_definitions_and_adds_up(pair):
    gt, pred = pair
    s = score_image(gt, pred)
    assert error_counts(matching(gt, pred)) == _naive_errors(gt, pred) == s.errors
    assert (s.errors.fn, s.errors.fp) == (s.fn, s.fp)


@given(st.lists(label_image_pairs(max_side=16), min_size=1, max_size=4))
def test_split_errors_are_the_images_summed(pairs):
    split = score_split(pairs)
    assert split.errors == sum((s.errors for s in split.per_image), ErrorCounts())
    assert (split.errors.fn, split.errors.fp) == (split.fn, split.fp)
    assert split.to_dict()["errors"] == split.errors.to_dict()
