"""Decoder blocks of Micro-Net (B6–B10).

Main path: 2×2/2 transposed conv, two valid 3×3 convs, 5×5/1 transposed conv (size ×2);
skip path: 5×5/1 transposed conv of an encoder block (grows it by 4 px to the same size);
both concatenated and mixed by a 1×1 convolution (Raza et al. 2019, Fig. 2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .blocks import ConvTanh, DeconvTanh, call_block

__all__ = ["DecoderBlock", "Decoder"]


class DecoderBlock(nn.Module):
    """One decoder block; ``skip_ch=None`` is the block without a skip (B6, and Micro-Net⁻).

    Args:
        in_ch: channels of the incoming decoder features.
        out_ch: output channels.
        skip_ch: channels of the encoder feature map joined in, or ``None``.
    """

    def __init__(self, in_ch: int, out_ch: int, skip_ch: int | None) -> None:
        super().__init__()
        self.main = nn.Sequential(
            DeconvTanh(in_ch, out_ch, kernel=2, stride=2),
            ConvTanh(out_ch, out_ch),
            ConvTanh(out_ch, out_ch),
            DeconvTanh(out_ch, out_ch, kernel=5, stride=1),
        )
        if skip_ch is None:
            self.skip = None
            self.fuse = None
        else:
            self.skip = DeconvTanh(skip_ch, out_ch, kernel=5, stride=1)
            self.fuse = ConvTanh(2 * out_ch, out_ch, kernel=1)
        self.out_channels = out_ch

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        """Return ``(B, out_ch, 2H, 2W)`` features."""
        y = self.main(x)
        if self.skip is None or self.fuse is None:
            return y
        if skip is None:
            raise ValueError("this decoder block needs a skip feature map")
        return self.fuse(torch.cat([y, self.skip(skip)], dim=1))


class Decoder(nn.Module):
    """A chain of decoder blocks; block ``i`` joins ``skips[i]`` (or none when it is ``None``).

    Args:
        in_ch: channels of the bottleneck output.
        channels: output channels of each block, top (deepest) first.
        skip_channels: channels of the skip joined by each block, ``None`` for no skip.
    """

    def __init__(self, in_ch: int, channels: list[int], skip_channels: list[int | None]) -> None:
        super().__init__()
        blocks = []
        for ch, skip_ch in zip(channels, skip_channels, strict=True):
            blocks.append(DecoderBlock(in_ch, ch, skip_ch))
            in_ch = ch
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = list(channels)

    def forward(self, x: Tensor, skips: list[Tensor | None],
                run: Callable[..., Tensor] | None = None) -> list[Tensor]:
        """Return every block's output, deepest first; ``run(block, *inputs)`` calls each
        block (the network passes its gradient-checkpointing runner)."""
        run = run or call_block
        outs = []
        for block, skip in zip(self.blocks, skips, strict=True):
            x = run(block, x) if skip is None else run(block, x, skip)
            outs.append(x)
        return outs
