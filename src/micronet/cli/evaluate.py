"""``micronet evaluate``: GlaS object F1 / Dice / Hausdorff of predictions or a model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .._console import console
from ..errors import MicronetError
from .common import (
    DEFAULT_WEIGHTS,
    device_option,
    model_option,
    postprocess_option,
    quiet_option,
    tta_option,
    weights_option,
    width_option,
)

if TYPE_CHECKING:
    import numpy as np

    from ..infer import Segmentation, Segmenter

_HELP = """Score instance segmentations with the GlaS challenge measures.

\b
From predictions:  micronet evaluate --pred PRED --gt GT --out OUT
                   micronet evaluate --pred PRED --data GLAS --split testA testB --out OUT
From a model:      micronet evaluate --data GLAS --out OUT           (the shipped weights)
                   micronet evaluate --weights RUN_DIR_OR_SAFETENSORS --data GLAS --out OUT

Label files pair by key: the file stem minus one of _anno, _labels, _label, _instances, _mask,
_gt, _pred (so testA_1_anno.bmp pairs with testA_1.png or testA_1_labels.png). Writes
metrics.json, per_image.csv, report.md and figures to OUT; nothing on error.
"""


def _splits(split: list[str] | None, extra: list[str] | None) -> list[str] | None:
    """``--split testA testB``: click options take one value, so trailing words arrive as extra."""
    if extra and not split:
        raise MicronetError(f"unexpected argument {extra[0]!r} (splits follow --split)")
    names = [s for item in (split or []) + (extra or []) for s in item.split(",") if s]
    return names or None


def _segmenter(model: str | None, weights: str, width: float | None, device: str,
               tta: bool = False, postprocess: Path | None = None
               ) -> tuple[Segmenter, dict[str, Any]]:
    from ..infer import Segmenter
    from ..infer.run_folder import read_postprocess

    if model is not None and Path(model).exists():
        raise MicronetError(f"--model {model}: --model is the architecture; give weights files "
                            "and run folders with --weights")
    pp = read_postprocess(postprocess) if postprocess is not None else None
    seg = Segmenter(model=model, weights=weights, width=width, device=device, tta=tta,
                    postprocess=pp)
    info: dict[str, Any] = {"model": model or seg.info.arch, "weights": weights, "width": width,
                            "tta": tta,
                            "postprocess_values": seg.postprocess.__dict__}
    if postprocess is not None:
        info["postprocess"] = str(postprocess)
    return seg, info


class _Quiet:
    """Segments without per-image progress bars (evaluate shows one bar over the images)."""

    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter

    def predict(self, image: np.ndarray) -> Segmentation:
        return self.segmenter.predict(image, progress=False)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``evaluate``."""

    @app.command("evaluate", help=_HELP)
    def evaluate_cmd(
        extra_splits: list[str] = typer.Argument(None, hidden=True, metavar="SPLIT",
                                                 show_default=False),
        out: Path = typer.Option(..., "--out", "-o", file_okay=False,
                                 help="Output folder for metrics.json, per_image.csv, report.md, "
                                      "figures."),
        pred: Path = typer.Option(None, "--pred", exists=True, file_okay=False,
                                  help="Folder of predicted label images (PNG/TIFF/BMP)."),
        gt: Path = typer.Option(None, "--gt", exists=True, file_okay=False,
                                help="Folder of ground-truth label images."),
        data: Path = typer.Option(None, "--data", exists=True,
                                  help="GlaS folder (official release layout or `micronet data "
                                       "glas` import): ground truth and RGB images."),
        split: list[str] = typer.Option(None, "--split", metavar="SPLIT",
                                        help="Splits (file-name prefixes), e.g. --split testA "
                                             "testB. Default with --data: testA testB."),
        images: Path = typer.Option(None, "--images", exists=True, file_okay=False,
                                    help="RGB images (by key) for the best/worst overlay figure."),
        model: str = model_option(None),
        weights: str = weights_option(None, " Without --pred: segment the --data images "
                                            "with these (default: glas) and score them."),
        width: float = width_option(),
        device: str = device_option(),
        tta: bool = tta_option(),
        postprocess: Path = postprocess_option(),
        quiet: bool = quiet_option(),
        dataset_label: str = typer.Option(None, "--dataset-label",
                                          help="Name of the data in the report title "
                                               "(default: with --data the GlaS import "
                                               "manifest's, else 'GlaS'; with --gt 'ground "
                                               "truth in GT')."),
    ) -> None:
        from ..metrics.evaluate import evaluate_folders, evaluate_model

        splits = _splits(split, extra_splits)
        model_given = model is not None or weights is not None
        if pred is None:
            if data is None:
                raise MicronetError("give --pred (score saved predictions) or --data (segment "
                                    "its images with --weights, default the shipped ones, "
                                    "then score)")
            if gt is not None or images is not None:
                raise MicronetError("--gt/--images go with --pred; to segment and score use "
                                    "--data")
            segmenter, info = _segmenter(model, weights or DEFAULT_WEIGHTS,
                                         width, device, tta, postprocess)
            metrics = evaluate_model(_Quiet(segmenter), data, out, splits=splits,
                                     dataset_label=dataset_label, model_info=info)
        else:
            if model_given or width is not None or tta or postprocess is not None:
                raise MicronetError("--model/--weights/--width/--tta/--postprocess segment "
                                    "images; they do not go with --pred")
            metrics = evaluate_folders(pred, gt, out, images, data_dir=data, splits=splits,
                                       dataset_label=dataset_label)
        for name, s in metrics["splits"].items():
            p, m = s["pooled"], s["image_mean"]
            typer.echo(f"{name}: {s['n_images']} images  object F1 {p['f1']:.3f} "
                       f"(per-image mean {m['f1']:.3f})  object Dice {p['object_dice']:.3f}  "
                       f"object Hausdorff {p['object_hausdorff']:.1f}  pixel F1 "
                       f"{p['pixel_f1']:.3f}")
        console.print(f"{metrics['dataset']}: report in {out / 'report.md'}", highlight=False)
