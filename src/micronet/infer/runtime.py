"""Model loading for inference, device/precision choice, and test-time augmentation.

Precision ("auto"): CUDA runs under autocast (bf16 where the GPU supports it, else fp16). On a CPU
with native bf16 instructions (AVX512-BF16 or AMX, read from ``/proc/cpuinfo``) and oneDNN
(``torch.backends.mkldnn.is_available()``) it runs under bf16 autocast with channels-last
tensors; elsewhere fp32 with channels-last. Measured on the 2-core AMD EPYC (AVX512-BF16) this
project was built on, ms per 508² tile, batch 4, random weights, best of 2 (torch 2.13 CPU):

=========  ====  =======  ====  =======
width      fp32  fp32 CL  bf16  bf16 CL
=========  ====  =======  ====  =======
1/16        181       89    96       43
0.125       351      195   190       94
0.25        836      494   453      236
=========  ====  =======  ====  =======

and bf16 moved softmax probabilities by ~1e-3 at most in our runs (CPU, and H100 at width 0.25);
``tests/test_segmenter.py`` checks the difference stays small.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._device import cpu_has_native_bf16, resolve_device, resolve_precision
from ..errors import MicronetError

__all__ = ["ModelInfo", "load_weights_file", "resolve_model", "resolve_device",
           "resolve_precision", "cpu_has_native_bf16", "tta_transforms"]

DEFAULT_MPP = 0.62  # GlaS: 20x Zeiss MIRAX MIDI scans


@dataclass(frozen=True)
class ModelInfo:
    """What inference needs to know about the weights beside the module itself."""

    name: str = "custom"
    mpp: float = DEFAULT_MPP
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    postprocess: dict[str, Any] = field(default_factory=dict)


def _run_config(path: Path) -> dict[str, Any]:
    for folder in (path, path.parent) if path.is_dir() else (path.parent,):
        cfg = folder / "config.json"
        if cfg.exists():
            try:
                return json.loads(cfg.read_text())
            except (OSError, ValueError) as exc:
                raise MicronetError(f"{cfg}: unreadable run config ({exc})") from None
    return {}


def _weights_description(path: Path, meta: dict[str, str]) -> dict[str, Any]:
    """Architecture, width, classes, mpp, postprocess from file metadata or the run config."""
    model_cfg = _run_config(path).get("model", {})
    desc: dict[str, Any] = {
        "arch": meta.get("arch", model_cfg.get("name")),
        "width": meta.get("width", model_cfg.get("width")),
        "num_classes": meta.get("num_classes", model_cfg.get("num_classes", 3)),
        "mpp": meta.get("mpp"),
        "postprocess": meta.get("postprocess"),
    }
    if desc["arch"] is None or desc["width"] is None:
        raise MicronetError(f"{path}: weights have no architecture/width (no safetensors metadata "
                            "'arch'/'width' and no config.json with a 'model' section beside it)")
    desc["width"], desc["num_classes"] = float(desc["width"]), int(desc["num_classes"])
    desc["mpp"] = float(desc["mpp"]) if desc["mpp"] not in (None, "", "None") else DEFAULT_MPP
    pp = desc["postprocess"]
    desc["postprocess"] = json.loads(pp) if isinstance(pp, str) and pp.strip() else (pp or {})
    tuned = (path if path.is_dir() else path.parent) / "postprocess.json"
    if not desc["postprocess"] and tuned.exists():  # written by `micronet tune`
        try:
            desc["postprocess"] = json.loads(tuned.read_text())["postprocess"]
        except (OSError, ValueError, KeyError) as exc:
            raise MicronetError(f"{tuned}: unreadable tuned post-processing ({exc})") from None
    return desc


def load_weights_file(path: str | Path, *, with_info: bool = False
                      ) -> nn.Module | tuple[nn.Module, ModelInfo]:
    """Build the model a weights file (or training run folder) describes and load it (strict).

    The architecture comes from the safetensors metadata (``arch``, ``width``, ``num_classes``
    written by the trainer) or else from ``config.json`` beside the file (``{"model": {"name",
    "width", "num_classes"}}``). A run folder means its ``best`` (else ``last``) weights.

    Raises:
        MicronetError: missing/unreadable file, no architecture description, or weights that do
            not fit the architecture.
    """
    from ..models import create
    from ..models.weights_io import load_weights

    path = Path(path)
    state, meta = load_weights(path)
    desc = _weights_description(path, meta)
    try:
        model = create(desc["arch"], width=desc["width"], num_classes=desc["num_classes"])
    except ValueError as exc:
        raise MicronetError(f"{path}: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise MicronetError(f"{path}: weights do not fit {desc['arch']} width "
                            f"{desc['width']} ({first})") from None
    model.eval()
    if not with_info:
        return model
    return model, ModelInfo(name=path.name, mpp=desc["mpp"], postprocess=desc["postprocess"])


def resolve_model(model: str | nn.Module, width: float | None,
                  weights: str | Path | None) -> tuple[nn.Module, ModelInfo]:
    """The module and its inference facts from the ``Segmenter`` arguments.

    ``weights``: ``None`` (random init, for tests), a path (safetensors file, shard index or run
    folder), or a shipped tag / dataset name (``"glas"``).
    """
    from ..models import create

    if isinstance(model, nn.Module):
        if weights is None:
            return model.eval(), _info_from_module(model)
        from ..models.weights_io import load_weights

        state, meta = load_weights(Path(weights))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise MicronetError(f"{weights}: weights do not fit the given model "
                                f"({str(exc).splitlines()[0]})") from None
        desc_mpp = meta.get("mpp")
        return model.eval(), ModelInfo(name=Path(weights).name,
                                       mpp=float(desc_mpp) if desc_mpp else DEFAULT_MPP)
    if weights is None:
        try:
            return create(model, width=width).eval(), ModelInfo(name=model)
        except ValueError as exc:
            raise MicronetError(str(exc)) from None
    path = Path(weights)
    looks_like_path = path.exists() or path.suffix or "/" in str(weights) or "\\" in str(weights)
    if looks_like_path:
        module, info = load_weights_file(path, with_info=True)  # type: ignore[misc]
        if width is not None and abs(width - module.width) > 1e-9:
            raise MicronetError(f"{path}: weights are width {module.width}, not {width}")
        return module, info
    try:
        module = create(model, width=width, pretrained=str(weights)).eval()
    except ValueError as exc:
        raise MicronetError(str(exc)) from None
    return module, _info_from_module(module)


def _info_from_module(module: nn.Module) -> ModelInfo:
    cfg = getattr(module, "pretrained_cfg", None)
    if cfg is None:
        return ModelInfo(name=getattr(module, "name", type(module).__name__))
    return ModelInfo(name=cfg.name, mpp=cfg.mpp, mean=tuple(cfg.mean), std=tuple(cfg.std),
                     postprocess=dict(cfg.postprocess))


def tta_transforms(n: int) -> list[tuple[int, bool]]:
    """Dihedral test-time transforms as ``(quarter turns, horizontal flip)``: 1, 4 or 8 of them."""
    if n not in (1, 4, 8):
        raise ValueError(f"test-time augmentation uses 1, 4 or 8 transforms, not {n}")
    turns = [(k, False) for k in range(4)] if n >= 4 else [(0, False)]
    return turns + [(k, True) for k in range(4)] if n == 8 else turns


def apply_transform(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    """Flip (last axis) then rotate a ``(B, C, H, W)`` batch."""
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, turns, dims=(-2, -1)) if turns else x


def invert_transform(y: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    """Undo :func:`apply_transform`."""
    if turns:
        y = torch.rot90(y, -turns, dims=(-2, -1))
    return y.flip(-1) if flip else y
