"""Batched training augmentation in torch, on whatever device the patches live on.

The paper's augmentations (paper notes, "Training"): radial distortion (barrel, pincushion,
mustache), Gaussian blur (sigma 0.2-2, kernel ~12), rotations by 90/180/270 degrees and flips.

Why torch and not OpenCV/albumentations: the same code runs on the CPU and on the GPU, next to
the patches the sampler keeps on the training device. OpenCV and albumentations only run on the
CPU, so a GPU run would wait on CPU augmentation (an H100 needs hundreds of 508x508 samples/s),
and CPU and GPU runs would need two implementations. All random numbers are drawn from a CPU
``torch.Generator`` and then moved to the device, so a seed draws the same parameters on both.
Measured (``benchmarks/bench_data.py``): a 508x508 sample from the cached patches takes 0.3 ms in
batches of 32 on an H100 (~3,000 samples/s) and 12-18 ms on one CPU thread, against 16 ms and
4-8 s for a training step of the width-0.125 model.

One geometry moves image, class target and weight map together: a single sampling grid (radial
distortion + random crop) feeds ``grid_sample``, bilinear for the image and the weight map (a
real-valued field; interpolation only softens its class-weight steps by a pixel) and nearest for
the class target (exact class ids); then one dihedral group element per sample
(``torch.rot90``/``torch.flip``). Blur touches the image only. The crop is cut with a margin of
the blur radius and blurred with a valid convolution, so it has no padding artefacts.

Radial distortion follows the lens model ``r_d = r_u (1 + k1 r_u^2 + k2 r_u^4)``: undistorted
radius ``r_u`` appears at radius ``r_d`` (from the patch centre; 1 = half the patch diagonal).
Barrel: ``k1 < 0`` (content pulled towards the centre, compressed towards the edges);
pincushion: ``k1 > 0`` (pushed outwards); mustache: ``k1 < 0 < k2`` (barrel near the centre,
pincushion further out). ``grid_sample`` needs the inverse map, found per pixel by Newton's
method; :class:`AugmentConfig` checks that its ranges keep the polynomial monotone (invertible).
Samples outside the patch are reflected (``padding_mode="reflection"``). The probabilities and
coefficient ranges are ours: the paper names the transforms only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .appearance import GLASS_PARAMS, hed_jitter, lay_on_glass

__all__ = ["AugmentConfig", "AugmentParams", "augment_patches", "draw_params", "apply_params",
           "radial_grid", "dihedral", "dihedral_inverse", "gaussian_blur", "DISTORTIONS"]

DISTORTIONS = ("barrel", "pincushion", "mustache")
_MAX_RADIUS = 1.05  # furthest output pixel from the patch centre (patch corner + blur margin)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the training augmentation (the paper's transforms).

    Attributes:
        distort_p: chance of a radial distortion; its kind is uniform over barrel, pincushion and
            mustache.
        barrel_k1, pincushion_k1: ``k1`` ranges (``k2 = 0``); radius 1 = half the patch diagonal.
        mustache_k1, mustache_k2: coefficient ranges of the mustache distortion.
        blur_p: chance of a Gaussian blur of the image.
        blur_sigma: blur sigma range in pixels (paper: 0.2-2).
        blur_truncate: kernel radius = ``ceil(truncate * max sigma)``: 13 taps at sigma 2 (paper:
            "kernel ~12").
        rotate_flip: apply a uniformly drawn element of the dihedral group (identity, rotations by
            90/180/270, flips on either axis, transposes).
        zoom: scale jitter (not in the paper): each crop is magnified by a log-uniform factor in
            ``[1 / (1 + zoom), 1 + zoom]`` (0 = off), so the model sees glands at the sizes
            other scanners give.
        stain_p, stain_sigma: HED stain jitter (not in the paper; Tellez et al. 2018): with
            chance ``stain_p`` each haematoxylin/eosin/DAB optical-density channel is scaled by
            ``1 ± stain_sigma`` and shifted by ``± stain_sigma``, as staining and scanners vary.
        glass_p: chance of laying the crop's tissue on synthetic glass (not in the paper): a
            random wavy-edged region becomes pale, slightly tinted, noisy glass labelled
            background, so the network learns glass from gland lumens (GlaS crops hold none).
    """

    distort_p: float = 0.5
    barrel_k1: tuple[float, float] = (-0.12, -0.03)
    pincushion_k1: tuple[float, float] = (0.03, 0.12)
    mustache_k1: tuple[float, float] = (-0.12, -0.05)
    mustache_k2: tuple[float, float] = (0.08, 0.2)
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.2, 2.0)
    blur_truncate: float = 3.0
    rotate_flip: bool = True
    zoom: float = 0.0
    stain_p: float = 0.0
    stain_sigma: float = 0.05
    glass_p: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.zoom < 1 and 0 <= self.stain_sigma < 1):
            raise ValueError(f"zoom and stain_sigma must be in [0, 1), got {self.zoom}, "
                             f"{self.stain_sigma}")
        for name in ("distort_p", "blur_p", "stain_p", "glass_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("barrel_k1", "pincushion_k1", "mustache_k1", "mustache_k2", "blur_sigma"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} range is reversed: {(low, high)}")
        if self.blur_sigma[0] <= 0 or self.blur_truncate <= 0:
            raise ValueError("blur_sigma and blur_truncate must be positive")
        for name, k1_range, k2_range in (("barrel", self.barrel_k1, (0.0, 0.0)),
                                         ("pincushion", self.pincushion_k1, (0.0, 0.0)),
                                         ("mustache", self.mustache_k1, self.mustache_k2)):
            if not _lens_invertible(k1_range, k2_range):
                raise ValueError(f"{name} distortion k1={k1_range}, k2={k2_range} folds the image "
                                 f"(lens model not invertible up to radius {_MAX_RADIUS})")

    @property
    def blur_radius(self) -> int:
        """Blur kernel half-width in pixels (0 when blur is off)."""
        return math.ceil(self.blur_truncate * self.blur_sigma[1]) if self.blur_p > 0 else 0


