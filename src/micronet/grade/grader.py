"""The shipped GlaS grader: benign/malignant and the five-level grade from gland morphology.

``glas_grade.json`` (beside this module, written by ``scripts/fit_grade.py``) holds two
:class:`~micronet.grade.classifier.GradeModel` s, ``malignancy`` (benign / malignant) and
``grade`` (healthy … poorly differentiated, Sirinukunwattana et al. 2015), with the feature list,
the package version, the measured scores and the SHA-256 of the feature tables it was fitted and
scored on. It is read as JSON: no pickle, nothing executable.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path
from ..errors import MicronetError
from .classifier import GradeModel, read_json
from .features import GLAS_MPP, image_features

__all__ = ["Grader", "load_grader", "grade_image", "shipped_grader_path", "GRADER_FORMAT"]

GRADER_FORMAT = "micronet-grade"
TOP_FEATURES = 3  # features listed per image as the ones that drove its malignancy score


def shipped_grader_path() -> Path:
    """The packaged ``glas_grade.json``."""
    return Path(str(resources.files("micronet.grade") / "glas_grade.json"))


@dataclass
class Grader:
    """Benign/malignant and five-level grade classifiers over :data:`~.features.FEATURES`."""

    malignancy: GradeModel
    grade: GradeModel
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> tuple[str, ...]:
        """Feature names the models read."""
        return self.malignancy.features

    def predict(self, rows: list[dict[str, float]]) -> list[dict[str, Any]]:
        """One result per feature row: ``p_malignant``, ``malignant`` (bool), ``grade``,
        ``grade_probability`` and ``top_features`` (``"name +1.23; ..."``: log-odds pushed
        toward malignant by each of the :data:`TOP_FEATURES` largest contributions)."""
        if not rows:
            return []
        p = self.malignancy.predict_proba(rows)[:, 1]
        contrib = self.malignancy.contributions(rows)
        grade_p = self.grade.predict_proba(rows)
        out = []
        for i in range(len(rows)):
            order = np.argsort(-np.abs(contrib[i]))[:TOP_FEATURES]
            top = "; ".join(f"{self.features[j]} {contrib[i, j]:+.2f}" for j in order)
            g = int(grade_p[i].argmax())
            out.append({"p_malignant": round(float(p[i]), 4), "malignant": bool(p[i] >= 0.5),
                        "grade": self.grade.classes[g],
                        "grade_probability": round(float(grade_p[i, g]), 4),
                        "top_features": top})
        return out

    def score(self, rows: list[dict[str, Any]], malignancy_key: str = "grade",
              grade_key: str = "grade_sirinukunwattana") -> dict[str, Any]:
        """:func:`~.cv.scores` of both models on labelled feature rows (e.g. a test split)."""
        from .cv import scores

        out = {}
        for name, model, key in (("malignancy", self.malignancy, malignancy_key),
                                 ("grade", self.grade, grade_key)):
            out[name] = scores([r[key] for r in rows], model.predict_proba(rows), model.classes)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {"format": GRADER_FORMAT, "format_version": 1, **self.meta,
                "models": {"malignancy": self.malignancy.to_dict(),
                           "grade": self.grade.to_dict()}}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON document atomically."""
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")


def load_grader(path: str | os.PathLike[str] | None = None) -> Grader:
    """A grader from JSON (``None``: the shipped GlaS one).

    Raises:
        MicronetError: missing file, invalid JSON, another format, or damaged models.
    """
    path = Path(path) if path is not None else shipped_grader_path()
    data = read_json(path)
    if data.get("format") != GRADER_FORMAT:
        raise MicronetError(f"{path}: not a micronet grade classifier (format "
                            f"{data.get('format')!r})")
    try:
        models = data.pop("models")
        malignancy = GradeModel.from_dict(models["malignancy"], f"{path} (malignancy)")
        grade = GradeModel.from_dict(models["grade"], f"{path} (grade)")
    except (KeyError, TypeError):
        raise MicronetError(f"{path}: needs models 'malignancy' and 'grade'") from None
    if malignancy.features != grade.features:
        raise MicronetError(f"{path}: the two models read different features")
    data.pop("format", None)
    data.pop("format_version", None)
    return Grader(malignancy, grade, data)


def grade_image(image: np.ndarray, labels: np.ndarray | None = None, *,
                segmenter: Any = None, mpp: float | None = None,
                grader: Grader | None = None) -> dict[str, Any]:
    """Grade one H&E image from its glands.

    Args:
        image: ``(H, W, 3) uint8`` RGB.
        labels: its gland instance map; ``None`` segments ``image`` with ``segmenter``.
        segmenter: a :class:`~micronet.Segmenter` (``None``: the shipped GlaS model).
        mpp: µm per pixel of ``image`` (``None``: GlaS's 0.62).
        grader: ``None``: the shipped GlaS grader.

    Returns:
        The features and the :meth:`Grader.predict` result in one dict.
    """
    if labels is None:
        if segmenter is None:
            from ..infer import Segmenter

            segmenter = Segmenter.from_pretrained("glas")
        labels = segmenter.predict(image, mpp=mpp, progress=False).labels
    features = image_features(labels, image, mpp=mpp or GLAS_MPP)
    grader = grader or load_grader()
    return {**grader.predict([features])[0], **features}
