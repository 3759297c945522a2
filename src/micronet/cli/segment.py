"""``micronet segment`` (images and whole slides) and ``micronet bench segment``."""

from __future__ import annotations

import glob
from pathlib import Path

import typer

from .._console import console
from ..errors import MicronetError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def _is_slide(path: Path) -> bool:
    """SVS/NDPI/... by name; a TIFF counts as a slide when it holds a pyramid."""
    from ..infer.slide import SLIDE_SUFFIXES

    suffix = path.suffix.lower()
    if suffix in SLIDE_SUFFIXES:
        return True
    if suffix not in {".tif", ".tiff"}:
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return len(series.levels) > 1 or bool(tif.is_svs or tif.is_ndpi)
    except Exception:  # unreadable: the image reader gives the one-line error
        return False


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Files from paths, folders (their images, sorted) and globs; plus one error per dud."""
    from ..infer.slide import SLIDE_SUFFIXES

    suffixes = IMAGE_SUFFIXES | SLIDE_SUFFIXES
    files: list[Path] = []
    errors: list[str] = []
    for item in inputs:
        path = Path(item)
        if any(ch in item for ch in "*?[") and not path.exists():
            matches = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
            if not matches:
                errors.append(f"{item}: no files match this pattern")
            files += matches
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file()
                           and p.suffix.lower() in suffixes and not p.name.startswith("."))
            if not found:
                errors.append(f"{path}: folder holds no images ({', '.join(sorted(suffixes))})")
            files += found
        elif path.exists():
            files.append(path)
        else:
            errors.append(f"{path}: file not found")
    seen: set[Path] = set()
    unique = [f for f in files if not (f.resolve() in seen or seen.add(f.resolve()))]
    return unique, errors


def output_names(files: list[Path]) -> dict[Path, str]:
    """Output name per input: its stem, unless that collides with another input's. Inputs in one
    folder that differ only by suffix get it appended (``x_png``, ``x_tif``); inputs in different
    folders get as many parent folder names as tell them apart (``a_x``, ``b_x``), so no input
    overwrites another's outputs."""
    from collections import Counter

    parents = {f: f.resolve().parent.parts[1:] for f in files}  # without the root
    same_folder = Counter((parents[f], f.stem) for f in files)
    base = {f: f"{f.stem}_{f.suffix.lstrip('.').lower()}"
            if same_folder[(parents[f], f.stem)] > 1 else f.stem for f in files}
    names, depth = dict(base), dict.fromkeys(files, 0)
    while True:
        counts = Counter(names.values())
        moved = False
        for f in files:
            if counts[names[f]] > 1 and depth[f] < len(parents[f]):
                depth[f] += 1
                names[f] = "_".join([*parents[f][-depth[f]:], base[f]])
                moved = True
        if not moved:
            return names


