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


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"micronet-seg {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version,
                                          is_eager=True, help="Print the version and exit.")
             ) -> None:
    pass

# Each subcommand module defines ``register(app, bench_app)``.
for _name in ("models", "data", "train", "tune", "segment", "evaluate", "demo", "grade"):
    importlib.import_module(f"{__name__}.{_name}").register(app, bench_app)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry: expected errors become one line on stderr and exit status 1."""
    command = typer.main.get_command(app)  # plain click: usage errors stay one line
    try:
        command.main(args=argv, prog_name="micronet", standalone_mode=False)
    except MicronetError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 1
    except SystemExit as exc:  # typer/click exits (help, usage errors)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except Exception as exc:
        # click usage errors (typer vendors click, so match by behaviour, not by class)
        show, exit_code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show(file=sys.stderr)
            return exit_code or 2
        if type(exc).__name__ == "Abort":
            return 1
        raise
    return 0
