"""Model registry in the style of timm: builders register by name; ``create`` builds by name."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["register_model", "list_models", "get_builder"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a builder under its function name (warns when a name is overwritten)."""
    if fn.__name__ in _MODELS:
        warnings.warn(f"model {fn.__name__!r} registered twice; the last one wins", stacklevel=2)
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of every registered architecture, sorted."""
    return sorted(_MODELS)


def get_builder(name: str) -> Callable[..., Any]:
    """The builder for ``name``; unknown names raise ``ValueError`` listing the known ones."""
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None
