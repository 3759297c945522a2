"""Reading and writing model weights as safetensors, optionally in shards.

Shards (``NAME-00001-of-00004.safetensors`` + ``NAME.safetensors.index.json``, the Hugging Face
layout) keep every file under a size limit, e.g. the 16 MiB a GPU machine may send back.
Metadata (a :class:`~micronet.models.card.WeightsCard`: architecture, width, every model option,
µm/px, post-processing) travels inside the files, so weights describe themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .._io import atomic_path
from ..errors import MicronetError

__all__ = ["save_weights", "load_weights", "weights_metadata", "load_state_into", "resolve_weights"]


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` strictly (tensors cast to the model's dtypes).

    Raises:
        MicronetError: ``{source}: weights do not fit {arch} at width {width} (first problem)``.
    """
    ref = model.state_dict()
    state = {k: v.to(ref[k].dtype) if k in ref and v.is_floating_point() else v
             for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        arch = getattr(model, "name", type(model).__name__)
        width = getattr(model, "width", None)
        where = f"{arch} at width {width}" if width is not None else arch
        raise MicronetError(f"{source}: weights do not fit {where} "
                            f"({str(exc).splitlines()[0]})") from None


def save_weights(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str],
                 shard_mb: float = 0, dtype: torch.dtype | None = None) -> list[Path]:
    """Write ``state`` to ``path`` (``.safetensors``); shard when ``shard_mb`` > 0 and needed.

    Returns the files written. Each file is written atomically.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: (v.detach().to(dtype) if dtype is not None and v.is_floating_point() else
                   v.detach()).cpu().contiguous() for k, v in state.items()}
    meta = {k: str(v) for k, v in metadata.items()}
    limit = shard_mb * 2**20
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    if not shard_mb or total <= limit * 0.98:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return [path]
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, t in _split_large(tensors, int(limit * 0.9)):
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > limit * 0.98:
            shards.append({})
            size = 0
        shards[-1][key] = t
        size += nbytes
    stem = path.name.removesuffix(".safetensors")
    files, weight_map = [], {}
    for i, shard in enumerate(shards, start=1):
        name = f"{stem}-{i:05d}-of-{len(shards):05d}.safetensors"
        with atomic_path(path.parent / name) as tmp:
            save_file(shard, str(tmp), metadata=meta)
        files.append(path.parent / name)
        weight_map.update(dict.fromkeys(shard, name))
    index = path.parent / f"{path.name}.index.json"
    with atomic_path(index) as tmp:
        tmp.write_text(json.dumps({"metadata": meta, "weight_map": weight_map}, indent=1))
    return [*files, index]


_PART = "@@part"


def _split_large(tensors: dict[str, torch.Tensor], limit: int):
    """Yield (key, tensor); a tensor over ``limit`` bytes is cut along dim 0 into parts named
    ``key@@partN`` (full-width Micro-Net has 400 MB deconvolution kernels)."""
    for key, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if nbytes <= limit or t.ndim == 0:
            yield key, t
            continue
        rows = max(1, t.shape[0] * limit // nbytes)
        for i, part in enumerate(torch.split(t, rows, dim=0)):
            yield f"{key}{_PART}{i}", part.contiguous()


def _join_parts(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    parts: dict[str, dict[int, torch.Tensor]] = {}
    out = {}
    for key, t in state.items():
        if _PART in key:
            base, idx = key.split(_PART)
            parts.setdefault(base, {})[int(idx)] = t
        else:
            out[key] = t
    for base, pieces in parts.items():
        out[base] = torch.cat([pieces[i] for i in sorted(pieces)], dim=0)
    return out


def resolve_weights(path: str | Path) -> Path:
    """The file to read for ``path``: itself, its shard index (``NAME.safetensors`` written as
    shards has only ``NAME.safetensors.index.json``), or a run folder's best/last weights."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.safetensors", "last.safetensors", "model.safetensors"):
            for cand in (path / name, path / f"{name}.index.json"):
                if cand.exists():
                    return cand
        raise MicronetError(f"{path}: no best/last/model .safetensors weights in this folder")
    if path.exists():
        return path
    index = path.parent / f"{path.name}.index.json"
    if index.exists():
        return index
    raise MicronetError(f"{path}: weights file not found")


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a state dict and its metadata from a file, a shard index, or a run folder."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    src = resolve_weights(path)
    try:
        if src.name.endswith(".index.json"):
            index = json.loads(src.read_text())
            state: dict[str, torch.Tensor] = {}
            for name in sorted(set(index["weight_map"].values())):
                state.update(load_file(str(src.parent / name)))
            return _join_parts(state), dict(index.get("metadata", {}))
        with safe_open(str(src), framework="pt") as f:
            meta = dict(f.metadata() or {})
        return load_file(str(src)), meta
    except MicronetError:
        raise
    except Exception as exc:
        raise MicronetError(f"{src}: not a readable safetensors weights file ({exc})") from None


def weights_metadata(path: str | Path) -> dict[str, str]:
    """Only the metadata (architecture, width, ...) of a weights file or index."""
    from safetensors import safe_open

    src = resolve_weights(path)
    if src.name.endswith(".index.json"):
        return dict(json.loads(src.read_text()).get("metadata", {}))
    with safe_open(str(src), framework="pt") as f:
        return dict(f.metadata() or {})
