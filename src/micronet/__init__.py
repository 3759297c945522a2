"""micronet-seg: Micro-Net (Raza et al. 2019) gland segmentation for H&E histology.

>>> import micronet
>>> seg = micronet.Segmenter.from_pretrained("glas")  # doctest: +SKIP

Heavy modules (torch, models, inference) load on first use, so ``import micronet`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Segmenter", "create", "__version__"]

if TYPE_CHECKING:
    from .infer import Segmenter
    from .models import create

_LAZY = {"Segmenter": ("micronet.infer", "Segmenter"), "create": ("micronet.models", "create")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'micronet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
