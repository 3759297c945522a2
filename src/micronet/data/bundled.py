"""Sample GlaS tiles shipped inside the package, so the demo and docs work without a download.

The files live in ``micronet/data/samples/`` (``NAME.png`` + ``NAME_labels.png``); their source,
grades and label provenance are listed in ``samples/README.md``. ``demo_slide.tif`` is the four
tiles on synthetic glass as a small pyramidal slide (``scripts/make_demo_slide.py``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from .._io import read_labels, read_rgb
from ..errors import MicronetError

__all__ = ["list_samples", "sample_paths", "load_sample", "demo_slide", "DEMO_SLIDE_COLUMNS"]

_LABELS_SUFFIX = "_labels"
DEMO_SLIDE_COLUMNS = 2  # the demo slide's tiles: list_samples() order, 2 per row


def _samples_dir() -> Path:
    return Path(str(resources.files(__package__).joinpath("samples")))


def list_samples() -> list[str]:
    """Names of the bundled tiles (e.g. ``"testA_1"``), sorted."""
    return sorted(p.stem for p in _samples_dir().glob("*.png")
                  if not p.stem.endswith(_LABELS_SUFFIX))


def sample_paths(name: str) -> tuple[Path, Path]:
    """``(image_path, labels_path)`` of a bundled tile, for commands that take files.

    Raises:
        MicronetError: unknown name (the message lists the bundled ones).
    """
    if name not in list_samples():
        raise MicronetError(f"unknown sample {name!r}; bundled: {', '.join(list_samples())}")
    folder = _samples_dir()
    return folder / f"{name}.png", folder / f"{name}{_LABELS_SUFFIX}.png"


def load_sample(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A bundled tile as ``(image (H, W, 3) uint8, labels (H, W) int32)``.

    Raises:
        MicronetError: unknown name.
    """
    image_path, labels_path = sample_paths(name)
    return read_rgb(image_path), read_labels(labels_path)


def demo_slide() -> tuple[Path, np.ndarray]:
    """The bundled demo slide (JPEG pyramidal TIFF, 0.62 µm/px: the four sample tiles on
    synthetic glass) and its ``(H, W) int32`` level-0 labels."""
    folder = _samples_dir()
    return folder / "demo_slide.tif", read_labels(folder / "demo_slide_labels.png")
