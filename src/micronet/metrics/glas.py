"""GlaS challenge measures: object F1, object Dice, object Hausdorff, plus pixel F1.

Definitions follow Sirinukunwattana et al., "Gland segmentation in colon histology images: The
GlaS challenge contest", Medical Image Analysis 35 (2017), and the challenge's MATLAB code:

* **Object F1**: see `Matching` (a predicted object is a TP when it covers > 50 % of the GT object
  it overlaps most; FN = GT objects - TP).
* **Object Dice** = ½ [Σ_i γ_i Dice(G_i, S(G_i)) + Σ_j σ_j Dice(G(S_j), S_j)], with area weights
  γ_i = |G_i| / Σ|G| and σ_j = |S_j| / Σ|S|. An object without an overlapping partner scores
  Dice 0 but keeps its weight.
* **Object Hausdorff**: the same two-sided area weighting of the pixel-set Hausdorff distance to
  the partner; an object without an overlapping partner is paired with the object of the other
  set at minimum Hausdorff distance (see `micronet.metrics.hausdorff`).

Empty images: with no object on either side F1 = Dice = 1 and Hausdorff = 0. When one side is
empty F1 = Dice = 0 and every object of the other side gets the image diagonal as its Hausdorff
distance (the MATLAB code returns Inf; a finite stand-in keeps pooled and mean values usable).
In general a two-sided measure averages whichever of its two sides have objects.

Aggregation over a split, both ways: the challenge *pools* a test part (one TP/FP/FN count and one
set of area weights over all objects of all its images); many later papers report the *per-image
mean*. `SplitScores` holds both (pooled as its main attributes, the mean in ``image_mean``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import ErrorCounts, error_counts
from .hausdorff import object_hausdorff_distances
from .matching import Matching, matching, precision_recall_f1
from .pixel import PixelCounts, pixel_counts

__all__ = ["ObjectScores", "Scores", "ImageScores", "SplitScores", "score_image",
           "pool_scores", "score_split", "object_f1", "object_dice", "object_hausdorff",
           "pooled_f1_dice"]


@dataclass(frozen=True, eq=False)
class ObjectScores:
    """Per-object area, partner Dice and partner Hausdorff distance of one side (GT or pred)."""

    areas: np.ndarray
    dice: np.ndarray
    hausdorff: np.ndarray

    @staticmethod
    def concatenate(parts: Iterable[ObjectScores]) -> ObjectScores:
        """All objects of several images in one set, for pooled (challenge-style) weights."""
        parts = list(parts)
        return ObjectScores(*(np.concatenate([getattr(p, f) for p in parts]) if parts
                              else np.zeros(0) for f in ("areas", "dice", "hausdorff")))


def _two_sided(gt: ObjectScores, pred: ObjectScores, attr: str, if_empty: float) -> float:
    """½ (GT-weighted + prediction-weighted) average; one side if the other has no objects."""
    sides = [np.average(getattr(s, attr), weights=s.areas) for s in (gt, pred) if s.areas.size]
    return float(np.mean(sides)) if sides else if_empty


@dataclass(frozen=True)
class Scores:
    """The six summary numbers (object F1/precision/recall, object Dice and Hausdorff, pixel F1)."""

    f1: float
    precision: float
    recall: float
    object_dice: float
    object_hausdorff: float
    pixel_f1: float

    def to_dict(self) -> dict[str, float]:
        """Plain dict, for JSON."""
        return asdict(self)


@dataclass(frozen=True, eq=False)
class ImageScores:
    """GlaS scores of one image, with the per-object values that pooling needs.

    Attributes:
        name: image name (file key), may be empty.
        shape: (H, W).
        tp, fp, fn: object counts.
        f1, precision, recall, object_dice, object_hausdorff, pixel_f1: this image's scores.
        gt_objects, pred_objects: per-object areas, Dice and Hausdorff distances.
        pixels: foreground pixel counts.
        errors: why the FN and FP objects failed (`micronet.metrics.errors`).
    """

    name: str
    shape: tuple[int, int]
    tp: int
    fp: int
    fn: int
    f1: float
    precision: float
    recall: float
    object_dice: float
    object_hausdorff: float
    pixel_f1: float
    gt_objects: ObjectScores = field(repr=False)
    pred_objects: ObjectScores = field(repr=False)
    pixels: PixelCounts = field(repr=False)
    errors: ErrorCounts = field(repr=False)

    @property
    def n_gt(self) -> int:
        """Number of ground-truth objects."""
        return self.tp + self.fn

    @property
    def n_pred(self) -> int:
        """Number of predicted objects."""
        return self.tp + self.fp

    @property
    def scores(self) -> Scores:
        """The six summary numbers."""
        return Scores(self.f1, self.precision, self.recall, self.object_dice,
                      self.object_hausdorff, self.pixel_f1)

    def to_dict(self) -> dict[str, object]:
        """Flat row (name, counts, scores), e.g. for a CSV."""
        return {"image": self.name, "height": self.shape[0], "width": self.shape[1],
                "n_gt": self.n_gt, "n_pred": self.n_pred, "tp": self.tp, "fp": self.fp,
                "fn": self.fn, **self.scores.to_dict(), **self.errors.to_dict()}


@dataclass(frozen=True, eq=False)
class SplitScores:
    """Scores of a set of images (a GlaS test part): pooled as attributes, plus per-image mean.

    Attributes:
        name: split name (may be empty).
        tp, fp, fn: object counts summed over the split.
        f1, precision, recall, object_dice, object_hausdorff, pixel_f1: pooled, as the challenge
            computed them (one count, one set of area weights over all objects of the split).
        image_mean: the mean of the per-image scores, as many later papers report.
        per_image: the `ImageScores` of every image, in input order.
        errors: the images' error classes summed (`micronet.metrics.errors`).
    """

    name: str
    tp: int
    fp: int
    fn: int
    f1: float
    precision: float
    recall: float
    object_dice: float
    object_hausdorff: float
    pixel_f1: float
    image_mean: Scores
    per_image: tuple[ImageScores, ...] = field(repr=False)
    errors: ErrorCounts = field(repr=False)

    @property
    def n_images(self) -> int:
        """Number of images in the split."""
        return len(self.per_image)

    @property
    def pooled(self) -> Scores:
        """The six pooled numbers as a `Scores`."""
        return Scores(self.f1, self.precision, self.recall, self.object_dice,
                      self.object_hausdorff, self.pixel_f1)

    def to_dict(self) -> dict[str, object]:
        """Summary for JSON: counts, pooled and per-image-mean scores, error classes (not the
        per-image rows)."""
        return {"n_images": self.n_images, "n_gt": self.tp + self.fn, "n_pred": self.tp + self.fp,
                "tp": self.tp, "fp": self.fp, "fn": self.fn, "pooled": self.pooled.to_dict(),
                "image_mean": self.image_mean.to_dict(), "errors": self.errors.to_dict()}


def score_image(gt: np.ndarray, pred: np.ndarray, name: str = "") -> ImageScores:
    """All GlaS measures of one image.

    Args:
        gt: (H, W) integer ground-truth instance map, 0 = background.
        pred: (H, W) integer predicted instance map (ids used as given, never re-labelled).
        name: carried into the result (e.g. the file key).
    """
    m = matching(gt, pred)
    return _score_matching(m, pixel_counts(gt, pred), name)


def _score_matching(m: Matching, pixels: PixelCounts, name: str) -> ImageScores:
    gt_dice, pred_dice = m.dice_per_object()
    gt_hd, pred_hd = object_hausdorff_distances(m)
    gt_objects = ObjectScores(m.gt_areas, gt_dice, gt_hd)
    pred_objects = ObjectScores(m.pred_areas, pred_dice, pred_hd)
    precision, recall, f1 = precision_recall_f1(m.tp, m.fp, m.fn)
    return ImageScores(
        name=name, shape=m.shape, tp=m.tp, fp=m.fp, fn=m.fn, f1=f1, precision=precision,
        recall=recall, object_dice=_two_sided(gt_objects, pred_objects, "dice", 1.0),
        object_hausdorff=_two_sided(gt_objects, pred_objects, "hausdorff", 0.0),
        pixel_f1=pixels.f1, gt_objects=gt_objects, pred_objects=pred_objects, pixels=pixels,
        errors=error_counts(m))


def pool_scores(images: Sequence[ImageScores], name: str = "") -> SplitScores:
    """Combine per-image scores into split scores, pooled and per-image mean.

    Raises:
        ValueError: no images.
    """
    images = tuple(images)
    if not images:
        raise ValueError("cannot score an empty split (no images)")
    tp, fp, fn = (sum(getattr(s, k) for s in images) for k in ("tp", "fp", "fn"))
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)
    gt_objects = ObjectScores.concatenate(s.gt_objects for s in images)
    pred_objects = ObjectScores.concatenate(s.pred_objects for s in images)
    pixels = sum((s.pixels for s in images), PixelCounts(0, 0, 0))
    mean = Scores(*(float(np.mean([getattr(s, k) for s in images]))
                    for k in ("f1", "precision", "recall", "object_dice", "object_hausdorff",
                              "pixel_f1")))
    return SplitScores(
        name=name, tp=tp, fp=fp, fn=fn, f1=f1, precision=precision, recall=recall,
        object_dice=_two_sided(gt_objects, pred_objects, "dice", 1.0),
        object_hausdorff=_two_sided(gt_objects, pred_objects, "hausdorff", 0.0),
        pixel_f1=pixels.f1, image_mean=mean, per_image=images,
        errors=sum((s.errors for s in images), ErrorCounts()))


def score_split(pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                names: Sequence[str] | None = None, name: str = "") -> SplitScores:
    """Score ``(gt, pred)`` label-map pairs as one split (e.g. validation object F1 in training).

    Args:
        pairs: ``(gt, pred)`` (H, W) integer instance maps; sizes may differ between pairs.
        names: optional image names, one per pair.
        name: the split's name.

    Returns:
        `SplitScores`: pooled ``f1``, ``object_dice``, ``object_hausdorff``, ``pixel_f1``, ...,
        the per-image mean in ``image_mean`` and each image in ``per_image``.
    """
    if names is not None and len(names) != len(pairs):
        raise ValueError(f"{len(names)} names for {len(pairs)} pairs")
    labels = names if names is not None else [str(i) for i in range(len(pairs))]
    return pool_scores([score_image(g, p, n) for (g, p), n in zip(pairs, labels, strict=True)],
                       name=name)


def pooled_f1_dice(matchings: Sequence[Matching]) -> tuple[float, float]:
    """Pooled object F1 and object Dice of several images, from their matchings alone.

    The same numbers as :func:`score_split`'s ``f1`` and ``object_dice`` without the Hausdorff
    distances, which cost most of a full score (used by post-processing tuning).
    """
    tp, fp, fn = (sum(getattr(m, k) for m in matchings) for k in ("tp", "fp", "fn"))
    sides = [m.dice_per_object() for m in matchings]
    gt = ObjectScores.concatenate(ObjectScores(m.gt_areas, d[0], d[0])
                                  for m, d in zip(matchings, sides, strict=True))
    pred = ObjectScores.concatenate(ObjectScores(m.pred_areas, d[1], d[1])
                                    for m, d in zip(matchings, sides, strict=True))
    return precision_recall_f1(tp, fp, fn)[2], _two_sided(gt, pred, "dice", 1.0)


def object_f1(gt: np.ndarray, pred: np.ndarray) -> float:
    """Object F1 of one image (GlaS > 50 % overlap rule)."""
    return matching(gt, pred).f1


def object_dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """Object Dice of one image (two-sided, area weighted; unpartnered objects score 0)."""
    m = matching(gt, pred)
    gt_dice, pred_dice = m.dice_per_object()
    return _two_sided(ObjectScores(m.gt_areas, gt_dice, gt_dice),
                      ObjectScores(m.pred_areas, pred_dice, pred_dice), "dice", 1.0)


def object_hausdorff(gt: np.ndarray, pred: np.ndarray) -> float:
    """Object Hausdorff distance of one image in pixels (two-sided, area weighted)."""
    m = matching(gt, pred)
    gt_hd, pred_hd = object_hausdorff_distances(m)
    return _two_sided(ObjectScores(m.gt_areas, gt_hd, gt_hd),
                      ObjectScores(m.pred_areas, pred_hd, pred_hd), "hausdorff", 0.0)
