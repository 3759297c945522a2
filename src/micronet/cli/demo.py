"""``micronet demo``: the bundled samples, segmented and scored with the bundled weights."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .common import device_option, quiet_option, weights_option


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``micronet demo``."""

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("micronet-demo"), "--out", "-o", file_okay=False,
                                 help="Output folder."),
        weights: str = weights_option(),
        device: str = device_option(),
        quiet: bool = quiet_option(),
    ) -> None:
        """Segment the bundled GlaS sample tiles, alone and on glass in a small bundled slide,
        and score them against their labels."""
        from ..demo import run_demo

        result = run_demo(out, weights, device)
        table = Table(title=f"micronet demo: {result.weights} on the bundled GlaS samples "
                            "(reconstructed labels)")
        for col in ("image", "glands (truth)", "glands (found)", "object F1", "object Dice",
                    "object Hausdorff (px)"):
            table.add_column(col, justify="left" if col == "image" else "right")
        s = result.scores
        for im in s.per_image:
            table.add_row(im.name, str(im.tp + im.fn), str(im.tp + im.fp), f"{im.f1:.3f}",
                          f"{im.object_dice:.3f}", f"{im.object_hausdorff:.1f}")
        table.add_row("[bold]pooled", str(s.tp + s.fn), str(s.tp + s.fp), f"[bold]{s.f1:.3f}",
                      f"[bold]{s.object_dice:.3f}", f"[bold]{s.object_hausdorff:.1f}")
        d = result.slide_scores
        if d is not None:  # the same tiles on glass in the bundled slide, via the slide path
            table.add_row("[bold]on glass (demo_slide.tif)", str(d.tp + d.fn), str(d.tp + d.fp),
                          f"[bold]{d.f1:.3f}", f"[bold]{d.object_dice:.3f}",
                          f"[bold]{d.object_hausdorff:.1f}")
        Console().print(table)
        typer.echo(f"wrote {len(result.files)} files to {result.out_dir}/ "
                   "(overlays *_overlay.png, QuPath *.geojson, *_glands.csv, tissue masks "
                   "*_tissue.png, report.md; demo_slide*: the slide)")
