"""Segment a batch of inputs (images, slides, folders, globs) into one output folder.

The pipeline behind ``micronet segment``, usable from Python: :func:`expand_inputs` turns paths,
folders and globs into files, :func:`output_names` gives each a collision-free output name, and
:func:`segment_files` segments them all and writes ``summary.csv`` (one row per input).
:func:`segment_inputs` does the three in one call.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._console import console
from ..data.folders import IMAGE_SUFFIXES, list_images, natural_key
from ..errors import MicronetError

if TYPE_CHECKING:
    from rich.progress import Progress

    from .segmenter import Inference, Segmenter

__all__ = ["SUMMARY_COLUMNS", "is_slide", "expand_inputs", "output_names",
           "summary_row", "segment_files", "segment_inputs"]

SUMMARY_COLUMNS = ("input", "name", "status", "kind", "glands", "width_px", "height_px", "mpp",
                   "gland_area_px", "gland_area_fraction", "mean_gland_area_px")


def is_slide(path: Path) -> bool:
    """SVS/NDPI/... by name; a TIFF counts as a slide when it holds a pyramid."""
    from .slide import SLIDE_SUFFIXES

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


def expand_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """Files from paths, folders (their images, sorted) and globs; plus one error per dud."""
    from .slide import SLIDE_SUFFIXES

    suffixes = (*IMAGE_SUFFIXES, *sorted(set(SLIDE_SUFFIXES) - set(IMAGE_SUFFIXES)))
    files: list[Path] = []
    errors: list[str] = []
    for entry in inputs:
        item, path = str(entry), Path(entry)
        if any(ch in item for ch in "*?[") and not path.exists():
            matches = sorted((Path(p) for p in glob.glob(item) if Path(p).is_file()),
                             key=lambda p: natural_key(str(p)))
            if not matches:
                errors.append(f"{item}: no files match this pattern")
            files += matches
        elif path.is_dir():
            found = list_images(path, suffixes)
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


def output_names(files: Sequence[Path]) -> dict[Path, str]:
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


def _outputs_exist(out: Path, name: str, formats: Sequence[str], slide: bool) -> bool:
    from .export import output_paths

    wanted = [f for f in formats if not (slide and f == "labels")]
    paths = output_paths(out, name, wanted)
    if "labels" in paths:
        paths["labels_tif"] = output_paths(out, name, ["labels"], labels_tif=True)["labels"]
        if paths["labels_tif"].exists():
            paths.pop("labels")
        paths.pop("labels_tif")
    return all(p.exists() for p in paths.values())


def summary_row(path: Path, name: str, kind: str, glands: Sequence[dict[str, Any]], width: int,
                height: int, mpp: float | None) -> dict[str, Any]:
    """One ``summary.csv`` row: gland count and area of an input (level-0 pixels for slides)."""
    area = float(sum(g["area_px"] for g in glands))
    row: dict[str, Any] = {
        "input": str(path), "name": name, "status": "ok", "kind": kind, "glands": len(glands),
        "width_px": width, "height_px": height, "mpp": mpp if mpp else "",
        "gland_area_px": round(area, 2),
        "gland_area_fraction": round(area / (width * height), 5),
        "mean_gland_area_px": round(area / len(glands), 2) if glands else ""}
    if mpp:
        row["gland_area_um2"] = round(area * mpp**2, 2)
        row["mean_gland_area_um2"] = round(area * mpp**2 / len(glands), 2) if glands else ""
    return row


def _echo(line: str) -> None:
    print(line, flush=True)


def segment_files(files: Sequence[Path], out: Path, segmenter: Segmenter,
                  formats: Sequence[str], mpp: float | None = None, overwrite: bool = False,
                  progress: Progress | None = None,
                  echo: Callable[[str], None] = _echo) -> list[str]:
    """Segment each file into ``out`` and write ``out/summary.csv`` (one row per input: gland
    count and area, or why it was skipped or failed); returns one error line per failed file.
    ``echo`` gets one result line per input (stdout by default); errors go to the console.

    Post-processing and export of an image run in a worker thread while the next image goes
    through the network, so a GPU is not left waiting on them; at most two images are held.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    from .._console import make_progress
    from .._io import read_rgb
    from .export import export_segmentation, write_csv

    if progress is None:
        with make_progress(False) as quiet:
            return segment_files(files, out, segmenter, formats, mpp, overwrite, quiet, echo)
    formats = tuple(formats)
    errors: list[str] = []
    rows: list[dict[str, Any]] = []
    names = output_names(files)
    task = progress.add_task("inputs", total=len(files))
    pending: list[tuple[Path, str, Future[dict[str, Any]]]] = []  # the image being finished

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
            echo(f"{path}: {rows[-1]['glands']} glands{_renamed(path, name)}")
        except (MicronetError, OSError) as exc:
            fail(path, name, exc)
        progress.advance(task)

    def finish(path: Path, name: str, inference: Inference) -> dict[str, Any]:
        result = segmenter.finish(inference)
        image = inference.image
        export_segmentation(result, image, out, name, formats)
        return summary_row(path, name, "image", result.glands, image.shape[1], image.shape[0],
                           result.mpp)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="micronet-finish") as worker:
        for path in files:
            name = names[path]
            try:
                slide = is_slide(path)
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
                    echo(f"{path}: {result.num_glands} glands (slide, level "
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


def segment_inputs(inputs: Sequence[str | Path], out: str | Path, segmenter: Segmenter,
                   formats: Sequence[str] = ("labels", "overlay", "geojson", "csv"),
                   mpp: float | None = None, overwrite: bool = False,
                   progress: Progress | None = None,
                   echo: Callable[[str], None] = _echo) -> list[str]:
    """Segment images, slides, folders and globs into ``out`` (see :func:`segment_files`);
    returns one error line per input that was missing or failed."""
    files, errors = expand_inputs(inputs)
    for line in errors:
        console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
    if files:
        errors += segment_files(files, Path(out), segmenter, formats, mpp, overwrite, progress,
                                echo)
    return errors


def _renamed(path: Path, name: str) -> str:
    """Tells where outputs went when the name had to differ from the file's stem."""
    return f" (outputs {name}_*)" if name != path.stem else ""


def _error_line(path: Path, exc: Exception) -> str:
    """One line naming the input and the problem."""
    if isinstance(exc, OSError):
        return f"{path}: {exc.strerror or exc}"
    return str(exc) if str(path) in str(exc) else f"{path}: {exc}"
