"""Micro-Net layers: valid 3×3 convolutions and transposed convolutions, each with tanh.

The paper uses tanh after every convolution and no normalisation; all convolutions are *valid*
(no padding), so every block shrinks its input by a known number of pixels.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

__all__ = ["ConvTanh", "DeconvTanh", "conv_pair", "scaled", "NORMS", "ACTIVATIONS",
           "restyle_layers", "call_block"]

#: ``model.norm``: none (the paper) or a normalisation after every conv / deconv of a block.
NORMS = ("none", "batch", "group", "instance")
#: ``model.act``: tanh (the paper) or the rectifiers nnU-Net, FullNet and U-Node use.
ACTIVATIONS = ("tanh", "relu", "leaky_relu")


def call_block(block: nn.Module, *inputs: Tensor) -> Tensor:
    """Run ``block`` on ``inputs``: the default runner of :class:`~micronet.models.encoder.Encoder`
    and :class:`~micronet.models.decoder.Decoder` (the network passes a checkpointing one)."""
    return block(*inputs)


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




def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":  # up to 8 groups that divide the channels (GroupNorm needs it)
        return nn.GroupNorm(math.gcd(8, channels), channels)
    return nn.InstanceNorm2d(channels, affine=True)


def _activation(kind: str) -> nn.Module:
    return {"tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}[kind]()


def restyle_layers(model: nn.Module, norm: str = "none", act: str = "tanh") -> None:
    """Give every conv+tanh / deconv+tanh layer of ``model`` a normalisation and another
    activation, in place: ``(conv, tanh)`` becomes ``(conv, norm, act)``. With the paper's
    ``none``/``tanh`` nothing changes, so the paper's weights keep their parameter names."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {', '.join(ACTIVATIONS)}, got {act!r}")
    if norm == "none" and act == "tanh":
        return
    for layer in model.modules():
        if isinstance(layer, (ConvTanh, DeconvTanh)):
            conv = layer[0]
            assert isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d))  # as the layers are built
            parts = [conv] + ([_norm(norm, conv.out_channels)] if norm != "none" else [])
            for index in range(len(layer) - 1, -1, -1):
                del layer[index]
            for part in [*parts, _activation(act)]:
                layer.append(part)
