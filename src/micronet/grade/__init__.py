"""Grade colorectal H&E images (benign / malignant, and GlaS's five grades) from their glands.

>>> from micronet.grade import grade_image
>>> grade_image(rgb_uint8_image)["p_malignant"]  # doctest: +SKIP

:mod:`~.features` turns an instance label map into per-image morphology features,
:mod:`~.classifier` stores scikit-learn classifiers as JSON numbers, :mod:`~.cv` cross-validates
by patient, and :mod:`~.grader` holds the shipped GlaS grader (``glas_grade.json``).
"""

from .classifier import GradeModel, fit_model
from .features import FEATURES, GLAS_MPP, feature_definitions, image_features
from .grader import Grader, grade_image, load_grader

__all__ = ["FEATURES", "GLAS_MPP", "GradeModel", "Grader", "feature_definitions", "fit_model",
           "grade_image", "image_features", "load_grader"]
