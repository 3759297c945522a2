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

import dataclasses
from pathlib import Path
from typing import Literal, overload

from torch import nn

from .._device import cpu_has_native_bf16, resolve_device, resolve_precision
from ..errors import MicronetError
from ..models.card import DEFAULT_ARCH, DEFAULT_MPP, WeightsCard, metadata_mpp
from .run_folder import RunFolder

__all__ = ["WeightsCard", "DEFAULT_MPP", "load_weights_file", "resolve_model", "resolve_device",
           "resolve_precision", "cpu_has_native_bf16", "tta_transforms"]


def weights_card(path: str | Path, meta: dict[str, str]) -> WeightsCard:
    """The card of a weights file (or run folder) from its metadata; what the metadata lacks
    comes from the run folder: ``config.json`` (architecture) and ``postprocess.json``."""
    path = Path(path)
    run = RunFolder.of(path)
    tuned = None if meta.get("postprocess") else run.read_postprocess()
    return WeightsCard.from_metadata(meta, name=path.name, run_model=run.model_config(),
                                     postprocess=dataclasses.asdict(tuned) if tuned else None)


@overload
def load_weights_file(path: str | Path, *, with_info: Literal[False] = False) -> nn.Module: ...


@overload
def load_weights_file(path: str | Path, *,
                      with_info: Literal[True]) -> tuple[nn.Module, WeightsCard]: ...


def load_weights_file(path: str | Path, *, with_info: bool = False
                      ) -> nn.Module | tuple[nn.Module, WeightsCard]:
    """Build the model a weights file (or training run folder) describes and load it (strict).

    The architecture and its options come from the safetensors metadata (a
    :class:`~micronet.models.card.WeightsCard`, written by the trainer) or else from the run's
    ``config.json`` beside the file. A run folder means its ``best`` (else ``last``) weights.

    Raises:
        MicronetError: missing/unreadable file, no architecture description, or weights that do
            not fit the architecture.
    """
    from ..models.weights_io import load_state_into, load_weights

    path = Path(path)
    state, meta = load_weights(path)
    card = weights_card(path, meta)
    model = card.build()
    load_state_into(model, state, str(path))
    model.eval()
    return (model, card) if with_info else model


def resolve_model(model: str | nn.Module | None, width: float | None,
                  weights: str | Path | None) -> tuple[nn.Module, WeightsCard]:
    """The module and its weights card from the ``Segmenter`` arguments.

    ``weights``: ``None`` (random init, for tests), a path (safetensors file, shard index or run
    folder), or a shipped tag / dataset name (``"glas"``).
    """
    from ..models import create

    if isinstance(model, nn.Module):
        if weights is None:
            return model.eval(), card_of(model)
        from ..models.weights_io import load_state_into, load_weights

        state, meta = load_weights(Path(weights))
        load_state_into(model, state, str(weights))
        mpp, input_mpp = metadata_mpp(meta)
        return model.eval(), WeightsCard.from_model(model, name=Path(weights).name, mpp=mpp,
                                                    input_mpp=input_mpp)
    if weights is None:
        model = model or DEFAULT_ARCH
        try:
            return create(model, width=width).eval(), WeightsCard(arch=model, name=model)
        except ValueError as exc:
            raise MicronetError(str(exc)) from None
    path = Path(weights)
    looks_like_path = path.exists() or path.suffix or "/" in str(weights) or "\\" in str(weights)
    if looks_like_path:
        module, card = load_weights_file(path, with_info=True)
        if width is not None and abs(width - card.width) > 1e-9:
            raise MicronetError(f"{path}: weights are width {card.width}, not {width}")
        return module, card
    if model is None:  # a shipped tag or dataset names its architecture
        from ..models import get_pretrained

        card = get_pretrained(None, str(weights))
        model, weights = card.arch, card.tag
    try:
        module = create(model, width=width, pretrained=str(weights)).eval()
    except ValueError as exc:
        raise MicronetError(str(exc)) from None
    return module, card_of(module)


def card_of(module: nn.Module) -> WeightsCard:
    """The card a module carries (shipped weights), else one describing the bare module."""
    card = getattr(module, "weights_card", None)
    if isinstance(card, WeightsCard):
        return card
    return WeightsCard(arch=str(getattr(module, "name", type(module).__name__)),
                       name=str(getattr(module, "name", type(module).__name__)),
                       width=float(getattr(module, "width", 1.0)),
                       num_classes=int(getattr(module, "num_classes", 3)))


def tta_transforms(n: int) -> list[int]:
    """Dihedral test-time transforms as group elements of :func:`micronet.data.augment.dihedral`
    (the training augmentation's): 1 (identity), 4 (rotations) or 8 (rotations and flips)."""
    if n not in (1, 4, 8):
        raise ValueError(f"test-time augmentation uses 1, 4 or 8 transforms, not {n}")
    return list(range(n))
