"""Fit and score the shipped GlaS grade classifier (``micronet/grade/glas_grade.json``).

    python scripts/fit_grade.py --data data/glas --cache ~/.cache/micronet_grade \
        [--weights glas] [--out training_runs/grade]

Steps, each re-runnable (predicted label maps are cached per weights checksum and
post-processing, so a new shipped model only re-segments once):

1. **segment**: the shipped model's label maps of all 165 GlaS images (cached PNGs).
2. **features**: :func:`micronet.grade.image_features` of every image twice, from the
   ground-truth labels and from the predicted ones (``features_gt.csv``, ``features_pred.csv``).
3. **select**: patient-grouped cross-validation on the 85 training images (GT features) for
   logistic regression (several C) and gradient boosting; the best by mean ROC AUC (binary) /
   balanced accuracy (five grades) is refit on all 85.
4. **score**: Test A and Test B with both feature sources; the classifier, its scores and the
   inputs' checksum go into the package; the test images' feature rows into
   ``micronet/grade/glas_grade_test_features.csv`` (the test reproduces the scores from them);
   ``report.md``, ``report.json`` and ``feature_distributions.png`` into ``--out``.
"""


from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

import micronet
from micronet._io import atomic_path, read_labels, read_rgb, sha256_file, write_png
from micronet.data.glas import read_manifest
from micronet.grade import FEATURES, feature_definitions, fit_model, image_features
from micronet.grade import features as features_module
from micronet.grade.cv import cross_validate
from micronet.grade.features import read_feature_table, write_feature_table
from micronet.grade.grader import Grader, load_grader, shipped_grader_path

MALIGNANCY = ("benign", "malignant")
GRADES = ("healthy", "adenomatous", "moderately differentiated",
          "moderately-to-poorly differentated",  # (sic: Grade.csv's spelling)
          "poorly differentiated")
CANDIDATES = [("logistic", {"C": c}) for c in (0.01, 0.1, 1.0, 10.0)] + [
    ("gradient_boosting", {"n_estimators": 100, "max_depth": d, "learning_rate": 0.05})
    for d in (1, 2)]
TIE = 0.01  # within this of the best CV score, logistic regression wins (explainable, smaller)
TEST_TABLE = shipped_grader_path().with_name("glas_grade_test_features.csv")
META_KEYS = ("name", "split", "patient_id", "grade", "grade_sirinukunwattana")


def segmenter_and_identity(weights: str) -> tuple[Any, dict[str, Any]]:
    """The segmenter for ``weights`` and what identifies its label maps."""
    import torch

    from micronet import Segmenter
    from micronet.models import get_pretrained

    torch.set_num_threads(1)
    path = Path(weights)
    if path.exists():
        seg = Segmenter(weights=path, device="cpu")
        files = [path] if path.is_file() else sorted(path.glob("*.safetensors"))
        sha = hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()
    else:
        seg = Segmenter.from_pretrained(weights, device="cpu")
        sha = get_pretrained(*seg.info.name.split(".", 1)).sha256
    return seg, {"weights": seg.info.name if not path.exists() else str(path),
                 "weights_sha256": sha, "postprocess": dataclasses.asdict(seg.postprocess)}


