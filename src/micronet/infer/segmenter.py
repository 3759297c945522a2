"""``Segmenter``: Micro-Net gland segmentation of images of any size and of whole slides.

>>> seg = Segmenter.from_pretrained("glas")            # doctest: +SKIP
>>> result = seg.predict(rgb_uint8_image, mpp=0.5)    # doctest: +SKIP
>>> result.labels, result.glands[0]["area_px"]        # doctest: +SKIP

An image is cut into overlapping network-sized tiles (:mod:`micronet.infer.tiling`), blended
strip by strip into a compact ``uint8`` gland/contour map, and turned into gland instances
(:mod:`micronet.infer.postprocess`). Memory beyond the outputs is one strip of tiles, so a
10,000×10,000 image runs in well under 4 GB.

Resolution: the weights were trained at ``info.mpp`` µm/px (0.62 for GlaS at 20×; a model
trained at half resolution works at 1.24). An image whose µm/px (``predict(mpp=...)``; without it,
``info.input_mpp``, the resolution of the data the weights were trained from) differs from that
by more than 10 % is resized to the model's resolution (area interpolation when shrinking,
bilinear when enlarging) and segmented there; the class probabilities are resized back to the
input's size bilinearly *before* instance labelling, so outputs always match the input's size and
post-processing sizes are in input pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import nn

from .._resize import resize_by
from ..data.augment import dihedral, dihedral_inverse
from ..errors import InputError, MicronetError
from ..models.card import MPP_TOLERANCE, WeightsCard
from .postprocess import ClassMaps, PostprocessConfig, label_glands, measure_glands, quantize
from .runtime import (
    resolve_device,
    resolve_model,
    resolve_precision,
    tta_transforms,
)
from .shared import mask_outside, tile_progress
from .tiling import StripBlender, TileGrid, default_overlap, read_tile
from .tissue import TissueConfig, TissueMask, detect_tissue

if TYPE_CHECKING:
    from .slide import SlideSegmentation

__all__ = ["Segmenter", "Segmentation", "Inference"]


class Inference(NamedTuple):
    """:meth:`Segmenter.infer`'s output: class maps at the model's resolution, to finish."""

    image: np.ndarray
    maps: ClassMaps
    probabilities: np.ndarray | None
    factor: float  # model px per image px (1.0: not resampled)
    mpp: float | None
    tissue: TissueMask | None = None  # a mask given by the caller; else finish() detects one


@dataclass
class Segmentation:
    """The result of :meth:`Segmenter.predict`.

    Attributes:
        labels: ``(H, W) int32`` gland instances, 0 = background.
        probabilities: ``(3, H, W) float16`` background/gland/contour probabilities, when asked.
        glands: one dict per gland (see :func:`micronet.infer.postprocess.measure_glands`).
        mpp: the image's µm/px when known.
        tissue: the tissue mask used (``None``: none); glands exist only inside it.
    """

    labels: np.ndarray
    probabilities: np.ndarray | None = None
    glands: list[dict[str, Any]] = field(default_factory=list)
    mpp: float | None = None
    tissue: TissueMask | None = None

    @property
    def num_glands(self) -> int:
        """Number of gland instances."""
        return len(self.glands)

    def table(self) -> list[dict[str, Any]]:
        """Per-gland measurements as CSV-ready rows."""
        return [dict(row) for row in self.glands]


class Segmenter:
    """Micro-Net inference: tiling, blending, test-time augmentation and gland post-processing.

    Args:
        model: architecture name (``"micronet508"``; ``None``: the shipped weights' own, or
            micronet508 without weights) or an already-built ``nn.Module`` with an
            ``input_size`` attribute returning ``(B, 3, S, S)`` logits in eval mode. A passed
            module is used as it is, not copied: it moves to ``device`` (and channels_last)
            in place, so a large model never exists twice in memory.
        width: channel multiplier when building by name (``None``: 1.0, or the weights' width).
        weights: ``None`` (random init, for tests), a shipped tag or dataset (``"glas"``), a
            ``.safetensors`` file, or a training run folder (its ``best`` weights).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        postprocess: :class:`PostprocessConfig`, a dict of its fields, or ``None`` for the
            weights' tuned values (else the defaults).
        batch_size: tiles per forward pass.
        tta: test-time augmentation: ``False``, ``True`` (8 flips/rotations) or 4 (rotations).
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see
            :mod:`micronet.infer.runtime` for what auto picks and why).
        overlap: px shared by neighbouring tiles (``None``: a quarter tile).
        tissue: tissue detection before labelling (:mod:`micronet.infer.tissue`): ``True``
            (default parameters), a :class:`TissueConfig`, ``False`` (every pixel is tissue),
            or a 2-D array: your own mask for every input (any size, non-zero = tissue,
            stretched over each). Predictions outside tissue become background, so glass and
            pen ink never become glands.
        card: the weights' card (µm/px, normalisation, post-processing...) to use instead of
            the one resolved with the model (e.g. a model being trained at 1.24 µm/px).
    """

    def __init__(self, model: str | nn.Module | None = None, width: float | None = None,
                 weights: str | Path | None = None, device: str | torch.device = "auto",
                 postprocess: PostprocessConfig | Mapping[str, Any] | None = None,
                 batch_size: int = 4, tta: bool | int = False, precision: str = "auto",
                 overlap: int | None = None,
                 tissue: bool | TissueConfig | np.ndarray = True,
                 card: WeightsCard | None = None) -> None:
        self.model, self.info = resolve_model(model, width, weights)
        if card is not None:
            self.info = card
        self.tissue_mask = _user_mask(tissue) if isinstance(tissue, np.ndarray) else None
        self.tissue = tissue if isinstance(tissue, TissueConfig) else (
            TissueConfig() if tissue is True else None)
        self.device = resolve_device(device)
        self.autocast_dtype = resolve_precision(precision, self.device)
        self.channels_last = self.device.type == "cuda" or torch.backends.mkldnn.is_available()
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        tile = getattr(self.model, "input_size", None)
        if not isinstance(tile, int) or tile < 2:
            raise ValueError("the model needs an integer `input_size` (its square tile size)")
        self.tile = tile
        self.num_classes = int(getattr(self.model, "num_classes", 3))
        if self.num_classes != 3:
            raise MicronetError(f"gland segmentation needs 3 classes, the model has "
                                f"{self.num_classes}")
        self.overlap = default_overlap(tile) if overlap is None else int(overlap)
        if not 0 <= self.overlap < tile:
            raise ValueError(f"overlap must be in [0, {tile}), got {overlap}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.transforms = tta_transforms(8 if tta is True else (int(tta) if tta else 1))
        if isinstance(postprocess, PostprocessConfig):
            self.postprocess = postprocess
        else:
            self.postprocess = PostprocessConfig.from_dict(
                postprocess if postprocess is not None else self.info.postprocess)

    @classmethod
    def from_pretrained(cls, name: str, **kwargs: Any) -> Segmenter:
        """Shipped weights by name: ``"glas"`` (the recommended GlaS weights, whatever their
        architecture) or ``"micronet252.glas_w025"``."""
        arch, tag = name.split(".", 1) if "." in name else (kwargs.pop("model", None), name)
        return cls(model=arch, weights=tag, **kwargs)

    @property
    def mpp(self) -> float:
        """µm per pixel the weights were trained at."""
        return self.info.mpp

    def __repr__(self) -> str:
        dtype = "fp32" if self.autocast_dtype is None else str(self.autocast_dtype).split(".")[1]
        return (f"Segmenter({self.info.name}, tile={self.tile}, overlap={self.overlap}, "
                f"device={self.device}, precision={dtype}, tta={len(self.transforms)})")

    @torch.inference_mode()
    def predict_tiles(self, tiles: np.ndarray) -> np.ndarray:
        """Class probabilities of a ``(B, S, S, 3) uint8`` tile batch as ``(B, 3, S, S) float32``
        (averaged over the test-time transforms)."""
        from ..models import normalize

        x = torch.from_numpy(np.ascontiguousarray(tiles)).to(self.device, non_blocking=True)
        x = normalize(x.permute(0, 3, 1, 2), self.info.mean, self.info.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        total = None
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            for element in self.transforms:
                logits = self.model(dihedral(x, element))
                prob = dihedral_inverse(torch.softmax(logits.float(), dim=1), element)
                total = prob if total is None else total + prob
        assert total is not None
        return (total / len(self.transforms)).cpu().numpy()

    def predict_maps(self, image: np.ndarray, *, grid: TileGrid | None = None,
                     window: tuple[int, int, int, int] | None = None,
                     return_probabilities: bool = False, progress: Any = None,
                     ) -> tuple[ClassMaps, np.ndarray | None]:
        """Blended class probabilities of ``image`` (no resampling, no post-processing).

        Args:
            image: ``(H, W, 3) uint8``.
            grid: tile positions in window coordinates (default: spread over the image).
            window: ``(y0, x0, height, width)`` of the output in image coordinates (default:
                the whole image); tiles read outside the image are mirrored.
            return_probabilities: also return ``(3, h, w) float16`` probabilities.
            progress: see :func:`tile_progress`.

        Returns:
            ``(ClassMaps, probabilities or None)`` for the window.
        """
        y0, x0, height, width = window or (0, 0, *image.shape[:2])
        grid = grid or TileGrid.spread(height, width, self.tile, self.overlap)
        maps = ClassMaps.empty(height, width)
        probs = np.empty((3, height, width), np.float16) if return_probabilities else None

        def emit(row: int, block: np.ndarray) -> None:
            rows = slice(row, row + block.shape[1])
            maps.gland[rows] = quantize(block[1])
            maps.contour[rows] = quantize(block[2])
            if probs is not None:
                probs[:, rows] = block

        blender = StripBlender(3, height, width, grid, emit)
        with tile_progress(progress, len(grid), "tiles") as advance:
            for ty in grid.ys:
                for i in range(0, len(grid.xs), self.batch_size):
                    xs = grid.xs[i:i + self.batch_size]
                    batch = np.stack([read_tile(image, int(ty) + y0, int(tx) + x0, self.tile)
                                      for tx in xs])
                    for tx, p in zip(xs, self.predict_tiles(batch), strict=True):
                        blender.add(int(ty), int(tx), p)
                    advance(len(xs))
                blender.finish_row()
        return maps, probs

    def predict(self, image: np.ndarray, *, mpp: float | None = None,
                return_probabilities: bool = False, progress: Any = None,
                tissue_mask: np.ndarray | TissueMask | None = None) -> Segmentation:
        """Segment the glands of an RGB image of any size.

        Args:
            image: ``(H, W, 3) uint8`` RGB.
            mpp: the image's µm per pixel; resampled to the model's when > 10 % off.
            return_probabilities: keep ``(3, H, W) float16`` probabilities in the result.
            progress: a tile progress bar (``None``: on a TTY), or a rich ``Progress`` to use.
            tissue_mask: your own tissue mask (any size, non-zero = tissue; stretched over the
                image), used instead of the detected one.

        Returns:
            :class:`Segmentation` with labels, optional probabilities and per-gland rows.

        Raises:
            InputError: ``image`` is not an ``(H, W, 3) uint8`` array, or ``mpp`` <= 0.
        """
        return self.finish(self.infer(image, mpp=mpp, return_probabilities=return_probabilities,
                                      progress=progress, tissue_mask=tissue_mask))

    def infer(self, image: np.ndarray, *, mpp: float | None = None,
              return_probabilities: bool = False, progress: Any = None,
              tissue_mask: np.ndarray | TissueMask | None = None) -> Inference:
        """The network half of :meth:`predict` (resampling, tiles, blending); :meth:`finish`
        is the CPU half, so a caller can post-process one image while the next is inferred.
        ``tissue_mask``: a caller's mask (any size, non-zero = tissue, stretched over the
        image) instead of the detected one."""
        check_image(image)
        if tissue_mask is None:
            tissue_mask = self.tissue_mask
        if tissue_mask is not None and not isinstance(tissue_mask, TissueMask):
            tissue_mask = TissueMask(_user_mask(tissue_mask), image.shape[:2])
        factor = self.resample_factor(mpp)
        work = image if factor == 1.0 else resize_by(image, factor)
        maps, probs = self.predict_maps(work, return_probabilities=return_probabilities,
                                        progress=progress)
        return Inference(image, maps, probs, factor, mpp, tissue_mask)

    def finish(self, inference: Inference) -> Segmentation:
        """Gland instances and measurements from :meth:`infer`'s class maps (no model use;
        the maps are modified in place). Outside tissue the maps are set to background before
        labelling; glands far larger than any training gland are flagged ``suspect``."""
        from .export import flag_suspects

        image, _, probs, factor, mpp, _ = inference
        maps, tissue = self.labelling_maps(inference)
        if factor != 1.0 and probs is not None:
            probs = resize_probabilities(probs, image.shape[:2])
        labelled_mpp = mpp or self.info.input_mpp  # no mpp given: the model's own
        labels = label_glands(maps, self.postprocess_at(labelled_mpp))
        glands = measure_glands(labels, image, mpp)
        flag_suspects(glands, labelled_mpp)
        return Segmentation(labels, probs, glands, mpp, tissue)

    def labelling_maps(self, inference: Inference) -> tuple[ClassMaps, TissueMask | None]:
        """The class maps instances are labelled from (what :meth:`finish` and tuning use):
        brought to the input's size (probabilities before instances, so post-processing sizes
        are input pixels) and set to background outside tissue; plus the tissue mask used."""
        image, maps, _, factor, mpp, tissue = inference
        if factor != 1.0:
            maps = maps.resized(image.shape[:2])
        if tissue is None and self.tissue is not None:
            tissue = detect_tissue(image, mpp or self.info.input_mpp, self.tissue)
        if tissue is not None:  # the mask covers the image, whatever the maps' pixel grid
            mask_outside(maps, tissue.resized_to(maps.shape),
                         image=image if image.shape[:2] == maps.shape else None)
        return maps, tissue

    def postprocess_at(self, mpp: float) -> PostprocessConfig:
        """The post-processing for labelling at ``mpp`` µm/px: its sizes are pixels at the
        resolution it was tuned at (the weights' ``input_mpp``), so they are rescaled."""
        return self.postprocess.rescaled(self.info.input_mpp / mpp)

    def resample_factor(self, mpp: float | None) -> float:
        """Scale from the image to the model's resolution (1.0 within the 10 % tolerance)."""
        if mpp is None:
            mpp = self.info.input_mpp
        if not mpp > 0:
            raise InputError(f"mpp must be a positive number of µm per pixel, got {mpp}")
        ratio = mpp / self.mpp
        return 1.0 if abs(ratio - 1.0) <= MPP_TOLERANCE else ratio

    def predict_slide(self, path: str | Path, **kwargs: Any) -> SlideSegmentation:
        """Segment a whole-slide image; see :func:`micronet.infer.slide.segment_slide`."""
        from .slide import segment_slide

        return segment_slide(self, path, **kwargs)


def _user_mask(mask: Any) -> np.ndarray:
    """A caller's tissue mask as ``bool``; ``InputError`` unless 2-D with some tissue."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or not mask.any():
        raise InputError(f"a tissue mask must be a 2-D array with some tissue (non-zero), got "
                         f"shape {mask.shape} with {int(np.count_nonzero(mask))} tissue px")
    return mask > 0


def check_image(image: Any) -> None:
    """Raise ``InputError`` unless ``image`` is a non-empty ``(H, W, 3) uint8`` array."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"image must be (H, W, 3) uint8 RGB, got shape {image.shape} "
                         f"dtype {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"image is empty (shape {image.shape})")


def resize_probabilities(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(C, h, w)`` probabilities to ``(C, *shape) float16``."""
    import cv2

    out = np.empty((probs.shape[0], *shape), np.float16)
    for c in range(probs.shape[0]):
        out[c] = cv2.resize(probs[c].astype(np.float32), (shape[1], shape[0]),
                            interpolation=cv2.INTER_LINEAR)
    return out
