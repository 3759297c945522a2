"""Segment a cohort of slides on a Dask cluster: resumable, one slide per task, failures alone.

:func:`segment_cohort` sends one task per slide (or image) to a ``dask.distributed`` client: a
local cluster, an existing scheduler or SLURM jobs (:func:`open_cluster`). Each worker builds the
:class:`~micronet.infer.Segmenter` once and keeps it. A slide's outputs are written in a staging
folder and renamed into ``out`` only when all are done; the client then records the slide in the
folder's manifest and ``summary.csv`` (:mod:`micronet.infer.outputs`, as ``micronet segment``
does). A rerun skips slides recorded as done with their outputs intact and redoes the rest.
Dask retries the task of a worker that died on another worker; a slide that raises becomes one
error row (its one-line error in ``summary.csv``) and the others go on. A slide larger than
``split_above`` megapixels is split across workers: a plan task, a task per chunk, a merge task
(:mod:`micronet.infer.cohort_tasks` holds what the workers run).
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from .._console import console, make_progress
from ..errors import InputError, MicronetError
from .batch import expand_inputs, is_slide, output_names
from .cohort_tasks import (
    STAGING,
    chunk_task,
    chunks_todo,
    failure_line,
    merge_task,
    plan_task,
    segment_one,
    spec_key,
    worker_segmenter,
)
from .slide import DEFAULT_CHUNK

__all__ = ["LIST_SUFFIXES", "SPLIT_ABOVE_MP", "read_slide_list", "expand_cohort",
           "segment_one", "segment_cohort", "local_cluster", "slurm_cluster", "open_cluster"]

LIST_SUFFIXES = (".txt", ".csv")
DEFAULT_FORMATS = ("labels", "overlay", "geojson", "csv")
SPLIT_ABOVE_MP = 1000.0  # level-0 megapixels above which a slide is split across workers


def read_slide_list(path: str | Path) -> list[tuple[Path, float | None]]:
    """``(slide, µm/px or None)`` per row of a list file: one path per line, optionally followed
    by its level-0 µm/px (comma- or tab-separated; a ``path[,mpp]`` header and ``#`` comments
    are skipped). Relative paths are relative to the list file's folder."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    rows: list[tuple[Path, float | None]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = next(csv.reader([line], delimiter="\t" if "\t" in line else ","))
        cells = [c.strip() for c in cells]
        if number == 1 and cells[0].lower() in {"path", "slide", "input", "file"}:
            continue
        if len(cells) > 2 or (len(cells) == 2 and cells[1] and not _positive(cells[1])):
            raise InputError(f"{path}:{number}: expected PATH or PATH,MPP (µm/px > 0), got "
                             f"{line.strip()!r}")
        mpp = float(cells[1]) if len(cells) == 2 and cells[1] else None
        rows.append((path.parent / Path(cells[0]).expanduser(), mpp))
    return rows


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def expand_cohort(inputs: Sequence[str | Path]
                  ) -> tuple[list[Path], dict[Path, float], list[str]]:
    """Files (as :func:`~micronet.infer.batch.expand_inputs`, list files read), the per-slide
    µm/px the lists gave, and one error line per missing input or bad list."""
    entries: list[str | Path] = []
    mpps: dict[Path, float] = {}
    errors: list[str] = []
    for item in inputs:
        if Path(item).suffix.lower() in LIST_SUFFIXES and Path(item).is_file():
            try:
                listed = read_slide_list(item)
            except InputError as exc:
                errors.append(str(exc))
                continue
            entries += [p for p, _ in listed]
            mpps.update({p.resolve(): m for p, m in listed if m is not None})
        else:
            entries.append(item)
    files, missing = expand_inputs(entries)
    return files, {f: mpps[f.resolve()] for f in files if f.resolve() in mpps}, errors + missing


def _settings_of(key: str, spec: Mapping[str, Any], mpps: Sequence[float | None]
                 ) -> dict[float | None, dict[str, Any]]:
    """The run settings (:func:`~micronet.infer.batch.run_settings`) per µm/px, as a worker
    builds the model: what decides whether earlier outputs can be kept."""
    from .batch import run_settings

    segmenter = worker_segmenter(key, spec)
    return {m: run_settings(segmenter, m) for m in mpps}


def _echo(line: str) -> None:
    print(line, flush=True)


