"""Training curves: loss, learning rate and validation scores from a run's ``log.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._io import atomic_path
from ..errors import MicronetError

__all__ = ["read_log", "plot_run"]


def read_log(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Step records and epoch records of a run."""
    path = Path(run_dir) / "log.jsonl"
    if not path.exists():
        raise MicronetError(f"{path}: no training log (is {run_dir} a run folder?)")
    steps: list[dict[str, Any]] = []
    epochs: list[dict[str, Any]] = []
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            (steps if rec.get("type") == "step" else epochs).append(rec)
    return steps, epochs


def plot_run(run_dir: Path, out: Path | None = None) -> Path:
    """Draw loss, lr and validation curves to ``RUN/curves.png`` (or ``out``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, epochs = read_log(run_dir)
    if not steps:
        raise MicronetError(f"{run_dir}/log.jsonl: no step records yet")
    out = Path(out) if out else Path(run_dir) / "curves.png"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    x = [r["step"] for r in steps]
    axes[0].plot(x, [r["loss"] for r in steps], label="total")
    axes[0].plot(x, [r["main"] for r in steps], label="main", alpha=0.7)
    axes[0].set(title="training loss", xlabel="step", yscale="log")
    axes[0].legend()
    axes[1].plot(x, [r["lr"] for r in steps])
    axes[1].set(title="learning rate", xlabel="step", yscale="log")
    val = [r for r in epochs if "val_f1" in r]
    if val:
        for key in ("val_f1", "val_dice", "val_pixel_f1"):
            axes[2].plot([r["epoch"] for r in val], [r[key] for r in val], marker="o",
                         label=key.removeprefix("val_"))
        axes[2].legend()
    axes[2].set(title="validation (held-out training images)", xlabel="epoch", ylim=(0, 1))
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out
