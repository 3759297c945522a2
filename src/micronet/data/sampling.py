"""The trainer's data source: cached per-image targets and weights, augmented patches on device.

:class:`PatchSampler` prepares each training image once (3-class target, U-Net weight map, reflect
padding to at least the patch size), keeps all of it as tensors on the training device, and then
draws batches there: a uniformly chosen image, a random ``patch_size`` patch of it (paper: 600), the
augmentation of :mod:`micronet.data.augment` on that patch, and a random ``crop_size`` crop (the
model input, 508 or 252). Distortion is computed on the patch geometry, so crops near the patch
edge show reflected patch content rather than empty borders.

Padding: images smaller than the patch (GlaS: 775x522, some 589x453) are reflect-padded, and the
target and weight map are padded the same way, so the loss sees the mirrored glands with their
mirrored targets and weights. (The border term is not recomputed across the mirror line; a gap
between a gland and its mirror image keeps its ordinary class weight.)

The sampler is stateless: all randomness comes from the ``torch.Generator`` passed to
:meth:`PatchSampler.sample`, so checkpointing ``generator.get_state()`` is enough to resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .._resize import resize_by
from ..models.micronet import SPEC_508
from .augment import AugmentConfig, AugmentParams, apply_params, draw_params
from .targets import DEFAULT_CONTOUR_WIDTH, three_class_targets
from .weightmap import unet_weight_map

__all__ = ["SamplingConfig", "PatchSampler", "Batch", "prepare_image"]


@dataclass(frozen=True)
class SamplingConfig:
    """How training samples are cut, labelled, weighted and augmented (paper defaults).

    Attributes:
        patch_size: patch cut from each image; smaller images are reflect-padded up to it.
        crop_size: random crop per sample = the model's input size (default: Micro-Net-508's,
            from its :data:`~micronet.models.micronet.SPEC_508`).
        contour_width: contour band width of the 3-class target
            (:data:`micronet.data.targets.DEFAULT_CONTOUR_WIDTH`).
        w0, sigma: U-Net border term amplitude and width (paper: 10, 5 px).
        augment: augmentation probabilities and ranges.
        scale: resize factor from the images to the training resolution (0.5 = half size).
            Targets and weight maps are made at the images' own resolution and then resized
            (class ids nearest, weights by area), so contours between touching glands stay
            open; patch and crop sizes are at the training resolution.
    """

    patch_size: int = 600
    crop_size: int = SPEC_508.input_size
    contour_width: int = DEFAULT_CONTOUR_WIDTH
    w0: float = 10.0
    sigma: float = 5.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        if not 0 < self.crop_size <= self.patch_size:
            raise ValueError(f"need 0 < crop_size <= patch_size, got {self.crop_size} and "
                             f"{self.patch_size}")


@dataclass
class Batch:
    """One training batch on the sampler's device.

    Attributes:
        image: ``(B, 3, S, S) uint8`` (normalise with :func:`micronet.models.normalize`).
        target: ``(B, S, S) int64`` class ids 0 background, 1 gland, 2 contour.
        weight: ``(B, S, S) float32`` U-Net pixel weights.
    """

    image: Tensor
    target: Tensor
    weight: Tensor


def prepare_image(image: np.ndarray, labels: np.ndarray,
                  config: SamplingConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Target and weight map of one image, all three reflect-padded to at least the patch size.

    Returns:
        ``(image (3, H', W') uint8, target (H', W') uint8, weight (H', W') float32)``.
    """
    target = three_class_targets(labels, config.contour_width)
    weight = unet_weight_map(labels, config.w0, config.sigma, target=target)
    if config.scale != 1.0:  # image and weights by area (bilinear when enlarging), ids nearest
        image = resize_by(image, config.scale)
        target = resize_by(target, config.scale, nearest=True)
        weight = resize_by(weight, config.scale)
    pad_h = max(config.patch_size - image.shape[0], 0)
    pad_w = max(config.patch_size - image.shape[1], 0)
    pad = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
    image = np.pad(image, (*pad, (0, 0)), mode="reflect")
    target = np.pad(target, pad, mode="reflect")
    weight = np.pad(weight, pad, mode="reflect")
    return np.ascontiguousarray(image.transpose(2, 0, 1)), target, weight


def _check_pair(index: int, image: np.ndarray, labels: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image {index}: need (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if labels.shape != image.shape[:2]:
        raise ValueError(f"image {index}: labels shape {labels.shape} differs from image "
                         f"{image.shape[:2]}")


class PatchSampler:
    """Precomputes per image (once): padded uint8 image, 3-class target, weight map; stores them as
    torch tensors on ``device``; draws augmented batches on that device.

    Args:
        images: ``(H, W, 3) uint8`` images.
        labels: matching ``(H, W)`` integer instance maps (0 = background).
        config: patch/crop sizes, target and weight parameters, augmentation.
        device: where the cached tensors live and batches are produced.
        workers: processes for the one-off preparation (0 = in this process).
    """

    def __init__(self, images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                 config: SamplingConfig = SamplingConfig(),  # noqa: B008 (frozen, immutable)
                 device: str | torch.device = "cpu",
                 workers: int = 0) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} label maps")
        if not images:
            raise ValueError("PatchSampler needs at least one image")
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            _check_pair(index, np.asarray(image), np.asarray(label))
        self.config = config
        self.device = torch.device(device)
        configs = [config] * len(images)
        if workers > 0:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                prepared = list(pool.map(prepare_image, images, labels, configs))
        else:
            prepared = list(map(prepare_image, images, labels, configs))
        self.images = [torch.from_numpy(im).to(self.device) for im, _, _ in prepared]
        self.targets = [torch.from_numpy(t).to(self.device) for _, t, _ in prepared]
        self.weights = [torch.from_numpy(w).to(self.device) for _, _, w in prepared]

    def __len__(self) -> int:
        """Number of images."""
        return len(self.images)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """Draw an augmented batch: images uniformly, then a random patch, augmentation, crop.

        Args:
            batch_size: number of samples ``B``.
            generator: CPU generator; the same seed gives the same batch on any device.
        """
        return self.sample_with_params(batch_size, generator)[0]

    def sample_with_params(self, batch_size: int, generator: torch.Generator
                           ) -> tuple[Batch, list[int], AugmentParams]:
        """:meth:`sample`, also returning the chosen image indices and augmentation parameters
        (for previews and debugging; the random draws are the same as :meth:`sample`'s)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        size = self.config.patch_size
        chosen = torch.randint(0, len(self), (batch_size,), generator=generator).tolist()
        position = torch.rand(batch_size, 2, generator=generator)
        images, targets, weights = [], [], []
        for index, (fy, fx) in zip(chosen, position.tolist(), strict=True):
            height, width = self.targets[index].shape
            y, x = int(fy * (height - size + 1)), int(fx * (width - size + 1))
            images.append(self.images[index][:, y:y + size, x:x + size])
            targets.append(self.targets[index][y:y + size, x:x + size])
            weights.append(self.weights[index][y:y + size, x:x + size])
        augment = self.config.augment
        params = draw_params(batch_size, (size, size), self.config.crop_size, augment, generator)
        image, target, weight = apply_params(
            torch.stack(images), torch.stack(targets), torch.stack(weights), params,
            self.config.crop_size, augment.blur_radius)
        return Batch(image=image, target=target, weight=weight), chosen, params
