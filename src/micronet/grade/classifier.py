"""Grade classifiers stored as plain JSON (no pickle): fit with scikit-learn, predict with numpy.

Two kinds, each a dict of numbers that reproduces scikit-learn's ``predict_proba``:

- ``logistic``: missing values filled with the training medians, standardised with the training
  means and scales (``StandardScaler``), then ``LogisticRegression`` coefficients and
  intercepts; a feature's contribution is ``coef · z`` (log-odds relative to the average image).
- ``gradient_boosting``: ``GradientBoostingClassifier`` trees exported node by node (feature,
  threshold, left, right, value) with the learning rate and the initial raw score; a feature's
  contribution is the change in raw score at the splits on it along each tree's path (Saabas).

Binary models give the probability of ``classes[1]``; multi-class ones a softmax over
``classes``. Loading checks the format and shapes, so a damaged file fails with one line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MicronetError

__all__ = ["GradeModel", "fit_model", "MODEL_KINDS"]

MODEL_KINDS = ("logistic", "gradient_boosting")


@dataclass
class GradeModel:
    """A fitted classifier over named features, as numbers only.

    Attributes:
        kind: ``"logistic"`` or ``"gradient_boosting"``.
        features: input feature names, in column order.
        classes: class names; binary models score ``classes[1]``.
        impute: per-feature value used for NaN (training medians).
        params: the kind's numbers (see the module docstring) and its hyper-parameters.
    """

    kind: str
    features: tuple[str, ...]
    classes: tuple[str, ...]
    impute: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def _matrix(self, rows: Any) -> np.ndarray:
        """``(N, F) float64`` from a 2-D array or a list of ``{feature: value}`` dicts."""
        if isinstance(rows, dict):
            rows = [rows]
        if len(rows) and isinstance(rows[0], dict):
            missing = [f for f in self.features if f not in rows[0]]
            if missing:
                raise MicronetError(f"features missing: {', '.join(missing)}")
            rows = [[r[f] for f in self.features] for r in rows]
        x = np.asarray(rows, dtype=np.float64).reshape(-1, len(self.features))
        return np.where(np.isnan(x), self.impute, x)

    def raw(self, rows: Any) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores ``(N, K)`` (K = 1 for binary) and per-feature contributions ``(N, K, F)``."""
        x = self._matrix(rows)
        p = self.params
        if self.kind == "logistic":
            z = (x - np.asarray(p["mean"])) / np.asarray(p["scale"])
            coef = np.asarray(p["coef"])  # (K, F)
            contrib = z[:, None, :] * coef[None]
            return contrib.sum(-1) + np.asarray(p["intercept"]), contrib
        k = len(p["init"])
        score = np.tile(np.asarray(p["init"], float), (len(x), 1))
        contrib = np.zeros((len(x), k, len(self.features)))
        for stage in p["trees"]:
            for c, tree in enumerate(stage):
                values, gains = _tree_path(tree, x)
                score[:, c] += p["learning_rate"] * values
                contrib[:, c] += p["learning_rate"] * gains
        return score, contrib

    def predict_proba(self, rows: Any) -> np.ndarray:
        """Class probabilities ``(N, len(classes))``."""
        score, _ = self.raw(rows)
        if score.shape[1] == 1:
            p1 = 1.0 / (1.0 + np.exp(-score[:, 0]))
            return np.stack([1.0 - p1, p1], axis=1)
        e = np.exp(score - score.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, rows: Any) -> list[str]:
        """Most probable class name per row."""
        return [self.classes[i] for i in self.predict_proba(rows).argmax(axis=1)]

    def contributions(self, rows: Any) -> np.ndarray:
        """``(N, F)`` per-feature raw-score contributions toward the predicted (binary:
        positive) class; positive pushes toward it."""
        score, contrib = self.raw(rows)
        if score.shape[1] == 1:
            return contrib[:, 0]
        return contrib[np.arange(len(score)), score.argmax(axis=1)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists of floats)."""
        return {"kind": self.kind, "features": list(self.features), "classes": list(self.classes),
                "impute": [float(v) for v in self.impute], "params": self.params}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "model") -> GradeModel:
        """Inverse of :meth:`to_dict`, checking kind and shapes.

        Raises:
            MicronetError: unknown kind, or arrays whose shapes do not match the features.
        """
        try:
            kind, features, classes = d["kind"], tuple(d["features"]), tuple(d["classes"])
            impute = np.asarray(d["impute"], dtype=np.float64)
            params = d["params"]
            if kind not in MODEL_KINDS:
                raise ValueError(f"unknown kind {kind!r}")
            k = 1 if len(classes) == 2 else len(classes)
            if impute.shape != (len(features),):
                raise ValueError("impute does not match the features")
            if kind == "logistic":
                if np.asarray(params["coef"]).shape != (k, len(features)) or \
                        len(params["intercept"]) != k or len(params["mean"]) != len(features):
                    raise ValueError("coefficients do not match the features and classes")
            elif len(params["init"]) != k or any(len(s) != k for s in params["trees"]):
                raise ValueError("trees do not match the classes")
        except (KeyError, TypeError, ValueError) as exc:
            raise MicronetError(f"{source}: not a valid grade model ({exc})") from None
        return cls(kind, features, classes, impute, params)


def _tree_path(tree: dict[str, list], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leaf values ``(N,)`` and per-feature value changes along each row's path ``(N, F)``."""
    feature, threshold = np.asarray(tree["feature"]), np.asarray(tree["threshold"])
    left, right, value = (np.asarray(tree[k]) for k in ("left", "right", "value"))
    node = np.zeros(len(x), dtype=np.int64)
    gains = np.zeros(x.shape)
    rows = np.arange(len(x))
    while True:
        inner = left[node] >= 0
        if not inner.any():
            return value[node], gains
        f = feature[node[inner]]
        go_left = x[rows[inner], f] <= threshold[node[inner]]
        child = np.where(go_left, left[node[inner]], right[node[inner]])
        gains[rows[inner], f] += value[child] - value[node[inner]]
        node[inner] = child