def _lens_invertible(k1_range: tuple[float, float], k2_range: tuple[float, float],
                     upper: float = 3.0, steps: int = 3000) -> bool:
    """Whether ``u (1 + k1 u^2 + k2 u^4)`` rises monotonically from 0 past ``_MAX_RADIUS`` for
    every ``(k1, k2)`` in the ranges.

    The polynomial and its slope are linear in (k1, k2), so at each ``u`` their minimum over the
    rectangle sits at a corner: corners monotone up to a common ``U`` that each reaches the radius
    by make every coefficient pair monotone there and past the radius.
    """
    u = torch.linspace(0, upper, steps, dtype=torch.float64)
    corners = [(k1, k2) for k1 in k1_range for k2 in k2_range]
    slopes = [1 + 3 * k1 * u**2 + 5 * k2 * u**4 for k1, k2 in corners]
    reaches = [u * (1 + k1 * u**2 + k2 * u**4) >= _MAX_RADIUS for k1, k2 in corners]
    if not all(reach.any() for reach in reaches):
        return False
    last = max(int(reach.nonzero()[0]) for reach in reaches)
    return all(bool((slope[: last + 1] > 0).all()) for slope in slopes)


@dataclass
class AugmentParams:
    """Per-sample augmentation parameters, all ``(B, ...)`` CPU tensors.

    Attributes:
        offset: ``(B, 2) int64`` top-left ``(y, x)`` of the crop in the patch.
        k1, k2: ``(B,) float32`` lens coefficients (0 = no distortion).
        sigma: ``(B,) float32`` blur sigma (0 = no blur).
        dihedral: ``(B,) int64`` dihedral group element 0..7 (see :func:`dihedral`).
        zoom: ``(B,) float32`` magnification (``None`` = 1).
        stain: ``(B, 2, 3) float32`` HED scale and shift (``None`` = no stain jitter; scale 1,
            shift 0 for samples without it).
        glass: ``(B, GLASS_PARAMS) float32`` glass region and look per sample (``None`` = no
            glass; entry 0 is 1 where a sample gets glass), see :func:`lay_on_glass`.
    """

    offset: Tensor
    k1: Tensor
    k2: Tensor
    sigma: Tensor
    dihedral: Tensor
    zoom: Tensor | None = None
    stain: Tensor | None = None
    glass: Tensor | None = None


