"""``micronet evaluate``: GlaS object F1 / Dice / Hausdorff of predictions or a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from .._console import console
from ..errors import MicronetError

_HELP = """Score instance segmentations with the GlaS challenge measures.

\b
From predictions:  micronet evaluate --pred PRED --gt GT --out OUT
                   micronet evaluate --pred PRED --data GLAS --split testA testB --out OUT
From a model:      micronet evaluate --model micronet508 --weights glas --data GLAS --out OUT
                   micronet evaluate --model RUN_DIR_OR_SAFETENSORS --data GLAS --out OUT

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


def _segmenter(model: str, weights: str | None, width: float | None, device: str,
               tta: bool = False, postprocess: Path | None = None) -> tuple[Any, dict[str, Any]]:
    from ..infer import Segmenter
    from ..infer.run_folder import read_postprocess

    pp = read_postprocess(postprocess) if postprocess is not None else None
    common = {"width": width, "device": device, "tta": tta, "postprocess": pp}
    if Path(model).exists():
        if weights is not None:
            raise MicronetError(f"--weights given with a checkpoint path ({model}); use one")
        seg = Segmenter(weights=str(Path(model)), **common)
        info: dict[str, Any] = {"model": str(Path(model))}
    else:
        if weights is None:
            console.print(f"[yellow]warning:[/] {model} without --weights has random weights; "
                          "its scores only test the pipeline", highlight=False)
        seg = Segmenter(model=model, weights=weights, **common)
        info = {"model": model, "weights": weights}
    info.update(width=width, tta=tta, postprocess_values=seg.postprocess.__dict__)
    if postprocess is not None:
        info["postprocess"] = str(postprocess)
    return seg, info


class _Quiet:
    """Calls ``predict(image, progress=False)`` when the segmenter has that switch."""

    def __init__(self, segmenter: Any) -> None:
        import inspect

        self.segmenter = segmenter
        params = inspect.signature(segmenter.predict).parameters
        self.kwargs = {"progress": False} if "progress" in params else {}

    def predict(self, image: Any) -> Any:
        return self.segmenter.predict(image, **self.kwargs)


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
        model: str = typer.Option(None, "--model",
                                  help="Model name, training run folder or .safetensors file: "
                                       "segment the --data images and score them."),
        weights: str = typer.Option(None, "--weights",
                                    help="With a model name: 'glas' or a .safetensors file."),
        width: float = typer.Option(None, "--width", help="Width multiplier of the model."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N] | mps."),
        tta: bool = typer.Option(False, "--tta", help="With --model: average 8 flips/rotations "
                                                      "(as `segment --tta`; 8x slower)."),
        postprocess: Path = typer.Option(
            None, "--postprocess", dir_okay=False,
            help="With --model: post-processing from this JSON (e.g. a `micronet tune "
                 "--out` file) instead of the weights' own."),
        dataset_label: str = typer.Option(None, "--dataset-label",
                                          help="Name of the data in the report title "
                                               "(default: with --data the GlaS import "
                                               "manifest's, else 'GlaS'; with --gt 'ground "
                                               "truth in GT')."),
    ) -> None:
        from ..metrics.evaluate import evaluate_folders, evaluate_model

        splits = _splits(split, extra_splits)
        if (pred is None) == (model is None):
            raise MicronetError("give exactly one of --pred (score saved predictions) or --model "
                                "(segment, then score)")
        if model is not None:
            if data is None:
                raise MicronetError("--model needs --data (a GlaS folder with the RGB images)")
            if gt is not None or images is not None:
                raise MicronetError("--gt/--images go with --pred; with --model use --data")
            segmenter, info = _segmenter(model, weights, width, device, tta, postprocess)
            metrics = evaluate_model(_Quiet(segmenter), data, out, splits=splits,
                                     dataset_label=dataset_label, model_info=info)
        else:
            if weights is not None or width is not None or tta or postprocess is not None:
                raise MicronetError("--weights/--width/--tta/--postprocess go with --model")
            metrics = evaluate_folders(pred, gt, out, images, data_dir=data, splits=splits,
                                       dataset_label=dataset_label)
        for name, s in metrics["splits"].items():
            p, m = s["pooled"], s["image_mean"]
            typer.echo(f"{name}: {s['n_images']} images  object F1 {p['f1']:.3f} "
                       f"(per-image mean {m['f1']:.3f})  object Dice {p['object_dice']:.3f}  "
                       f"object Hausdorff {p['object_hausdorff']:.1f}  pixel F1 "
                       f"{p['pixel_f1']:.3f}")
        console.print(f"{metrics['dataset']}: report in {out / 'report.md'}", highlight=False)