def segment_cohort(inputs: Sequence[str | Path], out: str | Path,
                   segmenter: Mapping[str, Any] | None = None, *, client: Any = None,
                   formats: Sequence[str] = DEFAULT_FORMATS, mpp: float | None = None,
                   overwrite: bool = False, threads: int | None = None,
                   split_above: float | None = SPLIT_ABOVE_MP, chunk: int = DEFAULT_CHUNK,
                   progress: bool | None = None,
                   echo: Callable[[str], None] = _echo) -> list[str]:
    """Segment slides, images, folders, globs and slide lists (:func:`read_slide_list`) into
    ``out``, one Dask task per input; returns one error line per input that failed.

    A slide of more than ``split_above`` level-0 megapixels is split across workers instead:
    one task plans it, one task per chunk with tissue segments that chunk (any worker), and one
    task merges the chunks and writes the outputs (:mod:`micronet.infer.cohort_tasks`); the
    outputs equal those of a single-process run.

    What is done is kept as ``micronet segment`` keeps it (:mod:`micronet.infer.outputs`): an
    input already segmented into ``out``, unchanged and with the same settings, is skipped;
    each finished or failed input is recorded, and ``summary.csv`` rewritten, as it comes in.
    A slide is recorded only once all its outputs are in place, so an interrupted one (split
    or not) is redone whole by the next run.

    Args:
        segmenter: keyword arguments of :class:`~micronet.infer.Segmenter` (default: the
            shipped ``"glas"`` weights); each worker builds it once.
        client: a ``distributed.Client`` (``None``: every input in this process, in turn).
        mpp: level-0 µm/px for inputs a list gives none for (slides: when metadata lacks it).
        overwrite: redo inputs already segmented into ``out``.
        threads: torch threads per task (``None``: the worker's setting).
        split_above: level-0 megapixels above which a slide is split across workers (``None``:
            never; a slide too big is still cut into chunks, on one worker). Needs a client.
        chunk: core size of a slide's chunks in working px (see
            :func:`~micronet.infer.slide.segment_slide`).
        progress: show a bar over inputs (``None``: on a terminal).
    """
    from .outputs import OutputFolder

    out = Path(out)
    spec = dict(segmenter or {"weights": "glas"})
    files, mpps, errors = expand_cohort(inputs)
    for line in errors:
        console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
    if not files:
        return errors
    key = spec_key(spec)
    wanted = {f: mpps.get(f, mpp) for f in files}
    probe = (key, spec, sorted(set(wanted.values()), key=lambda m: (m is not None, m)))
    settings = (_settings_of(*probe) if client is None
                else client.submit(_settings_of, *probe, key=f"micronet-settings-{key}",
                                  pure=False).result())
    with OutputFolder(out, flush_every=0) as folder:
        names = folder.names(files, output_names(files))
        todo = []
        for path in files:
            if not overwrite and folder.is_done(path, formats, settings[wanted[path]]):
                echo(f"{path}: already segmented into {out} (outputs {names[path]}_*), "
                     "skipped (--overwrite redoes it)")
            else:
                todo.append(path)
        jobs = {p: _Job(p, names[p], out, key, spec, tuple(formats), wanted[p], threads, chunk)
                for p in todo}
        split = {p for p in todo if client is not None and split_above is not None
                 and (_megapixels(p) or 0) > split_above}
        results = _run(client, jobs, split)
        with make_progress(progress) as bar:
            task = bar.add_task("slides", total=len(todo))
            glands = 0
            try:
                for path, row in results:
                    outputs = row.pop("outputs", None)
                    chunks = row.pop("chunks", None)
                    if outputs is None:
                        errors.append(row["error"])
                        console.print(f"[bold red]error:[/] {errors[-1]}", highlight=False,
                                      soft_wrap=True)
                        folder.failed(path, names[path], row["error"])
                    else:
                        folder.done(path, names[path], row, [out / f for f in outputs], formats,
                                    settings[wanted[path]], row["seconds"])
                        parts = "" if chunks is None else f", {chunks} chunk tasks"
                        echo(f"{path}: {row['glands']} glands ({row['seconds']} s on "
                             f"{row['worker']}{parts})")
                        glands += int(row["glands"])
                    bar.update(task, advance=1, description=f"slides ({glands} glands)")
            finally:
                results.close()  # Ctrl-C: cancel the tasks left
    shutil.rmtree(out / STAGING, ignore_errors=True)
    return errors


class _Job(NamedTuple):
    """One input's task arguments (:func:`~micronet.infer.cohort_tasks.segment_one`'s)."""

    path: Path
    name: str
    out: Path
    key: str
    spec: Mapping[str, Any]
    formats: tuple[str, ...]
    mpp: float | None
    threads: int | None
    chunk: int


def _megapixels(path: Path) -> float | None:
    """A slide's level-0 megapixels, from its header (``None``: not a slide, or unreadable:
    its task says why)."""
    from .slide_io import SlideReader

    if not is_slide(path):
        return None
    try:
        reader = SlideReader(path, mpp=1.0)  # the size only: any µm/px will do
    except InputError:  # missing or unreadable: its own task reports it
        return None
    try:
        width, height = reader.dimensions[0]
    finally:
        reader.close()
    return width * height / 1e6


def _task_tag(job: _Job) -> str:
    """The part of a slide's Dask task keys that names it: its name and a short hash."""
    return f"{job.name}-{job.key[-8:]}"


