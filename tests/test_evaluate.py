"""`micronet evaluate` and the evaluation API, end to end on small synthetic folders."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from micronet.cli import main
from micronet.metrics import evaluate_folders, evaluate_model

MILD_NET_ROW = "| MILD-Net (Graham et al. 2019) | 0.914 | 0.913 | 41.5 | 0.844 | 0.836 | 105.9 |"
MICRO_NET_ROW = "| Micro-Net (Raza et al. 2019) | 0.913 | – | – | 0.724 | – | – |"


def _split_gland() -> tuple[np.ndarray, np.ndarray]:
    """One 10x10 gland predicted as a 60 px TP and a 40 px FP (see test_metrics)."""
    gt = np.zeros((12, 12), np.uint8)
    gt[1:11, 1:11] = 7
    pred = np.zeros_like(gt)
    pred[1:11, 1:7], pred[1:11, 7:11] = 3, 9
    return gt, pred


def _fp_blob() -> tuple[np.ndarray, np.ndarray]:
    """A perfect gland plus a 2x2 false positive touching nothing."""
    gt = np.zeros((30, 30), np.uint8)
    gt[:10, :10] = 1
    pred = gt.copy()
    pred[20:22, 20:22] = 2
    return gt, pred


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _rgb(labels: np.ndarray) -> np.ndarray:
    image = np.full(labels.shape + (3,), (235, 200, 225), np.uint8)
    image[labels > 0] = (150, 60, 140)
    return image


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """GT folder (X_anno.png + RGB X.png) and prediction folder (X_labels.png + an overlay)."""
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    for name, (gt, pred) in {"a": _split_gland(), "b": _fp_blob()}.items():
        _save(gt_dir / f"{name}_anno.png", gt)
        _save(gt_dir / f"{name}.png", _rgb(gt))
        _save(pred_dir / f"{name}_labels.png", pred)
        _save(pred_dir / f"{name}_overlay.png", _rgb(pred))  # ignored: not a label file
    return gt_dir, pred_dir


def test_cli_pred_gt_known_answers(folders, tmp_path, capsys):
    gt_dir, pred_dir = folders
    out = tmp_path / "out"
    assert main(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--out", str(out)]) == 0
    assert "all: 2 images" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    split = metrics["splits"]["all"]
    assert (split["n_images"], split["tp"], split["fp"], split["fn"]) == (2, 2, 2, 0)
    # a's 40 % piece is a fragment of a found gland, b's blob lies on background
    assert split["errors"] == {"fn_missed": 0, "fn_merged": 0, "fn_split": 0,
                               "fp_background": 1, "fp_fragment": 1, "fp_piece": 0}
    pooled, mean = split["pooled"], split["image_mean"]
    assert (pooled["f1"], pooled["precision"], pooled["recall"]) == pytest.approx((2 / 3, .5, 1))
    gt_side = (100 * 0.75 + 100 * 1) / 200
    pred_side = (60 * 0.75 + 40 * 80 / 140 + 100 * 1 + 4 * 0) / 204
    assert pooled["object_dice"] == pytest.approx((gt_side + pred_side) / 2)
    hd_gt = (100 * 4 + 100 * 0) / 200
    hd_pred = (60 * 4 + 40 * 6 + 100 * 0 + 4 * math.sqrt(800)) / 204
    assert pooled["object_hausdorff"] == pytest.approx((hd_gt + hd_pred) / 2)
    assert pooled["pixel_f1"] == pytest.approx(400 / 404)
    assert mean["f1"] == pytest.approx(2 / 3)
    assert mean["object_dice"] == pytest.approx((5 / 7 + (1 + 100 / 104) / 2) / 2)
    assert mean["object_hausdorff"] == pytest.approx((4.4 + 4 / 104 * math.sqrt(800) / 2) / 2)
    # the user's own data: named by its folder, no GlaS note (issue 18)
    assert metrics["dataset"] == f"ground truth in {gt_dir}" and not metrics["glas"]
    assert "note" not in metrics
    assert metrics["provenance"]["predictions"] == str(pred_dir)

    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert [(r["split"], r["image"], r["tp"], r["fp"], r["fn"]) for r in rows] == [
        ("all", "a", "1", "1", "0"), ("all", "b", "1", "1", "0")]
    assert float(rows[0]["object_dice"]) == pytest.approx(5 / 7, rel=1e-5)
    assert [(r["fp_fragment"], r["fp_background"]) for r in rows] == [("1", "0"), ("0", "1")]
    assert float(rows[0]["object_hausdorff"]) == pytest.approx(4.4, rel=1e-5)

    report = (out / "report.md").read_text()
    assert report.startswith(f"# Evaluation on ground truth in {gt_dir}\n")
    assert "MILD-Net" not in report and "published" not in report
    assert "reconstructed" not in report and "on GlaS" not in report
    assert "| all | pooled | 2 | 2 / 4 | 0.667 | 0.500 | 1.000 |" in report
    assert "| all | 0 | 0 | 0 | 0 | 2 | 1 | 1 | 0 |" in report  # FN and FP by class
    for figure in ("f1_per_image.png", "best_worst.png"):
        assert Image.open(out / figure).size[0] > 100  # RGB images found beside the GT


def test_without_images_the_overlay_is_skipped(folders, tmp_path):
    gt_dir, pred_dir = folders
    for rgb in ("a.png", "b.png"):
        (gt_dir / rgb).unlink()
    out = tmp_path / "out"
    evaluate_folders(pred_dir, gt_dir, out)
    assert not (out / "best_worst.png").exists() and (out / "f1_per_image.png").exists()
    assert "overlay skipped" in (out / "report.md").read_text()


def _glas_release(root: Path) -> Path:
    """A tiny folder in the official release layout (inside the folder the zip unpacks to)."""
    folder = root / "Warwick QU Dataset (Released 2016_07_08)"
    for name, (gt, _) in {"testA_1": _split_gland(), "testB_1": _fp_blob(),
                          "train_1": _fp_blob()}.items():
        _save(folder / f"{name}_anno.bmp", gt)
        _save(folder / f"{name}.bmp", _rgb(gt))
    return root


@pytest.mark.parametrize("split_args", [["--split", "testA", "testB"], ["--split", "testA,testB"],
                                        []])
def test_cli_data_official_layout(tmp_path, split_args):
    data = _glas_release(tmp_path / "glas")
    pred_dir = tmp_path / "pred"
    _save(pred_dir / "testA_1.png", _split_gland()[1])
    _save(pred_dir / "testB_1.png", _fp_blob()[1])
    _save(pred_dir / "train_1.png", np.zeros((3, 3), np.uint8))  # other split: ignored
    out = tmp_path / "out"
    assert main(["evaluate", "--pred", str(pred_dir), "--data", str(data), *split_args,
                 "--out", str(out)]) == 0
    splits = json.loads((out / "metrics.json").read_text())["splits"]
    assert list(splits) == ["testA", "testB"]
    assert splits["testA"]["pooled"]["object_dice"] == pytest.approx(5 / 7)
    assert splits["testB"]["pooled"]["f1"] == pytest.approx(2 / 3)
    report = (out / "report.md").read_text()
    assert "| **this run (GlaS)** | 0.667 | 0.714 | 4.4 | 0.667 | 0.981 | 0.5 |" in report
    assert MILD_NET_ROW in report and MICRO_NET_ROW in report
    assert "covers 1 of Test A's 60 and 1 of Test B's 20 images" in report
    assert "reconstructed" not in report  # official annotations
    assert (out / "best_worst.png").exists()


def test_imported_layout_and_manifest_label(tmp_path):
    root = tmp_path / "glas_import"
    gt, pred = _split_gland()
    _save(root / "testA" / "labels" / "testA_1.png", gt)
    _save(root / "testA" / "images" / "testA_1.png", _rgb(gt))
    (root / "manifest.json").write_text(json.dumps({"labels_origin": "reconstructed"}))
    _save(tmp_path / "pred" / "testA_1_labels.png", pred)
    metrics = evaluate_folders(tmp_path / "pred", None, tmp_path / "out", data_dir=root,
                               splits=["testA"])
    assert metrics["dataset"] == "GlaS (reconstructed labels)" and metrics["glas"]
    assert "reconstructed" in metrics["note"]
    report = (tmp_path / "out/report.md").read_text()
    assert "# Evaluation on GlaS (reconstructed labels)" in report
    assert "> Note: Labels from the shared micronet-seg copy of GlaS are reconstructed" in report


def test_evaluate_model_with_a_threshold_segmenter(tmp_path, synthetic_glands):
    image, labels = synthetic_glands  # five glands, two of them touching
    root = tmp_path / "glas"
    _save(root / "testA" / "labels" / "testA_1.png", labels.astype(np.uint8))
    _save(root / "testA" / "images" / "testA_1.png", image)

    class ThresholdSegmenter:
        """Dark pixels, connected components: merges the two touching glands."""

        def predict(self, rgb: np.ndarray) -> SimpleNamespace:
            return SimpleNamespace(labels=ndi.label(rgb[..., 1] < 130)[0])

    metrics = evaluate_model(ThresholdSegmenter(), root, tmp_path / "out", splits=["testA"],
                             model_info={"model": "threshold"})
    split = metrics["splits"]["testA"]
    assert (split["tp"], split["fp"], split["fn"]) == (4, 0, 1)
    assert split["pooled"]["f1"] == pytest.approx(8 / 9)
    assert metrics["provenance"]["model"] == "threshold"
    assert (tmp_path / "out" / "best_worst.png").exists()


def _run_fails(args: list[str], out: Path, capsys, *needles: str) -> None:
    assert main([*args, "--out", str(out)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    for needle in needles:
        assert needle in err
    assert not out.exists()  # nothing written


def test_float_prediction_is_refused(folders, tmp_path, capsys):
    import tifffile

    gt_dir, pred_dir = folders
    (pred_dir / "b_labels.png").unlink()
    tifffile.imwrite(pred_dir / "b_labels.tif", np.zeros((30, 30), np.float32))
    _run_fails(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir)], tmp_path / "out",
               capsys, "b_labels.tif", "not a 2-D integer label map")


def test_rgb_prediction_is_refused(folders, tmp_path, capsys):
    gt_dir, pred_dir = folders
    _save(pred_dir / "a_labels.png", _rgb(_split_gland()[1]))
    _run_fails(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir)], tmp_path / "out",
               capsys, "a_labels.png", "not an integer label map")


def test_size_mismatch_is_refused(folders, tmp_path, capsys):
    gt_dir, pred_dir = folders
    _save(pred_dir / "b_labels.png", np.zeros((30, 31), np.uint8))
    _run_fails(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir)], tmp_path / "out",
               capsys, "b_labels.png", "size 31x30 differs", "b_anno.png")


def test_missing_prediction_is_refused(folders, tmp_path, capsys):
    gt_dir, pred_dir = folders
    (pred_dir / "b_labels.png").unlink()
    _run_fails(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir)], tmp_path / "out",
               capsys, "no prediction for ground truth b_anno.png")


def test_prediction_without_ground_truth_is_refused(folders, tmp_path, capsys):
    gt_dir, pred_dir = folders
    _save(pred_dir / "c_labels.png", np.zeros((5, 5), np.uint8))
    _run_fails(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir)], tmp_path / "out",
               capsys, "c_labels.png", "prediction without ground truth")


def test_two_predictions_for_one_image_are_refused(folders, tmp_path, capsys):
    gt_dir, pred_dir = folders
    _save(pred_dir / "a_pred.png", _split_gland()[1])
    _run_fails(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir)], tmp_path / "out",
               capsys, "a_labels.png", "a_pred.png", "two prediction files")


def test_bad_option_combinations(folders, tmp_path, capsys):
    gt_dir, pred_dir = folders
    out = tmp_path / "out"
    _run_fails(["evaluate", "--gt", str(gt_dir)], out, capsys, "give --pred")
    _run_fails(["evaluate", "--pred", str(pred_dir)], out, capsys, "(--gt)")
    _run_fails(["evaluate", "--model", "micronet508", "--gt", str(gt_dir)], out, capsys,
               "or --data (segment")
    _run_fails(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--weights", "glas"],
               out, capsys, "do not go with --pred")
    _run_fails(["evaluate", "--model", str(gt_dir), "--data", str(gt_dir)], out, capsys,
               "--model is the architecture")
    _run_fails(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "testA"], out, capsys,
               "unexpected argument 'testA'")
    _run_fails(["evaluate", "--pred", str(pred_dir), "--data", str(pred_dir)], out, capsys,
               "not a GlaS folder")
    _run_fails(["evaluate", "--pred", str(pred_dir), "--data", str(gt_dir)], out, capsys,
               "no ground-truth label files named testA_*")
    _run_fails(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--split", "testA"],
               out, capsys, "no ground-truth label files named testA_*")
    _run_fails(["evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--tta"], out, capsys,
               "--tta/--postprocess segment images")
    bad = tmp_path / "pp.json"
    bad.write_text('{"postprocess": {"threshold": 0.3, "min_sise": 10}}')
    _run_fails(["evaluate", "--data", str(gt_dir), "--postprocess", str(bad)], out, capsys,
               "pp.json: not usable post-processing (unknown post-processing parameters: "
               "min_sise)")


def test_cli_model_path_scores_the_segmenter_output(tmp_path, synthetic_glands, capsys):
    import torch

    from micronet.infer import Segmenter
    from micronet.metrics import score_image

    image, labels = synthetic_glands
    root = tmp_path / "glas"
    _save(root / "testA" / "labels" / "testA_1.png", labels.astype(np.uint8))
    _save(root / "testA" / "images" / "testA_1.png", image)
    from micronet.models import create
    from micronet.train.checkpoint import save_model_weights

    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_model_weights(create("micronet508", width=0.0625), weights)
    args = ["evaluate", "--weights", str(weights), "--device", "cpu", "--quiet",
            "--data", str(root), "--split", "testA", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    expected = score_image(labels, Segmenter(weights=weights, device="cpu")
                           .predict(image).labels)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["provenance"]["model"] == "micronet508"
    assert metrics["provenance"]["weights"] == str(weights)
    split = metrics["splits"]["testA"]
    assert (split["tp"], split["fp"], split["fn"]) == (expected.tp, expected.fp, expected.fn)
    assert split["pooled"] == pytest.approx(expected.scores.to_dict())
    assert metrics["provenance"]["tta"] is False

    torch.manual_seed(0)
    assert main([*args[:-1], str(tmp_path / "tta"), "--tta"]) == 0
    torch.manual_seed(0)
    expected = score_image(labels, Segmenter(weights=weights, device="cpu", tta=True)
                           .predict(image).labels)
    metrics = json.loads((tmp_path / "tta" / "metrics.json").read_text())
    assert metrics["provenance"]["tta"] is True
    split = metrics["splits"]["testA"]
    assert (split["tp"], split["fp"], split["fn"]) == (expected.tp, expected.fp, expected.fn)

    pp = tmp_path / "pp.json"  # a `micronet tune --out` file: its values are used and recorded
    pp.write_text(json.dumps({"postprocess": {"threshold": 0.2, "min_size": 7}}))
    torch.manual_seed(0)
    assert main([*args[:-1], str(tmp_path / "pp"), "--postprocess", str(pp)]) == 0
    torch.manual_seed(0)
    seg = Segmenter(weights=weights, device="cpu", postprocess={"threshold": 0.2, "min_size": 7})
    expected = score_image(labels, seg.predict(image).labels)
    metrics = json.loads((tmp_path / "pp" / "metrics.json").read_text())
    assert metrics["provenance"]["postprocess"] == str(pp)
    assert metrics["provenance"]["postprocess_values"] == seg.postprocess.__dict__
    split = metrics["splits"]["testA"]
    assert (split["tp"], split["fp"], split["fn"]) == (expected.tp, expected.fp, expected.fn)
    assert "threshold 0.2" in (tmp_path / "pp" / "report.md").read_text()
