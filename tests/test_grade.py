"""Grade: morphology features with known answers, JSON classifiers, patient-grouped folds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from micronet.errors import InputError, MicronetError
from micronet.grade import FEATURES, feature_definitions, fit_model, image_features
from micronet.grade.classifier import GradeModel
from micronet.grade.cv import patient_folds, scores
from micronet.grade.features import read_feature_table, write_feature_table

MPP = 0.5


def test_every_feature_has_a_one_line_definition():
    defs = feature_definitions()
    assert tuple(defs) == FEATURES and len(FEATURES) == 12
    assert all(len(text) > 20 and "\n" not in text for text in defs.values())


def test_circle_is_round_solid_and_lumen_free():
    labels = np.zeros((200, 200), np.int32)
    labels[disk((100, 100), 40)] = 1
    f = image_features(labels, mpp=MPP)
    assert f["gland_count"] == 1
    assert f["eccentricity"] < 0.05
    assert f["solidity"] > 0.98 and f["convexity"] > 0.95
    assert f["lumen_fraction"] == 0 and f["irregular_fraction"] == 0
    assert f["area_log_mean"] == pytest.approx(math.log10(math.pi * 40**2 * MPP**2), abs=0.01)
    assert f["gland_fraction"] == pytest.approx(math.pi * 40**2 / 200**2, rel=0.02)
    assert f["nn_distance"] == pytest.approx(math.hypot(200, 200) * MPP)  # one gland: diagonal


def test_ellipse_eccentricity():
    labels = np.zeros((200, 200), np.int32)
    labels[ellipse(100, 100, 60, 30)] = 1  # semi-axes 60, 30: e = sqrt(1 - 1/4)
    assert image_features(labels, mpp=MPP)["eccentricity"] == pytest.approx(0.866, abs=0.01)


def test_ring_lumen_fraction_from_the_hole_and_from_pale_pixels():
    labels = np.zeros((200, 200), np.int32)
    labels[disk((100, 100), 60)] = 1
    labels[disk((100, 100), 30)] = 0  # a hole: 1/4 of the filled disk
    assert image_features(labels, mpp=MPP)["lumen_fraction"] == pytest.approx(0.25, abs=0.01)
    # the same lumen drawn as pale pixels inside a solid gland
    solid = np.zeros_like(labels)
    solid[disk((100, 100), 60)] = 1
    image = np.full((200, 200, 3), (150, 60, 140), np.uint8)
    image[disk((100, 100), 30)] = (245, 245, 240)
    assert image_features(solid, image, mpp=MPP)["lumen_fraction"] == pytest.approx(0.25,
                                                                                    abs=0.01)


def test_count_density_spacing_and_large_glands():
    labels = np.zeros((300, 300), np.int32)
    centres = [(50, 50), (50, 150), (50, 250), (200, 150)]
    for i, c in enumerate(centres, start=1):
        labels[disk(c, 20)] = i
    labels[2:4, 2:4] = 5  # a 4 px speck: not a gland
    f = image_features(labels, mpp=MPP)
    assert f["gland_count"] == 4
    assert f["gland_density"] == pytest.approx(4 / (300 * 300 * MPP**2) * 1e6)
    assert f["nn_distance"] == pytest.approx(100 * MPP, abs=0.5)
    assert f["large_fraction"] == 0 and f["area_cv"] < 0.02
    big = np.zeros((600, 600), np.int32)
    big[disk((300, 300), 200)] = 1  # 31,400 µm² at 0.5 µm/px: over the large-gland cut
    big[disk((50, 50), 20)] = 2
    assert image_features(big, mpp=MPP)["large_fraction"] > 0.95


def test_no_glands_gives_nan_shapes_and_zero_counts():
    f = image_features(np.zeros((64, 64), np.int32))
    assert f["gland_count"] == 0 and f["gland_fraction"] == 0 and f["large_fraction"] == 0
    assert math.isnan(f["eccentricity"]) and math.isnan(f["lumen_fraction"])


def test_tissue_excludes_white_background(synthetic_glands):
    image, labels = synthetic_glands
    blank = image.copy()
    blank[:, 128:] = 250  # right half: empty slide
    labels = np.where(np.arange(256)[None, :] < 128, labels, 0)
    f_full = image_features(labels, mpp=MPP)
    f_blank = image_features(labels, blank, mpp=MPP)
    assert f_blank["gland_fraction"] > 1.8 * f_full["gland_fraction"]


@pytest.mark.parametrize("labels,image,mpp,match", [
    (np.zeros((8, 8), np.float32), None, 0.5, "integer instance map"),
    (np.zeros((8, 8, 3), np.int32), None, 0.5, "integer instance map"),
    (np.full((8, 8), -1, np.int32), None, 0.5, ">= 0"),
    (np.zeros((8, 8), np.int32), np.zeros((8, 9, 3), np.uint8), 0.5, "matching labels"),
    (np.zeros((8, 8), np.int32), None, 0.0, "mpp"),
])
def test_bad_feature_inputs_are_one_line_errors(labels, image, mpp, match):
    with pytest.raises(InputError, match=match) as info:
        image_features(labels, image, mpp=mpp)
    assert "\n" not in str(info.value)


def _toy(rng, n=60):
    x = rng.normal(size=(n, len(FEATURES)))
    y = np.where(x[:, 0] + 0.5 * x[:, 3] + rng.normal(scale=0.5, size=n) > 0, "malignant",
                 "benign")
    grade = np.array(["a", "b", "c"])[np.digitize(x[:, 0], [-0.5, 0.5])]
    return x, y, grade


@pytest.mark.parametrize("kind", ["logistic", "gradient_boosting"])
def test_json_models_reproduce_sklearn(rng, kind):
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y, grade = _toy(rng)
    x[3, 2] = np.nan
    for target in (y, grade):
        model = fit_model(x, target, FEATURES, kind)
        again = GradeModel.from_dict(json.loads(json.dumps(model.to_dict())))
        filled = np.where(np.isnan(x), np.nanmedian(x, axis=0), x)
        codes = np.unique(target, return_inverse=True)[1]
        if kind == "logistic":
            scaler = StandardScaler().fit(filled)
            ref = LogisticRegression(max_iter=5000).fit(scaler.transform(filled), codes)
            expected = ref.predict_proba(scaler.transform(filled))
        else:
            ref = GradientBoostingClassifier(n_estimators=100, max_depth=2, learning_rate=0.05,
                                             random_state=0).fit(filled, codes)
            expected = ref.predict_proba(filled)
        np.testing.assert_allclose(again.predict_proba(x), expected, atol=1e-9)
        assert again.predict(x[:2]) == list(np.asarray(again.classes)[expected[:2].argmax(1)])
        contrib = again.contributions(x)
        assert contrib.shape == (len(x), len(FEATURES)) and np.isfinite(contrib).all()
        raw, per_class = again.raw(x)  # contributions + one constant per class = raw score
        bias = raw - per_class.sum(-1)
        np.testing.assert_allclose(bias, np.broadcast_to(bias[:1], bias.shape), atol=1e-9)


def test_logistic_contributions_sum_to_the_log_odds(rng):
    x, y, _ = _toy(rng)
    model = fit_model(x, y, FEATURES, "logistic")
    p = model.predict_proba(x)[:, 1]
    log_odds = model.contributions(x).sum(1) + model.params["intercept"][0]
    np.testing.assert_allclose(log_odds, np.log(p / (1 - p)), atol=1e-9)


def test_damaged_model_dict_is_a_one_line_error(rng):
    x, y, _ = _toy(rng)
    d = fit_model(x, y, FEATURES, "logistic").to_dict()
    d["params"]["coef"] = [[1.0, 2.0]]
    with pytest.raises(MicronetError, match="not a valid grade model"):
        GradeModel.from_dict(d)
    with pytest.raises(MicronetError, match="unknown model kind"):
        fit_model(x, y, FEATURES, "forest")


@pytest.mark.parametrize("seed", range(5))
def test_patient_folds_never_share_a_patient(seed):
    rng = np.random.default_rng(seed)
    patients = [str(p) for p in rng.integers(0, 15, size=85)]
    y = ["malignant" if int(p) % 3 else "benign" for p in patients]
    folds = patient_folds(y, patients, n_splits=5, seed=seed)
    assert sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(85))
    for train, test in folds:
        assert not {patients[i] for i in train} & {patients[i] for i in test}


def test_patient_folds_reject_too_few_patients():
    with pytest.raises(MicronetError, match="3 patients cannot fill 5 folds"):
        patient_folds(["a", "b"] * 6, ["1", "2", "3"] * 4)


def test_scores_binary_and_confusion():
    s = scores(["benign", "malignant", "malignant", "benign"],
               np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]),
               ("benign", "malignant"))
    assert s["accuracy"] == 0.5 and s["balanced_accuracy"] == 0.5 and s["roc_auc"] == 0.75
    assert s["confusion"] == [[1, 1], [1, 1]]


def test_feature_table_round_trip_and_errors(tmp_path):
    rows = [{"name": "a", **dict.fromkeys(FEATURES, 0.123456789123), "eccentricity": math.nan}]
    write_feature_table(tmp_path / "t.csv", rows)
    back = read_feature_table(tmp_path / "t.csv")
    assert back[0]["name"] == "a" and back[0]["solidity"] == pytest.approx(0.123456789, abs=1e-9)
    assert math.isnan(back[0]["eccentricity"])
    (tmp_path / "bad.csv").write_text("name,solidity\na,1\n")
    with pytest.raises(InputError, match="missing feature columns"):
        read_feature_table(tmp_path / "bad.csv")
