"""``micronet demo``: segment the bundled GlaS sample tiles with the bundled weights and score them.

The first thing a new user runs: no download, no data import. Writes, per sample, the label
image, a colour overlay, QuPath GeoJSON and the per-gland CSV, plus ``metrics.json``,
``per_image.csv`` and ``report.md`` (GlaS object F1 / Dice / Hausdorff against the bundled ground
truth, beside the published results).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    """What the demo wrote and scored."""

    out_dir: Path
    files: list[Path]
    scores: object  # micronet.metrics.SplitScores
    weights: str


def run_demo(out_dir: str | Path = "micronet-demo", weights: str = "glas", device: str = "auto",
             progress: bool | None = None) -> DemoResult:
    """Segment every bundled sample, export all formats, and score against the bundled labels:
    per GlaS test part the samples come from (beside the published results, marked as covering
    only those tiles), with the best/worst overlay figure."""
    from ._console import track
    from .data.bundled import list_samples, load_sample
    from .infer import Segmenter
    from .infer.export import export_segmentation
    from .metrics.glas import pool_scores, score_split
    from .metrics.report import Example, best_and_worst, provenance, write_report

    out_dir = Path(out_dir)
    segmenter = Segmenter.from_pretrained(weights, device=device)
    files: list[Path] = []
    samples: dict[str, tuple] = {}  # name -> (image, truth, prediction)
    for name in track(list_samples(), "segmenting samples", show=progress):
        image, truth = load_sample(name)
        result = segmenter.predict(image, progress=False)
        files += export_segmentation(result, image, out_dir, name)
        samples[name] = (image, truth, result.labels)
    splits: dict[str, list[str]] = {}
    for name in samples:  # testA_1 -> testA
        splits.setdefault(name.split("_")[0], []).append(name)
    results = {split: score_split([samples[n][1:] for n in names], names=names, name=split)
               for split, names in splits.items()}
    examples = {split: [Example(kind, s, *samples[s.name]) for kind, s in
                        best_and_worst(results[split].per_image)] for split in results}
    made = provenance(mode="demo", model=segmenter.info.name, weights=weights,
                      samples=list(samples), device=str(segmenter.device))
    write_report(out_dir, results, "GlaS sample tiles bundled with micronet-seg (reconstructed "
                 "labels)", made, examples, glas=True, reconstructed=True)
    files += [out_dir / n for n in ("metrics.json", "per_image.csv", "report.md",
                                    "f1_per_image.png", "best_worst.png")]
    pooled = pool_scores([s for r in results.values() for s in r.per_image], "samples")
    return DemoResult(out_dir, files, pooled, segmenter.info.name)
