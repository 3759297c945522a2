"""Evaluation outputs: metrics.json, per_image.csv, report.md, figures.

A report is titled by the data it scored; the published GlaS rows appear only when that data is
GlaS, and the reconstructed-labels note only when its labels were reconstructed.

Everything is rendered in memory first and then written file by file through `atomic_path`, so a
failure while rendering leaves the output folder untouched.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._io import atomic_path
from .glas import ImageScores, SplitScores

__all__ = ["PublishedResult", "PUBLISHED", "Example", "write_report", "provenance",
           "best_and_worst", "DEFAULT_DATASET_LABEL", "RECONSTRUCTED_LABEL", "RECONSTRUCTED_NOTE",
           "GLAS_TEST_IMAGES"]

DEFAULT_DATASET_LABEL = "GlaS"
RECONSTRUCTED_LABEL = "GlaS (reconstructed labels)"
RECONSTRUCTED_NOTE = (
    "Labels from the shared micronet-seg copy of GlaS are reconstructed (instance ids rebuilt as "
    "8-connected components of the official foreground), so object scores on it are close to, "
    "but not identical with, scores on the official annotations: quote them as "
    f"'{RECONSTRUCTED_LABEL}'.")
CONVENTIONS = {
    "pooled": "GlaS challenge: one TP/FP/FN count and one set of area weights over all objects "
              "of all images of the split",
    "image_mean": "mean of the per-image scores, as many later papers report",
    "object_hausdorff_units": "pixels",
    "empty_images": "no object in either map: F1 = Dice = 1, Hausdorff = 0; objects whose image "
                    "has none in the other map: Dice 0, Hausdorff = the image diagonal",
}


@dataclass(frozen=True)
class PublishedResult:
    """A published GlaS result (official labels, pooled per test part): (Test A, Test B) pairs."""

    method: str
    f1: tuple[float, float]
    object_dice: tuple[float, float] | None = None
    object_hausdorff: tuple[float, float] | None = None


# As collected in the design notes: the Micro-Net paper's GlaS comparison and MILD-Net's paper.
PUBLISHED: tuple[PublishedResult, ...] = (
    PublishedResult("MILD-Net (Graham et al. 2019)", (0.914, 0.844), (0.913, 0.836), (41.5, 105.9)),
    PublishedResult("Micro-Net (Raza et al. 2019)", (0.913, 0.724)),
    PublishedResult("CUMedVision2 / DCAN", (0.912, 0.716)),
    PublishedResult("ExB3", (0.896, 0.719)),
    PublishedResult("Xu et al. 2017", (0.893, 0.843)),
    PublishedResult("Manivannan et al. 2018", (0.892, 0.801)),
    PublishedResult("Freiburg2 / U-Net", (0.870, 0.695)),
    PublishedResult("CUMedVision1", (0.868, 0.769)),
)
PUBLISHED_SPLITS = ("testA", "testB")
GLAS_TEST_IMAGES = {"testA": 60, "testB": 20}


class Example(NamedTuple):
    """An image shown in the overlay figure."""

    kind: str  # "best" or "worst"
    scores: ImageScores
    image: np.ndarray  # (H, W, 3) uint8
    gt: np.ndarray  # (H, W) int
    pred: np.ndarray  # (H, W) int


def provenance(**fields: Any) -> dict[str, Any]:
    """Who made a report and when: UTC time, micronet-seg version, and the given fields (paths
    as strings, ``None`` dropped)."""
    from datetime import datetime, timezone
    from importlib.metadata import PackageNotFoundError, version

    try:
        tool = version("micronet-seg")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        tool = "unknown"
    base = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "micronet_version": tool}
    return base | {k: (str(v) if isinstance(v, Path) else v) for k, v in fields.items()
                   if v is not None}


def _rank(s: ImageScores) -> tuple[float, float, float, str]:
    return (s.f1, s.object_dice, -s.object_hausdorff, s.name)


def best_and_worst(scores: Sequence[ImageScores]) -> list[tuple[str, ImageScores]]:
    """The best and the worst image of a split (by F1, then Dice, then Hausdorff), once each."""
    best, worst = max(scores, key=_rank), min(scores, key=_rank)
    return [("best", best)] + ([("worst", worst)] if worst is not best else [])


def _json_number(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def build_metrics(results: Mapping[str, SplitScores], dataset_label: str,
                  provenance: Mapping[str, Any], glas: bool = False,
                  reconstructed: bool = False) -> dict[str, Any]:
    """The content of metrics.json."""
    splits = {}
    for name, split in results.items():
        d = split.to_dict()
        for key, scores in (("pooled", split.pooled), ("image_mean", split.image_mean)):
            d[key] = {k: _json_number(v) for k, v in scores.to_dict().items()}
        splits[name] = d
    note = {"note": RECONSTRUCTED_NOTE} if reconstructed else {}
    return {"dataset": dataset_label, "glas": glas, **note, "conventions": CONVENTIONS,
            "provenance": dict(provenance), "splits": splits}


def per_image_csv(results: Mapping[str, SplitScores]) -> str:
    """One row per image: split, image, size, counts, its six scores and its error classes."""
    rows = [{"split": name, **s.to_dict()} for name, split in results.items()
            for s in split.per_image]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    return buf.getvalue()


def _fmt(x: float | None, digits: int) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _source(provenance: Mapping[str, Any]) -> str:
    """What was scored, in words: model or predictions, weights, TTA, post-processing."""
    source = f"`{provenance.get('model') or provenance.get('predictions') or 'predictions'}`"
    if provenance.get("weights"):
        source += f" with weights `{provenance['weights']}`"
    if provenance.get("tta"):
        source += " with test-time augmentation (8 flips/rotations)"
    if provenance.get("postprocess_values"):
        values = ", ".join(f"{k} {v}" for k, v in provenance["postprocess_values"].items())
        origin = f" from `{provenance['postprocess']}`" if provenance.get("postprocess") else ""
        source += f"; post-processing{origin}: {values}"
    return source


def _glas_comparison(results: Mapping[str, SplitScores], dataset_label: str) -> list[str]:
    """The published GlaS table, with this run's pooled Test A / Test B row when it has them."""
    lines = ["", "## Compared with published GlaS results", "",
             "Published rows are on the official GlaS annotations, pooled per test part as in "
             f"the challenge; this run's row is pooled the same way, on {dataset_label}. "
             "'–' = not reported.", "",
             "| Method | Test A F1 | Test A Object Dice | Test A Object Hausdorff | Test B F1 | "
             "Test B Object Dice | Test B Object Hausdorff |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    ours = [results.get(s) for s in PUBLISHED_SPLITS]
    if any(ours):
        cells = []
        for s in ours:
            cells += [_fmt(s.f1, 3), _fmt(s.object_dice, 3), _fmt(s.object_hausdorff, 1)] \
                if s else ["–"] * 3
        lines.append(f"| **this run ({dataset_label})** | " + " | ".join(cells) + " |")
    for row in PUBLISHED:
        cells = []
        for i in range(2):
            cells += [_fmt(row.f1[i], 3),
                      _fmt(row.object_dice[i] if row.object_dice else None, 3),
                      _fmt(row.object_hausdorff[i] if row.object_hausdorff else None, 1)]
        lines.append(f"| {row.method} | " + " | ".join(cells) + " |")
    if not any(ours):
        lines += ["", f"This run scored {', '.join(results)}, not Test A or Test B, so it has "
                      "no row here."]
    partial = [f"{results[s].n_images} of {name}'s {GLAS_TEST_IMAGES[s]}"
               for s, name in zip(PUBLISHED_SPLITS, ("Test A", "Test B"), strict=True)
               if s in results and results[s].n_images < GLAS_TEST_IMAGES[s]]
    if partial:
        lines += ["", f"This run's row covers {' and '.join(partial)} images, so it is "
                      "indicative only: the published rows cover every test image."]
    return lines


def _error_table(results: Mapping[str, SplitScores]) -> list[str]:
    """How the missed and the extra objects failed, per split (`micronet.metrics.errors`)."""
    lines = ["", "## Where the errors are", "",
             "False negatives: *missed* (no prediction touches the gland), *merged* (joined to "
             "another gland in one object), *split* (no prediction covers more than half of it). "
             "False positives: *background* (at least half outside every gland), *fragment* (an "
             "extra piece of a found gland), *piece* (part of a gland no prediction covers by more "
             "than half).", "",
             "| Split | FN | missed | merged | split | FP | background | fragment | piece |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, split in results.items():
        e = split.errors
        lines.append(f"| {name} | {split.fn} | {e.missed} | {e.merged} | {e.split} | {split.fp} | "
                     f"{e.background} | {e.fragment} | {e.piece} |")
    return lines


def render_markdown(results: Mapping[str, SplitScores], dataset_label: str,
                    provenance: Mapping[str, Any], figures: Sequence[tuple[str, str]],
                    figure_notes: Sequence[str] = (), glas: bool = False,
                    reconstructed: bool = False) -> str:
    """report.md: our scores per split (pooled and per-image mean), and for GlaS data the
    published GlaS table."""
    made = ", ".join(x for x in (provenance.get("created"),
                                 f"micronet-seg {provenance['micronet_version']}"
                                 if provenance.get("micronet_version") else None) if x)
    lines = [f"# Evaluation on {dataset_label}", "",
             f"Scored {_source(provenance)} on {', '.join(results)}"
             + (f" ({made})." if made else "."), ""]
    if reconstructed:
        lines += [f"> Note: {RECONSTRUCTED_NOTE}", ""]
    lines += ["## Scores", "",
              "Pooled = the GlaS challenge way (one count and one set of area weights over all "
              "objects of a split); per-image mean = the average of the per-image scores. Object "
              "Hausdorff in pixels.", "",
              "| Split | Aggregate | Images | GT / predicted objects | Object F1 | Precision | "
              "Recall | Object Dice | Object Hausdorff | Pixel F1 |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, split in results.items():
        for label, s in (("pooled", split.pooled), ("per-image mean", split.image_mean)):
            lines.append(
                f"| {name} | {label} | {split.n_images} | {split.tp + split.fn} / "
                f"{split.tp + split.fp} | {_fmt(s.f1, 3)} | {_fmt(s.precision, 3)} | "
                f"{_fmt(s.recall, 3)} | {_fmt(s.object_dice, 3)} | "
                f"{_fmt(s.object_hausdorff, 1)} | {_fmt(s.pixel_f1, 3)} |")
    lines += _error_table(results)
    if glas:
        lines += _glas_comparison(results, dataset_label)
    lines += ["", "## Figures", ""]
    lines += [f"![{title}]({name})" for name, title in figures]
    lines += [f"- {note}" for note in figure_notes]
    lines += ["", "Per-image scores: `per_image.csv`; all numbers: `metrics.json`.", ""]
    return "\n".join(lines)


def _figure_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def f1_figure(results: Mapping[str, SplitScores]) -> bytes:
    """Strip plot (with box) of the per-image object F1 of each split, pooled F1 marked."""
    from matplotlib.figure import Figure  # no pyplot: never touches the user's backend

    names = list(results)
    fig = Figure(figsize=(1.8 + 1.6 * len(names), 4))
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # fixed jitter, so figures are reproducible
    data = [[s.f1 for s in results[n].per_image] for n in names]
    ax.boxplot(data, positions=range(len(names)), widths=0.5, showfliers=False)
    for i, values in enumerate(data):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=14, alpha=0.6,
                   color="tab:blue", zorder=3)
        ax.scatter([i + 0.32], [results[names[i]].f1], marker="<", s=60, color="tab:red", zorder=4,
                   label="pooled F1" if i == 0 else None)
    ax.set_xticks(range(len(names)), [f"{n}\n({len(d)} images)" for n, d in zip(names, data,
                                                                              strict=True)])
    ax.set_ylabel("object F1 per image")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title("Object F1 per image")
    return _figure_png(fig)


def _contours(image: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    width = max(1, round(max(gt.shape) / 250))  # stay visible after downscaling to the panel
    out = image.copy()
    for labels, colour in ((gt, (0, 255, 0)), (pred, (255, 255, 0))):
        edge = find_boundaries(labels, mode="inner")
        if width > 1:
            edge = ndi.binary_dilation(edge, iterations=width - 1)
        out[edge] = colour
    return out


def overlay_figure(examples: Mapping[str, Sequence[Example]]) -> bytes:
    """Best and worst image of each split: ground-truth (green) and predicted (yellow) contours."""
    from matplotlib.figure import Figure

    rows = list(examples)
    cols = max(len(v) for v in examples.values())
    fig = Figure(figsize=(5.2 * cols, 3.9 * len(rows)))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, split in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_axis_off()
            if c >= len(examples[split]):
                continue
            ex = examples[split][c]
            s = ex.scores
            ax.imshow(_contours(ex.image, ex.gt, ex.pred))
            ax.set_title(f"{split} {ex.kind}: {s.name}\nF1 {s.f1:.3f} · Dice "
                         f"{s.object_dice:.3f} · Hausdorff {s.object_hausdorff:.1f}", fontsize=9)
    fig.suptitle("Green: ground truth · yellow: prediction")
    return _figure_png(fig)


def write_report(out_dir: str | os.PathLike[str], results: Mapping[str, SplitScores],
                 dataset_label: str, provenance: Mapping[str, Any],
                 examples: Mapping[str, Sequence[Example]] | None = None, *,
                 glas: bool = False, reconstructed: bool = False) -> dict[str, Any]:
    """Write metrics.json, per_image.csv, report.md and the figures to ``out_dir``.

    Args:
        out_dir: output folder (created if needed).
        results: split name -> scores, in report order.
        dataset_label: how to name the data (the report's title), e.g. "GlaS" or "ground
            truth in labels/".
        provenance: model/data/date... recorded in metrics.json (see :func:`provenance`).
        examples: best/worst images per split for the overlay figure; without them the figure
            is skipped and report.md says why.
        glas: the data is GlaS: report.md compares with the published GlaS results.
        reconstructed: the labels were reconstructed from GlaS's binary masks: say so.

    Returns:
        The content of metrics.json.
    """
    metrics = build_metrics(results, dataset_label, provenance, glas, reconstructed)
    files: dict[str, bytes] = {
        "metrics.json": (json.dumps(metrics, indent=2, allow_nan=False) + "\n").encode(),
        "per_image.csv": per_image_csv(results).encode(),
        "f1_per_image.png": f1_figure(results),
    }
    figures = [("f1_per_image.png", "Object F1 per image")]
    notes = []
    if examples:
        files["best_worst.png"] = overlay_figure(examples)
        figures.append(("best_worst.png", "Best and worst images"))
    else:
        notes.append("Best/worst overlay skipped: no RGB images were given (use --data or "
                     "--images).")
    files["report.md"] = render_markdown(results, dataset_label, provenance, figures,
                                         notes, glas, reconstructed).encode()
    out = Path(out_dir)
    for name, data in files.items():
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(data)
    return metrics
