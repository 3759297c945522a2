"""Micro-Net layers: valid 3×3 convolutions and transposed convolutions, each with tanh.

The paper uses tanh after every convolution and no normalisation; all convolutions are *valid*
(no padding), so every block shrinks its input by a known number of pixels.
"""

from __future__ import annotations

from torch import nn

__all__ = ["ConvTanh", "DeconvTanh", "conv_pair", "scaled"]


def scaled(channels: int, width: float) -> int:
    """Channel count after the width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


class ConvTanh(nn.Sequential):
    """Valid ``k×k`` convolution followed by tanh (shrinks each side by ``(k - 1) / 2``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch, kernel), nn.Tanh())


class DeconvTanh(nn.Sequential):
    """Transposed convolution followed by tanh.

    ``kernel == stride`` upsamples by ``stride``; ``kernel=5, stride=1`` grows each side by 2 px,
    which is how the paper re-aligns decoder and skip feature maps.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int) -> None:
        super().__init__(nn.ConvTranspose2d(in_ch, out_ch, kernel, stride=stride), nn.Tanh())


def conv_pair(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two valid 3×3 conv+tanh layers (shrink by 4 px)."""
    return nn.Sequential(ConvTanh(in_ch, out_ch), ConvTanh(out_ch, out_ch))


