"""The ``micronet`` command: one typer app, one file per subcommand, each a thin API wrapper."""

from __future__ import annotations

import importlib
import sys

import typer

from .._console import console
from ..errors import MicronetError

__all__ = ["app", "bench_app", "main"]

app = typer.Typer(
    name="micronet",
    help="Micro-Net gland segmentation for H&E histology (GlaS): segment, train, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks: each prints its figures and ratios measured in one run.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")

# Each subcommand module defines ``register(app, bench_app)``.
for _name in ("models", "data", "train", "tune", "segment", "evaluate", "demo"):
    importlib.import_module(f"{__name__}.{_name}").register(app, bench_app)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry: expected errors become one line on stderr and exit status 1."""
    try:
        app(args=argv, standalone_mode=False)
    except MicronetError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 1
    except SystemExit as exc:  # typer/click exits (help, usage errors)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show(file=sys.stderr)
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            return 1
        raise
    return 0
