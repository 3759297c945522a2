"""``micronet data``: import the GlaS release, re-verify an import, preview training patches."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from .._console import console
from ..errors import MicronetError
from .common import model_option, quiet_option

data_app = typer.Typer(help="GlaS data: import and verify the release, preview training patches.",
                       no_args_is_help=True)


def _split_summary(manifest: dict) -> str:
    pairs = ", ".join(f"{split} {v['pairs']}" for split, v in manifest["splits"].items())
    total = sum(v["pairs"] for v in manifest["splits"].values())
    return f"{total} pairs ({pairs}), {manifest['glands']} glands"


def _fail(problems: list[str], summary: str) -> MicronetError:
    """Print one stderr line per problem; return the error that ends the command."""
    for line in problems:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return MicronetError(summary)


@data_app.command("glas")
def glas_cmd(
    source: str = typer.Option(..., "--source",
                               help="Warwick-QU release: the zip, its unpacked folder, or an "
                                    "http(s) URL to the zip."),
    dest: Path = typer.Option(..., "--dest", file_okay=False,
                              help="Output folder (created; left untouched if already verified)."),
    sha256: str | None = typer.Option(None, "--sha256",
                                      help="Expected SHA-256 of the zip (checked first)."),
    force: bool = typer.Option(False, "--force",
                               help="Re-import even if DEST already holds a verified import."),
    quiet: bool = quiet_option(),
) -> None:
    """Check the GlaS release and write DEST/{train,testA,testB}/{images,labels}/NAME.png."""
    from ..data.glas import ReleaseProblems, import_glas

    start = time.perf_counter()
    try:
        result = import_glas(source, dest, sha256=sha256, force=force,
                             progress=False if quiet else None)
    except ReleaseProblems as exc:
        raise _fail(exc.problems, exc.summary) from None
    summary = _split_summary(result.manifest)
    if result.already_verified:
        typer.echo(f"{dest}: already imported and verified: {summary} "
                   "(--force imports again)")
        return
    typer.echo(f"{dest}: imported and verified {summary} "
               f"in {time.perf_counter() - start:.1f} s")
    if result.manifest["labels_origin"] == "reconstructed":
        console.print("note: this copy's annotations are reconstructed; report scores as "
                      "'GlaS (reconstructed labels)'", highlight=False, soft_wrap=True)


@data_app.command("verify")
def verify_cmd(
    data: Path = typer.Argument(..., exists=True, file_okay=False,
                                help="Folder written by `micronet data glas`."),
) -> None:
    """Re-check an imported GlaS folder: every file present with its manifest SHA-256."""
    from ..data.verify import read_manifest, verify_import

    problems = verify_import(data)
    if problems:
        raise _fail(problems, f"{data}: {len(problems)} problem(s); re-import with "
                              f"`micronet data glas --source ... --dest {data} --force`")
    typer.echo(f"{data}: verified {_split_summary(read_manifest(data))}")


@data_app.command("preview")
def preview_cmd(
    data: Path = typer.Option(..., "--data", exists=True, file_okay=False,
                              help="Imported GlaS folder."),
    out: Path = typer.Option(..., "--out", dir_okay=False,
                             help="PNG to write."),
    split: str = typer.Option("train", "--split", help="train, testA or testB."),
    n: int = typer.Option(8, "--n", min=1, help="Number of patches."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the patch draw."),
    model: str = model_option(),
    patch: int = typer.Option(None, "--patch", min=16,
                              help="Crop size in pixels (default: the --model's input size)."),
) -> None:
    """Save a grid of training patches with their targets, to check data before training."""
    from ..data.preview import save_preview
    from ..models import input_size

    written = save_preview(data, out, split=split, n=n, seed=seed,
                           patch=input_size(model) if patch is None else patch)
    typer.echo(str(written))


@data_app.command("pack")
def pack_cmd(
    data: Path = typer.Option(..., "--data", exists=True, file_okay=False,
                              help="Imported GlaS folder."),
    dest: Path = typer.Option(..., "--dest", help="New folder for the pack."),
    split: str = typer.Option("train", "--split", help="train, testA or testB."),
) -> None:
    """Pack one split as lossless WebP + PNG labels: a small folder to carry to a GPU machine.

    ``micronet train --data DEST`` reads the pack like an imported folder.
    """
    from ..data.pack import pack_split

    typer.echo(str(pack_split(data, dest, split)))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``micronet data glas|verify|preview|pack``."""
    app.add_typer(data_app, name="data")
