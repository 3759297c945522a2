"""Pretrained weights shipped inside the package: their cards, checksum-verified loading.

Each entry is keyed ``arch.tag`` (``micronet508.glas_w025``: GlaS data, width 0.25). Files are
safetensors in ``micronet/models/weights/``, described by ``index.json`` (one
:class:`~micronet.models.card.WeightsCard` per entry); the full SHA-256 is checked on every load,
and an unknown name lists what exists rather than falling back to something else.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from torch import nn

from .._io import sha256_file
from ..errors import MicronetError
from .card import WeightsCard
from .weights_io import load_state_into

__all__ = ["list_pretrained", "get_pretrained", "load_pretrained", "weights_dir",
           "SHIPPED_LICENSE"]

SHIPPED_LICENSE = "MIT (weights); GlaS data: research use, cite Sirinukunwattana et al. 2017"


def weights_dir() -> Path:
    """Folder of the packaged weight files."""
    return Path(str(resources.files("micronet.models") / "weights"))


def _load_registry() -> dict[str, WeightsCard]:
    index = weights_dir() / "index.json"
    if not index.exists():
        return {}
    out = {}
    for entry in json.loads(index.read_text()):
        card = WeightsCard.from_dict({"license": SHIPPED_LICENSE, **entry}, source=str(index))
        out[card.name] = card
    return out


_REGISTRY: dict[str, WeightsCard] | None = None


def _registry() -> dict[str, WeightsCard]:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _load_registry()
    return _REGISTRY


def list_pretrained(arch: str | None = None) -> list[str]:
    """Names (``arch.tag``) of shipped weights, optionally for one architecture."""
    return sorted(n for n, c in _registry().items() if arch is None or c.arch == arch)


def get_pretrained(arch: str | None, tag: str) -> WeightsCard:
    """The card of ``arch`` + ``tag``; ``tag`` may be a full tag or a dataset prefix (``"glas"``).

    A dataset prefix picks the first entry in the index for that architecture, or of any
    architecture when ``arch`` is ``None`` (the index lists the recommended weights first).
    """
    reg = _registry()
    if f"{arch}.{tag}" in reg:
        return reg[f"{arch}.{tag}"]
    for card in reg.values():
        if arch in (None, card.arch) and tag in (card.tag, card.tag.split("_")[0]):
            return card
    known = ", ".join(list_pretrained()) or "none"
    name = f"{arch}.{tag}" if arch else tag
    raise MicronetError(f"no pretrained weights {name}; shipped weights: {known}")


def load_pretrained(model: nn.Module, card: WeightsCard) -> None:
    """Load ``card``'s shipped weights into ``model`` (strict), after checking the file's
    SHA-256; ``model.weights_card`` is set to ``card``."""
    from safetensors.torch import load_file

    path = weights_dir() / card.file
    if not path.exists():
        raise MicronetError(f"{path}: weights file for {card.name} is missing from the package")
    digest = sha256_file(path)
    if digest != card.sha256:
        raise MicronetError(f"{path}: SHA-256 {digest[:12]}… does not match {card.sha256[:12]}… "
                            "(corrupt or replaced weights file)")
    load_state_into(model, load_file(str(path)), card.name)
    # Module.__setattr__ is typed for tensors and submodules only; plain attributes work too
    model.weights_card = card  # type: ignore[assignment]
