"""Test-time scale sweep on a run's hold-out: does the model do better on images resized a little
more or less than its training µm/px says? Decided on the hold-out only (never Test A/B).

For each scale ``s`` the images are declared to be at ``image_mpp × s`` µm/px, so the segmenter
resizes them by ``s`` times its usual factor (1.0 = as shipped); post-processing is re-tuned per
scale with ``micronet tune``'s grid and the pooled hold-out scores are printed.

    python scripts/holdout_scale_sweep.py WEIGHTS SPLIT_JSON 1.0 0.85 1.15 1.3 [--data data/glas]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from micronet.data.folders import open_dataset
from micronet.infer import Segmenter
from micronet.infer.tune import (
    DEFAULT_GRID,
    TUNE_BASE,
    holdout_maps,
    score_with,
    tune_postprocess,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="weights file or run folder")
    parser.add_argument("split", type=Path, help="the run's split.json (its 'val' images)")
    parser.add_argument("scales", type=float, nargs="+")
    parser.add_argument("--data", type=Path, default=Path("data/glas"))
    parser.add_argument("--image-mpp", type=float, default=0.62, help="the images' µm/px")
    args = parser.parse_args()

    dataset = open_dataset(args.data, "train")
    names = json.loads(args.split.read_text())["val"]
    index = {n: i for i, n in enumerate(dataset.names)}
    items = [dataset[index[n]] for n in names]
    images, labels = [it["image"] for it in items], [it["labels"] for it in items]
    segmenter = Segmenter(weights=args.weights, device="cpu", postprocess={})
    for scale in args.scales:
        t0 = time.perf_counter()
        maps = holdout_maps(segmenter, images, mpp=args.image_mpp * scale)
        best, _ = tune_postprocess(maps, labels, DEFAULT_GRID, base=TUNE_BASE, objective="f1")
        scores = score_with(maps, labels, best)
        print(f"scale {scale}: {time.perf_counter() - t0:.0f} s, best {best.__dict__}: "
              + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()), flush=True)


if __name__ == "__main__":
    main()