def draw_params(batch_size: int, patch_shape: tuple[int, int], out_size: int,
                config: AugmentConfig, generator: torch.Generator) -> AugmentParams:
    """Draw all random numbers of a batch from ``generator`` (a CPU generator), in fixed order."""
    if generator.device.type != "cpu":
        raise ValueError("pass a CPU torch.Generator: parameters are drawn on the CPU so CPU and "
                         "GPU runs with one seed draw the same augmentations")
    height, width = patch_shape
    if out_size > min(height, width):
        raise ValueError(f"crop {out_size} is larger than the patch {patch_shape}")

    def rand(size: int) -> Tensor:
        return torch.rand(size, generator=generator)

    oy = torch.randint(0, height - out_size + 1, (batch_size,), generator=generator)
    ox = torch.randint(0, width - out_size + 1, (batch_size,), generator=generator)
    distort = rand(batch_size) < config.distort_p
    kind = torch.randint(0, len(DISTORTIONS), (batch_size,), generator=generator)
    u1, u2 = rand(batch_size), rand(batch_size)
    k1_ranges = torch.tensor([config.barrel_k1, config.pincushion_k1, config.mustache_k1])
    k2_ranges = torch.tensor([(0.0, 0.0), (0.0, 0.0), config.mustache_k2])
    k1 = k1_ranges[kind, 0] + u1 * (k1_ranges[kind, 1] - k1_ranges[kind, 0])
    k2 = k2_ranges[kind, 0] + u2 * (k2_ranges[kind, 1] - k2_ranges[kind, 0])
    blur = rand(batch_size) < config.blur_p
    low, high = config.blur_sigma
    sigma = low + rand(batch_size) * (high - low)
    element = torch.randint(0, 8, (batch_size,), generator=generator)
    # draws added after the paper's transforms, and only when enabled, so paper-only
    # configurations keep their random streams
    zoom = stain = glass = None
    if config.zoom > 0:
        span = math.log1p(config.zoom)
        zoom = torch.exp((2 * rand(batch_size) - 1) * span)
    if config.stain_p > 0:
        on = (rand(batch_size) < config.stain_p).float()[:, None]
        jitter = (2 * torch.rand(batch_size, 2, 3, generator=generator) - 1) * config.stain_sigma
        stain = torch.stack([1 + jitter[:, 0] * on, jitter[:, 1] * on], 1)
    if config.glass_p > 0:
        glass = torch.rand(batch_size, GLASS_PARAMS, generator=generator)
        glass[:, 0] = (glass[:, 0] < config.glass_p).float()
    return AugmentParams(offset=torch.stack([oy, ox], 1), k1=torch.where(distort, k1, 0.0),
                         k2=torch.where(distort, k2, 0.0), sigma=torch.where(blur, sigma, 0.0),
                         dihedral=element if config.rotate_flip else torch.zeros_like(element),
                         zoom=zoom, stain=stain, glass=glass)