def fit_model(x: np.ndarray, y: list[str] | np.ndarray, features: tuple[str, ...], kind: str,
              classes: tuple[str, ...] | None = None, **hyper: Any) -> GradeModel:
    """Fit one classifier with scikit-learn and export it to a :class:`GradeModel`.

    Args:
        x: ``(N, F)`` feature matrix (NaN allowed: filled with the column medians).
        y: ``N`` class names.
        features: the column names.
        kind: ``"logistic"`` (hyper: ``C``) or ``"gradient_boosting"`` (hyper:
            ``n_estimators``, ``max_depth``, ``learning_rate``, ``subsample``).
        classes: class order (default: sorted unique ``y``); binary scores ``classes[1]``.
        hyper: the kind's hyper-parameters; ``random_state`` defaults to 0.
    """
    y = np.asarray(y)
    classes = tuple(classes) if classes is not None else tuple(sorted(set(y.tolist())))
    x = np.asarray(x, dtype=np.float64)
    impute = np.nanmedian(x, axis=0)
    impute = np.where(np.isnan(impute), 0.0, impute)
    x = np.where(np.isnan(x), impute, x)
    codes = np.array([classes.index(v) for v in y])
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(x)
        clf = LogisticRegression(C=float(hyper.get("C", 1.0)), max_iter=5000)
        clf.fit(scaler.transform(x), codes)
        params: dict[str, Any] = {
            "hyper": {"C": float(hyper.get("C", 1.0))},
            "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
            "coef": clf.coef_.tolist(), "intercept": clf.intercept_.tolist()}
    elif kind == "gradient_boosting":
        from sklearn.ensemble import GradientBoostingClassifier

        hyper = {"n_estimators": 100, "max_depth": 2, "learning_rate": 0.05, "subsample": 1.0,
                 "random_state": 0, **hyper}
        clf = GradientBoostingClassifier(**hyper).fit(x, codes)
        trees = [[_export_tree(est.tree_) for est in stage] for stage in clf.estimators_]
        params = {"hyper": hyper, "learning_rate": float(clf.learning_rate), "trees": trees,
                  "init": [0.0] * clf.estimators_.shape[1]}
        model = GradeModel(kind, tuple(features), classes, impute, params)
        # the initial raw score is what the trees do not explain (constant over rows)
        decision = clf.decision_function(x).reshape(len(x), -1)
        params["init"] = (decision - model.raw(x)[0]).mean(axis=0).tolist()
    else:
        raise MicronetError(f"unknown model kind {kind!r}; choose from {', '.join(MODEL_KINDS)}")
    return GradeModel(kind, tuple(features), classes, impute, params)


def _export_tree(tree: Any) -> dict[str, list]:
    return {"feature": tree.feature.tolist(), "threshold": tree.threshold.tolist(),
            "left": tree.children_left.tolist(), "right": tree.children_right.tolist(),
            "value": tree.value[:, 0, 0].tolist()}


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON object from ``path``, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise MicronetError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MicronetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MicronetError(f"{path}: expected a JSON object")
    return data
