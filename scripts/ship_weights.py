"""Put trained weights into the package: fp16 safetensors + an entry in weights/index.json.

    python scripts/ship_weights.py --weights RUN/last.safetensors --tag glas_w025 \
        --postprocess RUN/postprocess.json --notes "..." [--scores eval/metrics.json]
    python scripts/ship_weights.py --arch micronet508 --tag glas_w025 \
        --postprocess NEW.json [--scores eval/metrics.json] [--notes "..."]   # entry only

The entry is the weights' card (``micronet.models.WeightsCard``): the file's SHA-256 (checked on
every load), the architecture and model options and µm/px read from the weights' metadata, the
tuned post-processing, and (optionally) the measured Test A/B scores.
Entries are kept in order, recommended first; an existing entry with the same tag is replaced.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from micronet._io import atomic_path, sha256_file
from micronet.infer.run_folder import read_postprocess
from micronet.models import WeightsCard, weights_dir
from micronet.models.weights_io import load_weights, save_weights


def scores_from_metrics(path: Path) -> dict:
    """Pooled and per-image-mean scores per split from an evaluate metrics.json."""
    metrics = json.loads(path.read_text())
    return {"dataset": metrics["dataset"],
            **{split: {"pooled": v["pooled"], "image_mean": v["image_mean"]}
               for split, v in metrics["splits"].items()}}


def update_entry(args: argparse.Namespace) -> None:
    """New post-processing (and scores, notes) for shipped weights, the file untouched."""
    index_path = weights_dir() / "index.json"
    entries = json.loads(index_path.read_text())
    (entry,) = [e for e in entries if e["arch"] == args.arch and e["tag"] == args.tag]
    entry["postprocess"] = dataclasses.asdict(read_postprocess(args.postprocess))
    if args.scores:
        entry["scores"] = scores_from_metrics(Path(args.scores))
    if args.notes:
        entry["notes"] = args.notes
    with atomic_path(index_path) as tmp:
        tmp.write_text(json.dumps(entries, indent=1) + "\n")
    print(index_path, f"{args.arch}.{args.tag}: {entry['postprocess']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--weights", help="weights to ship; without it, only the entry of an "
                    "already shipped --arch/--tag is updated (post-processing, scores, notes)")
    ap.add_argument("--arch", default="micronet508", help="with no --weights: whose entry")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--postprocess", required=True, help="postprocess.json from micronet tune")
    ap.add_argument("--scores", default=None, help="metrics.json from micronet evaluate")
    ap.add_argument("--notes", default="")
    ap.add_argument("--dataset", default="GlaS (Warwick-QU 2016-07-08) train split, "
                    "reconstructed labels")
    args = ap.parse_args()
    if args.weights is None:
        update_entry(args)
        return
    state, meta = load_weights(args.weights)
    card = WeightsCard.from_metadata(meta, name=Path(args.weights).name)
    target = weights_dir() / f"{card.arch}.{args.tag}.safetensors"
    save_weights(state, target, meta, dtype=torch.float16)
    target.chmod(0o644)
    card = dataclasses.replace(
        card, name="", tag=args.tag, file=target.name, sha256=sha256_file(target),
        postprocess=dataclasses.asdict(read_postprocess(args.postprocess)),
        scores=scores_from_metrics(Path(args.scores)) if args.scores else {},
        dataset=args.dataset, notes=args.notes)
    entry = card.to_dict()
    del entry["name"]  # arch.tag
    arch = card.arch
    index_path = weights_dir() / "index.json"
    entries = json.loads(index_path.read_text()) if index_path.exists() else []
    entries = [e for e in entries if not (e["arch"] == arch and e["tag"] == args.tag)]
    entries.insert(0, entry)
    index_path.write_text(json.dumps(entries, indent=1) + "\n")
    print(target, entry["sha256"], f"{target.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
