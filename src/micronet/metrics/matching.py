"""Object matching between two instance label maps with the GlaS partner rule.

Everything comes from one label contingency table (``np.bincount`` over ``gt * K + pred``), so
matching an image costs two passes over its pixels however many glands it holds. Instance ids are
used exactly as given: the inputs are never re-``label()``-ed, so touching glands stay apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._labels import check_labels

__all__ = ["Matching", "matching", "compact_labels", "precision_recall_f1"]


def compact_labels(labels: np.ndarray, name: str = "labels") -> tuple[np.ndarray, np.ndarray,
                                                                        np.ndarray]:
    """Renumber an instance map to ``1..n`` (0 stays background), keeping each id's pixels.

    Args:
        labels: (H, W) integer (or bool) instance map, 0 = background, ids >= 0.
        name: what to call the array in error messages.

    Returns:
        ``(ids, index, areas)``: the original ids in increasing order ``(n,) int64``, the
        ``(H, W) int32`` map of 1-based positions into ``ids``, and each object's area
        ``(n,) int64``.

    Raises:
        ValueError: not 2-D, not integer (float probabilities are not label maps), or negative
            ids (see `micronet._labels.check_labels`).
    """
    arr = check_labels(labels, name)
    flat = arr.ravel()
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(arr.shape, np.int32), np.zeros(0, np.int64)
    top = int(flat.max())
    if top <= 4 * flat.size + 1024:
        # Dense ids (the usual case): a lookup table is several times faster than np.unique.
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=top + 1)
        ids = np.flatnonzero(counts)
        ids = ids[ids != 0]
        lut = np.zeros(top + 1, np.int32)
        lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
        index = lut[flat].reshape(arr.shape)
        areas = counts[ids]
    else:
        uniq, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        has_bg = uniq[0] == 0
        index = (inverse + (0 if has_bg else 1)).astype(np.int32).reshape(arr.shape)
        ids, areas = (uniq[1:], counts[1:]) if has_bg else (uniq, counts)
    return ids.astype(np.int64), index, areas.astype(np.int64)


def _partners(overlap: np.ndarray, other_areas: np.ndarray) -> np.ndarray:
    """For each column, the row it overlaps most (``-1`` if none); ties go to the smaller row.

    Breaking overlap ties by the smaller partner area (the better Dice, and the easier > 50 % test)
    rather than by id keeps every score independent of how the ids are numbered.
    """
    n_other, n_self = overlap.shape
    if n_other == 0:
        return np.full(n_self, -1, np.intp)
    best = overlap.max(axis=0)
    tied = (overlap == best[None, :]) & (best[None, :] > 0)
    area_key = np.where(tied, other_areas[:, None], np.iinfo(np.int64).max)
    partner = area_key.argmin(axis=0)
    partner[best == 0] = -1
    return partner


@dataclass(frozen=True, eq=False)
class Matching:
    """GlaS correspondence between the objects of a ground-truth and a predicted label map.

    Partners: a predicted object's partner is the ground-truth object it overlaps most, and a
    ground-truth object's partner is the predicted object that overlaps it most (background
    excluded; ``-1`` = overlaps nothing; overlap ties go to the smaller object). A predicted object
    is a true positive when it covers more than 50 % of its partner's area; all other predicted
    objects are false positives, and FN = ground-truth objects - TP (no two predicted objects
    can each cover more than half of one ground-truth object, so each TP matches a distinct one).

    Attributes:
        gt_ids, pred_ids: original ids, increasing, ``(n_gt,)`` / ``(n_pred,)`` int64.
        gt_areas, pred_areas: object areas in pixels.
        overlap: ``(n_gt, n_pred)`` int64 pixel counts of each GT/prediction intersection.
        gt_partner: ``(n_gt,)`` index into ``pred_ids`` of each GT object's partner, or -1.
        pred_partner: ``(n_pred,)`` index into ``gt_ids`` of each predicted object's partner, or -1.
        pred_is_tp: ``(n_pred,)`` bool, the > 50 % rule.
        gt_index, pred_index: ``(H, W) int32`` maps of 1-based positions into the id arrays.
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    gt_areas: np.ndarray
    pred_areas: np.ndarray
    overlap: np.ndarray
    gt_partner: np.ndarray
    pred_partner: np.ndarray
    pred_is_tp: np.ndarray
    gt_index: np.ndarray = field(repr=False)
    pred_index: np.ndarray = field(repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the matched images."""
        height, width = self.gt_index.shape
        return height, width

    @property
    def n_gt(self) -> int:
        """Number of ground-truth objects."""
        return int(self.gt_ids.size)

    @property
    def n_pred(self) -> int:
        """Number of predicted objects."""
        return int(self.pred_ids.size)

    @property
    def tp(self) -> int:
        """Predicted objects covering > 50 % of their partner ground-truth object."""
        return int(self.pred_is_tp.sum())

    @property
    def fp(self) -> int:
        """Predicted objects that are not true positives."""
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        """Ground-truth objects without a true-positive prediction."""
        return self.n_gt - self.tp

    @property
    def precision(self) -> float:
        """TP / predicted objects (see `precision_recall_f1` for the empty cases)."""
        return precision_recall_f1(self.tp, self.fp, self.fn)[0]

    @property
    def recall(self) -> float:
        """TP / ground-truth objects."""
        return precision_recall_f1(self.tp, self.fp, self.fn)[1]

    @property
    def f1(self) -> float:
        """Object F1 = 2 TP / (2 TP + FP + FN)."""
        return precision_recall_f1(self.tp, self.fp, self.fn)[2]

    def dice_per_object(self) -> tuple[np.ndarray, np.ndarray]:
        """Dice of every GT object with its partner, and of every predicted object with its own.

        Objects without an overlapping partner score 0.
        """
        return (_partner_dice(self.overlap, self.gt_areas, self.pred_areas, self.gt_partner),
                _partner_dice(self.overlap.T, self.pred_areas, self.gt_areas, self.pred_partner))


def precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts.

    Empty cases: with neither ground truth nor predictions all three are 1 (nothing to find,
    nothing wrongly found); an empty side otherwise gives 0 for the undefined ratio.
    """
    if tp + fp + fn == 0:
        return 1.0, 1.0, 1.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return precision, recall, 2 * tp / (2 * tp + fp + fn)


def _partner_dice(overlap: np.ndarray, own_areas: np.ndarray, other_areas: np.ndarray,
                  partner: np.ndarray) -> np.ndarray:
    dice = np.zeros(own_areas.size, np.float64)
    has = partner >= 0
    rows = np.flatnonzero(has)
    inter = overlap[rows, partner[has]]
    dice[has] = 2.0 * inter / (own_areas[has] + other_areas[partner[has]])
    return dice


def matching(gt: np.ndarray, pred: np.ndarray) -> Matching:
    """Match the objects of a predicted instance map to a ground-truth one (GlaS rule).

    Args:
        gt: (H, W) integer ground-truth instance map, 0 = background.
        pred: (H, W) integer predicted instance map, same shape.

    Returns:
        A `Matching` with the overlap table, partners and TP/FP/FN counts. The table is dense
        (n_gt x n_pred int64): trivial for glands, still fine for a few thousand objects a side.

    Raises:
        ValueError: shapes differ, or the maps are not valid label maps.
    """
    if np.shape(gt) != np.shape(pred):
        raise ValueError(f"gt shape {np.shape(gt)} != pred shape {np.shape(pred)}")
    gt_ids, gt_index, gt_areas = compact_labels(gt, "gt")
    pred_ids, pred_index, pred_areas = compact_labels(pred, "pred")
    n_gt, n_pred = gt_ids.size, pred_ids.size
    codes = gt_index.ravel().astype(np.int64) * (n_pred + 1) + pred_index.ravel()
    table = np.bincount(codes, minlength=(n_gt + 1) * (n_pred + 1)).reshape(n_gt + 1, n_pred + 1)
    overlap = table[1:, 1:].astype(np.int64)
    pred_partner = _partners(overlap, gt_areas)
    gt_partner = _partners(overlap.T, pred_areas)
    has = pred_partner >= 0
    pred_is_tp = np.zeros(n_pred, bool)
    cols = np.flatnonzero(has)
    pred_is_tp[has] = 2 * overlap[pred_partner[has], cols] > gt_areas[pred_partner[has]]
    return Matching(gt_ids=gt_ids, pred_ids=pred_ids, gt_areas=gt_areas, pred_areas=pred_areas,
                    overlap=overlap, gt_partner=gt_partner, pred_partner=pred_partner,
                    pred_is_tp=pred_is_tp, gt_index=gt_index, pred_index=pred_index)
