"""`micronet grade` end to end, and `segment --grade`'s summary column."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from fakes import PurpleGlandModel
from micronet.cli import main
from micronet.grade import FEATURES, Grader, fit_model, grade_image


@pytest.fixture(scope="module")
def grader_file(tmp_path_factory):
    """A small grader fitted on random features (the CLI's plumbing, not the shipped numbers)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, len(FEATURES)))
    y = np.where(x[:, 0] > 0, "malignant", "benign")
    grades = np.array(["healthy", "adenomatous", "poorly differentiated"])[rng.integers(0, 3, 40)]
    grader = Grader(fit_model(x, y, FEATURES, "logistic"),
                    fit_model(x, grades, FEATURES, "logistic"), {"note": "test"})
    path = tmp_path_factory.mktemp("grader") / "grader.json"
    grader.save(path)
    return path


@pytest.fixture
def inputs(tmp_path, synthetic_glands):
    image, labels = synthetic_glands
    folder, label_dir = tmp_path / "in", tmp_path / "labels"
    folder.mkdir()
    label_dir.mkdir()
    Image.fromarray(image).save(folder / "a.png")
    Image.fromarray(image[:160, :200]).save(folder / "b.png")
    Image.fromarray(labels.astype(np.uint16)).save(label_dir / "a_labels.png")
    Image.fromarray(labels[:160, :200].astype(np.uint16)).save(label_dir / "b.png")
    return folder, label_dir


def _rows(path):
    return list(csv.DictReader(path.open()))


def test_grade_from_label_maps(inputs, tmp_path, grader_file, capsys):
    folder, label_dir = inputs
    out = tmp_path / "out"
    assert main(["grade", str(folder), "--out", str(out), "--labels", str(label_dir),
                 "--grader", str(grader_file)]) == 0
    (a,) = _rows(out / "a_grade.csv")
    assert a["status"] == "ok" and a["glands_source"].endswith("a_labels.png")
    assert 0 <= float(a["p_malignant"]) <= 1
    assert a["grade"] in ("healthy", "adenomatous", "poorly differentiated")
    assert int(float(a["gland_count"])) == 5
    assert len(a["top_features"].split("; ")) == 3
    assert [r["name"] for r in _rows(out / "grades.csv")] == ["a", "b"]
    assert "a.png: p(malignant)" in capsys.readouterr().out


def test_grade_segments_with_a_model(inputs, tmp_path, grader_file):
    from micronet.grade.batch import grade_files
    from micronet.grade.grader import load_grader
    from micronet.infer import Segmenter

    folder, _ = inputs
    segmenter = Segmenter(PurpleGlandModel(64), device="cpu")  # glands = purple pixels
    lines = []
    assert grade_files([folder / "a.png"], tmp_path / "out", load_grader(grader_file),
                       segmenter=segmenter, echo=lines.append) == []
    (a,) = _rows(tmp_path / "out" / "a_grade.csv")
    assert a["glands_source"].startswith("segmented")
    assert int(float(a["gland_count"])) == 4  # the touching pair is one purple blob
    assert lines and lines[0].startswith(f"{folder / 'a.png'}: p(malignant)")


def test_bad_inputs_get_one_line_each_and_the_rest_is_graded(inputs, tmp_path, grader_file,
                                                            capsys):
    folder, label_dir = inputs
    (folder / "c.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((10, 10), np.uint16)).save(label_dir / "c.png")
    out = tmp_path / "out"
    code = main(["grade", str(folder), str(tmp_path / "missing.png"), "--out", str(out),
                 "--labels", str(label_dir), "--grader", str(grader_file)])
    captured = capsys.readouterr()
    err = captured.out + captured.err
    assert code == 1
    assert "missing.png: file not found" in err and "c.png: not a readable image" in err
    statuses = {r["name"]: r["status"] for r in _rows(out / "grades.csv")}
    assert statuses["a"] == "ok" and statuses["b"] == "ok" and statuses["c"].startswith("error")
    assert not (out / "c_grade.csv").exists()


def test_label_map_of_another_size_is_an_error(inputs, tmp_path, grader_file, capsys):
    folder, label_dir = inputs
    Image.fromarray(np.zeros((10, 10), np.uint16)).save(label_dir / "b.png")
    assert main(["grade", str(folder / "b.png"), "--out", str(tmp_path / "o"), "--labels",
                 str(label_dir), "--grader", str(grader_file)]) == 1
    captured = capsys.readouterr()
    assert "does not match" in captured.out + captured.err


@pytest.mark.parametrize("text,match", [("{", "not valid JSON"),
                                        ('{"format": "other"}', "not a micronet grade"),
                                        ('{"format": "micronet-grade"}', "needs models")])
def test_bad_grader_file_is_one_line(tmp_path, inputs, text, match, capsys):
    folder, label_dir = inputs
    bad = tmp_path / "g.json"
    bad.write_text(text)
    assert main(["grade", str(folder), "--out", str(tmp_path / "o"), "--labels",
                 str(label_dir), "--grader", str(bad)]) == 1
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert match in out and len(out.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_grade_image_api_with_shipped_grader(synthetic_glands):
    image, labels = synthetic_glands
    result = grade_image(image, labels)
    assert 0 <= result["p_malignant"] <= 1 and result["gland_count"] == 5
    assert set(FEATURES) <= set(result)


def test_segment_summary_gets_grade_columns(inputs, tmp_path, grader_file):
    from micronet.grade.grader import load_grader
    from micronet.infer import Segmenter
    from micronet.infer.batch import segment_files

    folder, _ = inputs
    out = tmp_path / "seg"
    segmenter = Segmenter(PurpleGlandModel(64), device="cpu")
    assert segment_files([folder / "a.png"], out, segmenter, ("csv", "labels"),
                         grader=load_grader(grader_file), echo=lambda line: None) == []
    (row,) = _rows(out / "summary.csv")
    assert 0 <= float(row["p_malignant"]) <= 1 and row["grade"]
    graded = tmp_path / "graded"
    grade_files_rows = main(["grade", str(folder / "a.png"), "--out", str(graded), "--labels",
                             str(out), "--grader", str(grader_file)])
    assert grade_files_rows == 0  # segment's NAME_labels.png feeds `grade --labels`
    assert _rows(graded / "a_grade.csv")[0]["p_malignant"] == row["p_malignant"]
