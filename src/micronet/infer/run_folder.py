"""A training run folder: the one place that knows its file names and reads and writes them.

::

    RUN/config.json        the training config (``micronet train`` writes it, resume reads it)
    RUN/log.jsonl          one JSON record per logged step and per epoch
    RUN/split.json         which images trained and which validated (``micronet tune`` reads it)
    RUN/postprocess.json   tuned post-processing (validation writes it, ``micronet tune`` too)
    RUN/summary.json       steps, best score and metric, parameters
    RUN/best.safetensors   weights with the best validation score (what inference loads)
    RUN/last.safetensors   the latest weights
    RUN/last.pt            resumable training state
    RUN/curves.png         training curves

Weights files may be sharded (``best.safetensors.index.json`` + shards).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_path
from ..errors import MicronetError
from .postprocess import PostprocessConfig

__all__ = ["RunFolder", "read_postprocess", "write_postprocess"]


def write_postprocess(path: str | os.PathLike[str], config: PostprocessConfig,
                      table: Sequence[Mapping[str, Any]], names: Sequence[str],
                      objective: str = "f1", tta: int = 1,
                      scores: Mapping[str, float] | None = None) -> Path:
    """Write ``path`` (a run's ``postprocess.json``): the tuned values, what they maximise, the
    images used, how many test-time transforms the maps averaged, the top rows of the grid and,
    when given, every pooled score the values give on those images (``scores``)."""
    path = Path(path)
    record = {"postprocess": asdict(config), "objective": objective, "tta": tta,
              "tuned_on": list(names), "table": list(table[:10])}
    if scores is not None:
        record["scores"] = dict(scores)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return path


def read_postprocess(path: str | os.PathLike[str]) -> PostprocessConfig:
    """Post-processing from a ``postprocess.json`` (as :func:`write_postprocess` writes it) or
    a JSON object of :class:`PostprocessConfig` fields; the one validated reader.

    Raises:
        MicronetError: missing or unreadable file, or unknown / out-of-range values.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        values = record.get("postprocess", record) if isinstance(record, dict) else None
        if not isinstance(values, dict):
            raise ValueError("expected a JSON object")
        return PostprocessConfig.from_dict(values)
    except (OSError, ValueError, TypeError) as exc:
        raise MicronetError(f"{path}: not usable post-processing ({exc})") from None


@dataclass(frozen=True)
class RunFolder:
    """The files of one training run (see the module doc)."""

    path: Path

    CONFIG = "config.json"
    LOG = "log.jsonl"
    SPLIT = "split.json"
    POSTPROCESS = "postprocess.json"
    SUMMARY = "summary.json"
    BEST = "best.safetensors"
    LAST = "last.safetensors"
    STATE = "last.pt"
    CURVES = "curves.png"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "path", Path(path))

    @classmethod
    def of(cls, weights: str | os.PathLike[str]) -> RunFolder:
        """The run a weights path belongs to: the folder itself, or the file's folder."""
        weights = Path(weights)
        return cls(weights if weights.is_dir() else weights.parent)

    # --- file names -------------------------------------------------------------------------

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def log(self) -> Path:
        return self.path / self.LOG

    @property
    def split(self) -> Path:
        return self.path / self.SPLIT

    @property
    def postprocess(self) -> Path:
        return self.path / self.POSTPROCESS

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    @property
    def state(self) -> Path:
        return self.path / self.STATE

    @property
    def curves(self) -> Path:
        return self.path / self.CURVES

    # --- reading and writing ------------------------------------------------------------------

    def _read_json(self, path: Path, what: str) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise MicronetError(f"{path}: unreadable {what} ({exc})") from None

    def _write_json(self, path: Path, record: Any, indent: int = 1) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(record, indent=indent) + "\n")
        return path

    def read_config(self) -> dict[str, Any]:
        """The run's training config as a plain dict (empty when the folder has none)."""
        if not self.config.is_file():
            return {}
        record = self._read_json(self.config, "run config")
        if not isinstance(record, dict):
            raise MicronetError(f"{self.config}: unreadable run config (not a JSON object)")
        return record

    def model_config(self) -> dict[str, Any]:
        """The ``model`` section of :meth:`read_config` (architecture, width, options)."""
        return dict(self.read_config().get("model") or {})

    def write_split(self, train: Sequence[str], val: Sequence[str]) -> Path:
        """Record which images trained and which validated."""
        return self._write_json(self.split, {"train": list(train), "val": list(val)})

    def read_split(self) -> tuple[list[str], list[str]] | None:
        """``(train, val)`` names from ``split.json``; ``None`` when the run has none."""
        if not self.split.is_file():
            return None
        record = self._read_json(self.split, "split")
        if not (isinstance(record, dict) and isinstance(record.get("train"), list)
                and isinstance(record.get("val"), list)):
            raise MicronetError(f"{self.split}: unreadable split (expected lists 'train', 'val')")
        return [str(n) for n in record["train"]], [str(n) for n in record["val"]]

    def read_postprocess(self) -> PostprocessConfig | None:
        """The run's tuned post-processing (validated); ``None`` when there is none."""
        return read_postprocess(self.postprocess) if self.postprocess.is_file() else None

    def write_postprocess(self, config: PostprocessConfig, table: Sequence[Mapping[str, Any]],
                          names: Sequence[str], objective: str = "f1", tta: int = 1,
                          scores: Mapping[str, float] | None = None) -> Path:
        """Write ``postprocess.json`` (see :func:`write_postprocess`)."""
        self.path.mkdir(parents=True, exist_ok=True)
        return write_postprocess(self.postprocess, config, table, names, objective, tta, scores)

    def append_log(self, record: Mapping[str, Any]) -> None:
        """Add one record to ``log.jsonl``."""
        with open(self.log, "a") as f:
            f.write(json.dumps(dict(record)) + "\n")

    def read_log(self) -> list[dict[str, Any]]:
        """Every record of ``log.jsonl``, in order."""
        if not self.log.exists():
            raise MicronetError(f"{self.log}: no training log (is {self.path} a run folder?)")
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        """Write ``summary.json``."""
        return self._write_json(self.summary, dict(summary))

    def read_summary(self) -> dict[str, Any]:
        """``summary.json`` (empty when the run has none)."""
        return self._read_json(self.summary, "summary") if self.summary.is_file() else {}
