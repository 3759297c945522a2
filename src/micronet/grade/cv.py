"""Patient-grouped cross-validation and the scores reported for the grade classifiers.

GlaS images come from 16 patients, several images each; images of one patient look alike, so a
fold that trains on some of a patient's images and tests on others flatters the classifier.
Every split here keeps each patient on one side (``StratifiedGroupKFold``), and
:func:`patient_folds` checks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import MicronetError
from .classifier import fit_model

__all__ = ["patient_folds", "cross_validate", "scores", "confusion"]


def patient_folds(y: Sequence[str], patients: Sequence[str], n_splits: int = 5,
                  seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` index pairs, stratified by ``y``, no patient in both sides of a fold.

    Raises:
        MicronetError: fewer patients than folds, or (never expected) a patient in both sides.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.asarray(patients)
    if len(set(groups.tolist())) < n_splits:
        raise MicronetError(f"{len(set(groups.tolist()))} patients cannot fill {n_splits} folds")
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    folds = [(tr, te) for tr, te in cv.split(np.zeros(len(groups)), np.asarray(y), groups)]
    for train, test in folds:
        shared = set(groups[train].tolist()) & set(groups[test].tolist())
        if shared:
            raise MicronetError(f"patients in both train and test of a fold: {sorted(shared)}")
    return folds


def cross_validate(x: np.ndarray, y: Sequence[str], patients: Sequence[str],
                   features: tuple[str, ...], kind: str, classes: tuple[str, ...],
                   hyper: dict[str, Any], n_splits: int = 5,
                   repeats: int = 5) -> dict[str, Any]:
    """Out-of-fold scores of one classifier, over ``repeats`` patient-grouped splits.

    Returns:
        ``{"mean": {metric: mean over repeats}, "std": {...}, "repeats": [scores...],
        "oof": (N, K) probabilities of the first repeat}``.
    """
    labels = np.asarray(y)
    runs, first = [], None
    for r in range(repeats):
        proba = np.zeros((len(labels), len(classes)))
        for train, test in patient_folds(y, patients, n_splits, seed=r):
            model = fit_model(x[train], labels[train], features, kind, classes, **hyper)
            proba[test] = model.predict_proba(x[test])
        runs.append(scores(y, proba, classes))
        first = proba if first is None else first
    keys = [k for k in runs[0] if not isinstance(runs[0][k], list)]
    return {"mean": {k: float(np.mean([s[k] for s in runs])) for k in keys},
            "std": {k: float(np.std([s[k] for s in runs])) for k in keys},
            "repeats": runs, "oof": first}


def scores(y: Sequence[str], proba: np.ndarray, classes: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, ROC AUC (binary: of ``classes[1]``; else one-vs-rest macro,
    when every class is present) and the confusion matrix (rows true, columns predicted)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    labels = np.asarray(y)
    pred = np.asarray(classes)[np.asarray(proba).argmax(axis=1)]
    out: dict[str, Any] = {"n": int(len(labels)), "accuracy": float(accuracy_score(labels, pred)),
                           "balanced_accuracy": float(balanced_accuracy_score(labels, pred))}
    codes = np.array([classes.index(v) for v in labels])
    present = sorted(set(codes.tolist()))
    if len(classes) == 2 and len(present) == 2:
        out["roc_auc"] = float(roc_auc_score(codes, proba[:, 1]))
    elif len(present) == len(classes) > 2:
        out["roc_auc"] = float(roc_auc_score(codes, proba, multi_class="ovr", average="macro"))
    out["confusion"] = confusion(y, pred, classes)
    return out


def confusion(y: Sequence[str], pred: Sequence[str], classes: tuple[str, ...]) -> list[list[int]]:
    """Counts ``[true][predicted]`` in ``classes`` order."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(np.asarray(y), np.asarray(pred), labels=list(classes)).tolist()
