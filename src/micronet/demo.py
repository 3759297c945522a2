"""``micronet demo``: segment the bundled GlaS sample tiles, alone and on glass in the bundled demo
slide, with the bundled weights and score them.

The first thing a new user runs: no download, no data import. Writes, per sample, the label
image, a colour overlay, QuPath GeoJSON, the per-gland CSV and the tissue mask; the slide's
GeoJSON, CSV, thumbnail overlay and tissue mask (split ``slide``: each tile cut back out of the
segmented slide); plus ``metrics.json``,
``per_image.csv`` and ``report.md`` (GlaS object F1 / Dice / Hausdorff against the bundled ground
truth, beside the published results).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .metrics.glas import SplitScores

__all__ = ["DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    """What the demo wrote and scored."""

    out_dir: Path
    files: list[Path]
    scores: SplitScores
    weights: str
    slide_scores: SplitScores | None = None  # the same tiles cut from the segmented demo slide


def run_demo(out_dir: str | Path = "micronet-demo", weights: str = "glas", device: str = "auto",
             progress: bool | None = None) -> DemoResult:
    """Segment every bundled sample, export all formats, and score against the bundled labels:
    per GlaS test part the samples come from (beside the published results, marked as covering
    only those tiles), with the best/worst overlay figure."""
    from ._console import track
    from .data.bundled import DEMO_SLIDE_COLUMNS, demo_slide, list_samples, load_sample
    from .infer import Segmenter
    from .infer.export import export_segmentation, rasterize_polygons
    from .infer.glass import glass_layout
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
    # the same tiles on glass in a small JPEG slide, through the slide path; each tile's glands
    # are cut back out of the slide and scored against its labels
    slide_path, slide_truth = demo_slide()
    slide = segmenter.predict_slide(slide_path, out_dir=out_dir, progress=progress)
    files += [out_dir / f"demo_slide{s}" for s in (".geojson", "_glands.csv", "_overlay.png",
                                                    "_tissue.png")]
    found = rasterize_polygons(slide.polygons, slide_truth.shape)
    _, _, boxes = glass_layout([samples[n][1].shape for n in samples], columns=DEMO_SLIDE_COLUMNS)
    results["slide"] = score_split(
        [(samples[n][1], found[y:y + h, x:x + w]) for n, (y, x, h, w) in zip(samples, boxes,
                                                                             strict=True)],
        names=[f"slide:{n}" for n in samples], name="slide")
    made = provenance(mode="demo", model=segmenter.info.name, weights=weights,
                      samples=list(samples), slide=slide_path.name,
                      slide_glands=slide.num_glands, device=str(segmenter.device))
    write_report(out_dir, results, "GlaS sample tiles bundled with micronet-seg (reconstructed "
                 "labels)", made, examples, glas=True, reconstructed=True)
    files += [out_dir / n for n in ("metrics.json", "per_image.csv", "report.md",
                                    "f1_per_image.png", "best_worst.png")]
    pooled = pool_scores([s for k, r in results.items() if k != "slide" for s in r.per_image],
                         "samples")
    return DemoResult(out_dir, files, pooled, segmenter.info.name, results["slide"])
