"""Segmenter: tiled prediction of any image size, resampling, TTA, precision, weights loading."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from fakes import PurpleGlandModel, purple_image
from micronet.data.augment import dihedral, dihedral_inverse
from micronet.errors import InputError, MicronetError
from micronet.infer import PostprocessConfig, Segmenter, load_weights_file
from micronet.infer.runtime import tta_transforms


def matched_iou(a: np.ndarray, b: np.ndarray) -> list[float]:
    """For each instance of ``a``, IoU with the instance of ``b`` overlapping it most."""
    out = []
    for i in range(1, a.max() + 1):
        m = a == i
        ids, counts = np.unique(b[m], return_counts=True)
        j = ids[np.argmax(counts)]
        out.append(np.sum(m & (b == j)) / np.sum(m | (b == j)) if j else 0.0)
    return out


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A width-1/16 Micro-Net saved as a self-describing safetensors file."""
    from micronet.models import create
    from micronet.models.weights_io import save_weights

    torch.manual_seed(1)
    model = create("micronet508", width=1 / 16).eval()
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(model.state_dict(), path, {"arch": "micronet508", "width": str(1 / 16),
                                            "num_classes": "3", "mpp": "0.5"})
    return path, model


def test_pointwise_model_tiled_equals_whole_image():
    """Blending, placement and reflection: tiles of a pixel-wise model add up exactly."""
    image, _ = purple_image((203, 151), [(60, 40, 30, 25), (150, 110, 40, 30)])
    model = PurpleGlandModel(64, erosion=0)
    seg = Segmenter(model, device="cpu", precision="fp32", batch_size=3)
    result = seg.predict(image, return_probabilities=True, progress=False)
    from micronet.models import normalize

    with torch.no_grad():
        whole = PurpleGlandModel(64, erosion=0, strict=False)(
            normalize(torch.from_numpy(image).permute(2, 0, 1)[None])).softmax(1)[0].numpy()
    assert result.probabilities.shape == (3, 203, 151)
    assert result.probabilities.dtype == np.float16
    np.testing.assert_allclose(result.probabilities.astype(np.float32), whole, atol=2e-3)


def test_gland_crossing_tile_borders_is_one_instance():
    """Tiled (64 px tiles) and untiled (one 256 px tile) give the same glands."""
    ellipses = [(100, 100, 55, 70), (40, 40, 25, 20), (170, 180, 30, 35), (30, 170, 20, 30)]
    image, truth = purple_image((220, 240), ellipses)
    cfg = PostprocessConfig(min_size=50)
    tiled = Segmenter(PurpleGlandModel(64), device="cpu", postprocess=cfg).predict(image)
    whole = Segmenter(PurpleGlandModel(256), device="cpu", postprocess=cfg).predict(image)
    assert tiled.labels.max() == whole.labels.max() == len(ellipses)
    assert min(matched_iou(whole.labels, tiled.labels)) > 0.97
    assert min(matched_iou(truth, tiled.labels)) > 0.9
    big = tiled.labels[100, 100]
    assert big and np.unique(tiled.labels[truth == 1]).tolist() == [big]  # spans 4+ tiles


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (3, 130), (70, 2)])
def test_tiny_and_thin_images(shape):
    image = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
    result = Segmenter(PurpleGlandModel(32), device="cpu").predict(
        image, return_probabilities=True)
    assert result.labels.shape == shape and result.labels.dtype == np.int32
    np.testing.assert_allclose(result.probabilities.astype(np.float32).sum(0), 1, atol=3e-3)


def test_tiny_micronet_on_a_non_square_image(tiny_model, synthetic_glands):
    image, _ = synthetic_glands
    image = np.concatenate([image, image[:, :100]], axis=1)  # 256 x 356
    seg = Segmenter(tiny_model, device="cpu", batch_size=2)
    result = seg.predict(image, return_probabilities=True)
    assert result.labels.shape == (256, 356)
    probs = result.probabilities.astype(np.float32)
    np.testing.assert_allclose(probs.sum(0), 1, atol=3e-3)
    assert len(result.glands) == result.labels.max() == len(np.unique(result.labels)) - 1


def test_bf16_matches_fp32(tiny_model, synthetic_glands):
    image, _ = synthetic_glands
    out = {}
    for precision in ("fp32", "bf16"):
        seg = Segmenter(tiny_model, device="cpu", precision=precision)
        out[precision] = seg.predict_tiles(np.stack([np.resize(image, (508, 508, 3))]))
    assert np.abs(out["bf16"] - out["fp32"]).max() < 0.02


def test_resampling_by_mpp_keeps_the_input_size():
    ellipses = [(60, 60, 35, 30), (150, 160, 40, 45)]
    image, truth = purple_image((240, 240), ellipses)
    seg = Segmenter(PurpleGlandModel(64, erosion=2), device="cpu",
                    postprocess=PostprocessConfig(min_size=20))
    assert seg.mpp == pytest.approx(0.62)
    assert seg.resample_factor(0.65) == 1.0  # within 10 %: no resampling
    assert seg.resample_factor(0.31) == pytest.approx(0.5)
    result = seg.predict(image, mpp=0.31)
    assert result.labels.shape == truth.shape and result.labels.max() == 2
    assert min(matched_iou(truth, result.labels)) > 0.85
    assert result.glands[0]["area_um2"] == pytest.approx(result.glands[0]["area_px"] * 0.31**2,
                                                         rel=1e-3)
    with pytest.raises(InputError, match="mpp"):
        seg.predict(image, mpp=0)


