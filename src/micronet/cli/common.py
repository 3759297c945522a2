"""Options shared by the commands: one name, one meaning and one help text everywhere.

``--model`` is always the architecture and ``--weights`` always the weights (a shipped tag or
dataset, a ``.safetensors`` file, or a training run folder); ``--quiet`` hides progress bars and
``--device`` picks where the network runs, in every command that has them.
"""

from __future__ import annotations

from typing import Any

import typer

from ..models.card import DEFAULT_ARCH

__all__ = ["DEFAULT_MODEL", "DEFAULT_WEIGHTS", "model_option", "weights_option", "width_option",
           "device_option", "quiet_option", "tta_option", "postprocess_option",
           "batch_size_option", "precision_option"]

DEFAULT_MODEL = DEFAULT_ARCH  # built when neither --model nor weights name one
DEFAULT_WEIGHTS = "glas"


def _set_quiet(value: bool) -> bool:
    from .._console import set_quiet

    set_quiet(bool(value))
    return value


def model_option(default: str | None = DEFAULT_MODEL) -> Any:
    """``--model``: the architecture (``micronet models`` lists them)."""
    return typer.Option(default, "--model",
                        help="Architecture, e.g. micronet508 (see `micronet models`); "
                        "default: the weights' own.")


def weights_option(default: str | None = DEFAULT_WEIGHTS, help_extra: str = "") -> Any:
    """``--weights``: shipped tag/dataset, ``.safetensors`` file, or training run folder."""
    return typer.Option(default, "--weights",
                        help="Shipped tag or dataset ('glas'), a .safetensors file, or a "
                             "training run folder (its best weights)." + help_extra)


def width_option() -> Any:
    """``--width``: channel multiplier (default: the weights')."""
    return typer.Option(None, "--width", help="Width multiplier (default: the weights').")


def device_option(default: str | None = "auto") -> Any:
    """``--device``: where the network runs."""
    return typer.Option(default, "--device", help="auto | cpu | cuda | cuda:N")


def quiet_option() -> Any:
    """``--quiet``/``-q``: no progress bars (results and errors still print)."""
    return typer.Option(False, "--quiet", "-q", callback=_set_quiet, help="Hide progress bars.")


def tta_option() -> Any:
    """``--tta``: test-time augmentation."""
    return typer.Option(False, "--tta", help="Average 8 flips/rotations (8x slower).")


def postprocess_option() -> Any:
    """``--postprocess``: a post-processing JSON instead of the weights' own."""
    return typer.Option(None, "--postprocess", dir_okay=False,
                        help="Post-processing JSON (e.g. from `micronet tune --out`) instead of "
                             "the weights' own.")


def batch_size_option(default: int = 4) -> Any:
    """``--batch-size``: tiles per forward pass."""
    return typer.Option(default, "--batch-size", min=1, help="Tiles per forward pass.")


def precision_option() -> Any:
    """``--precision``: numeric precision of the network."""
    return typer.Option("auto", "--precision", help="auto | fp32 | bf16 | fp16")
