"""Batch runs into one output folder: outputs tied to their input, a summary that accumulates."""

from __future__ import annotations

import csv
import json
import multiprocessing
import sys

import numpy as np
import pytest
from PIL import Image

from fakes import PurpleGlandModel
from micronet._io import read_labels
from micronet.infer.batch import segment_inputs
from micronet.infer.outputs import MANIFEST, OutputFolder, is_done, record_done


def _segmenter(**kw):
    """The deterministic fake model (glands = purple pixels), no tissue mask."""
    import inspect

    from micronet.infer import Segmenter

    if "tissue" in inspect.signature(Segmenter).parameters:
        kw["tissue"] = False
    return Segmenter(PurpleGlandModel(64), device="cpu", **kw)


@pytest.fixture
def segmenter():
    return _segmenter()


def _image(shape: tuple[int, int], blobs: list[tuple[int, int, int]]) -> np.ndarray:
    """Pale pink with purple squares (row, col, size): one gland each."""
    image = np.full((*shape, 3), (235, 200, 225), np.uint8)
    for r, c, s in blobs:
        image[r:r + s, c:c + s] = (150, 60, 140)
    return image


def _save(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def _summary(out) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "summary.csv").open()))


def _run(inputs, out, segmenter, **kw) -> tuple[list[str], list[str]]:
    lines: list[str] = []
    errors = segment_inputs(inputs, out, segmenter, echo=lines.append, **kw)
    return errors, lines


def test_a_different_input_with_a_taken_name_gets_its_own_outputs(tmp_path, segmenter):
    b = _save(tmp_path / "b" / "x.png", _image((96, 80), [(10, 10, 30)]))
    a = _save(tmp_path / "a" / "x.png", _image((64, 120), [(5, 5, 20), (30, 60, 25)]))
    out = tmp_path / "R"
    assert _run([b], out, segmenter)[0] == []
    errors, lines = _run([a], out, segmenter)
    assert errors == [] and lines == [f"{a}: 2 glands (outputs a_x_*)"]
    assert read_labels(out / "x_labels.png").shape == (96, 80)  # still b's
    assert read_labels(out / "a_x_labels.png").shape == (64, 120)
    rows = {r["input"]: r for r in _summary(out)}
    assert (rows[str(b)]["name"], rows[str(b)]["glands"]) == ("x", "1")
    assert (rows[str(a)]["name"], rows[str(a)]["glands"]) == ("a_x", "2")
    # a third input with the same stem in a folder named like the second: a numbered name
    c = _save(tmp_path / "c" / "a" / "x.png", _image((50, 50), []))
    assert _run([c], out, segmenter, formats=("csv",))[0] == []
    assert {r["input"]: r["name"] for r in _summary(out)}[str(c)] == "c_a_x"


def test_the_summary_accumulates_over_calls_and_is_updated_in_place(tmp_path, segmenter):
    one = _save(tmp_path / "in" / "one.png", _image((64, 64), [(5, 5, 20)]))
    two = _save(tmp_path / "in" / "two.png", _image((64, 64), [(5, 5, 20), (40, 40, 20)]))
    out = tmp_path / "out"
    _run([one], out, segmenter)
    _run([two], out, segmenter)
    rows = _summary(out)
    assert [(r["name"], r["status"], r["glands"]) for r in rows] == [("one", "ok", "1"),
                                                                     ("two", "ok", "2")]
    assert all(float(r["gland_area_px"]) > 0 and r["segmented_at"] for r in rows)
    # `one` changes: redone (not skipped), its row updated where it was
    _save(one, _image((64, 64), [(5, 5, 20), (40, 5, 20), (5, 40, 20)]))
    _run([one, two], out, segmenter)
    assert [(r["name"], r["glands"]) for r in _summary(out)] == [("one", "3"), ("two", "2")]
    assert read_labels(out / "one_labels.png").max() == 3


def test_same_command_twice_gives_the_same_folder(tmp_path, segmenter, capsys):
    folder = tmp_path / "in"
    for i in range(3):
        _save(folder / f"t{i}.png", _image((64, 64), [(5, 5, 10 + 5 * i)]))
    out = tmp_path / "out"
    _run([folder], out, segmenter)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    errors, lines = _run([folder], out, segmenter)
    assert errors == [] and lines == []  # nothing redone
    assert capsys.readouterr().err.count("skipped") == 3
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before


