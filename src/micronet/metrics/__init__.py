"""GlaS challenge metrics (object F1, object Dice, object Hausdorff, pixel F1) and evaluation.

Usage::

    from micronet.metrics import score_split
    scores = score_split([(gt_labels, pred_labels), ...])     # (H, W) integer instance maps
    scores.f1, scores.object_dice, scores.object_hausdorff    # pooled, as in the challenge
    scores.image_mean.f1                                      # per-image mean
    scores.errors.merged                                      # why glands were missed
"""

from .errors import ErrorCounts, error_counts
from .evaluate import DEFAULT_SPLITS, ImagePair, evaluate_folders, evaluate_model, glas_pairs
from .glas import (
    ImageScores,
    ObjectScores,
    Scores,
    SplitScores,
    object_dice,
    object_f1,
    object_hausdorff,
    pool_scores,
    score_image,
    score_split,
)
from .hausdorff import no_partner_distance, object_hausdorff_distances
from .matching import Matching, compact_labels, matching, precision_recall_f1
from .pixel import PixelCounts, pixel_counts, pixel_f1
from .report import PUBLISHED, PublishedResult, write_report

__all__ = [
    "DEFAULT_SPLITS",
    "ErrorCounts",
    "ImagePair",
    "ImageScores",
    "Matching",
    "ObjectScores",
    "PUBLISHED",
    "PixelCounts",
    "PublishedResult",
    "Scores",
    "SplitScores",
    "compact_labels",
    "error_counts",
    "evaluate_folders",
    "evaluate_model",
    "glas_pairs",
    "matching",
    "no_partner_distance",
    "object_dice",
    "object_f1",
    "object_hausdorff",
    "object_hausdorff_distances",
    "pixel_counts",
    "pixel_f1",
    "pool_scores",
    "precision_recall_f1",
    "score_image",
    "score_split",
    "write_report",
]
