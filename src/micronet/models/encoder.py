"""Group 1 of Micro-Net: the multi-resolution encoder (blocks B1–B4) and the bottleneck B5.

Each encoder block runs two valid 3×3 convolutions and a 2×2 max-pool on the main path and,
beside it, two valid convolutions on the *input image* resized (bicubic) to the size that lands
on the same feature-map size; both are concatenated (Raza et al. 2019, Fig. 2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import ConvTanh, call_block, conv_pair

__all__ = ["EncoderBlock", "Encoder", "Bottleneck"]


class EncoderBlock(nn.Module):
    """One G1 block: ``pool(conv(conv(x)))`` concatenated with ``conv(conv(resize(image)))``.

    Args:
        in_ch: channels of ``x``.
        out_ch: channels of each path (the block outputs ``2 * out_ch`` with the side path).
        side_size: size the input image is resized to for the side path; ``None`` drops the
            side path (Micro-Net⁻).
    """

    def __init__(self, in_ch: int, out_ch: int, side_size: int | None, image_ch: int = 3) -> None:
        super().__init__()
        self.main = conv_pair(in_ch, out_ch)
        self.pool = nn.MaxPool2d(2)
        self.side_size = side_size
        self.side = conv_pair(image_ch, out_ch) if side_size is not None else None
        self.out_channels = out_ch * (2 if side_size is not None else 1)

    def forward(self, x: Tensor, image: Tensor) -> Tensor:
        """Return the block output, ``(B, out_channels, (H - 4) / 2, ...)``."""
        y = self.pool(self.main(x))
        s = self.side_size
        if self.side is None or s is None:
            return y
        resized = F.interpolate(image, size=(s, s), mode="bicubic", align_corners=False)
        return torch.cat([y, self.side(resized)], dim=1)


class Encoder(nn.Module):
    """B1–B4: four encoder blocks; returns every block's output for the skip connections."""

    def __init__(self, channels: list[int], side_sizes: list[int] | None,
                 image_ch: int = 3) -> None:
        super().__init__()
        blocks = []
        in_ch = image_ch
        for i, ch in enumerate(channels):
            side = side_sizes[i] if side_sizes is not None else None
            block = EncoderBlock(in_ch, ch, side, image_ch)
            blocks.append(block)
            in_ch = block.out_channels
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = [b.out_channels for b in blocks]

    def forward(self, image: Tensor, run: Callable[..., Tensor] | None = None) -> list[Tensor]:
        """Return ``[B1, B2, B3, B4]`` feature maps; ``run(block, *inputs)`` calls each block
        (the network passes its gradient-checkpointing runner)."""
        run = run or call_block
        feats = []
        x = image
        for block in self.blocks:
            x = run(block, x, image)
            feats.append(x)
        return feats


class Bottleneck(nn.Module):
    """B5: conv, conv, (optional) 2×2 max-pool, conv, conv — all valid 3×3 with tanh.

    Micro-Net-508 pools here (28 → 8); Micro-Net-252 does not and uses two convs (12 → 8).
    """

    def __init__(self, in_ch: int, out_ch: int, pooled: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvTanh(in_ch, out_ch), ConvTanh(out_ch, out_ch)]
        if pooled:
            layers += [nn.MaxPool2d(2), ConvTanh(out_ch, out_ch), ConvTanh(out_ch, out_ch)]
        self.layers = nn.Sequential(*layers)
        self.out_channels = out_ch

    def forward(self, x: Tensor) -> Tensor:
        """Return the bottleneck features."""
        return self.layers(x)
