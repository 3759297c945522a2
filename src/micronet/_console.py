"""One rich console on stderr for logs and progress; results go to stdout."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["console", "progress_enabled", "make_progress", "track", "set_quiet"]

console = Console(stderr=True)
T = TypeVar("T")
_quiet = False


def set_quiet(quiet: bool) -> None:
    """Hide progress bars that are not explicitly asked for (``--quiet``)."""
    global _quiet
    _quiet = quiet


def progress_enabled(show: bool | None = None) -> bool:
    """Progress bars show on a TTY unless ``MICRONET_NO_PROGRESS`` is set, :func:`set_quiet`
    was called, or ``show`` is False."""
    if show is not None:
        return show
    if _quiet or os.environ.get("MICRONET_NO_PROGRESS"):
        return False
    return sys.stderr.isatty()


def make_progress(show: bool | None = None, *extra_columns) -> Progress:
    """A transient progress display on stderr (disabled without a TTY or when asked)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not progress_enabled(show),
    )


def track(items: Iterable[T], description: str, total: int | None = None,
          show: bool | None = None) -> Iterator[T]:
    """Iterate with a progress bar (a no-op wrapper when progress is disabled)."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    with make_progress(show) as prog:
        task = prog.add_task(description, total=total)
        for item in items:
            yield item
            prog.advance(task)
