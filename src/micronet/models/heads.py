"""Group 4 and 5 of Micro-Net: auxiliary upsampling branches, auxiliary classifiers and fusion.

Three decoder outputs are upsampled to the full resolution by transposed convolutions (×2, ×4, ×8)
and a valid 3×3 conv; each feeds an auxiliary classifier (dropout 0.5, 3×3 conv), and their
concatenation feeds the main classifier (dropout 0.5, 3×3 conv). Outputs are raw logits.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .blocks import ConvTanh, DeconvTanh

__all__ = ["AuxBranch", "Classifier", "Heads"]


class AuxBranch(nn.Module):
    """Upsample by ``scale`` with a ``scale×scale`` transposed conv, then a valid 3×3 conv."""

    def __init__(self, in_ch: int, out_ch: int, scale: int) -> None:
        super().__init__()
        self.up = DeconvTanh(in_ch, out_ch, kernel=scale, stride=scale)
        self.conv = ConvTanh(out_ch, out_ch)
        self.out_channels = out_ch

    def forward(self, x: Tensor) -> Tensor:
        """Return ``(B, out_ch, scale*H - 2, scale*W - 2)``."""
        return self.conv(self.up(x))


class Classifier(nn.Sequential):
    """Dropout then a valid 3×3 convolution to class logits (no activation)."""

    def __init__(self, in_ch: int, num_classes: int, dropout: float) -> None:
        super().__init__(nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
                         nn.Conv2d(in_ch, num_classes, 3))


class Heads(nn.Module):
    """G4 + G5: three auxiliary branches and classifiers, and the fused main classifier."""

    def __init__(self, in_channels: list[int], branch_channels: list[int], num_classes: int,
                 dropout: float = 0.5) -> None:
        super().__init__()
        scales = [2, 4, 8]
        self.branches = nn.ModuleList(
            AuxBranch(i, o, s) for i, o, s in zip(in_channels, branch_channels, scales, strict=True)
        )
        self.aux = nn.ModuleList(Classifier(o, num_classes, dropout) for o in branch_channels)
        self.main = Classifier(sum(branch_channels), num_classes, dropout)

    def forward(self, feats: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """``feats``: decoder outputs at 1/2, 1/4, 1/8 of the output size. Returns (main, aux)."""
        maps = [branch(f) for branch, f in zip(self.branches, feats, strict=True)]
        aux = [head(m) for head, m in zip(self.aux, maps, strict=True)]
        return self.main(torch.cat(maps, dim=1)), aux
