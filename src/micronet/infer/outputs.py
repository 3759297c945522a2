"""What an output folder holds: which input each output belongs to, and its ``summary.csv``.

Every output folder of ``micronet segment`` keeps a manifest, ``OUT/.micronet/manifest.json``:
one entry per input ever segmented into it (or that could not be found), keyed by the input's
resolved path and holding its identity (size, modification time), its output name, the files
written, the settings used and its ``summary.csv`` row. So

- an input is *done* only when its own entry says so: same path, size and mtime, same settings,
  the formats wanted, every recorded file present (:func:`is_done`); outputs that merely share a
  name never count, and a run interrupted half-way redoes whatever was not recorded;
- a different input whose name is taken gets another name (:meth:`OutputFolder.names`);
- ``summary.csv`` is rebuilt from the manifest on every update: one row per input, updated in
  place when it is redone.

Updates merge into the manifest on disk under a file lock and both files are replaced
atomically, so several processes (e.g. Dask workers of one cohort) may record into one folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._io import atomic_path
from ..errors import MicronetError

__all__ = ["MANIFEST", "SUMMARY", "SUMMARY_COLUMNS", "SUMMARY_TAIL", "input_key",
           "input_identity", "OutputFolder", "is_done", "record_done", "record_failed",
           "update_summary"]

STATE_DIR = ".micronet"
MANIFEST = f"{STATE_DIR}/manifest.json"
SUMMARY = "summary.csv"
SUMMARY_COLUMNS = ("input", "name", "status", "kind", "glands", "width_px", "height_px", "mpp",
                   "gland_area_px", "gland_area_fraction", "mean_gland_area_px")
SUMMARY_TAIL = ("note", "error", "segmented_at", "seconds")
_VERSION = 1


def input_key(item: str | os.PathLike[str]) -> str:
    """The manifest key of an input: its resolved path (a glob keeps its pattern)."""
    text = str(item)
    if any(ch in text for ch in "*?[") and not Path(text).exists():
        return "glob:" + os.path.abspath(text)
    return str(Path(text).resolve())


def input_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Resolved path, size and modification time (ns): what tells one input from another."""
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _canonical(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    return json.loads(json.dumps(dict(settings or {}), sort_keys=True, default=str))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class OutputFolder:
    """The manifest of one output folder, with updates buffered and merged on :meth:`flush`.

    Use as a context manager (flushes on exit). Updates are flushed at most every
    ``flush_every`` seconds while a batch runs, so a large batch does not rewrite the summary
    after each input, and an interrupted one loses at most that much bookkeeping.
    """

    def __init__(self, out: str | os.PathLike[str], flush_every: float = 5.0) -> None:
        self.out = Path(out)
        self.flush_every = flush_every
        self.entries = self._read()
        self._pending: dict[str, dict[str, Any] | None] = {}
        self._flushed = time.monotonic()

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    # -- reading ------------------------------------------------------------------------------
    def _read(self) -> dict[str, dict[str, Any]]:
        path = self.out / MANIFEST
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries = data["inputs"]
            if not isinstance(entries, dict):
                raise TypeError("'inputs' is not an object")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MicronetError(f"{path}: unreadable output manifest ({exc}); move it away to "
                                "start the folder afresh") from None
        return entries

    def entry(self, path: str | os.PathLike[str]) -> dict[str, Any] | None:
        """The recorded entry of an input (``None``: never recorded)."""
        return self.entries.get(input_key(path))

    def is_done(self, path: str | os.PathLike[str], formats: Iterable[str],
                settings: Mapping[str, Any] | None = None) -> bool:
        """True when ``path``, unchanged, was segmented here with the same ``settings`` into at
        least ``formats``, and every file it wrote is still there."""
        entry = self.entry(path)
        if not entry or entry.get("row", {}).get("status") != "ok":
            return False
        try:
            identity = input_identity(path)
        except OSError:
            return False
        same = all(entry.get(k) == identity[k] for k in ("size", "mtime_ns"))
        return (same and set(formats) <= set(entry.get("formats", ()))
                and entry.get("settings") == _canonical(settings)
                and all((self.out / f).exists() for f in entry.get("files", ())))

    def names(self, files: Sequence[Path], wanted: Mapping[Path, str]) -> dict[Path, str]:
        """Output name per input: the name it already has here, else ``wanted[f]`` unless
        another input holds it, else that name with parent folders (``a_x``) or a number
        (``x_2``) in front of or after it."""
        taken = {e["name"]: key for key, e in self.entries.items() if e.get("name")}
        names: dict[Path, str] = {}
        for f in files:  # inputs already here keep their names
            entry = self.entry(f)
            if entry and entry.get("name"):
                names[f] = entry["name"]
        used = set(names.values())
        for f in files:
            if f in names:
                continue
            key = input_key(f)
            parents = Path(key).parent.parts[1:]
            candidates = [wanted[f]] + ["_".join([*parents[-d:], wanted[f]])
                                        for d in range(1, len(parents) + 1)]
            free = [c for c in candidates if taken.get(c, key) == key and c not in used]
            n = 2
            while not free:
                c = f"{wanted[f]}_{n}"
                free = [c] if taken.get(c, key) == key and c not in used else []
                n += 1
            names[f] = free[0]
            used.add(free[0])
        return names

    # -- recording ----------------------------------------------------------------------------
    def _set(self, key: str, entry: dict[str, Any] | None) -> None:
        if entry is None:
            self.entries.pop(key, None)
        else:
            self.entries[key] = entry
        self._pending[key] = entry
        if time.monotonic() - self._flushed >= self.flush_every:
            self.flush()

    def done(self, path: str | os.PathLike[str], name: str, row: Mapping[str, Any],
             files: Iterable[str | os.PathLike[str]], formats: Iterable[str],
             settings: Mapping[str, Any] | None = None, seconds: float | None = None) -> None:
        """Record a finished input: its identity, name, files (inside the folder), the formats
        and settings, and its summary row."""
        row = {**row, "name": name, "status": "ok", "error": "", "segmented_at": _now(),
               "seconds": round(seconds, 2) if seconds is not None else ""}
        files = sorted({os.path.relpath(Path(f), self.out) for f in files})
        self._set(input_key(path), {**input_identity(path), "name": name, "files": files,
                                    "formats": sorted(set(formats)),
                                    "settings": _canonical(settings), "row": row})

    def failed(self, path: str | os.PathLike[str], name: str, error: str,
               status: str = "error") -> None:
        """Record an input that failed (``status="missing"``: not found, which leaves an
        earlier successful entry of it alone). Files an earlier version of a failed input left
        are removed: they no longer belong to what the input is now."""
        key = input_key(path)
        old = self.entries.get(key) or {}
        if status == "missing" and old.get("row", {}).get("status") == "ok":
            return  # its outputs still describe the file as it was segmented
        for f in old.get("files", ()):
            (self.out / f).unlink(missing_ok=True)
        row = {"input": str(path), "name": name, "status": status, "error": error,
               "segmented_at": _now(), "seconds": ""}
        self._set(key, {"path": key, "name": name, "files": [], "row": row})

    def forget(self, item: str | os.PathLike[str]) -> None:
        """Drop the row of a non-file input (a folder or glob that is now found)."""
        key = input_key(item)
        entry = self.entries.get(key)
        if entry and entry.get("row", {}).get("status") == "missing":
            self._set(key, None)

    def flush(self) -> None:
        """Merge the buffered updates into the manifest on disk (under a lock, so concurrent
        writers interleave safely) and rewrite ``summary.csv`` from it."""
        if not self._pending:
            return
        from filelock import FileLock

        (self.out / STATE_DIR).mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.out / STATE_DIR / "lock")):
            entries = self._read()
            for key, entry in self._pending.items():
                if entry is None:
                    entries.pop(key, None)
                else:
                    entries[key] = entry
            text = json.dumps({"version": _VERSION, "inputs": entries}, indent=1,
                              default=str)
            with atomic_path(self.out / MANIFEST) as tmp:
                tmp.write_text(text + "\n", encoding="utf-8")
            _write_summary(self.out / SUMMARY, [e["row"] for e in entries.values()])
        self.entries = entries
        self._pending.clear()
        self._flushed = time.monotonic()


