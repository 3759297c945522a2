"""micronet.data.folders: suffixes, natural order, label keys, and the dataset layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from micronet.data.folders import (
    IMAGE_SUFFIXES,
    label_key,
    list_images,
    natural_key,
    open_dataset,
)
from micronet.errors import MicronetError


def _pair(folder: Path, stem: str, suffix: str = ".png") -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "images" / f"{stem}{suffix}")
    Image.fromarray(np.ones((8, 8), np.uint8)).save(folder / "labels" / f"{stem}.png")


def test_natural_order_and_suffixes(tmp_path):
    for name in ("a_10.png", "a_2.webp", "a_1.JPG", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a_1.JPG", "a_2.webp", "a_10.png"]
    assert sorted(["t_10", "t_2", "t_1"], key=natural_key) == ["t_1", "t_2", "t_10"]
    assert ".webp" in IMAGE_SUFFIXES
    assert label_key(Path("testA_1_anno.bmp")) == ("testA_1", True)
    assert label_key(Path("_anno.png")) == ("_anno", False)


@pytest.mark.parametrize("layout", ["split", "flat"])
def test_open_dataset_reads_both_folder_layouts(tmp_path, layout):
    base = tmp_path / "train" if layout == "split" else tmp_path
    for stem in ("x_10", "x_2"):
        _pair(base, stem, ".webp")
    dataset = open_dataset(tmp_path, "train")
    assert dataset.names == ["x_2", "x_10"]
    assert dataset[0]["labels"].max() == 1


def test_open_dataset_errors_name_the_folder(tmp_path):
    with pytest.raises(MicronetError, match=f"{tmp_path / 'nope'}: data folder not found"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(MicronetError, match="neither an imported GlaS folder"):
        open_dataset(tmp_path)


def test_preview_train_and_evaluate_share_the_opener(tmp_path):
    """preview accepts the flat layout the trainer reads (one opener for both)."""
    from micronet.data.preview import save_preview

    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        _pair(tmp_path, stem)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(
            tmp_path / "images" / f"{stem}.png")
        labels = np.zeros((64, 64), np.uint8)
        labels[10:30, 10:30] = 1
        Image.fromarray(labels).save(tmp_path / "labels" / f"{stem}.png")
    out = save_preview(tmp_path, tmp_path / "p.png", n=1, patch=44)
    assert out.is_file()
