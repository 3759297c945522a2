"""Put trained weights into the package: fp16 safetensors + an entry in weights/index.json.

    python scripts/ship_weights.py --weights RUN/last.safetensors --tag glas_w025 \
        --postprocess RUN/postprocess.json --notes "..." [--scores eval/metrics.json]

The entry records the file's SHA-256 (checked on every load), the architecture read from the
weights' metadata, the tuned post-processing, and (optionally) the measured Test A/B scores.
Entries are kept in order, recommended first; an existing entry with the same tag is replaced.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from micronet._io import sha256_file
from micronet.models._pretrained import weights_dir
from micronet.models.weights_io import load_weights, save_weights


def scores_from_metrics(path: Path) -> dict:
    """Pooled and per-image-mean scores per split from an evaluate metrics.json."""
    metrics = json.loads(path.read_text())
    return {"dataset": metrics["dataset"],
            **{split: {"pooled": v["pooled"], "image_mean": v["image_mean"]}
               for split, v in metrics["splits"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--postprocess", required=True, help="postprocess.json from micronet tune")
    ap.add_argument("--scores", default=None, help="metrics.json from micronet evaluate")
    ap.add_argument("--notes", default="")
    ap.add_argument("--dataset", default="GlaS (Warwick-QU 2016-07-08) train split, "
                    "reconstructed labels")
    args = ap.parse_args()
    state, meta = load_weights(args.weights)
    arch = meta["arch"]
    target = weights_dir() / f"{arch}.{args.tag}.safetensors"
    save_weights(state, target, meta, dtype=torch.float16)
    target.chmod(0o644)
    entry = {"arch": arch, "tag": args.tag, "file": target.name, "sha256": sha256_file(target),
             "width": float(meta["width"]), "num_classes": int(meta["num_classes"]),
             "postprocess": json.loads(Path(args.postprocess).read_text())["postprocess"],
             "scores": scores_from_metrics(Path(args.scores)) if args.scores else {},
             "dataset": args.dataset, "notes": args.notes}
    index_path = weights_dir() / "index.json"
    entries = json.loads(index_path.read_text()) if index_path.exists() else []
    entries = [e for e in entries if not (e["arch"] == arch and e["tag"] == args.tag)]
    entries.insert(0, entry)
    index_path.write_text(json.dumps(entries, indent=1) + "\n")
    print(target, entry["sha256"], f"{target.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
