"""Folders of images: the one place that knows image suffixes, natural order, label-file naming
and which folder layouts hold a dataset.

Layouts :func:`open_dataset` reads, in this order:

* a folder written by ``micronet data glas`` (has ``manifest.json``): one split of it;
* ``ROOT/<split>/images`` + ``ROOT/<split>/labels`` (e.g. ``train/images``, ``train/labels``);
* ``ROOT/images`` + ``ROOT/labels`` (one split only).

Images and label maps pair by file stem. In folders mixing both (the GlaS release), a label map
is named after its image plus one of :data:`LABEL_SUFFIXES` (``testA_1_anno.bmp``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, MicronetError

if TYPE_CHECKING:
    from .datasets import GlaSDataset, ImageFolderDataset

__all__ = ["IMAGE_SUFFIXES", "LABEL_SUFFIXES", "natural_key", "is_image_file", "list_images",
           "label_key", "dataset_layout", "open_dataset"]

IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".webp", ".jpg", ".jpeg")
LABEL_SUFFIXES = ("_anno", "_labels", "_label", "_instances", "_mask", "_gt", "_pred")


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key putting ``train_2`` before ``train_10`` (digit runs compare as numbers)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def is_image_file(path: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> bool:
    """A visible file whose suffix is one of ``suffixes`` (case-insensitive)."""
    return (not path.name.startswith(".") and path.suffix.lower() in suffixes
            and path.is_file())


def list_images(folder: str | os.PathLike[str],
                suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The image files of ``folder`` (not its subfolders), in natural order of their names.

    Raises:
        MicronetError: ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MicronetError(f"{folder}: folder not found")
    return sorted((p for p in folder.iterdir() if is_image_file(p, suffixes)),
                  key=lambda p: natural_key(p.name))


def label_key(path: Path) -> tuple[str, bool]:
    """(key, has_label_suffix) of a file: ``testA_1_anno.bmp`` -> ``("testA_1", True)``."""
    stem = path.stem
    for suffix in LABEL_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)], True
    return stem, False


def dataset_layout(root: str | os.PathLike[str], split: str) -> tuple[Path, Path] | None:
    """``(images, labels)`` folders of ``split`` under ``root`` for the two folder layouts
    (``<split>/images`` first, then ``images``); ``None`` for an import or no dataset."""
    root = Path(root)
    for base in (root / split, root):
        if (base / "images").is_dir() and (base / "labels").is_dir():
            return base / "images", base / "labels"
    return None


def open_dataset(root: str | os.PathLike[str],
                 split: str = "train") -> GlaSDataset | ImageFolderDataset:
    """One split of a dataset folder in any layout of the module doc, as a
    :class:`~micronet.data.datasets.GlaSDataset` or
    :class:`~micronet.data.datasets.ImageFolderDataset`.

    Raises:
        InputError: no folder, or no layout this module reads.
    """
    from .datasets import GlaSDataset, ImageFolderDataset

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: data folder not found (import GlaS with "
                            f"`micronet data glas --source ZIP --dest {root}`)")
    if (root / "manifest.json").exists():
        return GlaSDataset(root, split=split)
    layout = dataset_layout(root, split)
    if layout is None:
        raise InputError(f"{root}: neither an imported GlaS folder (manifest.json) nor a "
                            f"folder with {split}/images + {split}/labels or images/ + labels/ "
                            "subfolders")
    return ImageFolderDataset(*layout)
