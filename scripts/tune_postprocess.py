"""Tune post-processing on the validation hold-out of a training run (never on Test A/B).

Predicts class maps for the held-out training images once, grid-searches the post-processing
parameters for the best pooled GlaS object F1, and prints the table (best first) as JSON.

    python scripts/tune_postprocess.py --weights W.safetensors --data DATA [--val-fraction 0.1]
"""

from __future__ import annotations

import argparse
import json

from micronet.data.glas import GlaSDataset, train_val_split
from micronet.infer import Segmenter
from micronet.infer.postprocess import tune_postprocess

GRID = {"threshold": [0.2, 0.35, 0.5, 0.65, 0.8], "min_size": [100, 500, 1000, 1500, 2000, 3000],
        "contour_growth": [3.0, 6.0, 9.0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tta", action="store_true")
    args = ap.parse_args()
    full = GlaSDataset(args.data, "train")
    _, val_names = train_val_split(full.names, args.val_fraction, seed=args.seed)
    val = GlaSDataset(args.data, "train", names=val_names)
    seg = Segmenter(weights=args.weights, tta=args.tta)
    maps, labels = [], []
    for item in val:
        maps.append(seg.predict_maps(item["image"], progress=False)[0])
        labels.append(item["labels"])
    best, table = tune_postprocess(maps, labels, GRID)
    print(json.dumps({"val_names": val_names, "best": best.__dict__, "table": table[:10],
                      "default_f1": next(r["f1"] for r in table if r["threshold"] == 0.5
                                         and r["min_size"] == 100 and r["contour_growth"] == 6.0)},
                     indent=1))


if __name__ == "__main__":
    main()
