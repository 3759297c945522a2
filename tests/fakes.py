"""Shared test fakes: tiny GlaS releases, a purple-gland stand-in model, pyramidal TIFFs."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

__all__ = ["FAKE_COUNTS", "RELEASE_DIR", "GRADE_HEADER", "BREAKAGES", "fake_pair",
           "write_fake_release", "zip_release", "break_release", "PurpleGlandModel",
           "purple_image", "write_pyramid", "PaleGlandModel", "make_synthetic_glands"]

# --- fake GlaS releases (2 pairs per split) -------------------------------------------------

FAKE_COUNTS = {"train": 2, "testA": 2, "testB": 2}
RELEASE_DIR = "Warwick QU Dataset (Released 2016_07_08)"
GRADE_HEADER = "name,patient ID, grade (GlaS), grade (Sirinukunwattana et al. 2015)"


def fake_pair(index: int, shape: tuple[int, int] = (30, 40)) -> tuple[np.ndarray, np.ndarray]:
    """A random RGB tile with ``index + 1`` rectangular glands."""
    rng = np.random.default_rng(index)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    labels = np.zeros(shape, np.uint8)
    for gland in range(1, index + 2):
        labels[2:8, 4 * gland: 4 * gland + 3] = gland
    return image, labels


def write_fake_release(root: Path, counts: dict[str, int] | None = None) -> Path:
    """Write a release folder in the official layout; return the folder holding the BMPs."""
    folder = root / RELEASE_DIR
    folder.mkdir(parents=True)
    rows = [GRADE_HEADER]
    for split, n in (counts or FAKE_COUNTS).items():
        for i in range(1, n + 1):
            image, labels = fake_pair(i)
            Image.fromarray(image).save(folder / f"{split}_{i}.bmp")
            Image.fromarray(labels).save(folder / f"{split}_{i}_anno.bmp")
            rows.append(f"{split}_{i},{i}, {'benign' if i % 2 else 'malignant'}, healthy")
    (folder / "Grade.csv").write_text("\n".join(rows) + "\n")
    return folder


def zip_release(folder: Path, zip_path: Path) -> Path:
    """Zip a release folder as the official zip does (one top-level folder)."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"{folder.name}/{path.name}")
    return zip_path


def break_release(folder: Path, problem: str) -> str:
    """Damage the fake release one way; return the file name the problem line must start with."""
    if problem == "missing annotation":
        (folder / "testA_2_anno.bmp").unlink()
        return "testA_2_anno.bmp"
    if problem == "truncated image":
        path = folder / "train_2.bmp"
        path.write_bytes(path.read_bytes()[:2000])
        return "train_2.bmp"
    if problem == "size mismatch":
        Image.fromarray(fake_pair(1)[1][:-1]).save(folder / "testB_1_anno.bmp")
        return "testB_1_anno.bmp"
    if problem == "RGB annotation":
        labels = fake_pair(2)[1]
        Image.fromarray(np.stack([labels] * 3, -1)).save(folder / "train_2_anno.bmp")
        return "train_2_anno.bmp"
    if problem == "missing grade row":
        text = (folder / "Grade.csv").read_text()
        (folder / "Grade.csv").write_text(text.replace("testB_2,2, malignant, healthy\n", ""))
        return "Grade.csv"
    if problem == "extra pair":
        for suffix in ("", "_anno"):
            (folder / f"train_3{suffix}.bmp").write_bytes((folder / f"train_1{suffix}.bmp")
                                                          .read_bytes())
        with open(folder / "Grade.csv", "a") as grades:
            grades.write("train_3,3, benign, healthy\n")
        return "train"
    raise AssertionError(problem)


BREAKAGES = ["missing annotation", "truncated image", "size mismatch", "RGB annotation",
             "missing grade row", "extra pair"]


# --- a deterministic stand-in model for the segmenter --------------------------------------


class PurpleGlandModel(nn.Module):
    """A deterministic stand-in for Micro-Net: purple pixels are gland, their outer
    ``erosion`` px are contour, the rest background (logits ±10)."""

    def __init__(self, input_size: int = 64, erosion: int = 3, strict: bool = True) -> None:
        super().__init__()
        self.input_size, self.num_classes = input_size, 3
        self.erosion, self.strict = erosion, strict
        self.offset = nn.Parameter(torch.zeros(()))  # so .to()/state_dict behave

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.strict:
            assert x.shape[-2:] == (self.input_size, self.input_size), x.shape
        green = (x[:, 1:2].float() + 1) * 127.5
        purple = (green < 130).float()
        if self.erosion:
            k = 2 * self.erosion + 1
            interior = -F.max_pool2d(-purple, k, stride=1, padding=self.erosion)
        else:
            interior = purple
        classes = torch.cat([1 - purple, interior, purple - interior], 1)
        return classes * 20 - 10 + self.offset


class PaleGlandModel(PurpleGlandModel):
    """The shipped model's failure on slides, made deterministic: purple *and* pale pixels (gland
    lumens in GlaS, but also glass) are gland; pen ink dark enough in green counts as purple."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        green = (x[:, 1:2].float() + 1) * 127.5
        x = x.clone()
        x[:, 1:2] = torch.where(green > 225, -1.0, x[:, 1:2])  # pale -> "purple"
        return super().forward(x)


def purple_image(shape, ellipses, seed=0):
    """Pink image with purple ellipses ``(row, col, r_radius, c_radius)``; and true labels."""
    from skimage.draw import ellipse

    labels = np.zeros(shape, np.int32)
    for i, (r, c, rr_, cc_) in enumerate(ellipses, start=1):
        rr, cc = ellipse(r, c, rr_, cc_, shape=shape)
        labels[rr, cc] = i
    image = np.empty((*shape, 3), np.uint8)
    image[:] = (235, 200, 225)
    image[labels > 0] = (150, 60, 140)
    noise = np.random.default_rng(seed).integers(-6, 7, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), labels


def write_pyramid(path, image, mpp=None, downsamples=(2, 4)):
    """A tiled pyramidal TIFF (SubIFDs) with optional resolution tags tiffslide reads."""
    import cv2
    import tifffile

    def res(ds):
        if mpp is None:
            return {}
        return {"resolution": (1e4 / (mpp * ds), 1e4 / (mpp * ds)),
                "resolutionunit": "CENTIMETER"}

    opts = {"tile": (64, 64), "photometric": "rgb", "compression": "zlib"}
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, subifds=len(downsamples), **opts, **res(1))
        for ds in downsamples:
            h, w = image.shape[0] // ds, image.shape[1] // ds
            small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            tif.write(small, subfiletype=1, **opts, **res(ds))
    return path


def make_synthetic_glands(size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An H&E-looking image with elliptical glands; glands 1 and 2 touch."""
    from skimage.draw import ellipse

    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.int32)
    specs = [(60, 60, 30, 22), (60, 103, 30, 22), (170, 70, 35, 28), (150, 180, 40, 30),
             (220, 200, 20, 15)]
    for i, (r, c, rr_, cc_) in enumerate(specs, start=1):
        rr, cc = ellipse(r * size // 256, c * size // 256, rr_ * size // 256, cc_ * size // 256,
                         shape=labels.shape)
        free = labels[rr, cc] == 0
        labels[rr[free], cc[free]] = i
    image = np.empty((size, size, 3), np.uint8)
    image[:] = (235, 200, 225)  # pale pink stroma
    image[labels > 0] = (150, 60, 140)  # purple glands
    noise = rng.normal(0, 8, image.shape)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    return image, labels