def test_tta_transforms_round_trip_and_equivariant_model():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    transforms = tta_transforms(8)
    assert len({tuple(dihedral(x, e).flatten().tolist()) for e in transforms}) == 8
    assert tta_transforms(4) == [0, 1, 2, 3]  # the rotations
    for element in transforms:
        assert torch.equal(dihedral_inverse(dihedral(x, element), element), x)
    image, _ = purple_image((100, 90), [(50, 45, 30, 25)])
    plain = Segmenter(PurpleGlandModel(48), device="cpu", precision="fp32")
    tta = Segmenter(PurpleGlandModel(48), device="cpu", precision="fp32", tta=True)
    a = plain.predict(image, return_probabilities=True).probabilities
    b = tta.predict(image, return_probabilities=True).probabilities
    np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=2e-3)


def test_tta_changes_a_real_network_output(tiny_model, rng):
    tiles = rng.integers(0, 255, (1, 508, 508, 3), dtype=np.uint8)
    plain = Segmenter(tiny_model, device="cpu", precision="fp32").predict_tiles(tiles)
    tta = Segmenter(tiny_model, device="cpu", precision="fp32", tta=4).predict_tiles(tiles)
    assert not np.allclose(plain, tta, atol=1e-6)
    np.testing.assert_allclose(tta.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
                                 np.zeros((10, 10, 3), np.float32), np.zeros((0, 5, 3), np.uint8),
                                 [[1, 2, 3]]])
def test_bad_images_are_refused(bad):
    with pytest.raises(InputError):
        Segmenter(PurpleGlandModel(), device="cpu").predict(bad)


def test_weights_file_run_folder_and_errors(tiny_weights, tmp_path):
    from micronet.models.weights_io import save_weights

    path, model = tiny_weights
    seg = Segmenter(weights=path, device="cpu", precision="fp32")
    assert seg.mpp == 0.5 and seg.model.width == pytest.approx(1 / 16)
    ref = model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in seg.model.state_dict().items())
    loaded = load_weights_file(path)
    assert isinstance(loaded, nn.Module) and not loaded.training
    # a run folder whose weights carry no metadata: the architecture comes from config.json
    run = tmp_path / "run"
    run.mkdir()
    save_weights(model.state_dict(), run / "best.safetensors", {})
    (run / "config.json").write_text(json.dumps(
        {"model": {"name": "micronet508", "width": 1 / 16, "num_classes": 3}}))
    assert Segmenter(weights=run, device="cpu").model.width == pytest.approx(1 / 16)
    with pytest.raises(MicronetError, match="width"):
        Segmenter(weights=path, width=0.25, device="cpu")
    (run / "config.json").unlink()
    with pytest.raises(MicronetError, match="architecture"):
        Segmenter(weights=run / "best.safetensors", device="cpu")
    with pytest.raises(MicronetError, match="not found"):
        Segmenter(weights=tmp_path / "missing.safetensors", device="cpu")


def test_unknown_pretrained_weights_list_what_exists():
    with pytest.raises(MicronetError, match="shipped weights"):
        Segmenter(weights="no-such-dataset", device="cpu")
    with pytest.raises(MicronetError, match="shipped weights"):
        Segmenter.from_pretrained("micronet508.no-such-tag", device="cpu")


def test_bad_options():
    with pytest.raises(MicronetError, match="precision"):
        Segmenter(PurpleGlandModel(), device="cpu", precision="int8")
    with pytest.raises(ValueError, match="overlap"):
        Segmenter(PurpleGlandModel(64), device="cpu", overlap=64)
    with pytest.raises(ValueError, match="input_size"):
        Segmenter(nn.Conv2d(3, 3, 1), device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        Segmenter(PurpleGlandModel(), device="cpu", batch_size=0)


def test_top_level_import_is_lazy():
    code = ("import sys, micronet; assert 'torch' not in sys.modules; "
            "assert micronet.__version__ == '0.1.0'; "
            "from micronet import Segmenter, create; print(Segmenter.__name__, create.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["Segmenter", "create"]


@pytest.mark.gpu
def test_cuda_autocast_matches_cpu_fp32(synthetic_glands):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from micronet.models import create

    image, _ = synthetic_glands
    torch.manual_seed(0)
    cpu_model = create("micronet508", width=1 / 16).eval()
    torch.manual_seed(0)
    gpu_model = create("micronet508", width=1 / 16).eval()
    cpu = Segmenter(cpu_model, device="cpu", precision="fp32").predict(
        image, return_probabilities=True)
    gpu = Segmenter(gpu_model, device="cuda", tta=True).predict(image, return_probabilities=True)
    assert gpu.probabilities.shape == cpu.probabilities.shape
    plain = Segmenter(gpu_model, device="cuda").predict(image, return_probabilities=True)
    diff = np.abs(plain.probabilities.astype(np.float32) - cpu.probabilities.astype(np.float32))
    assert diff.max() < 0.02
