"""``micronet tune``: post-processing tuned on the validation hold-out of the training split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .common import device_option, quiet_option, tta_option

if TYPE_CHECKING:
    from ..data.datasets import GlaSDataset, ImageFolderDataset
    from ..infer.run_folder import RunFolder

    Dataset = GlaSDataset | ImageFolderDataset


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``micronet tune``."""

    @app.command("tune")
    def tune_cmd(
        weights: Path = typer.Option(..., "--weights",
                                     help="Training run folder or .safetensors file, whole or "
                                          "sharded (its run's split.json says which images "
                                          "were held out)."),
        data: Path = typer.Option(..., "--data", exists=True, file_okay=False,
                                  help="The training data (imported GlaS folder or pairs)."),
        split: str = typer.Option("train", "--split"),
        val_fraction: float = typer.Option(
            None, "--val-fraction", help="Recompute the hold-out with this fraction (default: "
                                         "the run's split.json)."),
        seed: int = typer.Option(None, "--seed", help="Recompute the hold-out with this seed."),
        val_split: str = typer.Option(None, "--val-split",
                                      help="Recompute the hold-out: random | grade."),
        images: str = typer.Option(
            "holdout", "--images",
            help="holdout: the run's held-out images; all: every image of the split, held-out "
                 "and trained-on (for a hold-out too small or one-sided, e.g. GlaS's 8 images "
                 "with 1 malignant; trained-on images may flatter the model)."),
        objective: str = typer.Option(
            "f1", "--objective",
            help="f1 (object F1: detection), dice (object Dice: gland shapes; keeps small "
                 "glands) or f1+dice (their mean)."),
        device: str = device_option(),
        tta: bool = tta_option(),
        quiet: bool = quiet_option(),
        write: bool = typer.Option(True, "--write/--no-write",
                                   help="Write postprocess.json beside the weights."),
        out: Path = typer.Option(None, "--out", dir_okay=False,
                                 help="Write the tuned values here instead (a JSON file)."),
    ) -> None:
        """Grid-search post-processing for the best object F1 on the held-out training images.

        Never tune on Test A/B: the held-out images are the ones training validated on (the
        run's split.json when WEIGHTS is a run folder or sits in one).
        """
        from ..data.folders import open_dataset
        from ..errors import MicronetError
        from ..infer import Segmenter
        from ..infer.run_folder import RunFolder, write_postprocess
        from ..infer.tune import (
            DEFAULT_GRID,
            TUNE_BASE,
            TUNE_OBJECTIVES,
            holdout_maps,
            score_with,
            tune_postprocess,
        )
        from ..models.weights_io import resolve_weights

        if images not in ("holdout", "all"):
            raise MicronetError(f"--images {images!r}: expected holdout or all")
        if objective not in TUNE_OBJECTIVES:
            raise MicronetError(f"--objective {objective!r}: expected "
                                f"{', '.join(TUNE_OBJECTIVES)}")
        resolve_weights(weights)  # a missing file is a one-line error before data is read
        run = RunFolder.of(weights)
        dataset = open_dataset(data, split)
        val_names = _held_out(run, dataset, data, val_fraction, seed, val_split)
        if images == "all":
            val_names = list(dataset.names)
        if not val_names:
            raise MicronetError(f"{data}: no held-out images (val_fraction={val_fraction})")
        index = {n: i for i, n in enumerate(dataset.names)}
        items = [dataset[index[n]] for n in val_names]
        segmenter = Segmenter(weights=weights, device=device, postprocess={}, tta=tta)
        labels = [it["labels"] for it in items]
        maps = holdout_maps(segmenter, [it["image"] for it in items])
        best, table = tune_postprocess(maps, labels, DEFAULT_GRID, base=TUNE_BASE,
                                       objective=objective)
        for row in table[:5]:
            typer.echo("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                 for k, v in row.items()))
        kind = "held-out" if images == "holdout" else f"{split} (held-out and trained-on)"
        typer.echo(f"best on {len(val_names)} {kind} images: {best.__dict__}")
        scores = score_with(maps, labels, best)
        typer.echo("with these values (pooled): " + ", ".join(
            f"{k} {v:.4g}" for k, v in scores.items()))
        views = len(segmenter.transforms)  # 8 with --tta: recorded beside the values
        if out is not None:
            typer.echo(str(write_postprocess(out, best, table, val_names, objective, views,
                                             scores)))
        elif write:
            typer.echo(str(run.write_postprocess(best, table, val_names, objective, views,
                                                 scores)))


def _held_out(run: RunFolder, dataset: Dataset, data: Path, val_fraction: float | None,
              seed: int | None, val_split: str | None) -> list[str]:
    """The images the run validated on: its ``split.json``; recomputed from the run's config
    (or the defaults) when it has none or when a split option is given."""
    from ..errors import MicronetError
    from ..train.config import TrainConfig, load_config
    from ..train.data import validation_split

    recorded = run.read_split()
    if recorded is not None and (val_fraction, seed, val_split) == (None, None, None):
        unknown = sorted(set(recorded[1]) - set(dataset.names))
        if unknown:
            raise MicronetError(f"{run.split}: held-out images not in {data}: "
                                f"{', '.join(unknown[:5])} (is --data the run's training data?)")
        return recorded[1]
    config = load_config(run.config) if run.config.is_file() else TrainConfig()
    return validation_split(
        dataset, config.data.val_fraction if val_fraction is None else val_fraction,
        config.run.seed if seed is None else seed,
        config.data.val_split if val_split is None else val_split, data)[1]
