"""Segment a batch of inputs (images, slides, folders, globs) into one output folder.

The pipeline behind ``micronet segment``, usable from Python: :func:`expand_inputs` turns paths,
folders and globs into files (:func:`gather_inputs` also records the ones not found in the
folder's summary), :func:`output_names` gives each a collision-free output name, and
:func:`segment_files` segments them all. Which outputs belong to which input, what is already
done and ``summary.csv`` are kept by :mod:`micronet.infer.outputs`. :func:`segment_inputs` does
it all in one call.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._console import console
from ..data.folders import IMAGE_SUFFIXES, list_images, natural_key
from ..errors import MicronetError
from .outputs import SUMMARY_COLUMNS, OutputFolder

if TYPE_CHECKING:
    from rich.progress import Progress

    from .segmenter import Inference, Segmenter

__all__ = ["SUMMARY_COLUMNS", "is_slide", "expand_inputs", "gather_inputs", "output_names",
           "summary_row", "run_settings", "error_line", "segment_files", "segment_inputs"]


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


def _expand(entry: str | Path) -> tuple[list[Path], str | None]:
    """The files of one path, folder (its images, sorted) or glob, or why there are none."""
    from .slide import SLIDE_SUFFIXES

    item, path = str(entry), Path(entry)
    if any(ch in item for ch in "*?[") and not path.exists():
        matches = sorted((Path(p) for p in glob.glob(item) if Path(p).is_file()),
                         key=lambda p: natural_key(str(p)))
        return matches, None if matches else f"{item}: no files match this pattern"
    if path.is_dir():
        suffixes = (*IMAGE_SUFFIXES, *sorted(set(SLIDE_SUFFIXES) - set(IMAGE_SUFFIXES)))
        found = list_images(path, suffixes)
        return found, None if found else (f"{path}: folder holds no images "
                                          f"({', '.join(sorted(suffixes))})")
    if path.exists():
        return [path], None
    return [], f"{path}: file not found"


def _unique(files: Sequence[Path]) -> list[Path]:
    seen: set[Path] = set()
    unique: list[Path] = []
    for f in files:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique


def expand_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """Files from paths, folders (their images, sorted) and globs; plus one error per dud."""
    files: list[Path] = []
    errors: list[str] = []
    for entry in inputs:
        found, error = _expand(entry)
        files += found
        errors += [error] if error else []
    return _unique(files), errors


def gather_inputs(inputs: Sequence[str | Path], out: str | Path) -> tuple[list[Path], list[str]]:
    """:func:`expand_inputs`, and a ``missing`` row in ``out``'s summary for each path, folder
    or glob that gives no file (dropped again once it does)."""
    files: list[Path] = []
    errors: list[str] = []
    with OutputFolder(out) as folder:
        for entry in inputs:
            found, error = _expand(entry)
            files += found
            if error:
                errors.append(error)
                folder.failed(entry, "", error, status="missing")
            else:
                folder.forget(entry)
    return _unique(files), errors


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


def run_settings(segmenter: Segmenter, mpp: float | None = None,
                 grader: Any = None) -> dict[str, Any]:
    """What decides an input's outputs besides the input itself (weights, post-processing,
    test-time augmentation, tissue mask, µm/px, grading): outputs made with other settings are
    redone rather than skipped."""
    def plain(value: Any) -> Any:
        return vars(value) if hasattr(value, "__dict__") else value

    info = getattr(segmenter, "info", None)
    return {"weights": getattr(info, "name", None),
            "postprocess": plain(getattr(segmenter, "postprocess", None)),
            "tta": len(getattr(segmenter, "transforms", ())),
            "tissue": plain(getattr(segmenter, "tissue", None)),
            "mpp": mpp, "grade": grader is not None}


def _slide_files(out: Path, name: str, formats: Sequence[str]) -> list[Path]:
    """The files a slide's segmentation wrote (no label image; a tissue mask when used)."""
    from .export import output_paths

    written = output_paths(out, name, [f for f in formats if f != "labels"])
    return [p for p in [*written.values(), out / f"{name}_tissue.png"] if p.exists()]


