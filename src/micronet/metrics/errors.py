"""Why objects fail the GlaS match: every false negative is *missed*, *merged* or *split*, every
false positive lies on *background*, is a *fragment* of a found gland, or is one *piece* of a
gland that no prediction covers by more than half.

Object F1 says how many glands are wrong, not how: a model that joins touching glands needs a
different fix (contour class, border weights, resolution) from one that sees glands in stroma
(more context, fewer false seeds) or breaks large glands up (post-processing growth, context).
The classes follow the GlaS partner rule of :class:`~micronet.metrics.matching.Matching`, so
they add up exactly: ``missed + merged + split = FN`` and ``background + fragment + piece = FP``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from .matching import Matching

__all__ = ["ErrorCounts", "error_counts"]


@dataclass(frozen=True)
class ErrorCounts:
    """Counts of each kind of false negative (``missed``, ``merged``, ``split``) and false
    positive (``background``, ``fragment``, ``piece``); see :func:`error_counts`."""

    missed: int = 0
    merged: int = 0
    split: int = 0
    background: int = 0
    fragment: int = 0
    piece: int = 0

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(*(getattr(self, f.name) + getattr(other, f.name)
                             for f in fields(self)))

    @property
    def fn(self) -> int:
        """False negatives: ``missed + merged + split``."""
        return self.missed + self.merged + self.split

    @property
    def fp(self) -> int:
        """False positives: ``background + fragment + piece``."""
        return self.background + self.fragment + self.piece

    def to_dict(self) -> dict[str, int]:
        """Flat, CSV-ready names: ``fn_missed``, ``fn_merged``, ``fn_split``, ``fp_background``,
        ``fp_fragment``, ``fp_piece``."""
        side = {"missed": "fn", "merged": "fn", "split": "fn"}
        return {f"{side.get(k, 'fp')}_{k}": v for k, v in asdict(self).items()}


def error_counts(m: Matching) -> ErrorCounts:
    """Classify the false negatives and false positives of one matched image.

    A ground-truth gland without a true positive is

    * **missed**: no predicted object overlaps it;
    * **merged**: the prediction that overlaps it most belongs mostly to another gland (its own
      partner is another ground-truth object): two or more glands came out as one object;
    * **split**: that prediction is its own, but covers no more than half of it (the gland came
      out in pieces, or too small).

    A predicted object that is not a true positive is

    * **background**: at least half of its pixels lie outside every gland;
    * **fragment**: its partner gland already has a true positive (an extra piece of a found gland);
    * **piece**: otherwise (a part of a gland that no prediction covers by more than half).
    """
    tp_gt = np.zeros(m.n_gt, bool)
    tp_gt[m.pred_partner[m.pred_is_tp]] = True

    fn = np.flatnonzero(~tp_gt)
    own = m.gt_partner[fn]
    missed = int((own < 0).sum())
    merged = int((m.pred_partner[own[own >= 0]] != fn[own >= 0]).sum())

    fp = np.flatnonzero(~m.pred_is_tp)
    on_glands = m.overlap[:, fp].sum(axis=0)  # zeros when there is no ground truth
    background = 2 * on_glands <= m.pred_areas[fp]
    partner = m.pred_partner[fp[~background]]
    fragment = int(tp_gt[partner].sum())
    return ErrorCounts(missed=missed, merged=merged, split=int(fn.size) - missed - merged,
                       background=int(background.sum()), fragment=fragment,
                       piece=int(partner.size) - fragment)
