"""``micronet train`` and ``micronet bench train``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .._console import console
from .common import device_option, model_option, quiet_option


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``train`` and ``bench train``."""

    @app.command("train")
    def train_cmd(
        config: Path = typer.Option(None, "--config", "-c", exists=True, dir_okay=False,
                                    help="YAML/TOML/JSON config (sections model, data, "
                                         "schedule, run)."),
        data: Path = typer.Option(None, "--data", help="Imported GlaS folder (data.root)."),
        out: Path = typer.Option(None, "--out", help="Run folder (run.out)."),
        model: str = model_option(None),
        width: float = typer.Option(None, "--width", help="Width multiplier (model.width)."),
        epochs: int = typer.Option(None, "--epochs", help="schedule.epochs"),
        device: str = device_option(None),
        quiet: bool = quiet_option(),
        set_: list[str] = typer.Option([], "--set", help="Override: section.key=value "
                                                         "(repeatable)."),
        resume: Path = typer.Option(None, "--resume", exists=True, file_okay=False,
                                    help="Continue the run in this folder exactly."),
        plot: Path = typer.Option(None, "--plot", exists=True, file_okay=False,
                                  help="Only draw RUN/curves.png from a run's log."),
    ) -> None:
        """Train Micro-Net with the paper's loss, augmentation and schedule."""
        from ..train.config import apply_overrides, load_config
        from ..train.loop import train, write_summary
        from ..train.plot import plot_run

        if plot is not None:
            typer.echo(str(plot_run(plot)))
            return
        if resume is not None:
            cfg = load_config(resume / "config.json")
        else:
            cfg = load_config(config)
        flags = {"data.root": data, "run.out": out, "model.name": model, "model.width": width,
                 "schedule.epochs": epochs, "run.device": device}
        overrides = [f"{k}={v}" for k, v in flags.items() if v is not None] + list(set_)
        cfg = apply_overrides(cfg, overrides)
        result = train(cfg, resume=resume)
        if result.run_dir.exists() and (result.run_dir / "log.jsonl").exists():
            write_summary(result.run_dir, result, cfg.run.best_metric)
            plot_run(result.run_dir)
        console.print(f"run folder: {result.run_dir} (step {result.step}, "
                      f"best {cfg.run.best_metric} {result.best_score:.4f})")
        typer.echo(str(result.run_dir))

    @bench_app.command("train")
    def bench_train_cmd(
        width: float = typer.Option(0.125, "--width"),
        batch_size: int = typer.Option(2, "--batch-size"),
        device: str = device_option(),
        steps: int = typer.Option(3, "--steps"),
        warmup: int = typer.Option(1, "--warmup"),
        compile_: bool = typer.Option(False, "--compile/--no-compile"),
        model: str = model_option(),
        json_out: Path = typer.Option(None, "--json", help="Also write the figures as JSON."),
    ) -> None:
        """Time a naive fp32 NCHW step against the optimised step (same model and batch)."""
        from .._io import atomic_path
        from ..train.bench import bench_train

        r = bench_train(width, batch_size, device, steps, warmup, compile_, model)
        typer.echo(f"{r['model']} width {r['width']} batch {r['batch_size']} on {r['device']} "
                   f"({r['threads']} threads), {r['gflop_per_step']:.0f} GFLOP/step")
        name_width = max(len(t["name"]) for t in r["timings"])
        for t in r["timings"]:
            typer.echo(f"  {t['name']:<{name_width}} step {t['step_s']:.3f} s  "
                       f"warm-up {t['warmup_s']:.2f} s  {t['tflops'] * 1000:.1f} GFLOP/s")
        typer.echo(f"  speed-up: {r['speedup']:.2f}x")
        if "fraction_of_peak" in r:
            typer.echo(f"  optimised step: {r['timings'][1]['tflops'] * 1000:.0f} GFLOP/s = "
                       f"{100 * r['fraction_of_peak']:.1f}% of {r['peak_tflops'] * 1000:.0f} "
                       f"GFLOP/s ({r['peak_source']})")
        if json_out:
            with atomic_path(json_out) as tmp:
                tmp.write_text(json.dumps(r, indent=1))
