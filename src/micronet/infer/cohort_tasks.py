"""What the workers of a cohort run (:mod:`micronet.infer.cohort` sends it): one task per
slide or image (:func:`segment_one`), or, for a slide split across workers, a plan task, one
task per chunk with tissue and a merge task (:func:`plan_task`, :func:`chunk_task`,
:func:`merge_task`: :func:`~micronet.infer.slide.segment_slide`'s three steps). Each worker
builds the :class:`~micronet.infer.Segmenter` once and keeps it. Outputs are written in a
staging folder and renamed into the output folder only when all are written."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import MicronetError
from .batch import is_slide, summary_row
from .slide import DEFAULT_CHUNK, merge_chunks, plan_slide, segment_chunk, write_slide_outputs

if TYPE_CHECKING:
    from .segmenter import Segmenter

__all__ = ["STAGING", "warm_worker", "worker_segmenter", "spec_key", "failure_line", "segment_one",
           "plan_task", "chunk_task", "merge_task"]

STAGING = ".micronet-staging"

_SEGMENTERS: dict[str, Segmenter] = {}
T = TypeVar("T")


def worker_segmenter(key: str, spec: Mapping[str, Any]) -> Segmenter:
    """The worker's Segmenter for ``spec`` (built on first use, then kept: one per worker)."""
    if key not in _SEGMENTERS:
        from .segmenter import Segmenter

        _SEGMENTERS.clear()
        _SEGMENTERS[key] = Segmenter(**spec)
    return _SEGMENTERS[key]


def spec_key(spec: Mapping[str, Any]) -> str:
    """Names a segmenter spec in the workers' cache (the same spec: the same model)."""
    import hashlib

    import cloudpickle

    return hashlib.sha1(cloudpickle.dumps(dict(spec))).hexdigest()[:16]


def warm_worker(spec: Mapping[str, Any]) -> Segmenter:
    """Build (or reuse) this worker's Segmenter for ``spec`` now, as its first slide would:
    e.g. ``client.run(warm_worker, spec)`` so model loading is not timed with the first slide.
    ``spec`` should name weights (a name or path): a model object pickles differently on each
    trip, so the tasks' specs would not find the warm one."""
    return worker_segmenter(spec_key(spec), spec)


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


def segment_one(path: Path, name: str, out: Path, key: str, spec: Mapping[str, Any],
                formats: Sequence[str], mpp: float | None = None, threads: int | None = None,
                chunk: int = DEFAULT_CHUNK) -> dict[str, Any]:
    """Segment one slide or image into ``out`` (the task a worker runs); its summary row, with
    ``outputs`` (the file names written), ``seconds`` and ``worker``. Outputs appear only once
    all are written (staged, then renamed); a failure is returned as ``{"error": line}``."""
    start = time.perf_counter()
    try:
        _set_threads(threads)
        segmenter = worker_segmenter(key, spec)
        row, outputs = _publish(out, name, lambda staging: _segment_into(
            segmenter, path, name, staging, tuple(formats), mpp, chunk))
        row["outputs"] = outputs
    except Exception as exc:  # noqa: BLE001 - one slide's failure must not stop the cohort
        row = {"error": failure_line(path, exc)}
    row.update(seconds=round(time.perf_counter() - start, 2), worker=_worker_address())
    return row


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def failure_line(path: Path, exc: BaseException) -> str:
    """The one-line error of an input."""
    from .batch import error_line

    if isinstance(exc, (MicronetError, OSError)):
        return error_line(path, exc)
    return f"{path}: {type(exc).__name__}: {exc}"


def _publish(out: Path, name: str, write: Callable[[Path], T]) -> tuple[T, list[str]]:
    """Run ``write(staging)`` in a fresh staging folder, then move what it wrote into ``out``
    (each file renamed whole); what ``write`` returned, and the names moved."""
    (out / STAGING).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=out / STAGING))
    try:
        written = write(staging)
        outputs = sorted(part.name for part in staging.iterdir())
        for part in outputs:
            os.replace(staging / part, out / part)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written, outputs