def segment_all(data: Path, records: list[dict], cache: Path, weights: str) -> tuple[Path, dict]:
    """Predicted label maps of every image under ``cache/pred_<key>/NAME.png`` (kept between
    runs; the key hashes the weights' SHA-256 and the post-processing)."""
    seg, ident = segmenter_and_identity(weights)
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    folder = cache / f"pred_{key}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "identity.json").write_text(json.dumps(ident, indent=1) + "\n")
    for record in records:
        out = folder / f"{record['name']}.png"
        if not out.exists():
            t0 = time.perf_counter()
            labels = seg.predict(read_rgb(data / record["image"]), progress=False).labels
            write_png(out, labels.astype(np.uint16))
            print(f"{record['name']}: {int(labels.max())} glands, "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
    return folder, ident


def feature_rows(data: Path, records: list[dict], labels_of, cache: Path) -> list[dict[str, Any]]:
    """Metadata plus :func:`image_features` per record, labels from ``labels_of(record)``; each
    row is kept in ``cache/NAME.json``, so several processes can share the work."""
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in records:
        done = cache / f"{r['name']}.json"
        if not done.exists():
            feats = image_features(labels_of(r), read_rgb(data / r["image"]))
            with atomic_path(done) as tmp:
                tmp.write_text(json.dumps(feats))
        rows.append({**{k: r[k] for k in META_KEYS}, **json.loads(done.read_text())})
    return rows


def matrix(rows: list[dict]) -> np.ndarray:
    return np.array([[r[f] for f in FEATURES] for r in rows], dtype=np.float64)


def select(rows: list[dict], target: str, classes: tuple[str, ...],
           metric: str) -> tuple[tuple[str, dict], list[dict]]:
    """Patient-grouped CV of every candidate; the best by ``metric`` (ties: logistic)."""
    x, y, patients = matrix(rows), [r[target] for r in rows], [r["patient_id"] for r in rows]
    table = []
    for kind, hyper in CANDIDATES:
        cv = cross_validate(x, y, patients, FEATURES, kind, classes, hyper)
        table.append({"kind": kind, "hyper": hyper, "mean": cv["mean"], "std": cv["std"]})
        print(f"{target} {kind} {hyper}: " + ", ".join(
            f"{k} {v:.3f}±{cv['std'][k]:.3f}" for k, v in cv["mean"].items() if k != "n"),
            flush=True)
    best = max(row["mean"][metric] for row in table)
    logistic = [r for r in table if r["kind"] == "logistic"]
    top = max(logistic, key=lambda r: r["mean"][metric])
    if top["mean"][metric] < best - TIE:
        top = max(table, key=lambda r: r["mean"][metric])
    return (top["kind"], top["hyper"]), table


def figure(rows_gt: list[dict], rows_pred: list[dict], path: Path) -> None:
    """Benign vs malignant distribution of every feature (training images; GT and predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 4, figsize=(14, 9))
    for ax, f in zip(axes.flat, FEATURES, strict=True):
        data, ticks = [], []
        for source, rows in (("GT", rows_gt), ("pred", rows_pred)):
            for cls in MALIGNANCY:
                v = [r[f] for r in rows if r["grade"] == cls and not np.isnan(r[f])]
                data.append(v)
                ticks.append(f"{source}\n{cls[:3]}")
        parts = ax.boxplot(data, patch_artist=True, widths=0.6, showfliers=False)
        for box, color in zip(parts["boxes"], ["#8fb8de", "#e08a8a"] * 2, strict=True):
            box.set_facecolor(color)
        rng = np.random.default_rng(0)
        for i, v in enumerate(data, start=1):
            ax.plot(i + rng.uniform(-0.15, 0.15, len(v)), v, ".", ms=2.5, color="k", alpha=0.5)
        ax.set_xticks(range(1, 5), ticks, fontsize=7)
        ax.set_title(f, fontsize=9)
    fig.suptitle("GlaS training images (85): gland features, benign (blue) vs malignant (red); "
                 "GT = ground-truth glands, pred = shipped model's glands", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(path: Path, report: dict[str, Any], meta: dict[str, Any]) -> None:
    """``report.md``: selection, test scores per feature source, five-grade confusion matrices."""
    def f(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else "–"

    lines = ["# GlaS grade from gland morphology", "",
             f"Segmentation weights for the predicted glands: `{report['pred_source']['weights']}`"
             f" (SHA-256 `{report['pred_source']['weights_sha256'][:16]}…`).", "",
             "## Model selection (85 training images, GT glands; patient-grouped CV, "
             "5 folds × 5 repeats, mean ± std over repeats)", ""]
    for task, table in report["selection"].items():
        lines += [f"**{task}**", "", "| model | accuracy | balanced accuracy | ROC AUC |",
                  "|---|---|---|---|"]
        for row in table:
            cells = [f"{f(row['mean'].get(k))} ± {f(row['std'].get(k))}"
                     for k in ("accuracy", "balanced_accuracy", "roc_auc")]
            lines.append(f"| {row['kind']} {row['hyper']} | " + " | ".join(cells) + " |")
        lines.append("")
    for name, title in (("shipped", "Shipped classifier (fitted on GT glands of the 85 "
                         "training images)"),
                        ("fit_on_pred", "Ablation, not shipped: the same model fitted on the "
                         "shipped segmenter's glands of the training images")):
        lines += [f"## {title}", "", "| glands | split | n | benign/malignant acc. | bal. acc."
                  " | ROC AUC | 5-grade acc. | 5-grade bal. acc. |", "|---|---|---|---|---|---|"
                  "---|---|"]
        for source, label in (("gt", "ground truth"), ("pred", "shipped model")):
            for split in ("testA", "testB"):
                m = report["results"][name][source][split]["malignancy"]
                g = report["results"][name][source][split]["grade"]
                lines.append(f"| {label} | {split} | {m['n']} | {f(m['accuracy'])} | "
                             f"{f(m['balanced_accuracy'])} | {f(m.get('roc_auc'))} | "
                             f"{f(g['accuracy'])} | {f(g['balanced_accuracy'])} |")
        lines.append("")
    lines += ["## Five-level grade, shipped classifier: confusion matrices (rows true, "
              "columns predicted)", "", "Order: " + ", ".join(GRADES), ""]
    for source in ("gt", "pred"):
        for split in ("testA", "testB"):
            cm = report["results"]["shipped"][source][split]["grade"]["confusion"]
            lines += [f"{source} glands, {split}:", "", "```"]
            lines += ["  ".join(f"{v:3d}" for v in row) for row in cm]
            lines += ["```", ""]
    seen = meta["test_patients_seen_in_training"]
    lines += ["## Caveat", "", "GlaS's test images come from the same patients as its training "
              f"images (Test A: {len(seen['testA'])} patients also in training, Test B: "
              f"{len(seen['testB'])}), so Test A/B scores are not patient-independent; the "
              "patient-grouped CV above is the honest estimate for new patients.", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="imported GlaS folder")
    ap.add_argument("--cache", type=Path, required=True, help="predicted label maps go here")
    ap.add_argument("--weights", default="glas", help="segmentation weights (shipped name/file)")
    ap.add_argument("--out", type=Path, default=Path("training_runs/grade"))
    ap.add_argument("--reverse", action="store_true",
                    help="compute features last image first (a second process shares the work)")
    ap.add_argument("--features-only", action="store_true", help="stop after the features")
    ap.add_argument("--select-only", action="store_true", help="stop after model selection")
    args = ap.parse_args()
    manifest = read_manifest(args.data)
    records = manifest["files"]
    pred_dir, ident = segment_all(args.data, records, args.cache, args.weights)
    args.out.mkdir(parents=True, exist_ok=True)
    tables = {}
    order = {r["name"]: i for i, r in enumerate(records)}
    code = sha256_file(features_module.__file__)[:12]  # feature tables are cached per version
    for source, labels_of, cached in (
            ("gt", lambda r: read_labels(args.data / r["labels"]),
             args.cache / f"features_gt_{code}.csv"),
            ("pred", lambda r: read_labels(pred_dir / f"{r['name']}.png"),
             pred_dir / f"features_{code}.csv")):
        if source == "pred" and args.select_only:
            continue
        if not cached.exists():
            rows = feature_rows(args.data, records[::-1] if args.reverse else records, labels_of,
                                cached.with_suffix(""))
            write_feature_table(cached, sorted(rows, key=lambda r: order[r["name"]]))
        path = args.out / f"features_{source}.csv"
        write_feature_table(path, read_feature_table(cached))
        tables[source] = read_feature_table(path)  # score exactly what is recorded
    if args.features_only:
        return
    train = {s: [r for r in rows if r["split"] == "train"] for s, rows in tables.items()}
    fits, selection = {}, {}
    for task, target, classes, metric in (
            ("malignancy", "grade", MALIGNANCY, "roc_auc"),
            ("grade", "grade_sirinukunwattana", GRADES, "balanced_accuracy")):
        key = hashlib.sha256(json.dumps([sha256_file(args.out / "features_gt.csv"), task,
                                         CANDIDATES, TIE]).encode()).hexdigest()[:12]
        done = args.cache / f"selection_{task}_{key}.json"
        if not done.exists():  # patient-grouped CV of every candidate (the slow step)
            with atomic_path(done) as tmp:
                tmp.write_text(json.dumps(select(train["gt"], target, classes, metric)))
        (kind, hyper), selection[task] = json.loads(done.read_text())
        if args.select_only:
            continue
        fits[task] = fit_model(matrix(train["gt"]), [r[target] for r in train["gt"]], FEATURES,
                               kind, classes, **hyper)
        # ablation, not shipped: the same choice fitted on the model's glands
        fits[f"{task}_pred"] = fit_model(matrix(train["pred"]),
                                         [r[target] for r in train["pred"]], FEATURES, kind,
                                         classes, **hyper)
    if args.select_only:
        return
    test_rows = [{"source": s, **r} for s in ("gt", "pred") for r in tables[s]
                 if r["split"] != "train"]
    write_feature_table(TEST_TABLE, test_rows)
    test_rows = read_feature_table(TEST_TABLE)
    grader = Grader(fits["malignancy"], fits["grade"])
    ablation = Grader(fits["malignancy_pred"], fits["grade_pred"])
    results: dict[str, Any] = {}
    for name, g in (("shipped", grader), ("fit_on_pred", ablation)):
        for source in ("gt", "pred"):
            for split in ("testA", "testB"):
                rows = [r for r in test_rows if r["source"] == source and r["split"] == split]
                results.setdefault(name, {}).setdefault(source, {})[split] = g.score(rows)
    train_patients = {r["patient_id"] for r in train["gt"]}
    grader.meta = {
        "micronet_version": micronet.__version__,
        "dataset": "GlaS (Warwick-QU) 85 training images, ground-truth glands"
                   f" ({manifest.get('labels_origin', '')} labels)",
        "features": list(FEATURES), "feature_definitions": feature_definitions(),
        "selection": {"method": "StratifiedGroupKFold by patient, 5 folds x 5 repeats; "
                      f"malignancy by ROC AUC, grade by balanced accuracy; logistic wins ties "
                      f"within {TIE}", **selection},
        "scores": results["shipped"],
        "test_features": {"file": TEST_TABLE.name, "sha256": sha256_file(TEST_TABLE)},
        "train_features_sha256": sha256_file(args.out / "features_gt.csv"),
        "pred_source": ident,
        "test_patients_seen_in_training": {
            s: sorted({r["patient_id"] for r in tables["gt"] if r["split"] == s}
                      & train_patients) for s in ("testA", "testB")},
    }
    grader.save(shipped_grader_path())
    load_grader()  # round trip
    report = {"selection": selection, "results": results, "pred_source": ident,
              "cache": str(pred_dir)}
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    write_report(args.out / "report.md", report, grader.meta)
    figure(train["gt"], train["pred"], args.out / "feature_distributions.png")
    print(json.dumps({k: {s: {sp: {t: {m: round(v, 3) for m, v in sc.items()
                                        if isinstance(v, float)}
                                   for t, sc in d.items()} for sp, d in ss.items()}
                          for s, ss in v.items()} for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