def _run(client: Any, jobs: dict[Path, _Job], split: Set[Path] = frozenset()
         ) -> Generator[tuple[Path, dict[str, Any]], None, None]:
    """``(input, row)`` as each input finishes: in this process, or on the client's cluster,
    where a slide in ``split`` runs as a plan task, chunk tasks and a merge task.
    A task whose workers kept dying (Dask gives up after ``allowed-failures``) is an error row;
    leaving early (Ctrl-C, an error) cancels what is left."""
    if client is None:
        for path, job in jobs.items():
            yield path, segment_one(*job)
        return
    from distributed import as_completed

    waiting: dict[Any, tuple[Path, str]] = {}  # future: (input, "todo" or "done")
    held: dict[Path, list[Any]] = {}  # a split slide's plan and chunks, until merged
    for path, job in jobs.items():
        tag = _task_tag(job)
        if path in split:
            plan = client.submit(plan_task, path, job.key, job.spec, job.mpp, job.chunk,
                                 job.threads, key=f"micronet-plan-{tag}", pure=False)
            held[path] = [plan]
            waiting[client.submit(chunks_todo, plan, key=f"micronet-todo-{tag}",
                                  pure=False)] = (path, "todo")
        else:
            waiting[client.submit(segment_one, *job, key=f"micronet-segment-{tag}",
                                  pure=False)] = (path, "done")
    queue = as_completed(list(waiting))
    try:
        for future in queue:
            path, stage = waiting.pop(future)
            try:
                row = future.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker, CancelledError, ...
                row = {"error": failure_line(path, exc)}
            if stage == "todo" and "todo" in row:
                job, plan = jobs[path], held[path][0]
                tag = _task_tag(job)
                parts = [client.submit(chunk_task, plan, i, job.key, job.spec, job.threads,
                                       key=f"micronet-chunk-{tag}-{i}", pure=False)
                         for i in row["todo"]]
                held[path] += parts
                merged = client.submit(merge_task, plan, parts, path, job.name, job.out,
                                       job.formats, key=f"micronet-merge-{tag}", pure=False)
                waiting[merged] = (path, "done")
                queue.add(merged)
                continue
            held.pop(path, None)  # the cluster may forget the slide's plan and chunks
            yield path, row
    finally:
        client.cancel([*waiting, *(f for fs in held.values() for f in fs)])


# --- clusters -------------------------------------------------------------------------------


def local_cluster(workers: int | None = None, dashboard: str | None = ":8787") -> Any:
    """A ``LocalCluster`` of ``workers`` processes with one task each (default: a process per
    two cores); give each task ``cpu_count // workers`` torch threads (see :func:`open_cluster`)."""
    from distributed import LocalCluster

    workers = workers or max(1, (os.cpu_count() or 2) // 2)
    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                        dashboard_address=dashboard)


def slurm_cluster(queue: str | None = None, cores: int | None = None, memory: str | None = None,
                  walltime: str | None = None, **kwargs: Any) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` whose jobs each run one worker doing one slide at a
    time with ``cores`` CPUs (torch threads); unset options come from dask-jobqueue's config
    (``~/.config/dask/jobqueue.yaml``). Starts no job: scale it (``cluster.scale(jobs=N)``)."""
    import dask
    from dask_jobqueue import SLURMCluster

    cores = cores or dask.config.get("jobqueue.slurm.cores", None)
    opts: dict[str, Any] = {"queue": queue, "memory": memory, "walltime": walltime}
    return SLURMCluster(cores=1, processes=1, job_cpu=cores, **kwargs,
                        **{k: v for k, v in opts.items() if v is not None})


@contextmanager
def open_cluster(cluster: str, workers: int | None = None, *, jobs: int | None = None,
                 queue: str | None = None, cores: int | None = None, memory: str | None = None,
                 walltime: str | None = None) -> Iterator[tuple[Any, int | None]]:
    """A client on ``cluster`` (``local``, ``slurm`` or a scheduler address ``tcp://HOST:PORT``)
    and the torch threads per task; a cluster started here is closed on leaving (Ctrl-C too)."""
    try:
        import dask
        from distributed import Client
    except ImportError:
        raise MicronetError("--cluster needs Dask: pip install 'micronet-seg[cluster]'") from None
    if cluster == "local":
        with local_cluster(workers) as local, Client(local) as client:
            yield client, max(1, (os.cpu_count() or 1) // len(local.workers))
    elif cluster == "slurm":
        if shutil.which("sbatch") is None:
            raise MicronetError("--cluster slurm: sbatch not found; run on a SLURM login node")
        try:
            slurm = slurm_cluster(queue, cores, memory, walltime)
        except ValueError as exc:  # e.g. no memory given, here or in the jobqueue config
            raise MicronetError(f"--cluster slurm: {exc}") from None
        with slurm, Client(slurm) as client:
            slurm.scale(jobs=jobs or workers or 1)
            yield client, cores or dask.config.get("jobqueue.slurm.cores", None)
    elif "://" in cluster or ":" in cluster:
        try:
            client = Client(cluster, timeout="30s")
        except OSError as exc:
            raise MicronetError(f"--cluster {cluster}: no scheduler answered ({exc})") from None
        with client:
            yield client, None
    else:
        raise MicronetError(f"--cluster {cluster!r}: use local, slurm or tcp://HOST:PORT")
