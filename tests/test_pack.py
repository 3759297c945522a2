"""`micronet data pack`: a lossless WebP copy of one split that training reads like an import."""

from __future__ import annotations

import numpy as np
import pytest

from fakes import FAKE_COUNTS, write_fake_release
from micronet.cli import main
from micronet.data.glas import GlaSDataset, import_glas
from micronet.data.verify import verify_import
from micronet.errors import MicronetError


@pytest.fixture
def imported(tmp_path):
    release = write_fake_release(tmp_path / "src")
    return import_glas(release, tmp_path / "glas", expected_counts=FAKE_COUNTS).dest


def test_pack_is_pixel_identical_and_readable(imported, tmp_path):
    assert main(["data", "pack", "--data", str(imported), "--dest", str(tmp_path / "pack")]) == 0
    pack = GlaSDataset(tmp_path / "pack", "train")
    source = GlaSDataset(imported, "train")
    assert pack.names == source.names
    assert all(r["image"].endswith(".webp") for r in pack.records)
    for a, b in zip(pack, source, strict=True):
        assert np.array_equal(a["image"], b["image"])
        assert np.array_equal(a["labels"], b["labels"])
    # the pack verifies as a one-split folder, and damage is still found
    assert verify_import(tmp_path / "pack", FAKE_COUNTS) == []
    assert pack.manifest["glands"] == sum(r["glands"] for r in pack.records)
    (tmp_path / "pack" / pack.records[0]["image"]).unlink()
    assert verify_import(tmp_path / "pack", FAKE_COUNTS) == [f"{pack.records[0]['image']}: missing"]


def test_pack_refuses_an_existing_destination(imported, tmp_path):
    (tmp_path / "pack").mkdir()
    with pytest.raises(MicronetError, match="already exists"):
        from micronet.data.pack import pack_split

        pack_split(imported, tmp_path / "pack")
    assert main(["data", "pack", "--data", str(imported), "--dest", str(tmp_path / "pack")]) == 1