def _write_summary(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    columns = list(SUMMARY_COLUMNS)
    for row in rows:
        columns += [k for k in row if k not in columns and k not in SUMMARY_TAIL]
    columns += SUMMARY_TAIL
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")


def is_done(path: str | os.PathLike[str], out: str | os.PathLike[str],
            formats: Iterable[str] = ("labels", "overlay", "geojson", "csv"),
            settings: Mapping[str, Any] | None = None) -> bool:
    """True when ``out`` already holds complete outputs of this very input (see
    :meth:`OutputFolder.is_done`)."""
    return OutputFolder(out).is_done(path, formats, settings)


def record_done(out: str | os.PathLike[str], path: str | os.PathLike[str], name: str,
                row: Mapping[str, Any], files: Iterable[str | os.PathLike[str]],
                formats: Iterable[str], settings: Mapping[str, Any] | None = None,
                seconds: float | None = None) -> None:
    """Record one finished input in ``out``'s manifest and summary now (safe from worker
    processes)."""
    with OutputFolder(out) as folder:
        folder.done(path, name, row, files, formats, settings, seconds)


def record_failed(out: str | os.PathLike[str], path: str | os.PathLike[str], name: str,
                  error: str, status: str = "error") -> None:
    """Record one failed input in ``out``'s manifest and summary now."""
    with OutputFolder(out) as folder:
        folder.failed(path, name, error, status)


def update_summary(out: str | os.PathLike[str]) -> Path:
    """Rewrite ``out/summary.csv`` from the manifest (e.g. after editing it by hand)."""
    from filelock import FileLock

    out = Path(out)
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    with FileLock(str(out / STATE_DIR / "lock")):
        _write_summary(out / SUMMARY, [e["row"] for e in OutputFolder(out).entries.values()])
    return out / SUMMARY