def radial_grid(patch_shape: tuple[int, int], out_size: int, offset: Tensor, k1: Tensor,
                k2: Tensor, device: torch.device | str = "cpu", newton_steps: int = 4,
                zoom: Tensor | None = None) -> Tensor:
    """Sampling grid for ``grid_sample`` (align_corners=False): distorted crop of the patch.

    Output pixel ``(i, j)`` of sample ``b`` shows the patch at ``offset[b] + (i, j)`` after the
    lens distortion centred on the patch centre; with ``k1 = k2 = 0`` it samples exact pixel
    centres, i.e. a plain crop; ``zoom`` (``(B,)``) then magnifies each crop about its own
    centre. Newton starts from the first-order inverse; 4 steps leave a radius
    error below 1e-7 of the half-diagonal over the default ranges.

    Returns:
        ``(B, out_size, out_size, 2) float32`` normalised ``(x, y)`` coordinates on ``device``.
    """
    height, width = patch_shape
    offset = offset.to(device=device, dtype=torch.float32)
    steps = torch.arange(out_size, device=device, dtype=torch.float32)
    # pixel offsets from the patch centre, (B, S, S) each
    dy = offset[:, 0, None, None] + steps[None, :, None] - (height - 1) / 2
    dx = offset[:, 1, None, None] + steps[None, None, :] - (width - 1) / 2
    dy, dx = dy.expand(-1, -1, out_size), dx.expand(-1, out_size, -1)
    distorted = ((k1 != 0) | (k2 != 0)).nonzero().squeeze(1)
    if len(distorted):  # only distorted samples pay for the inversion
        sel = distorted.to(device)
        c1 = k1[distorted].to(device=device, dtype=torch.float32).view(-1, 1, 1)
        c2 = k2[distorted].to(device=device, dtype=torch.float32).view(-1, 1, 1)
        r_d = torch.sqrt(dx[sel] ** 2 + dy[sel] ** 2) / (math.hypot(height, width) / 2)
        sq = r_d * r_d
        r_u = r_d / (1 + c1 * sq + c2 * sq * sq)
        for _ in range(newton_steps):  # solve r_u (1 + k1 r_u^2 + k2 r_u^4) = r_d
            sq = r_u * r_u
            value = r_u * (1 + c1 * sq + c2 * sq * sq) - r_d
            r_u = (r_u - value / (1 + 3 * c1 * sq + 5 * c2 * sq * sq)).clamp_(min=0)
        sq = r_u * r_u
        stretch = 1 / (1 + c1 * sq + c2 * sq * sq)  # r_u / r_d, finite at the centre
        dy, dx = dy.clone(), dx.clone()
        dy[sel] = dy[sel] * stretch
        dx[sel] = dx[sel] * stretch
    if zoom is not None:
        z = zoom.to(device=device, dtype=torch.float32).view(-1, 1, 1)
        cy = offset[:, 0, None, None] + (out_size - 1) / 2 - (height - 1) / 2
        cx = offset[:, 1, None, None] + (out_size - 1) / 2 - (width - 1) / 2
        dy, dx = cy + (dy - cy) / z, cx + (dx - cx) / z
    src_y = (height - 1) / 2 + dy
    src_x = (width - 1) / 2 + dx
    return torch.stack([(2 * src_x + 1) / width - 1, (2 * src_y + 1) / height - 1], dim=-1)


def dihedral(x: Tensor, element: int) -> Tensor:
    """Apply dihedral group element 0..7 to the last two (square) dims.

    ``element % 4`` quarter turns (``torch.rot90``), then a left-right flip when ``element >= 4``:
    identity, rotations by 90/180/270, flips on either axis and both transposes.
    """
    x = torch.rot90(x, element % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if element >= 4 else x


def dihedral_inverse(x: Tensor, element: int) -> Tensor:
    """Undo :func:`dihedral` with the same element."""
    if element >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, -(element % 4), dims=(-2, -1))


def _dihedral_batch(x: Tensor, elements: Tensor) -> Tensor:
    """Per-sample dihedral elements, one batched op per distinct element."""
    out = torch.empty_like(x)
    for element in elements.unique().tolist():
        index = (elements == element).nonzero().squeeze(1).to(x.device)
        out[index] = dihedral(x[index], element)
    return out


def _gaussian_kernels(sigma: Tensor, radius: int) -> Tensor:
    """``(B, 2 radius + 1)`` normalised Gaussian kernels; sigma 0 gives the identity kernel."""
    taps = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    safe = sigma.clamp(min=1e-6)[:, None]
    kernels = torch.exp(-(taps**2) / (2 * safe**2))
    kernels = kernels / kernels.sum(1, keepdim=True)
    identity = (taps == 0).float().expand_as(kernels)
    return torch.where(sigma[:, None] > 0, kernels, identity)


