"""README promises that are generated or printed by the code: the model table, the version."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_model_table_is_what_micronet_models_prints(capsys):
    from micronet.cli import main
    from micronet.cli.models import markdown_table

    assert main(["models", "--markdown"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == markdown_table()
    assert printed in README.read_text(encoding="utf-8")  # regenerate: micronet models --markdown


def test_version_option(capsys):
    from micronet import __version__
    from micronet.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"micronet-seg {__version__}"
