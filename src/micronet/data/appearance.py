"""Appearance augmentations (not in the paper): stain jitter and synthetic glass.

They change colours and, for glass, which pixels are tissue; the geometry of
:mod:`micronet.data.augment` is applied before them, and :func:`micronet.data.augment.apply_params`
calls them with the per-sample parameters :func:`micronet.data.augment.draw_params` drew.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["GLASS_PARAMS", "hed_jitter", "lay_on_glass"]

GLASS_PARAMS = 12  # uniform draws per sample that place and colour the glass (lay_on_glass)
# Ruifrok & Johnston stain vectors (as scikit-image's rgb2hed): optical density = HED @ RGB_FROM_HED
_RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_HED_FROM_RGB = torch.linalg.inv(_RGB_FROM_HED)


def hed_jitter(pixels: Tensor, stain: Tensor) -> Tensor:
    """Scale and shift the haematoxylin/eosin/DAB optical densities of ``(B, 3, H, W)`` float
    RGB (0..255) per sample: ``stain[:, 0]`` scales, ``stain[:, 1]`` shifts (Tellez et al.)."""
    rgb_from_hed = _RGB_FROM_HED.to(pixels.device)
    hed_from_rgb = _HED_FROM_RGB.to(pixels.device)
    od = -torch.log(pixels.clamp(min=1.0) / 255.0)  # (B, 3, H, W)
    hed = torch.einsum("bchw,cd->bdhw", od, hed_from_rgb)
    stain = stain.to(pixels.device)
    hed = hed * stain[:, 0, :, None, None] + stain[:, 1, :, None, None]
    od = torch.einsum("bdhw,dc->bchw", hed, rgb_from_hed)
    return (255.0 * torch.exp(-od)).clamp_(0, 255)


def lay_on_glass(pixels: Tensor, target: Tensor, weight: Tensor, glass: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """Replace a wavy-edged part of each flagged crop by synthetic glass labelled background.

    Per sample, ``glass`` holds uniform draws: ``[0]`` 1 = apply; the edge is a line at angle
    ``2π·[1]``, offset ``±0.35`` crop sizes (``[2]``), waving by up to 6 % of the crop (``[3]``)
    at 0.5-3 cycles per crop (``[4]``, phase ``[5]``); the glass is pale (``[6]``: 80-97 % of
    white), slightly tinted (``[7]``, ``[8]``: red/blue ±2 %), noisy (``[9]``: 1-5 grey levels),
    with a 1-6 px soft edge (``[10]``); ``[11]`` seeds the noise. Where the glass covers more
    than half a pixel, the target becomes background and the weight the crop's smallest.
    """
    if not bool((glass[:, 0] > 0).any()):
        return pixels, target, weight
    batch, _, height, width = pixels.shape
    dev = pixels.device
    g = glass.to(dev, torch.float32)
    size = float(max(height, width))
    ys = torch.arange(height, device=dev, dtype=torch.float32)[:, None] - (height - 1) / 2
    xs = torch.arange(width, device=dev, dtype=torch.float32)[None, :] - (width - 1) / 2
    theta = (2 * math.pi * g[:, 1]).view(-1, 1, 1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    along = (-sin * xs + cos * ys) / size
    wave = (0.06 * size * g[:, 3]).view(-1, 1, 1) * torch.sin(
        2 * math.pi * ((0.5 + 2.5 * g[:, 4]).view(-1, 1, 1) * along + g[:, 5].view(-1, 1, 1)))
    dist = cos * xs + sin * ys - ((0.7 * g[:, 2] - 0.35) * size).view(-1, 1, 1) - wave
    soft = (1 + 5 * g[:, 10]).view(-1, 1, 1)
    alpha = torch.sigmoid(dist / soft) * g[:, 0].view(-1, 1, 1)  # (B, H, W), 0 = tissue
    noise_gen = torch.Generator(device=dev).manual_seed(int(g[0, 11] * 2**31))
    noise = torch.randn(batch, 3, height, width, generator=noise_gen, device=dev)
    tint = torch.stack([g[:, 7] - 0.5, -(g[:, 7] + g[:, 8] - 1) / 2, g[:, 8] - 0.5], 1) * 0.04
    base = 255.0 * (0.80 + 0.17 * g[:, 6])[:, None] * (1 + tint)  # (B, 3)
    colour = base[:, :, None, None] + noise * (1 + 4 * g[:, 9]).view(-1, 1, 1, 1)
    pixels = pixels * (1 - alpha[:, None]) + colour * alpha[:, None]
    covered = alpha > 0.5
    floor = weight.flatten(1).amin(1).view(-1, 1, 1).expand_as(weight)
    return (pixels, torch.where(covered, torch.zeros_like(target), target),
            torch.where(covered, floor, weight))
