"""``micronet segment`` (images and whole slides) and ``micronet bench segment``: option parsing
around :mod:`micronet.infer.batch`, which holds the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from .._console import console
from ..errors import MicronetError
from ..infer.cohort import SPLIT_ABOVE_MP
from .common import (
    batch_size_option,
    device_option,
    model_option,
    postprocess_option,
    precision_option,
    quiet_option,
    tta_option,
    weights_option,
    width_option,
)


def _parse_formats(formats: str) -> tuple[str, ...]:
    from ..infer.export import FORMATS

    chosen = tuple(dict.fromkeys(f.strip() for f in formats.split(",") if f.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise MicronetError(f"--formats {formats!r}: choose from {','.join(FORMATS)}")
    return chosen


def _segment_cohort(inputs: list[str], out: Path, spec: dict[str, Any],
                    formats: tuple[str, ...], mpp: float | None, overwrite: bool, quiet: bool,
                    cluster: str, split_above: float, **options: Any) -> None:
    """``segment --cluster``: start or join the cluster, print its dashboard, run the cohort."""
    from ..infer.cohort import open_cluster, segment_cohort

    with open_cluster(cluster, **options) as (client, threads):
        try:
            link = client.dashboard_link or "none"
        except KeyError:  # a scheduler started without one
            link = "none"
        console.print(f"dask dashboard: {link}", highlight=False, soft_wrap=True)
        errors = segment_cohort(inputs, out, spec, client=client, formats=formats, mpp=mpp,
                                overwrite=overwrite, threads=threads, split_above=split_above,
                                progress=False if quiet else None, echo=typer.echo)
    if errors:
        raise MicronetError(f"{len(errors)} input(s) failed (see the lines above and "
                            f"{out / 'summary.csv'})")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``segment`` and ``bench segment``."""

    @app.command("segment")
    def segment_cmd(
        inputs: list[str] = typer.Argument(..., help="Images, slides, folders or globs."),
        out: Path = typer.Option(..., "--out", "-o", file_okay=False, help="Output folder."),
        model: str | None = model_option(None),
        width: float = width_option(),
        weights: str = weights_option(),
        device: str = device_option(),
        tta: bool = tta_option(),
        mpp: float = typer.Option(None, "--mpp", help="Input µm/px (images: resampled to the "
                                                      "model's; slides: level 0, if missing)."),
        batch_size: int = batch_size_option(),
        formats: str = typer.Option("labels,overlay,geojson,csv,tissue", "--formats",
                                    help="Comma-separated outputs."),
        precision: str = precision_option(),
        postprocess: Path = postprocess_option(),
        overwrite: bool = typer.Option(False, "--overwrite", help="Redo existing outputs."),
        grade: bool = typer.Option(False, "--grade", help="Add p_malignant and GlaS grade "
                                   "(see `micronet grade`) to summary.csv."),
        quiet: bool = quiet_option(),
        tissue_mask: Path = typer.Option(
            None, "--tissue-mask", dir_okay=False,
            help="Your tissue mask (image of any size, non-zero = tissue, stretched over each "
                 "input) instead of the detected one."),
        no_tissue_mask: bool = typer.Option(
            False, "--no-tissue-mask", help="Segment everywhere: no tissue detection (glass and "
                                            "pen ink may then become glands)."),
        cluster: str = typer.Option(
            None, "--cluster", rich_help_panel="Cohorts on a Dask cluster",
            help="local | tcp://HOST:PORT (an existing scheduler) | slurm: one task per "
                 "slide; inputs may be .txt/.csv lists of PATH[,MPP]."),
        workers: int = typer.Option(None, "--workers", min=1, rich_help_panel="Cohorts on a "
                                    "Dask cluster", help="Local worker processes (default: "
                                    "one per 2 cores); slurm: jobs."),
        queue: str = typer.Option(None, "--queue", rich_help_panel="Cohorts on a Dask cluster",
                                  help="SLURM partition."),
        cores: int = typer.Option(None, "--cores", min=1, rich_help_panel="Cohorts on a Dask "
                                  "cluster", help="CPUs per SLURM job (one slide at a time)."),
        memory: str = typer.Option(None, "--memory", rich_help_panel="Cohorts on a Dask cluster",
                                   help="Memory per SLURM job, e.g. 16GB."),
        walltime: str = typer.Option(None, "--walltime", rich_help_panel="Cohorts on a Dask "
                                     "cluster", help="SLURM time limit, e.g. 04:00:00."),
        jobs: int = typer.Option(None, "--jobs", min=1, rich_help_panel="Cohorts on a Dask "
                                 "cluster", help="SLURM jobs (workers) to submit."),
        split_above: float = typer.Option(
            SPLIT_ABOVE_MP, "--split-above", min=0, metavar="MP",
            rich_help_panel="Cohorts on a Dask cluster",
            help="Split slides of more than MP level-0 megapixels across workers: one task per "
                 "chunk, merged into the same outputs."),
    ) -> None:
        """Segment glands: NAME_labels.png, NAME_overlay.png, NAME.geojson, NAME_glands.csv,
        NAME_tissue.png (the tissue mask used), and summary.csv (one row per input ever
        segmented into OUT). Inputs already segmented into OUT, unchanged and with the same
        settings, are skipped."""
        from .._console import make_progress
        from ..infer import Segmenter
        from ..infer.batch import gather_inputs, segment_files
        from ..infer.run_folder import read_postprocess
        from ..infer.tissue import read_tissue_mask

        chosen = _parse_formats(formats)
        tuned = read_postprocess(postprocess) if postprocess is not None else None
        if tissue_mask is not None and no_tissue_mask:
            raise MicronetError("--tissue-mask and --no-tissue-mask: choose one")
        tissue = read_tissue_mask(tissue_mask) if tissue_mask is not None else not no_tissue_mask
        if no_tissue_mask:  # no mask, no NAME_tissue.png
            chosen = tuple(f for f in chosen if f != "tissue")
        if cluster is not None:
            if grade:
                raise MicronetError("--grade: not available with --cluster yet")
            spec = {"model": model, "width": width, "weights": weights, "device": device,
                    "batch_size": batch_size, "tta": tta, "precision": precision,
                    "postprocess": tuned, "tissue": tissue}
            _segment_cohort(inputs, out, spec, chosen, mpp, overwrite, quiet, cluster,
                            split_above, workers=workers, jobs=jobs, queue=queue, cores=cores,
                            memory=memory, walltime=walltime)
            return
        grader = None
        if grade:
            from ..grade import load_grader

            grader = load_grader()
        files, bad = gather_inputs(inputs, out)  # the missing ones get summary rows
        for line in bad:
            console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
        errors = list(bad)
        if files:
            segmenter = Segmenter(model=model, width=width, weights=weights, device=device,
                                  batch_size=batch_size, tta=tta, precision=precision,
                                  postprocess=tuned, tissue=tissue)
            with make_progress(False if quiet else None) as progress:
                errors += segment_files(files, out, segmenter, chosen, mpp, overwrite, progress,
                                        echo=typer.echo, grader=grader)
        if errors:
            raise MicronetError(f"{len(errors)} of {len(files) + len(bad)} input(s) failed "
                                "(see the lines above)")

    @bench_app.command("segment")
    def bench_segment_cmd(
        size: int = typer.Option(4000, "--size", min=16, help="Synthetic image side (px)."),
        widths: str = typer.Option("0.125,0.25", "--widths", help="Comma-separated widths."),
        batch_size: int = batch_size_option(),
        device: str = device_option(),
        baseline: bool = typer.Option(True, "--baseline/--no-baseline",
                                      help="Also time a plain non-overlapping tile loop."),
    ) -> None:
        """Megapixels/s and peak RSS of `segment` vs a plain tile loop, in one run."""
        from ..infer.bench import format_rows, run_segment_benchmark

        try:
            ws = [float(w) for w in widths.split(",") if w.strip()]
        except ValueError:
            raise MicronetError(f"--widths {widths!r}: give numbers like 0.125,0.25") from None
        rows = run_segment_benchmark(size, ws, batch_size=batch_size, device=device,
                                     baseline=baseline)
        typer.echo(format_rows(rows))