def gaussian_blur(image: Tensor, sigma: Tensor, radius: int, *, valid: bool = False) -> Tensor:
    """Separable Gaussian blur with one sigma per sample.

    Args:
        image: ``(B, C, H, W)`` float.
        sigma: ``(B,)`` sigmas in pixels (0 = unchanged).
        radius: kernel half-width.
        valid: no padding, output shrinks by ``2 radius``; otherwise reflect padding keeps the size.
    """
    batch, channels, height, width = image.shape
    kernels = _gaussian_kernels(sigma.to(device=image.device, dtype=torch.float32), radius)
    kernels = kernels.repeat_interleave(channels, 0)  # one kernel per (sample, channel) group
    x = image.reshape(1, batch * channels, height, width)
    if not valid:
        x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    # channels-last depthwise convolution is several times faster on the CPU than the default
    x = x.contiguous(memory_format=torch.channels_last)
    x = F.conv2d(x, kernels[:, None, :, None], groups=batch * channels)
    x = F.conv2d(x, kernels[:, None, None, :], groups=batch * channels)
    return x.reshape(batch, channels, x.shape[-2], x.shape[-1])


def apply_params(image: Tensor, target: Tensor, weight: Tensor, params: AugmentParams,
                 out_size: int, blur_radius: int) -> tuple[Tensor, Tensor, Tensor]:
    """Distort, crop, rotate/flip and blur a batch of patches with given parameters.

    Args:
        image: ``(B, 3, P, P) uint8`` patches.
        target: ``(B, P, P)`` integer class ids.
        weight: ``(B, P, P) float32`` weight maps.
        params: from :func:`draw_params`.
        out_size: crop size ``S``.
        blur_radius: blur kernel half-width (the crop is cut this much larger, then blurred valid).

    Returns:
        ``(image (B, 3, S, S) uint8, target (B, S, S) int64, weight (B, S, S) float32)``.
    """
    margin = blur_radius
    height, width = image.shape[-2:]
    grid = radial_grid((height, width), out_size + 2 * margin, params.offset - margin,
                       params.k1, params.k2, device=image.device, zoom=params.zoom)
    smooth = torch.cat([image.float(), weight[:, None].float()], 1)
    smooth = F.grid_sample(smooth, grid, mode="bilinear", padding_mode="reflection",
                           align_corners=False)
    classes = F.grid_sample(target[:, None].float(), grid, mode="nearest",
                            padding_mode="reflection", align_corners=False)
    smooth = _dihedral_batch(smooth, params.dihedral)
    classes = _dihedral_batch(classes, params.dihedral)
    inner = slice(margin, margin + out_size)
    pixels, weight_out = smooth[:, :3], smooth[:, 3, inner, inner]
    if margin and bool((params.sigma > 0).any()):
        pixels = gaussian_blur(pixels, params.sigma, margin, valid=True)
    else:
        pixels = pixels[:, :, inner, inner]
    target_out = classes[:, 0, inner, inner].round().long()
    weight_out = weight_out.contiguous()
    if params.stain is not None:
        pixels = hed_jitter(pixels, params.stain)
    if params.glass is not None:
        pixels, target_out, weight_out = lay_on_glass(pixels, target_out, weight_out,
                                                      params.glass)
    image_out = pixels.round_().clamp_(0, 255).to(torch.uint8)
    return image_out, target_out, weight_out


def augment_patches(image: Tensor, target: Tensor, weight: Tensor, out_size: int,
                    config: AugmentConfig, generator: torch.Generator) -> tuple[Tensor, Tensor,
                                                                                  Tensor]:
    """Draw parameters from ``generator`` and augment a batch of patches (see :func:`apply_params`).

    Returns:
        ``(image (B, 3, S, S) uint8, target (B, S, S) int64, weight (B, S, S) float32)`` on the
        patches' device.
    """
    height, width = image.shape[-2:]
    params = draw_params(image.shape[0], (height, width), out_size, config, generator)
    return apply_params(image, target, weight, params, out_size, config.blur_radius)
