"""Training data: the imported folder, the validation hold-out, and the on-device patch sampler."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from ..data.folders import open_dataset
from ..data.glas import train_val_split
from ..errors import MicronetError
from .config import VAL_SPLITS, TrainConfig

if TYPE_CHECKING:
    from ..data.datasets import GlaSDataset, ImageFolderDataset
    from ..data.sampling import Batch

__all__ = ["BatchSampler", "TrainingData", "load_training_data", "validation_split"]


class BatchSampler(Protocol):
    """Where training batches come from (:class:`micronet.data.sampling.PatchSampler` is one)."""

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """An augmented batch of ``batch_size`` samples; all randomness from ``generator``."""
        ...


@dataclass
class TrainingData:
    """The sampler over training images and the held-out validation images."""

    sampler: BatchSampler
    num_train: int
    train_names: list[str]
    val_names: list[str]
    val_images: list[np.ndarray] = field(default_factory=list)
    val_labels: list[np.ndarray] = field(default_factory=list)


def load_training_data(config: TrainConfig, device: torch.device) -> TrainingData:
    """Read the training split, hold out ``val_fraction`` of it, and build the patch sampler."""
    from ..data.augment import AugmentConfig
    from ..data.sampling import PatchSampler, SamplingConfig

    d = config.data
    full = open_dataset(Path(d.root), d.split)
    names = list(full.names)
    if not names:
        raise MicronetError(f"{d.root}: no training images in split {d.split!r}")
    train_names, val_names = validation_split(full, d.val_fraction, config.run.seed,
                                              d.val_split, Path(d.root))
    by_name = {n: i for i, n in enumerate(names)}
    items = [full[by_name[n]] for n in train_names]
    augment = AugmentConfig(distort_p=d.distortion_p, blur_p=d.blur_p, zoom=d.zoom,
                            stain_p=d.stain_p, stain_sigma=d.stain_sigma, glass_p=d.glass_p)
    sampling = SamplingConfig(patch_size=d.patch_size, crop_size=config.crop_size,
                              contour_width=d.contour_width, w0=d.w0, sigma=d.sigma,
                              augment=augment, scale=d.scale)
    sampler = PatchSampler([it["image"] for it in items], [it["labels"] for it in items],
                           sampling, device=device, workers=d.workers)
    val_items = [full[by_name[n]] for n in val_names]
    return TrainingData(sampler, len(items), train_names, val_names,
                        [it["image"] for it in val_items], [it["labels"] for it in val_items])


def validation_split(dataset: GlaSDataset | ImageFolderDataset, val_fraction: float, seed: int,
                     how: str = "random", root: Path | None = None) -> tuple[list[str], list[str]]:
    """Training and held-out names of ``dataset``: ``how="random"``, or ``"grade"`` to hold out
    each GlaS grade in proportion (needs the grades of an imported GlaS folder's manifest)."""
    if how not in VAL_SPLITS:
        raise MicronetError(f"data.val_split={how!r}: expected {' or '.join(VAL_SPLITS)}")
    strata = None
    if how == "grade":
        records = getattr(dataset, "records", None)
        if not records or any(not r.get("grade") for r in records):
            raise MicronetError(f"{root or 'data'}: data.val_split=grade needs an imported GlaS "
                                "folder whose manifest has grades; use data.val_split=random")
        strata = {r["name"]: r["grade"] for r in records}
    return train_val_split(dataset.names, val_fraction, seed=seed, strata=strata)
