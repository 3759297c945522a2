"""Shared fixtures: synthetic glands, a tiny model, and the GlaS release when it is present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fakes import make_synthetic_glands

os.environ.setdefault("MICRONET_NO_PROGRESS", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))

GLAS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "glas"
GLAS_ZIP = GLAS_DIR / "warwick_qu_dataset_released_2016_07_08.zip"

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", deadline=None, max_examples=50,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("ci")
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(scope="session")
def glas_zip() -> Path:
    """The shared GlaS release zip (skips when absent)."""
    if not GLAS_ZIP.exists():
        pytest.skip(f"GlaS release not found at {GLAS_ZIP}")
    return GLAS_ZIP


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_model():
    """A width-1/16 Micro-Net-508 in eval mode (random weights, seeded)."""
    from micronet.models import create

    torch.manual_seed(0)
    return create("micronet508", width=1 / 16).eval()


@pytest.fixture
def synthetic_glands() -> tuple[np.ndarray, np.ndarray]:
    """(image (256,256,3) uint8, labels (256,256) int32) with five glands, two touching."""
    return make_synthetic_glands()


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    """A users'-own-data folder: images/ and labels/ with 4 synthetic 280² pairs."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pairs")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for i in range(4):
        image, labels = make_synthetic_glands(size=280, seed=i)
        Image.fromarray(image).save(root / "images" / f"img{i}.png")
        Image.fromarray(labels.astype("uint8")).save(root / "labels" / f"img{i}.png")
    return root
