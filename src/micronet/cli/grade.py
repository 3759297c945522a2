"""``micronet grade``: benign/malignant and the GlaS grade of H&E images from their glands."""

from __future__ import annotations

from pathlib import Path

import typer

from .._console import console
from ..errors import MicronetError


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``grade``."""

    @app.command("grade")
    def grade_cmd(
        inputs: list[str] = typer.Argument(..., help="Images, folders or globs."),
        out: Path = typer.Option(..., "--out", "-o", file_okay=False, help="Output folder."),
        labels: Path = typer.Option(
            None, "--labels", exists=True, file_okay=False,
            help="Use these gland label maps (NAME_labels.png or NAME.png, e.g. from `micronet "
                 "segment`) instead of segmenting."),
        weights: str = typer.Option("glas", "--weights",
                                    help="Segmentation weights: shipped tag, file or run folder."),
        grader: Path = typer.Option(None, "--grader", dir_okay=False,
                                    help="Grade classifier JSON (default: the shipped GlaS one)."),
        mpp: float = typer.Option(None, "--mpp", help="Input µm/px (default: GlaS's 0.62)."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    ) -> None:
        """Probability of malignancy, GlaS grade and the features behind them: NAME_grade.csv
        per image and grades.csv (one row per input)."""
        from ..grade.batch import grade_files
        from ..grade.grader import load_grader
        from ..infer.batch import expand_inputs

        model = load_grader(grader)
        files, bad = expand_inputs(inputs)
        for line in bad:
            console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
        segmenter = None
        if files and labels is None:
            from ..infer import Segmenter

            segmenter = Segmenter(weights=weights, device=device)
        errors = bad + (grade_files(files, out, model, segmenter=segmenter, labels_dir=labels,
                                    mpp=mpp, echo=typer.echo) if files else [])
        if errors:
            raise MicronetError(f"{len(errors)} of {len(files) + len(bad)} input(s) failed "
                                "(see the lines above)")
