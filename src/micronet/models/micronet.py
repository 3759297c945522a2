"""Micro-Net (Raza et al., "Micro-Net: A unified model for segmentation of various objects in
microscopy images", Medical Image Analysis 52, 2019): Micro-Net-508 for glands, Micro-Net-252 for
nuclei/cells, and the Micro-Net⁻ ablation, all with a width multiplier.

The layer configuration reproduces every feature-map size the paper gives (see
``shared/design/micronet-paper-notes.md``): valid 3×3 convolutions with tanh, a multi-resolution
encoder fed by bicubic-resized copies of the input, a deconvolution decoder with skip paths, three
auxiliary upsampling branches and a fused classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ._registry import register_model
from .blocks import restyle_layers, scaled
from .decoder import Decoder
from .encoder import Bottleneck, Encoder
from .heads import Heads

__all__ = ["MicroNet", "MicroNetSpec", "MicroNetOutput", "micronet508", "micronet252",
           "micronet508_minus"]

#: How stride-k k×k transposed convolutions start: ``glorot`` like every layer (each of the k×k
#: output positions gets its own random weights, the Keras default), or ``nearest`` (the same
#: weights at every position: nearest upsampling of a 1×1 conv, no stride-grid artefacts at
#: the start; Aitken et al. 2017). The paper does not give its initialisation.
UPSAMPLE_INITS = ("glorot", "nearest")


class MicroNetOutput(NamedTuple):
    """Training-mode output: main logits and the three auxiliary logits, each ``(B, C, S, S)``."""

    main: Tensor
    aux: tuple[Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class MicroNetSpec:
    """Full-width architecture of one Micro-Net variant (channels before the width multiplier).

    ``decoder_skips[i]`` is the encoder block (0 = B1) joined by decoder block ``i``, or ``None``;
    ``head_inputs`` are the decoder blocks (by index) that feed the ×2, ×4, ×8 auxiliary branches.
    """

    input_size: int
    encoder_channels: tuple[int, ...] = (64, 128, 256, 512)
    side_sizes: tuple[int, ...] | None = None
    bottleneck_channels: int = 2048
    bottleneck_pooled: bool = True
    decoder_channels: tuple[int, ...] = ()
    decoder_skips: tuple[int | None, ...] = ()
    head_inputs: tuple[int, int, int] = (-1, -2, -3)
    branch_channels: tuple[int, int, int] = (64, 128, 256)


SPEC_508 = MicroNetSpec(
    input_size=508,
    side_sizes=(256, 128, 64, 32),
    bottleneck_pooled=True,
    decoder_channels=(2048, 1024, 512, 256, 128),  # B6..B10
    decoder_skips=(None, 3, 2, 1, 0),
)
SPEC_252 = MicroNetSpec(
    input_size=252,
    side_sizes=(128, 64, 32, 16),
    bottleneck_pooled=False,
    decoder_channels=(1024, 512, 256, 128),  # B6..B9
    decoder_skips=(3, 2, 1, 0),
)
SPEC_508_MINUS = MicroNetSpec(
    input_size=508,
    side_sizes=None,
    bottleneck_pooled=True,
    decoder_channels=(2048, 1024, 512, 256, 128),
    decoder_skips=(None, None, None, None, None),
)


class MicroNet(nn.Module):
    """A Micro-Net built from a :class:`MicroNetSpec` and a width multiplier.

    Forward takes ``(B, 3, S, S)`` float images (S = ``input_size``, values scaled as the weights
    expect, see :func:`micronet.models.normalize`). In training mode it returns a
    :class:`MicroNetOutput` (main + 3 auxiliary logits); in eval mode only the main logits,
    ``(B, num_classes, S, S)``. Softmax belongs to the loss and to inference, not to the module.
    """

    def __init__(self, spec: MicroNetSpec, width: float = 1.0, num_classes: int = 3,
                 dropout: float = 0.5, in_channels: int = 3, name: str = "micronet",
                 upsample_init: str = "glorot", norm: str = "none", act: str = "tanh") -> None:
        super().__init__()
        if upsample_init not in UPSAMPLE_INITS:
            raise ValueError(f"upsample_init must be one of {', '.join(UPSAMPLE_INITS)}, "
                             f"got {upsample_init!r}")
        self.upsample_init = upsample_init
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.spec = spec
        self.name = name
        self.width = width
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = spec.input_size
        self.output_size = spec.input_size
        self.grad_checkpointing = False

        self.encoder = Encoder([scaled(c, width) for c in spec.encoder_channels],
                               list(spec.side_sizes) if spec.side_sizes else None, in_channels)
        self.bottleneck = Bottleneck(self.encoder.out_channels[-1],
                                     scaled(spec.bottleneck_channels, width),
                                     spec.bottleneck_pooled)
        skip_ch = [self.encoder.out_channels[i] if i is not None else None
                   for i in spec.decoder_skips]
        self.decoder = Decoder(self.bottleneck.out_channels,
                               [scaled(c, width) for c in spec.decoder_channels], skip_ch)
        head_in = [self.decoder.out_channels[i] for i in spec.head_inputs]
        self.heads = Heads(head_in, [scaled(c, width) for c in spec.branch_channels],
                           num_classes, dropout)
        self.norm, self.act = norm, act
        restyle_layers(self, norm, act)  # the paper's layers unless norm/act say otherwise
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases: the Keras/TensorFlow default the paper's
        implementation used, and the usual choice for tanh networks."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            if (self.upsample_init == "nearest" and isinstance(m, nn.ConvTranspose2d)
                    and m.stride[0] > 1 and tuple(m.kernel_size) == tuple(m.stride)):
                # every k×k output position starts with the same weights: a 1×1 conv followed by
                # nearest upsampling, so the stride grid does not print on the output
                with torch.no_grad():
                    m.weight.copy_(m.weight[:, :, :1, :1].expand_as(m.weight))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass: much less memory, ~30 % more time."""
        self.grad_checkpointing = enable

    def _run(self, fn, *args):
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, in_channels, S, S)`` with S = input_size."""
        s = self.input_size
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (s, s):
            raise ValueError(
                f"{self.name} takes inputs of shape (B, {self.in_channels}, {s}, {s}) only "
                f"(valid convolutions fix the size); got {tuple(x.shape)}. "
                "Use micronet.Segmenter to tile images of any size."
            )

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Return encoder (B1..B4), bottleneck and decoder block outputs, in that order."""
        self.check_input(x)
        feats = self.encoder(x, run=self._run)
        y = self._run(self.bottleneck, feats[-1])
        skips = [feats[i] if i is not None else None for i in self.spec.decoder_skips]
        return [*feats, y, *self.decoder(y, skips, run=self._run)]

    def forward(self, x: Tensor) -> MicroNetOutput | Tensor:
        """Logits: :class:`MicroNetOutput` in training mode, main logits tensor in eval mode."""
        outs = self.forward_features(x)
        decoded = outs[len(self.encoder.blocks) + 1:]
        main, aux = self._run(self.heads, [decoded[i] for i in self.spec.head_inputs])
        if self.training:
            return MicroNetOutput(main, tuple(aux))
        return main


def _build(name: str, spec: MicroNetSpec, width: float, num_classes: int, **kwargs) -> MicroNet:
    return MicroNet(spec, width=width, num_classes=num_classes, name=name, **kwargs)


@register_model
def micronet508(width: float = 1.0, num_classes: int = 3, **kwargs) -> MicroNet:
    """Micro-Net-508 for glands: 508×508 input and output (paper's GlaS model)."""
    return _build("micronet508", SPEC_508, width, num_classes, **kwargs)


@register_model
def micronet252(width: float = 1.0, num_classes: int = 3, **kwargs) -> MicroNet:
    """Micro-Net-252 for nuclei and cells: 252×252 input and output."""
    return _build("micronet252", SPEC_252, width, num_classes, **kwargs)


@register_model
def micronet508_minus(width: float = 1.0, num_classes: int = 3, **kwargs) -> MicroNet:
    """Micro-Net⁻ (ablation): Micro-Net-508 without multi-resolution inputs and skip paths."""
    return _build("micronet508_minus", SPEC_508_MINUS, width, num_classes, **kwargs)
