"""Inference: tiled prediction of images of any size and whole slides, gland instances, exports."""

from .postprocess import (
    ClassMaps,
    PostprocessConfig,
    label_glands,
    measure_glands,
)
from .runtime import load_weights_file
from .segmenter import Segmentation, Segmenter
from .tune import tune_postprocess

__all__ = ["Segmenter", "Segmentation", "PostprocessConfig", "ClassMaps", "label_glands",
           "measure_glands", "tune_postprocess", "load_weights_file"]
