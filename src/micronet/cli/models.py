"""``micronet models``: the model table (name, tile size, parameters, GFLOP per tile)."""

from __future__ import annotations

import torch
import typer
from rich.console import Console
from rich.table import Table

from ..models import count_flops, count_parameters, create, list_models, list_pretrained


def model_table(width: float = 1.0) -> list[dict[str, object]]:
    """One row per registered architecture, counted on the meta device (no memory, no time)."""
    rows = []
    for name in list_models():
        with torch.device("meta"):
            model = create(name, width=width)
        rows.append({
            "name": name,
            "input": f"{model.input_size}×{model.input_size}",
            "output": f"{model.output_size}×{model.output_size}",
            "width": width,
            "params_m": count_parameters(model) / 1e6,
            "gflop": count_flops(model) / 1e9,
        })
    return rows


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``micronet models``."""

    @app.command("models")
    def models_cmd(
        width: list[float] = typer.Option([1.0], "--width", "-w",
                                          help="Width multiplier(s) to tabulate."),
    ) -> None:
        """Print the Micro-Net variants: input/output size, parameters, GFLOP per tile."""
        table = Table(title="Micro-Net models (GFLOP = one forward pass on one tile)")
        for col in ("name", "input", "output", "width", "params (M)", "GFLOP/tile"):
            table.add_column(col, justify="right" if col not in ("name",) else "left")
        for w in width:
            for r in model_table(w):
                table.add_row(str(r["name"]), str(r["input"]), str(r["output"]), f"{w:g}",
                              f"{r['params_m']:.2f}", f"{r['gflop']:.1f}")
        Console().print(table)
        shipped = list_pretrained()
        Console().print("pretrained weights: " + (", ".join(shipped) if shipped else "none"))
