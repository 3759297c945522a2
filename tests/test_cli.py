"""The command-line entry: usage errors and expected errors are short, with non-zero exits."""

from __future__ import annotations

import subprocess
import sys

from micronet.cli import main


def test_missing_path_option_is_a_usage_error(capsys, tmp_path):
    assert main(["tune", "--weights", str(tmp_path / "nope"), "--data",
                 str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_missing_weights_is_a_one_line_error(capsys, tmp_path):
    assert main(["tune", "--weights", str(tmp_path / "nope.safetensors"), "--data",
                 str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "nope.safetensors: weights file not found" in err and "Traceback" not in err


def test_unknown_command_and_help():
    assert main(["nosuchcommand"]) == 2
    assert main(["--help"]) == 0


def test_console_script_exit_status(tmp_path):
    run = subprocess.run([sys.executable, "-m", "micronet", "train", "--data",
                          str(tmp_path / "missing"), "--out", str(tmp_path / "run")],
                         capture_output=True, text=True)
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) <= 2 and "data folder not found" in run.stderr
    assert not (tmp_path / "run" / "last.pt").exists()