def summary_row(path: Path, name: str, kind: str, glands: Sequence[dict[str, Any]], width: int,
                height: int, mpp: float | None) -> dict[str, Any]:
    """One ``summary.csv`` row: gland count and area of an input (level-0 pixels for slides)."""
    area = float(sum(g["area_px"] for g in glands))
    row: dict[str, Any] = {
        "input": str(path), "name": name, "status": "ok", "kind": kind, "glands": len(glands),
        "suspect": sum(bool(g.get("suspect")) for g in glands),
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
                  echo: Callable[[str], None] = _echo, grader: Any = None) -> list[str]:
    """Segment each file into ``out``; returns one error line per failed file.

    Each input is recorded in the folder's manifest and ``summary.csv`` (one row per input ever
    segmented there: gland count and area, or the error; see :mod:`micronet.infer.outputs`). An
    input already segmented there, unchanged and with the same settings
    (:func:`run_settings`), is skipped unless ``overwrite``; another input never takes its
    outputs' name. ``echo`` gets one result line per input (stdout by default); errors and
    skips go to the console. With a ``grader`` (:func:`micronet.grade.load_grader`), image rows
    also get ``p_malignant`` and ``grade`` (slides are not graded).

    Post-processing and export of an image run in a worker thread while the next image goes
    through the network, so a GPU is not left waiting on them; at most two images are held.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    from .._console import make_progress
    from .._io import read_rgb
    from .export import export_segmentation

    if progress is None:
        with make_progress(False) as quiet:
            return segment_files(files, out, segmenter, formats, mpp, overwrite, quiet, echo,
                                 grader)
    out, formats = Path(out), tuple(formats)
    settings = run_settings(segmenter, mpp, grader)
    errors: list[str] = []
    notes: dict[Path, list[str]] = {}  # conversions said while reading, for the summary
    task = progress.add_task("inputs", total=len(files))

    def note(path: Path) -> Callable[[str], None]:
        def say(line: str) -> None:
            console.print(f"[yellow]note:[/] {line}", highlight=False, soft_wrap=True)
            notes.setdefault(path, []).append(line.removeprefix(f"{path}: "))
        return say
    # the image being finished: path, name, start time, (row, files written)
    pending: list[tuple[Path, str, float, Future[tuple[dict[str, Any], list[Path]]]]] = []

    def fail(path: Path, name: str, exc: Exception) -> None:
        errors.append(error_line(path, exc))
        console.print(f"[bold red]error:[/] {errors[-1]}", highlight=False, soft_wrap=True)
        folder.failed(path, name, errors[-1])

    def collect() -> None:
        """Report the image in the worker (waiting for it): keeps output in input order."""
        if not pending:
            return
        path, name, start, future = pending.pop()
        try:
            row, written = future.result()
            row["note"] = "; ".join(notes.pop(path, []))
            folder.done(path, name, row, written, formats, settings, time.perf_counter() - start)
            echo(f"{path}: {row['glands']} glands{_renamed(path, name)}")
            _warn_suspects(path, row["suspect"])
        except (MicronetError, OSError) as exc:
            fail(path, name, exc)
        progress.advance(task)

    def finish(path: Path, name: str, inference: Inference
               ) -> tuple[dict[str, Any], list[Path]]:
        result = segmenter.finish(inference)
        image = inference.image
        written = export_segmentation(result, image, out, name, formats)
        row = summary_row(path, name, "image", result.glands, image.shape[1], image.shape[0],
                          result.mpp)
        if grader is not None:
            from ..grade.batch import grade_columns

            row.update(grade_columns(grader, result.labels, image, result.mpp))
        return row, written

    with OutputFolder(out) as folder, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="micronet-finish") as worker:
        names = folder.names(files, output_names(files))
        for path in files:
            name = names[path]
            start = time.perf_counter()
            try:
                if not overwrite and folder.is_done(path, formats, settings):
                    collect()
                    console.print(f"{path}: already segmented into {out} (outputs {name}_*), "
                                  "skipped (--overwrite redoes it)", highlight=False,
                                  soft_wrap=True)
                elif is_slide(path):
                    collect()
                    result = segmenter.predict_slide(path, mpp=mpp, out_dir=out,
                                                     formats=formats, progress=progress,
                                                     name=name)
                    folder.done(path, name, summary_row(path, name, "slide", result.glands,
                                                        *result.dimensions, result.mpp),
                                _slide_files(out, name, formats), formats, settings,
                                time.perf_counter() - start)
                    echo(f"{path}: {result.num_glands} glands (slide, level "
                         f"{result.level}, {result.working_mpp:.3f} µm/px, "
                         f"{result.skipped}/{result.chunks} chunks without tissue)"
                         f"{_renamed(path, name)}")
                    _warn_suspects(path, sum(g["suspect"] for g in result.glands))
                else:  # the network pass overlaps the previous image's finishing
                    inference = segmenter.infer(read_rgb(path, note(path)), mpp=mpp,
                                                progress=progress)
                    collect()
                    pending.append((path, name, start,
                                    worker.submit(finish, path, name, inference)))
                    continue  # reported (and counted) when collected
            except (MicronetError, OSError) as exc:
                collect()
                fail(path, name, exc)
            progress.advance(task)
        collect()
    return errors


def segment_inputs(inputs: Sequence[str | Path], out: str | Path, segmenter: Segmenter,
                   formats: Sequence[str] = ("labels", "overlay", "geojson", "csv"),
                   mpp: float | None = None, overwrite: bool = False,
                   progress: Progress | None = None,
                   echo: Callable[[str], None] = _echo) -> list[str]:
    """Segment images, slides, folders and globs into ``out`` (see :func:`segment_files`);
    returns one error line per input that was missing or failed (missing ones get a summary
    row too)."""
    files, errors = gather_inputs(inputs, out)
    for line in errors:
        console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
    if files:
        errors += segment_files(files, Path(out), segmenter, formats, mpp, overwrite, progress,
                                echo)
    return errors


def _warn_suspects(path: Path, count: int) -> None:
    """A warning line for objects far larger than any training gland (``suspect`` rows)."""
    from .export import SUSPECT_AREA_UM2

    if count:
        console.print(f"[yellow]warning:[/] {path}: {count} object(s) over "
                      f"{SUSPECT_AREA_UM2:,.0f} µm², far larger than any gland the weights were "
                      "trained on (glass, a fold, or glands run together?): marked suspect in "
                      "the CSV", highlight=False, soft_wrap=True)


def _renamed(path: Path, name: str) -> str:
    """Tells where outputs went when the name had to differ from the file's stem."""
    return f" (outputs {name}_*)" if name != path.stem else ""


def error_line(path: Path, exc: Exception) -> str:
    """One line naming the input and the problem."""
    if isinstance(exc, OSError):
        return f"{path}: {exc.strerror or exc}"
    return str(exc) if str(path) in str(exc) else f"{path}: {exc}"
