"""Pretrained weights shipped inside the package: metadata, checksum-verified loading.

Each entry is keyed ``arch.tag`` (``micronet508.glas_w025``: GlaS data, width 0.25). Files are
safetensors in ``micronet/models/weights/``; the full SHA-256 is checked on every load, and an
unknown name lists what exists rather than falling back to something else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from torch import nn

from .._io import sha256_file
from ..errors import MicronetError

__all__ = ["PretrainedCfg", "list_pretrained", "get_pretrained", "load_pretrained", "weights_dir"]


@dataclass(frozen=True)
class PretrainedCfg:
    """What a user needs to know about one set of weights (and what inference needs to use them)."""

    arch: str
    tag: str
    file: str
    sha256: str
    width: float
    num_classes: int = 3
    classes: tuple[str, ...] = ("background", "gland", "contour")
    input_size: int = 508
    output_size: int = 508
    mpp: float = 0.62
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    postprocess: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    dataset: str = "GlaS (Warwick-QU, 85 training images)"
    license: str = "MIT (weights); GlaS data: research use, cite Sirinukunwattana et al. 2017"
    notes: str = ""

    @property
    def name(self) -> str:
        """``arch.tag``."""
        return f"{self.arch}.{self.tag}"


def weights_dir() -> Path:
    """Folder of the packaged weight files."""
    return Path(str(resources.files("micronet.models") / "weights"))


def _load_registry() -> dict[str, PretrainedCfg]:
    index = weights_dir() / "index.json"
    if not index.exists():
        return {}
    entries = json.loads(index.read_text())
    out = {}
    for e in entries:
        for key in ("classes", "mean", "std"):
            if key in e:
                e[key] = tuple(e[key])
        cfg = PretrainedCfg(**e)
        out[cfg.name] = cfg
    return out


_REGISTRY: dict[str, PretrainedCfg] | None = None


def _registry() -> dict[str, PretrainedCfg]:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _load_registry()
    return _REGISTRY


def list_pretrained(arch: str | None = None) -> list[str]:
    """Names (``arch.tag``) of shipped weights, optionally for one architecture."""
    return sorted(n for n, c in _registry().items() if arch is None or c.arch == arch)


def get_pretrained(arch: str, tag: str) -> PretrainedCfg:
    """Metadata for ``arch`` + ``tag``; ``tag`` may be a full tag or a dataset prefix (``"glas"``).

    A dataset prefix picks the first entry in the index for that architecture (the index lists the
    recommended weights first).
    """
    reg = _registry()
    if f"{arch}.{tag}" in reg:
        return reg[f"{arch}.{tag}"]
    for cfg in reg.values():
        if cfg.arch == arch and cfg.tag.split("_")[0] == tag:
            return cfg
    known = ", ".join(list_pretrained()) or "none"
    raise MicronetError(f"no pretrained weights {arch}.{tag}; shipped weights: {known}")


def load_pretrained(model: nn.Module, cfg: PretrainedCfg) -> None:
    """Load ``cfg``'s weights into ``model`` (strict), after checking the file's SHA-256."""
    from safetensors.torch import load_file

    path = weights_dir() / cfg.file
    if not path.exists():
        raise MicronetError(f"{path}: weights file for {cfg.name} is missing from the package")
    digest = sha256_file(path)
    if digest != cfg.sha256:
        raise MicronetError(f"{path}: SHA-256 {digest[:12]}… does not match {cfg.sha256[:12]}… "
                            "(corrupt or replaced weights file)")
    state = load_file(str(path))
    ref = model.state_dict()
    state = {k: v.to(ref[k].dtype) if k in ref else v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    model.pretrained_cfg = cfg  # type: ignore[attr-defined]
