"""The shipped GlaS grader: plain JSON, no pickle, and it reproduces its recorded test scores."""

from __future__ import annotations

import json
import pickle

import pytest

from micronet._io import sha256_file
from micronet.grade import FEATURES, feature_definitions, load_grader
from micronet.grade.features import read_feature_table
from micronet.grade.grader import shipped_grader_path


@pytest.fixture(scope="module")
def shipped():
    return load_grader()


def test_shipped_grader_is_json_and_loads_without_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    doc = json.loads(shipped_grader_path().read_text())
    assert doc["format"] == "micronet-grade"
    grader = load_grader()
    assert grader.features == FEATURES == tuple(doc["features"])
    assert doc["feature_definitions"] == feature_definitions()
    assert grader.malignancy.classes == ("benign", "malignant")
    assert len(grader.grade.classes) == 5
    assert doc["pred_source"]["weights_sha256"]  # which segmenter produced the pred rows


def test_recorded_inputs_are_the_ones_scored(shipped):
    record = shipped.meta["test_features"]
    path = shipped_grader_path().with_name(record["file"])
    assert sha256_file(path) == record["sha256"]


@pytest.mark.parametrize("source", ["gt", "pred"])
@pytest.mark.parametrize("split", ["testA", "testB"])
def test_shipped_grader_reproduces_its_recorded_scores(shipped, source, split):
    path = shipped_grader_path().with_name(shipped.meta["test_features"]["file"])
    rows = [r for r in read_feature_table(path) if r["source"] == source and r["split"] == split]
    assert len(rows) == {"testA": 60, "testB": 20}[split]
    got = shipped.score(rows)
    recorded = shipped.meta["scores"][source][split]
    for task in ("malignancy", "grade"):
        assert got[task]["confusion"] == recorded[task]["confusion"]
        for metric in ("accuracy", "balanced_accuracy", "roc_auc"):
            if metric in recorded[task]:
                assert got[task][metric] == pytest.approx(recorded[task][metric], abs=1e-12)