def _segment_into(segmenter: Segmenter, path: Path, name: str, out: Path,
                  formats: tuple[str, ...], mpp: float | None, chunk: int) -> dict[str, Any]:
    """Segment ``path`` and write its outputs to ``out``, as ``micronet segment`` does."""
    if is_slide(path):
        slide = segmenter.predict_slide(path, mpp=mpp, out_dir=out, formats=formats,
                                        progress=False, name=name, chunk=chunk)
        return summary_row(path, name, "slide", slide.glands, *slide.dimensions, slide.mpp)
    from .._io import read_rgb
    from .export import export_segmentation

    image = read_rgb(path)
    result = segmenter.predict(image, mpp=mpp, progress=False)
    export_segmentation(result, image, out, name, formats)
    return summary_row(path, name, "image", result.glands, image.shape[1], image.shape[0],
                       result.mpp)


# --- one slide split across workers ---------------------------------------------------------


def plan_task(path: Path, key: str, spec: Mapping[str, Any], mpp: float | None, chunk: int,
              threads: int | None = None) -> dict[str, Any]:
    """A split slide's first task: ``{"plan": SlidePlan}`` (:func:`~micronet.infer.slide.
    plan_slide`) or ``{"error": line}``, with ``seconds`` and ``worker``."""
    start = time.perf_counter()
    try:
        _set_threads(threads)
        row: dict[str, Any] = {"plan": plan_slide(worker_segmenter(key, spec), path, mpp=mpp,
                                                  chunk=chunk)}
    except Exception as exc:  # noqa: BLE001 - one slide's failure must not stop the cohort
        row = {"error": failure_line(path, exc)}
    row.update(seconds=time.perf_counter() - start, worker=_worker_address())
    return row


def chunks_todo(planned: Mapping[str, Any]) -> dict[str, Any]:
    """What the client needs of a plan to send its chunks: ``{"todo": [index, ...]}`` (the
    plan itself stays on the workers), or the plan's ``{"error": line}``."""
    return {"error": planned["error"]} if "error" in planned else {
        "todo": list(planned["plan"].todo)}


def chunk_task(planned: Mapping[str, Any], index: int, key: str, spec: Mapping[str, Any],
               threads: int | None = None) -> dict[str, Any]:
    """Chunk ``index`` of a planned slide: ``{"chunk": ChunkGlands}`` with ``seconds`` and
    ``worker`` (an error is raised: the merge task, and so the slide, fails with it)."""
    start = time.perf_counter()
    _set_threads(threads)
    part = segment_chunk(worker_segmenter(key, spec), planned["plan"], index)
    return {"chunk": part, "seconds": time.perf_counter() - start, "worker": _worker_address()}


def merge_task(planned: Mapping[str, Any], chunks: Sequence[Mapping[str, Any]], path: Path,
               name: str, out: Path, formats: Sequence[str]) -> dict[str, Any]:
    """A split slide's last task: its chunks merged (:func:`~micronet.infer.slide.merge_chunks`)
    and its outputs written as :func:`segment_one` writes them; the same row, plus ``chunks``
    (how many ran), with ``seconds`` summed over the slide's tasks and every ``worker``."""
    start = time.perf_counter()
    try:
        result = merge_chunks(planned["plan"], [part["chunk"] for part in chunks])
        _, outputs = _publish(out, name, lambda staging: write_slide_outputs(
            result, staging, tuple(formats), name))
        row = {**summary_row(path, name, "slide", result.glands, *result.dimensions,
                             result.mpp), "outputs": outputs, "chunks": len(chunks)}
    except Exception as exc:  # noqa: BLE001 - one slide's failure must not stop the cohort
        row = {"error": failure_line(path, exc)}
    seconds = planned["seconds"] + sum(part["seconds"] for part in chunks)
    workers = {planned["worker"], _worker_address(), *(part["worker"] for part in chunks)}
    row.update(seconds=round(seconds + time.perf_counter() - start, 2),
               worker=" ".join(sorted(workers)))
    return row
