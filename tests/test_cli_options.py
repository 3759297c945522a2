"""Shared CLI options: one name, one meaning, one help text in every command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from PIL import Image

from micronet.cli import app, main

COMPUTE_COMMANDS = ("segment", "evaluate", "tune", "train", "demo")


def _commands() -> dict[str, object]:
    root = typer.main.get_command(app)
    out = {}
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        out.update({f"{name} {k}": v for k, v in subs.items()} if subs else {name: cmd})
    return out


def test_commands_with_compute_take_quiet_and_device():
    commands = _commands()
    for name in COMPUTE_COMMANDS:
        params = {p.name for p in commands[name].params}
        assert {"quiet", "device"} <= params, name


@pytest.mark.parametrize("option", ["model", "device", "quiet", "tta", "postprocess", "width"])
def test_an_option_has_one_help_text(option):
    helps = {name: p.help for name, cmd in _commands().items() for p in cmd.params
             if p.name == option and not name.startswith(("grade", "models", "bench train"))
             and not (option == "width" and name == "train")}
    assert len(set(helps.values())) == 1, helps


def test_weights_is_the_same_option_everywhere():
    helps = {name: p.help for name, cmd in _commands().items() for p in cmd.params
             if p.name == "weights" and name in ("segment", "evaluate", "demo")}
    first = helps["segment"]
    assert all(h.startswith(first) for h in helps.values()), helps


def test_evaluate_defaults_to_the_shipped_weights(tmp_path, synthetic_glands):
    """`micronet evaluate --data` segments with the shipped weights, like `segment`."""
    image, labels = synthetic_glands
    root = tmp_path / "glas"
    for sub, array in (("labels", labels.astype(np.uint8)), ("images", image[..., :3])):
        (root / "testA" / sub).mkdir(parents=True)
        Image.fromarray(array[:96, :96]).save(root / "testA" / sub / "testA_1.png")
    out = tmp_path / "out"
    assert main(["evaluate", "--data", str(root), "--split", "testA", "--out", str(out),
                 "--device", "cpu", "--quiet"]) == 0
    provenance = json.loads((out / "metrics.json").read_text())["provenance"]
    assert (provenance["model"], provenance["weights"]) == ("micronet252", "glas")


def test_quiet_hides_progress_for_the_whole_command():
    """--quiet switches off every progress bar not explicitly asked for, library ones too."""
    from micronet import _console

    quiet = {p.name: p for p in _commands()["tune"].params}["quiet"]
    try:
        quiet.callback(None, quiet, True)  # type: ignore[misc]
        assert not _console.progress_enabled() and _console.progress_enabled(True)
        quiet.callback(None, quiet, False)  # type: ignore[misc]
        assert _console.progress_enabled() == _console.sys.stderr.isatty()
    finally:
        _console.set_quiet(False)
