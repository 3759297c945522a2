"""A PNG grid of augmented training samples, to check targets, weights and augmentation by eye.

Each row is one sample exactly as the trainer would see it (:class:`PatchSampler` with the default
augmentation): the image, its 3-class target (background grey, gland green, contour red) and its
U-Net weight map with a colour bar. The row title names the source image and the augmentation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_path
from ..errors import InputError
from .augment import DISTORTIONS
from .folders import open_dataset
from .sampling import PatchSampler, SamplingConfig

__all__ = ["save_preview"]

_CLASS_COLOURS = ("#d9d9d9", "#4daf4a", "#e41a1c")  # background, gland, contour
_DIHEDRAL_NAMES = ("", "rot90", "rot180", "rot270", "flip-lr", "anti-transpose", "flip-ud",
                   "transpose")  # augment.dihedral's elements 0..7


def _describe(name: str, k1: float, k2: float, sigma: float, element: int) -> str:
    parts = [name]
    if k1 or k2:
        kind = DISTORTIONS[2] if k2 else DISTORTIONS[0] if k1 < 0 else DISTORTIONS[1]
        parts.append(f"{kind} k1={k1:+.3f}" + (f" k2={k2:+.3f}" if k2 else ""))
    if sigma:
        parts.append(f"blur σ={sigma:.2f}")
    if _DIHEDRAL_NAMES[element]:
        parts.append(_DIHEDRAL_NAMES[element])
    return ", ".join(parts)


def save_preview(data_dir: str | os.PathLike[str], out: str | os.PathLike[str], *,
                 split: str = "train", n: int = 8, seed: int = 0,
                 patch: int | None = None) -> Path:
    """Save a PNG grid of ``n`` augmented training samples (image, target, weight map).

    Args:
        data_dir: an imported GlaS folder, or a folder with ``split/images`` and
            ``split/labels`` (or ``images`` and ``labels``) of matching file stems
            (:mod:`micronet.data.folders`).
        out: PNG path (written atomically).
        split: which split to sample.
        n: number of samples (rows).
        seed: seeds both the choice of images and the augmentation.
        patch: crop size (default: Micro-Net-508's input size).

    Returns:
        ``out`` as a Path.

    Raises:
        InputError: missing folder or no images; MicronetError from the dataset readers.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    data_dir, out = Path(data_dir), Path(out)
    if patch is None:
        from ..models import DEFAULT_ARCH, input_size

        patch = input_size(DEFAULT_ARCH)
    dataset = open_dataset(data_dir, split)
    if len(dataset) == 0:
        raise InputError(f"{data_dir}: split {split!r} has no images")
    # prepare only the images a preview can show, not the whole split
    picked = np.random.default_rng(seed).permutation(len(dataset))[: min(n, len(dataset))]
    items = [dataset[int(i)] for i in picked]
    config = SamplingConfig(patch_size=max(600, patch), crop_size=patch)
    sampler = PatchSampler([it["image"] for it in items], [it["labels"] for it in items], config)
    batch, chosen, params = sampler.sample_with_params(n, torch.Generator().manual_seed(seed))

    fig = Figure(figsize=(10.5, 3.3 * n), layout="tight")
    axes = fig.subplots(n, 3, squeeze=False, gridspec_kw={"width_ratios": [1, 1, 1.12]})
    classes = ListedColormap(_CLASS_COLOURS)
    for row in range(n):
        image = batch.image[row].permute(1, 2, 0).cpu().numpy()
        target = batch.target[row].cpu().numpy()
        weight = batch.weight[row].cpu().numpy()
        axes[row, 0].imshow(image)
        axes[row, 1].imshow(target, cmap=classes, vmin=-0.5, vmax=2.5, interpolation="nearest")
        shown = axes[row, 2].imshow(weight, cmap="magma", interpolation="nearest")
        fig.colorbar(shown, ax=axes[row, 2], fraction=0.046, pad=0.02)
        axes[row, 0].set_title(_describe(items[chosen[row]]["name"], float(params.k1[row]),
                                         float(params.k2[row]), float(params.sigma[row]),
                                         int(params.dihedral[row])), fontsize=8, loc="left")
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 1].set_title("target: background / gland / contour", fontsize=8)
    axes[0, 2].set_title(f"U-Net weight (w0={config.w0}, σ={config.sigma})", fontsize=8)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return out
