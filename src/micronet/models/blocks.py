"""Micro-Net layers: valid 3×3 convolutions and transposed convolutions, each with tanh.

The paper uses tanh after every convolution and no normalisation; all convolutions are *valid*
(no padding), so every block shrinks its input by a known number of pixels.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

__all__ = ["ConvTanh", "DeconvTanh", "TiledDeconv2d", "conv_pair", "scaled", "NORMS", "ACTIVATIONS",
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


class TiledDeconv2d(nn.ConvTranspose2d):
    """A transposed convolution that, when ``kernel == stride`` (non-overlapping output tiles),
    runs as one matrix product and a tile shuffle instead of oneDNN's deconvolution.

    Same parameters, state-dict keys and result as :class:`torch.nn.ConvTranspose2d`; on 2 CPU
    cores in bf16 the ×8 auxiliary upsampling's backward pass was 13 % of a Micro-Net-252 training
    step as a deconvolution (``benchmarks/bench_deconv.py`` times the step both ways). Other
    geometries (the decoder's 5×5 stride-1 re-alignment) use the ordinary path.
    """

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        k = self.kernel_size
        if (output_size is not None or k != self.stride or k[0] != k[1] or self.groups != 1
                or self.padding != (0, 0) or self.output_padding != (0, 0)
                or self.dilation != (1, 1) or input.dim() != 4):
            return super().forward(input, output_size)
        return tiled_deconv(input, self.weight, self.bias)


def tiled_deconv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``conv_transpose2d(x, weight, bias, stride=k)`` for a ``(C_in, C_out, k, k)`` weight: each
    input pixel writes its own ``k×k`` output tile, so the layer is ``(B·H·W, C_in) @ (C_in,
    k·k·C_out)``. The result is channels-last in memory (what the next convolution wants)."""
    b, c_in, h, w = x.shape
    c_out, k = weight.shape[1], weight.shape[2]
    tiles = x.permute(0, 2, 3, 1).reshape(b * h * w, c_in) @ weight.permute(0, 2, 3, 1).reshape(
        c_in, k * k * c_out)
    out = tiles.reshape(b, h, w, k, k, c_out).transpose(2, 3).reshape(b, h * k, w * k, c_out)
    if bias is not None:
        out = out + bias.to(out.dtype)
    return out.permute(0, 3, 1, 2)


class DeconvTanh(nn.Sequential):
    """Transposed convolution followed by tanh.

    ``kernel == stride`` upsamples by ``stride``; ``kernel=5, stride=1`` grows each side by 2 px,
    which is how the paper re-aligns decoder and skip feature maps.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int) -> None:
        super().__init__(TiledDeconv2d(in_ch, out_ch, kernel, stride=stride), nn.Tanh())


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
