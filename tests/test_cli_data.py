"""``micronet data glas`` and ``micronet data verify`` from the command line.

Fake releases come from ``fakes.py``; the CLI always uses the GlaS counts, so these tests
shrink the module-level ``GLAS_COUNTS`` to the fakes' 2 pairs per split.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes import BREAKAGES, FAKE_COUNTS, break_release, write_fake_release, zip_release
from micronet.cli import main
from micronet.data import verify
from micronet.data.verify import sha256_file


@pytest.fixture
def fake_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    for split, count in FAKE_COUNTS.items():
        monkeypatch.setitem(verify.GLAS_COUNTS, split, count)


@pytest.fixture
def fake_zip(tmp_path: Path) -> Path:
    return zip_release(write_fake_release(tmp_path / "src"), tmp_path / "release.zip")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 serving a folder: (base URL, folder)."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


def _glas(source: object, dest: Path, *extra: str) -> int:
    return main(["data", "glas", "--source", str(source), "--dest", str(dest), *extra])


def test_import_then_rerun_is_a_noop(fake_counts, fake_zip: Path, tmp_path: Path, capsys):
    dest = tmp_path / "dest"
    assert _glas(fake_zip, dest) == 0
    out = capsys.readouterr().out
    assert f"{dest}: imported and verified 6 pairs (train 2, testA 2, testB 2), 15 glands" in out
    manifest = (dest / "manifest.json").read_bytes()

    assert _glas(fake_zip, dest) == 0
    assert f"{dest}: already imported and verified" in capsys.readouterr().out
    assert (dest / "manifest.json").read_bytes() == manifest

    assert main(["data", "verify", str(dest)]) == 0
    assert f"{dest}: verified 6 pairs" in capsys.readouterr().out


@pytest.mark.parametrize("problem", BREAKAGES)
def test_broken_release_exits_1_with_one_line_per_problem(fake_counts, tmp_path, capsys,
                                                          problem):
    folder = write_fake_release(tmp_path / "src")
    name = break_release(folder, problem)
    dest = tmp_path / "out" / "dest"
    assert _glas(zip_release(folder, tmp_path / "r.zip"), dest) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines  # the problem, then the summary error line
    assert lines[0].startswith(f"{name}: ")
    assert lines[1].startswith("error: 1 problem(s) in ") and "nothing written" in lines[1]
    assert not dest.exists() and list((tmp_path / "out").iterdir()) == []


def test_three_problems_three_lines(fake_counts, tmp_path, capsys):
    folder = write_fake_release(tmp_path / "src")
    names = [break_release(folder, p)
             for p in ("truncated image", "size mismatch", "RGB annotation")]
    assert _glas(folder, tmp_path / "dest") == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert sorted(line.split(":")[0] for line in lines[:-1]) == sorted(names)
    assert lines[-1].startswith("error: 3 problem(s)")
    assert not (tmp_path / "dest").exists()


def test_url_source_downloads_the_zip(fake_counts, fake_zip, http_root, tmp_path, capsys):
    base, folder = http_root
    (folder / "glas.zip").write_bytes(fake_zip.read_bytes())
    dest = tmp_path / "dest"
    assert _glas(f"{base}/glas.zip", dest, "--sha256", sha256_file(fake_zip)) == 0
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["source"] == {"kind": "url", "url": f"{base}/glas.zip",
                                  "sha256": sha256_file(fake_zip)}
    assert manifest["splits"]["testB"] == {"pairs": 2, "glands": 5}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_url_errors_are_one_line(fake_counts, http_root, tmp_path, capsys):
    base, folder = http_root
    (folder / "junk.zip").write_bytes(b"this is not a zip file")
    for name, message in (("missing.zip", "HTTP 404"), ("junk.zip", "not a readable zip")):
        assert _glas(f"{base}/{name}", tmp_path / "dest") == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and f"{base}/{name}" in err[0]
        assert [p.name for p in tmp_path.iterdir()] == ["www"]  # no DEST, no download left


def test_verify_reports_damaged_files(fake_counts, fake_zip, tmp_path, capsys):
    dest = tmp_path / "dest"
    assert _glas(fake_zip, dest) == 0
    (dest / "testB/images/testB_2.png").write_bytes(b"x")
    capsys.readouterr()
    assert main(["data", "verify", str(dest)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "testB/images/testB_2.png: SHA-256 differs from the manifest " \
                       "(modified or corrupt)"
    assert lines[1].startswith(f"error: {dest}: 1 problem(s)") and "--force" in lines[1]
    assert _glas(fake_zip, dest) == 1  # not silently accepted as "already imported"
    assert _glas(fake_zip, dest, "--force") == 0
    assert main(["data", "verify", str(dest)]) == 0


def test_verify_needs_an_imported_folder(tmp_path, capsys):
    assert main(["data", "verify", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}: not an imported GlaS folder (run `micronet data glas" in err


def test_default_counts_are_glas(fake_zip, tmp_path, capsys):
    assert _glas(fake_zip, tmp_path / "dest") == 1
    assert capsys.readouterr().err.splitlines()[:3] == [
        "train: 2 image/annotation pairs in the source, expected 85",
        "testA: 2 image/annotation pairs in the source, expected 60",
        "testB: 2 image/annotation pairs in the source, expected 20"]


def test_foreign_manifest_is_reported_not_replaced(fake_counts, fake_zip, tmp_path, capsys):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "manifest.json").write_text("{}")
    for extra in ((), ("--force",)):
        assert _glas(fake_zip, dest, *extra) == 1
        assert "not a micronet GlaS manifest" in capsys.readouterr().err
    assert [p.name for p in dest.iterdir()] == ["manifest.json"]