def test_an_interrupted_run_is_completed_and_partial_outputs_redone(tmp_path, segmenter,
                                                                    monkeypatch):
    import micronet.infer.export as export

    folder = tmp_path / "in"
    for i in range(3):
        _save(folder / f"t{i}.png", _image((64, 64), [(5, 5, 20)] * (i + 1)))
    out = tmp_path / "out"
    real = export.export_segmentation

    def crash_on_t1(result, image, out_dir, name, formats):
        if name == "t1":  # half the outputs, then the user presses Ctrl-C
            (out_dir / "t1_labels.png").write_bytes(b"partial")
            raise KeyboardInterrupt
        return real(result, image, out_dir, name, formats)

    monkeypatch.setattr(export, "export_segmentation", crash_on_t1)
    with pytest.raises(KeyboardInterrupt):
        _run([folder], out, segmenter)
    assert [r["name"] for r in _summary(out)] == ["t0"]  # recorded before the interruption
    monkeypatch.setattr(export, "export_segmentation", real)
    errors, lines = _run([folder], out, segmenter)
    assert errors == [] and [line.split(":")[0] for line in lines] == [str(folder / "t1.png"),
                                                                        str(folder / "t2.png")]
    assert read_labels(out / "t1_labels.png").shape == (64, 64)
    assert [r["name"] for r in _summary(out)] == ["t0", "t1", "t2"]


def test_outputs_are_redone_when_deleted_or_made_with_other_settings(tmp_path, segmenter):
    path = _save(tmp_path / "in" / "x.png", _image((64, 64), [(5, 5, 20)]))
    out = tmp_path / "out"
    _run([path], out, segmenter)
    (out / "x_overlay.png").unlink()
    assert _run([path], out, segmenter)[1] == [f"{path}: 1 glands"]
    assert (out / "x_overlay.png").exists()
    assert _run([path], out, segmenter, mpp=0.5)[1] == [f"{path}: 1 glands"]
    other = _segmenter(postprocess={"min_size": 10_000})
    assert _run([path], out, other)[1] == [f"{path}: 0 glands"]
    assert _run([path], out, segmenter, overwrite=True)[1] == [f"{path}: 1 glands"]


def test_missing_paths_and_empty_folders_get_rows_until_found(tmp_path, segmenter):
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "later.png"
    out = tmp_path / "out"
    errors, _ = _run([empty, missing, str(tmp_path / "*.nothing")], out, segmenter)
    assert len(errors) == 3
    rows = _summary(out)
    assert [(r["input"], r["status"]) for r in rows] == [
        (str(empty), "missing"), (str(missing), "missing"),
        (str(tmp_path / "*.nothing"), "missing")]
    assert "file not found" in rows[1]["error"] and "no images" in rows[0]["error"]
    _save(missing, _image((64, 64), [(5, 5, 20)]))
    _save(empty / "y.png", _image((64, 64), []))
    assert _run([empty, missing], out, segmenter)[0] == []
    rows = {r["input"]: r["status"] for r in _summary(out)}
    assert rows == {str(tmp_path / "*.nothing"): "missing", str(missing): "ok",
                    str(empty / "y.png"): "ok"}
    # an input that was segmented and is gone later keeps its row and outputs
    missing.unlink()
    assert _run([missing], out, segmenter)[0] == [f"{missing}: file not found"]
    assert {r["input"]: r["status"] for r in _summary(out)}[str(missing)] == "ok"
    assert (out / "later_labels.png").exists()


def test_a_zero_gland_image_has_the_usual_per_gland_header(tmp_path, segmenter):
    full = _save(tmp_path / "in" / "full.png", _image((64, 64), [(5, 5, 20)]))
    blank = _save(tmp_path / "in" / "blank.png", _image((64, 64), []))
    out = tmp_path / "out"
    for mpp in (None, 0.5):
        _run([full, blank], out, segmenter, mpp=mpp, formats=("csv",))
        headers = [(out / f"{n}_glands.csv").read_text().splitlines()[0] for n in ("full",
                                                                                   "blank")]
        assert headers[0] == headers[1], mpp
        assert len((out / "blank_glands.csv").read_text().splitlines()) == 1
    assert "area_um2" in headers[0] and "mean_r" in headers[0]


def _record_many(out, worker: int) -> None:
    for i in range(5):
        path = out.parent / f"w{worker}_{i}.png"
        record_done(out, path, path.stem, {"input": str(path), "glands": i}, [], ["csv"])


@pytest.mark.skipif(sys.platform == "win32", reason="fork start method")
def test_worker_processes_can_record_into_one_folder(tmp_path):
    """What a Dask cohort run does: each worker records its inputs; none is lost."""
    out = tmp_path / "out"
    for w in range(4):
        for i in range(5):
            (tmp_path / f"w{w}_{i}.png").write_bytes(b"x")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(out, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    manifest = json.loads((out / MANIFEST).read_text())
    assert len(manifest["inputs"]) == 20 and len(_summary(out)) == 20
    assert is_done(tmp_path / "w3_4.png", out, ["csv"])
    assert not is_done(tmp_path / "w3_4.png", out, ["csv", "overlay"])
    (tmp_path / "w3_4.png").write_bytes(b"changed")
    assert not is_done(tmp_path / "w3_4.png", out, ["csv"])


def test_a_corrupt_manifest_is_a_one_line_error(tmp_path):
    from micronet.errors import MicronetError

    (tmp_path / MANIFEST).parent.mkdir(parents=True)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(MicronetError, match="unreadable output manifest"):
        OutputFolder(tmp_path)
