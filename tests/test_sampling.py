"""PatchSampler (the trainer's data source) and the augmentation preview."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from micronet._io import write_png
from micronet.data.augment import AugmentConfig
from micronet.data.preview import save_preview
from micronet.data.sampling import Batch, PatchSampler, SamplingConfig, prepare_image
from micronet.data.targets import three_class_targets
from micronet.data.weightmap import unet_weight_map
from micronet.errors import InputError

SMALL = SamplingConfig(patch_size=160, crop_size=128)


def make_pairs(synthetic_glands, count: int = 2):
    image, labels = synthetic_glands
    images = [image, np.ascontiguousarray(image[::-1, :140])]
    labelled = [labels, np.ascontiguousarray(labels[::-1, :140])]
    return images[:count], labelled[:count]


def test_batch_shapes_and_dtypes(synthetic_glands) -> None:
    sampler = PatchSampler(*make_pairs(synthetic_glands), SMALL)
    assert len(sampler) == 2
    batch = sampler.sample(3, torch.Generator().manual_seed(0))
    assert isinstance(batch, Batch)
    assert batch.image.shape == (3, 3, 128, 128) and batch.image.dtype == torch.uint8
    assert batch.target.shape == (3, 128, 128) and batch.target.dtype == torch.int64
    assert batch.weight.shape == (3, 128, 128) and batch.weight.dtype == torch.float32
    assert set(batch.target.unique().tolist()) <= {0, 1, 2}
    assert batch.weight.min() > 0


def test_same_seed_same_batch_other_seed_differs(synthetic_glands) -> None:
    sampler = PatchSampler(*make_pairs(synthetic_glands), SMALL)
    first = sampler.sample(4, torch.Generator().manual_seed(11))
    again = sampler.sample(4, torch.Generator().manual_seed(11))
    other = sampler.sample(4, torch.Generator().manual_seed(12))
    for name in ("image", "target", "weight"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert not torch.equal(first.image, other.image)
    detailed, chosen, params = sampler.sample_with_params(4, torch.Generator().manual_seed(11))
    assert torch.equal(detailed.image, first.image)
    assert len(chosen) == 4 and params.k1.shape == (4,)


def test_images_are_drawn_uniformly(synthetic_glands) -> None:
    sampler = PatchSampler(*make_pairs(synthetic_glands), SamplingConfig(patch_size=48,
                                                                         crop_size=32))
    _, chosen, _ = sampler.sample_with_params(400, torch.Generator().manual_seed(0))
    assert 160 < sum(chosen) < 240  # image 1 about half of the time


def test_prepared_arrays_are_reflect_padded_together(synthetic_glands) -> None:
    image, labels = synthetic_glands
    small_image, small_labels = image[:100, :150], labels[:100, :150]
    padded_image, padded_target, padded_weight = prepare_image(small_image, small_labels, SMALL)
    assert padded_image.shape == (3, 160, 160)
    pad = ((30, 30), (5, 5))
    target = three_class_targets(small_labels, SMALL.contour_width)
    np.testing.assert_array_equal(padded_target, np.pad(target, pad, mode="reflect"))
    np.testing.assert_array_equal(padded_weight, np.pad(unet_weight_map(small_labels), pad,
                                                        mode="reflect"))
    np.testing.assert_array_equal(padded_image.transpose(1, 2, 0),
                                  np.pad(small_image, (*pad, (0, 0)), mode="reflect"))
    # larger dimensions are left alone
    assert prepare_image(image, labels, SMALL)[1].shape == labels.shape


def test_small_images_still_sample(synthetic_glands) -> None:
    image, labels = synthetic_glands
    sampler = PatchSampler([image[:90, :70]], [labels[:90, :70]], SMALL)
    assert sampler.targets[0].shape == (160, 160)
    assert sampler.sample(2, torch.Generator().manual_seed(0)).image.shape == (2, 3, 128, 128)


def test_sampled_geometry_matches_colour_coding(synthetic_glands) -> None:
    """End to end: an image coloured by its own class stays aligned with the sampled target."""
    _, labels = synthetic_glands
    palette = np.array([[230, 210, 225], [60, 40, 160], [20, 200, 40]], np.uint8)
    image = palette[three_class_targets(labels, SMALL.contour_width)]
    config = SamplingConfig(patch_size=160, crop_size=128,
                            augment=AugmentConfig(distort_p=1.0, blur_p=0.0))
    batch = PatchSampler([image], [labels], config).sample(6, torch.Generator().manual_seed(1))
    colours = batch.image.permute(0, 2, 3, 1).reshape(-1, 3).float()
    nearest = torch.cdist(colours, torch.from_numpy(palette).float()).argmin(1)
    assert (nearest.view_as(batch.target) == batch.target).float().mean() > 0.98


def test_worker_processes_prepare_the_same_cache(synthetic_glands) -> None:
    images, labels = make_pairs(synthetic_glands)
    serial = PatchSampler(images, labels, SMALL)
    parallel = PatchSampler(images, labels, SMALL, workers=2)
    for a, b in zip(serial.weights + serial.targets + serial.images,
                    parallel.weights + parallel.targets + parallel.images, strict=True):
        assert torch.equal(a, b)


def test_bad_inputs_are_refused(synthetic_glands) -> None:
    image, labels = synthetic_glands
    with pytest.raises(ValueError, match="label maps"):
        PatchSampler([image], [labels, labels])
    with pytest.raises(ValueError, match="at least one"):
        PatchSampler([], [])
    with pytest.raises(ValueError, match="uint8"):
        PatchSampler([image.astype(np.float32)], [labels])
    with pytest.raises(ValueError, match="differs"):
        PatchSampler([image], [labels[:100]])
    with pytest.raises(ValueError, match="crop_size"):
        SamplingConfig(patch_size=100, crop_size=128)
    with pytest.raises(ValueError, match="batch_size"):
        PatchSampler([image], [labels], SMALL).sample(0, torch.Generator())


def write_folder(root, synthetic_glands, split: str = "train", count: int = 3) -> None:
    image, labels = synthetic_glands
    for index in range(count):
        write_png(root / split / "images" / f"{split}_{index}.png", np.roll(image, 20 * index, 1))
        write_png(root / split / "labels" / f"{split}_{index}.png",
                  np.roll(labels, 20 * index, 1).astype(np.uint8))


def test_preview_from_a_plain_folder(tmp_path, synthetic_glands) -> None:
    write_folder(tmp_path / "data", synthetic_glands)
    out = save_preview(tmp_path / "data", tmp_path / "out" / "preview.png", n=3, patch=200)
    assert out == tmp_path / "out" / "preview.png"
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > 600 and png.height > 700  # 3 rows x 3 panels
    assert sorted(p.name for p in out.parent.iterdir()) == ["preview.png"]  # no temp files left


def test_preview_from_an_imported_folder(tmp_path, synthetic_glands) -> None:
    write_folder(tmp_path, synthetic_glands, split="testA", count=2)
    files = [{"name": f"testA_{i}", "split": "testA", "image": f"testA/images/testA_{i}.png",
              "labels": f"testA/labels/testA_{i}.png"} for i in range(2)]
    from micronet.data.verify import MANIFEST_FORMAT

    (tmp_path / "manifest.json").write_text(json.dumps({"format": MANIFEST_FORMAT,
                                                        "files": files}))
    out = save_preview(tmp_path, tmp_path / "p.png", split="testA", n=2, seed=3, patch=252)
    with Image.open(out) as png:
        assert png.size[0] > 0


def test_preview_missing_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(InputError, match="nowhere: data folder not found"):
        save_preview(tmp_path / "nowhere", tmp_path / "p.png")
    with pytest.raises(InputError, match="train/images"):
        save_preview(tmp_path, tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_sampler_draws_the_cpu_batches(synthetic_glands) -> None:
    images, labels = make_pairs(synthetic_glands)
    cpu = PatchSampler(images, labels, SMALL).sample(8, torch.Generator().manual_seed(4))
    gpu = PatchSampler(images, labels, SMALL, device="cuda").sample(
        8, torch.Generator().manual_seed(4))
    assert gpu.image.device.type == "cuda" and gpu.target.dtype == torch.int64
    assert (cpu.image.int() - gpu.image.cpu().int()).abs().max() <= 1
    assert (cpu.target == gpu.target.cpu()).float().mean() > 0.999
    torch.testing.assert_close(cpu.weight, gpu.weight.cpu(), atol=1e-3, rtol=0)
