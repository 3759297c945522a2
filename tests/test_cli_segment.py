"""`micronet segment` and `micronet bench segment` end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fakes import PurpleGlandModel, write_pyramid
from micronet._io import read_labels
from micronet.cli import main

OUTPUTS = ("{}_labels.png", "{}_overlay.png", "{}.geojson", "{}_glands.csv")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from micronet.models import create
    from micronet.models.weights_io import save_weights

    torch.manual_seed(0)
    model = create("micronet508", width=1 / 16)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(model.state_dict(), path, {"arch": "micronet508", "width": str(1 / 16),
                                            "num_classes": "3"})
    return str(path)


@pytest.fixture
def purple(monkeypatch):
    """Make `--weights purple` build the deterministic fake model (glands = purple pixels)."""
    import micronet.infer.segmenter as segmenter
    from micronet.models import WeightsCard

    real = segmenter.resolve_model

    def resolve(model, width, weights):
        if weights == "purple":
            return PurpleGlandModel(64), WeightsCard(name="purple")
        return real(model, width, weights)

    monkeypatch.setattr(segmenter, "resolve_model", resolve)
    return "purple"


@pytest.fixture
def inputs(tmp_path, synthetic_glands):
    image, _ = synthetic_glands
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(image).save(folder / "a.png")
    Image.fromarray(image[:120, :200]).save(folder / "b.jpg", quality=95)
    return folder


def run(*args: str) -> int:
    return main(["segment", *args])


def test_segment_folder_with_weights_file(inputs, tmp_path, weights, capsys):
    out = tmp_path / "out"
    assert run(str(inputs), "--out", str(out), "--weights", weights, "--device", "cpu") == 0
    for name in ("a", "b"):
        for pattern in OUTPUTS:
            assert (out / pattern.format(name)).is_file(), pattern.format(name)
    assert read_labels(out / "a_labels.png").shape == (256, 256)
    assert read_labels(out / "b_labels.png").shape == (120, 200)
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".micronet"]
    assert sorted(p.name for p in (out / ".micronet").iterdir()) == ["lock", "manifest.json"]
    assert "a.png:" in capsys.readouterr().out


def test_same_file_names_in_different_folders_get_distinct_outputs(inputs, tmp_path, purple,
                                                                    capsys):
    other = tmp_path / "other"
    other.mkdir()
    image = np.asarray(Image.open(inputs / "a.png"))
    Image.fromarray(image[:100, :100]).save(other / "a.png")
    Image.fromarray(image[:80, :90]).save(other / "a.bmp")
    out = tmp_path / "out"
    assert run(str(inputs / "a.png"), str(other), "--out", str(out), "--weights", purple,
               "--device", "cpu") == 0
    shapes = {p.name: read_labels(p).shape for p in out.glob("*_labels.png")}
    assert shapes == {"a_labels.png": (256, 256), "a_png_labels.png": (100, 100),
                      "a_bmp_labels.png": (80, 90)}
    assert "(outputs a_bmp_*)" in " ".join(capsys.readouterr().out.split())


def test_output_names_are_stems_unless_they_collide(tmp_path):
    from micronet.infer.batch import output_names

    a, b, c = tmp_path / "x" / "s1.png", tmp_path / "y" / "s1.png", tmp_path / "x" / "s2.png"
    assert output_names([a, b, c]) == {a: "x_s1", b: "y_s1", c: "s2"}
    deep = [tmp_path / "p" / "q" / "s.png", tmp_path / "r" / "q" / "s.png"]
    assert output_names(deep) == dict(zip(deep, ["p_q_s", "r_q_s"], strict=True))


def test_outputs_agree_with_each_other(inputs, tmp_path, purple, synthetic_glands):
    out = tmp_path / "out"
    assert run(str(inputs / "a.png"), "--out", str(out), "--weights", purple, "--mpp",
               "0.6") == 0
    labels = read_labels(out / "a_labels.png")
    _, truth = synthetic_glands
    assert labels.max() == 4  # five glands, the touching pair is one purple blob
    assert np.mean((labels > 0) == (truth > 0)) > 0.99
    features = json.loads((out / "a.geojson").read_text())["features"]
    rows = list(csv.DictReader((out / "a_glands.csv").open()))
    assert len(features) == len(rows) == 4
    for row in rows:
        assert int(row["area_px"]) == np.sum(labels == int(row["id"]))
        assert float(row["area_um2"]) == pytest.approx(int(row["area_px"]) * 0.36, rel=1e-3)
    overlay = np.asarray(Image.open(out / "a_overlay.png"))
    assert overlay.shape == (256, 256, 3)
    (summary,) = list(csv.DictReader((out / "summary.csv").open()))
    assert (summary["name"], summary["status"], summary["kind"]) == ("a", "ok", "image")
    assert int(summary["glands"]) == 4 and float(summary["mpp"]) == 0.6
    assert float(summary["gland_area_px"]) == np.count_nonzero(labels)
    assert float(summary["gland_area_fraction"]) == pytest.approx(np.mean(labels > 0), abs=1e-5)
    assert float(summary["gland_area_um2"]) == pytest.approx(np.count_nonzero(labels) * 0.36)


def test_bad_inputs_fail_alone(inputs, tmp_path, weights, capsys):
    (inputs / "gray.png").write_bytes(b"")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(inputs / "gray.png")
    Image.fromarray(np.zeros((20, 20, 4), np.uint8)).save(inputs / "rgba.png")
    good = (inputs / "a.png").read_bytes()
    (inputs / "cut.png").write_bytes(good[: len(good) // 2])
    Image.fromarray(np.zeros((20, 20), np.uint16)).save(inputs / "deep.tif")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    code = run(str(inputs), str(empty), str(tmp_path / "missing.png"), "--out", str(out),
               "--weights", weights, "--device", "cpu", "--formats", "labels,csv")
    assert code == 1
    err = capsys.readouterr().err
    for name in ("gray.png", "rgba.png", "cut.png", "deep.tif", "empty", "missing.png"):
        assert name in err, name
    assert "5 of 8 input(s) failed" in " ".join(err.split())  # transparent RGBA: on white
    written = sorted(p.name for p in out.iterdir() if p.name != ".micronet")
    assert written == ["a_glands.csv", "a_labels.png", "b_glands.csv", "b_labels.png",
                       "rgba_glands.csv", "rgba_labels.png", "summary.csv"]
    rows = {Path(r["input"]).name: r for r in csv.DictReader((out / "summary.csv").open())}
    assert {k: r["status"] for k, r in rows.items()} == {
        "a.png": "ok", "b.jpg": "ok", "rgba.png": "ok", "gray.png": "error", "cut.png": "error",
        "deep.tif": "error", "empty": "missing", "missing.png": "missing"}
    assert "gray.png" in rows["gray.png"]["error"]
    assert "composited on white" in rows["rgba.png"]["note"]


def test_next_image_is_inferred_while_the_last_is_finished_and_order_is_kept(
        inputs, tmp_path, purple, monkeypatch, capsys):
    """Image 1's finishing waits until image 2's network pass has started: only a pipelined
    loop gets through. Output lines and summary rows stay in input order, and a failure while
    finishing is reported against its own file."""
    import threading

    import micronet.infer.export as export
    from micronet.infer import Segmenter

    started: list[str] = []
    second_started = threading.Event()
    real_infer, real_finish = Segmenter.infer, Segmenter.finish

    def infer(self, image, **kw):
        started.append(threading.current_thread().name)
        if len(started) == 2:
            second_started.set()
        return real_infer(self, image, **kw)

    def finish(self, inference):
        assert threading.current_thread().name.startswith("micronet-finish")
        if len(started) == 1:
            assert second_started.wait(20), "image 2 was not inferred while image 1 finished"
        return real_finish(self, inference)

    real_export = export.export_segmentation  # segment_files imports it at call time

    def export_segmentation(result, image, out, name, formats):
        if name == "c":
            raise OSError(28, "No space left on device")
        return real_export(result, image, out, name, formats)

    monkeypatch.setattr(Segmenter, "infer", infer)
    monkeypatch.setattr(Segmenter, "finish", finish)
    monkeypatch.setattr(export, "export_segmentation", export_segmentation)
    (inputs / "c.png").write_bytes((inputs / "a.png").read_bytes())
    (inputs / "d_cut.png").write_bytes((inputs / "a.png").read_bytes()[:100])
    out = tmp_path / "out"
    files = [inputs / n for n in ("a.png", "b.jpg", "d_cut.png", "c.png")]
    assert run(*map(str, files), "--out", str(out), "--weights", purple, "--formats", "csv") == 1
    assert set(started) == {threading.main_thread().name} and len(started) == 3
    captured = capsys.readouterr()
    lines = [line.split(":")[0] for line in captured.out.splitlines()]
    assert lines == [str(inputs / "a.png"), str(inputs / "b.jpg")]
    assert "c.png: No space left on device" in captured.err
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["name"] for r in rows] == ["a", "b", "d_cut", "c"]
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "error"]
    assert "No space left" in rows[3]["error"]


def test_existing_outputs_are_skipped_unless_overwrite(inputs, tmp_path, weights, capsys):
    out = tmp_path / "out"
    args = [str(inputs / "a.png"), "--out", str(out), "--weights", weights, "--device", "cpu",
            "--formats", "geojson"]
    assert run(*args) == 0
    target = out / "a.geojson"
    target.write_text("{}")  # marker: a skip leaves it alone
    assert run(*args) == 0
    assert target.read_text() == "{}"
    assert "skipped" in capsys.readouterr().err
    assert list(csv.DictReader((out / "summary.csv").open()))[0]["status"] == "ok"
    assert run(*args, "--overwrite") == 0
    assert json.loads(target.read_text())["type"] == "FeatureCollection"


def test_glob_input_and_options(inputs, tmp_path, purple, weights):
    out = tmp_path / "out"
    code = run(str(inputs / "*.png"), "--out", str(out), "--weights", purple,
               "--device", "cpu", "--formats", "csv", "--mpp", "0.5", "--batch-size", "2",
               "--precision", "fp32")
    assert code == 0
    assert sorted(p.name for p in out.glob("[!.]*")) == ["a_glands.csv", "summary.csv"]
    header = (out / "a_glands.csv").read_text().splitlines()[0]
    assert "area_um2" in header  # --mpp given: µm columns
    assert run(str(inputs / "*.nothing"), "--out", str(out), "--weights", weights) == 1
    big = tmp_path / "big.json"  # a min size above every gland: nothing is left
    big.write_text('{"min_size": 1000000}')
    assert run(str(inputs / "a.png"), "--out", str(tmp_path / "big"), "--weights", purple,
               "--formats", "csv", "--postprocess", str(big)) == 0
    (row,) = csv.DictReader((tmp_path / "big" / "summary.csv").open())
    assert row["glands"] == "0"


def test_bad_options_are_one_line_errors(inputs, tmp_path, weights, capsys):
    out = str(tmp_path / "out")
    assert run(str(inputs), "--out", out, "--weights", weights, "--formats", "labels,pdf") == 1
    assert "--formats" in capsys.readouterr().err
    assert run(str(inputs), "--out", out, "--weights", "nosuch") == 1
    assert "no pretrained weights nosuch; shipped weights: micronet252.glas_w025" in \
        capsys.readouterr().err
    assert run(str(inputs), "--out", out, "--weights", str(tmp_path / "nope.safetensors")) == 1


def test_pyramidal_tiff_is_segmented_as_a_slide(tmp_path, weights, capsys):
    from micronet.infer.bench import synthetic_image

    path = write_pyramid(tmp_path / "s.tif", synthetic_image(300), mpp=0.62, downsamples=(2,))
    out = tmp_path / "out"
    assert run(str(path), "--out", str(out), "--weights", weights, "--device", "cpu") == 0
    assert sorted(p.name for p in out.glob("[!.]*")) == ["s.geojson", "s_glands.csv",
                                                     "s_overlay.png", "s_tissue.png",
                                                     "summary.csv"]
    assert "slide, level 0" in capsys.readouterr().out
    (row,) = csv.DictReader((out / "summary.csv").open())
    assert (row["kind"], row["width_px"], row["height_px"], row["mpp"]) == (
        "slide", "300", "300", "0.62")


def test_bench_segment_tiny(capsys):
    assert main(["bench", "segment", "--size", "64", "--widths", "0.0625",
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "MPx/s" in lines[0] and len(lines) == 3
    assert "segmenter" in lines[1] and "plain loop" in lines[2]
    assert lines[1].strip().endswith("x")  # speed ratio against the plain loop


def test_library_segments_a_folder_like_the_cli(inputs, tmp_path, purple):
    """`micronet.infer.batch.segment_inputs` is the pipeline behind the command: same outputs."""
    from micronet.infer import Segmenter
    from micronet.infer.batch import segment_inputs

    cli_out, api_out = tmp_path / "cli", tmp_path / "api"
    assert run(str(inputs), "--out", str(cli_out), "--weights", purple, "--device", "cpu") == 0
    lines: list[str] = []
    errors = segment_inputs([inputs, tmp_path / "missing.png"], api_out,
                            Segmenter(weights=purple, device="cpu"), echo=lines.append)
    assert errors == [f"{tmp_path / 'missing.png'}: file not found"]
    assert [line.split(":")[0] for line in lines] == [str(inputs / "a.png"), str(inputs / "b.jpg")]
    for name in ("a", "b"):
        assert np.array_equal(read_labels(api_out / f"{name}_labels.png"),
                              read_labels(cli_out / f"{name}_labels.png"))
    untimed = [{k: v for k, v in r.items() if k not in ("segmented_at", "seconds")}
               for out in (api_out, cli_out) for r in csv.DictReader((out / "summary.csv").open())]
    api, cli = untimed[:3], untimed[3:]
    assert [r for r in api if r["status"] == "ok"] == cli
    assert [r["input"] for r in api if r["status"] == "missing"] == [str(tmp_path / "missing.png")]