def _parse_formats(formats: str) -> tuple[str, ...]:
    from ..infer.export import FORMATS

    chosen = tuple(dict.fromkeys(f.strip() for f in formats.split(",") if f.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise MicronetError(f"--formats {formats!r}: choose from {','.join(FORMATS)}")
    return chosen


def _outputs_exist(out: Path, name: str, formats: tuple[str, ...], slide: bool) -> bool:
    from ..infer.export import output_paths

    wanted = [f for f in formats if not (slide and f == "labels")]
    paths = output_paths(out, name, wanted)
    if "labels" in paths:
        paths["labels_tif"] = output_paths(out, name, ["labels"], labels_tif=True)["labels"]
        if paths["labels_tif"].exists():
            paths.pop("labels")
        paths.pop("labels_tif")
    return all(p.exists() for p in paths.values())


SUMMARY_COLUMNS = ("input", "name", "status", "kind", "glands", "width_px", "height_px", "mpp",
                   "gland_area_px", "gland_area_fraction", "mean_gland_area_px")


def summary_row(path: Path, name: str, kind: str, glands: list[dict], width: int, height: int,
                mpp: float | None) -> dict:
    """One ``summary.csv`` row: gland count and area of an input (level-0 pixels for slides)."""
    area = float(sum(g["area_px"] for g in glands))
    row = {"input": str(path), "name": name, "status": "ok", "kind": kind, "glands": len(glands),
           "width_px": width, "height_px": height, "mpp": mpp if mpp else "",
           "gland_area_px": round(area, 2),
           "gland_area_fraction": round(area / (width * height), 5),
           "mean_gland_area_px": round(area / len(glands), 2) if glands else ""}
    if mpp:
        row["gland_area_um2"] = round(area * mpp**2, 2)
        row["mean_gland_area_um2"] = round(area * mpp**2 / len(glands), 2) if glands else ""
    return row


def segment_files(files: list[Path], out: Path, segmenter, formats: tuple[str, ...],
                  mpp: float | None, overwrite: bool, progress) -> list[str]:
    """Segment each file into ``out`` and write ``out/summary.csv`` (one row per input: gland
    count and area, or why it was skipped or failed); returns one error line per failed file.

    Post-processing and export of an image run in a worker thread while the next image goes
    through the network, so a GPU is not left waiting on them; at most two images are held.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    from .._io import read_rgb
    from ..infer.export import export_segmentation, write_csv

    errors: list[str] = []
    rows: list[dict] = []
    names = output_names(files)
    task = progress.add_task("inputs", total=len(files))
    pending: list[tuple[Path, str, Future]] = []  # the image being finished, if any

    def fail(path: Path, name: str, exc: Exception) -> None:
        errors.append(_error_line(path, exc))
        console.print(f"[bold red]error:[/] {errors[-1]}", highlight=False, soft_wrap=True)
        rows.append({"input": str(path), "name": name, "status": f"error: {errors[-1]}"})

    def collect() -> None:
        """Report the image in the worker (waiting for it): keeps output in input order."""
        if not pending:
            return
        path, name, future = pending.pop()
        try:
            rows.append(future.result())
            typer.echo(f"{path}: {rows[-1]['glands']} glands{_renamed(path, name)}")
        except (MicronetError, OSError) as exc:
            fail(path, name, exc)
        progress.advance(task)

    def finish(path: Path, name: str, inference) -> dict:
        result = segmenter.finish(inference)
        image = inference.image
        export_segmentation(result, image, out, name, formats)
        return summary_row(path, name, "image", result.glands, image.shape[1], image.shape[0],
                           result.mpp)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="micronet-finish") as worker:
        for path in files:
            name = names[path]
            try:
                slide = _is_slide(path)
                if not overwrite and _outputs_exist(out, name, formats, slide):
                    collect()
                    console.print(f"{path}: outputs exist, skipped (--overwrite redoes them)",
                                  highlight=False, soft_wrap=True)
                    rows.append({"input": str(path), "name": name, "status": "skipped"})
                elif slide:
                    collect()
                    result = segmenter.predict_slide(path, mpp=mpp, out_dir=out,
                                                     formats=formats, progress=progress,
                                                     name=name)
                    typer.echo(f"{path}: {result.num_glands} glands (slide, level "
                               f"{result.level}, {result.working_mpp:.3f} µm/px, "
                               f"{result.skipped}/{result.chunks} chunks without tissue)"
                               f"{_renamed(path, name)}")
                    rows.append(summary_row(path, name, "slide", result.glands,
                                            *result.dimensions, result.mpp))
                else:  # the network pass overlaps the previous image's finishing
                    inference = segmenter.infer(read_rgb(path), mpp=mpp, progress=progress)
                    collect()
                    pending.append((path, name, worker.submit(finish, path, name, inference)))
                    continue  # reported (and counted) when collected
            except (MicronetError, OSError) as exc:
                collect()
                fail(path, name, exc)
            progress.advance(task)
        collect()
    if rows:
        write_csv(out / "summary.csv", rows, first=SUMMARY_COLUMNS)
    return errors


def _renamed(path: Path, name: str) -> str:
    """Tells where outputs went when the name had to differ from the file's stem."""
    return f" (outputs {name}_*)" if name != path.stem else ""


def _error_line(path: Path, exc: Exception) -> str:
    """One line naming the input and the problem."""
    if isinstance(exc, OSError):
        return f"{path}: {exc.strerror or exc}"
    return str(exc) if str(path) in str(exc) else f"{path}: {exc}"


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``segment`` and ``bench segment``."""

    @app.command("segment")
    def segment_cmd(
        inputs: list[str] = typer.Argument(..., help="Images, slides, folders or globs."),
        out: Path = typer.Option(..., "--out", "-o", file_okay=False, help="Output folder."),
        model: str = typer.Option("micronet508", "--model", help="Architecture."),
        width: float = typer.Option(None, "--width", help="Width (default: the weights')."),
        weights: str = typer.Option("glas", "--weights",
                                    help="Shipped tag/dataset, .safetensors file or run folder."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
        tta: bool = typer.Option(False, "--tta", help="Average 8 flips/rotations."),
        mpp: float = typer.Option(None, "--mpp", help="Input µm/px (images: resampled to the "
                                                      "model's; slides: level 0, if missing)."),
        batch_size: int = typer.Option(4, "--batch-size", min=1, help="Tiles per forward."),
        formats: str = typer.Option("labels,overlay,geojson,csv", "--formats",
                                    help="Comma-separated outputs."),
        precision: str = typer.Option("auto", "--precision", help="auto | fp32 | bf16 | fp16"),
        postprocess: Path = typer.Option(
            None, "--postprocess", dir_okay=False,
            help="Post-processing JSON (e.g. from `micronet tune --out`) instead of the "
                 "weights' own."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Redo existing outputs."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Hide progress bars."),
    ) -> None:
        """Segment glands: NAME_labels.png, NAME_overlay.png, NAME.geojson, NAME_glands.csv,
        and summary.csv (one row per input)."""
        from .._console import make_progress
        from ..infer import Segmenter
        from ..infer.tune import read_postprocess

        chosen = _parse_formats(formats)
        tuned = read_postprocess(postprocess) if postprocess is not None else None
        files, bad = expand_inputs(inputs)
        for line in bad:
            console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
        errors = list(bad)
        if files:
            segmenter = Segmenter(model=model, width=width, weights=weights, device=device,
                                  batch_size=batch_size, tta=tta, precision=precision,
                                  postprocess=tuned)
            with make_progress(False if quiet else None) as progress:
                errors += segment_files(files, out, segmenter, chosen, mpp, overwrite, progress)
        if errors:
            raise MicronetError(f"{len(errors)} of {len(files) + len(bad)} input(s) failed "
                                "(see the lines above)")

    @bench_app.command("segment")
    def bench_segment_cmd(
        size: int = typer.Option(4000, "--size", min=16, help="Synthetic image side (px)."),
        widths: str = typer.Option("0.125,0.25", "--widths", help="Comma-separated widths."),
        batch_size: int = typer.Option(4, "--batch-size", min=1),
        device: str = typer.Option("auto", "--device"),
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
