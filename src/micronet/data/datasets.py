"""Datasets over an imported GlaS folder or any folder of image/mask pairs, and a val split.

Items are plain dicts (``image`` (H, W, 3) uint8, ``labels`` (H, W) int32, ``name``) so torch's
default collate and user code can use them without importing a micronet type. Tiles vary in
size (GlaS is mostly 775x522 but not all), so training crops patches before batching.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from torch.utils.data import Dataset

from .._io import read_labels, read_rgb
from ..errors import InputError, MicronetError
from .folders import IMAGE_SUFFIXES, list_images, natural_key
from .verify import GLAS_SPLITS, read_manifest

__all__ = ["GlaSSample", "GlaSDataset", "ImageFolderDataset", "train_val_split"]

class GlaSSample(TypedDict):
    """One image with its instance labels."""

    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray  # (H, W) int32, 0 = background, 1..N = one gland each
    name: str


class GlaSDataset(Dataset):
    """One split of a folder written by ``micronet data glas`` (see ``import_glas``).

    Args:
        root: the imported folder (holds ``manifest.json``).
        split: ``"train"``, ``"testA"`` or ``"testB"``.
        names: keep only these images, in this order (e.g. the training or validation part of
            :func:`train_val_split`); ``None`` keeps the whole split in manifest order.

    Raises:
        MicronetError: ``root`` is not an imported folder, unknown split, or unknown names.
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "train",
                 names: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        if split not in GLAS_SPLITS:
            raise MicronetError(f"unknown GlaS split {split!r}; "
                                f"choose from {', '.join(GLAS_SPLITS)}")
        self.split = split
        by_name = {r["name"]: r for r in self.manifest["files"] if r["split"] == split}
        if names is None:
            self.records: list[dict[str, Any]] = list(by_name.values())
        else:
            unknown = [n for n in names if n not in by_name]
            if unknown:
                raise MicronetError(f"{self.root}: not in split {split!r}: {', '.join(unknown[:5])}"
                                    + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
            self.records = [by_name[n] for n in names]

    @property
    def names(self) -> list[str]:
        """Image names (e.g. ``"train_1"``) in dataset order."""
        return [r["name"] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> GlaSSample:
        record = self.records[index]
        return GlaSSample(image=read_rgb(self.root / record["image"]),
                          labels=read_labels(self.root / record["labels"]), name=record["name"])

    def __repr__(self) -> str:
        return f"GlaSDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"

    @staticmethod
    def from_pairs(images_dir: str | os.PathLike[str], labels_dir: str | os.PathLike[str],
                   label_suffix: str = "") -> ImageFolderDataset:
        """Your own data: the same item format from a folder of images and one of label maps."""
        return ImageFolderDataset(images_dir, labels_dir, label_suffix=label_suffix)


class ImageFolderDataset(Dataset):
    """Image/label pairs matched by file stem: ``images/a.png`` with ``labels/a{suffix}.png``.

    Args:
        images_dir: RGB images (png, bmp, tif, webp, jpg).
        labels_dir: single-channel integer instance maps (0 = background).
        label_suffix: text after the image stem in label names, e.g. ``"_anno"`` for GlaS BMPs.

    Raises:
        MicronetError: missing folders, no images, duplicate stems, or any unpaired file.
    """

    def __init__(self, images_dir: str | os.PathLike[str], labels_dir: str | os.PathLike[str],
                 *, label_suffix: str = "") -> None:
        self.images_dir, self.labels_dir = Path(images_dir), Path(labels_dir)
        labels = _by_stem(self.labels_dir, label_suffix)
        # one folder holding both (like the GlaS release): label files are not images
        same = label_suffix and self.images_dir.resolve() == self.labels_dir.resolve()
        images = {s: p for s, p in _by_stem(self.images_dir, "").items()
                  if not (same and s.endswith(label_suffix))}
        unpaired = ([f"{p.name} (no label in {self.labels_dir})"
                     for s, p in images.items() if s not in labels]
                    + [f"{p.name} (no image in {self.images_dir})"
                       for s, p in labels.items() if s not in images])
        if unpaired:
            raise MicronetError(f"{len(unpaired)} unpaired file(s): {'; '.join(unpaired[:5])}"
                                + (f"; and {len(unpaired) - 5} more" if len(unpaired) > 5 else ""))
        if not images:
            raise MicronetError(f"{self.images_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self.pairs = [(stem, images[stem], labels[stem])
                      for stem in sorted(images, key=natural_key)]

    @property
    def names(self) -> list[str]:
        """Image stems in dataset order (natural order: ``a_2`` before ``a_10``)."""
        return [stem for stem, _, _ in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> GlaSSample:
        stem, image_path, labels_path = self.pairs[index]
        image, labels = read_rgb(image_path), read_labels(labels_path)
        if labels.shape != image.shape[:2]:
            raise InputError(f"{labels_path}: size {labels.shape[1]}x{labels.shape[0]} does not "
                             f"match {image_path.name} ({image.shape[1]}x{image.shape[0]})")
        return GlaSSample(image=image, labels=labels, name=stem)

    def __repr__(self) -> str:
        return f"ImageFolderDataset(images_dir={str(self.images_dir)!r}, n={len(self)})"


def _by_stem(folder: Path, suffix: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in list_images(folder):
        if not path.stem.endswith(suffix):
            continue
        stem = path.stem[: len(path.stem) - len(suffix)]
        if stem in found:
            raise MicronetError(f"{folder}: {found[stem].name} and {path.name} share the stem "
                                f"{stem!r}")
        found[stem] = path
    return found


def train_val_split(names: Sequence[str], val_fraction: float = 0.1, seed: int = 0,
                    strata: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Hold out ``round(val_fraction * n)`` names (at least one) for validation, deterministically.

    With ``strata`` (name → class, e.g. the GlaS grade), each class is held out in proportion,
    so a small validation set is not all benign glands while Test B is mostly malignant.
    The result depends only on the set of names, the strata and the seed, not on their order;
    both lists come back sorted naturally (``train_2`` before ``train_10``).

    Raises:
        ValueError: ``val_fraction`` outside [0, 1), duplicate names, names without a stratum,
            or too few names to split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ordered = sorted(names, key=natural_key)
    if len(set(ordered)) != len(ordered):
        raise ValueError("train_val_split: duplicate names")
    if val_fraction == 0.0:
        return ordered, []
    if len(ordered) < 2:
        raise ValueError(f"cannot hold out a validation set from {len(ordered)} name(s)")
    rng = np.random.default_rng(seed)
    if strata is None:
        n_val = min(len(ordered) - 1, max(1, round(val_fraction * len(ordered))))
        chosen = {ordered[i] for i in rng.permutation(len(ordered))[:n_val].tolist()}
    else:
        missing = [n for n in ordered if n not in strata]
        if missing:
            raise ValueError(f"train_val_split: no stratum for {', '.join(missing[:5])}")
        chosen = set()
        for stratum in sorted({strata[n] for n in ordered}):
            members = [n for n in ordered if strata[n] == stratum]
            n_val = round(val_fraction * len(members))
            chosen.update(members[i] for i in rng.permutation(len(members))[:n_val].tolist())
        if not chosen:  # too few per class to round up: one image overall
            chosen = {ordered[int(rng.integers(len(ordered)))]}
        if len(chosen) == len(ordered):
            chosen.discard(ordered[0])
    val = [n for n in ordered if n in chosen]
    train = [n for n in ordered if n not in chosen]
    return train, val
