"""Download a file over http(s) with a progress bar, written atomically."""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from .._console import console, progress_enabled
from .._io import atomic_path
from ..errors import MicronetError

__all__ = ["download"]


def download(url: str, path: str | os.PathLike[str], *, progress: bool | None = None,
             timeout: float = 60.0, chunk: int = 1 << 20) -> Path:
    """Fetch ``url`` into ``path`` (nothing is left at ``path`` if the transfer fails).

    Raises:
        MicronetError: HTTP error, unreachable host, or a transfer cut short.
    """
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    path = Path(path)
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise MicronetError(f"{url}: download failed (HTTP {exc.code} {exc.reason})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MicronetError(f"{url}: download failed ({reason})") from None
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        columns = (TextColumn("Downloading"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True,
                      disable=not progress_enabled(progress)) as bar, atomic_path(path) as tmp:
            task = bar.add_task("download", total=total)
            received = 0
            try:
                with open(tmp, "wb") as fh:
                    while block := response.read(chunk):
                        fh.write(block)
                        received += len(block)
                        bar.advance(task, len(block))
            except (OSError, http.client.HTTPException) as exc:
                raise MicronetError(f"{url}: download interrupted ({exc})") from None
            if total is not None and received != total:
                raise MicronetError(f"{url}: download cut short ({received} of {total} bytes)")
    return path
