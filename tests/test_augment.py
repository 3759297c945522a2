"""Torch augmentation: one geometry for image/target/weights, distortion, blur, dihedral group."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from micronet.data.augment import (
    AugmentConfig,
    AugmentParams,
    apply_params,
    augment_patches,
    dihedral,
    dihedral_inverse,
    draw_params,
    gaussian_blur,
    radial_grid,
)
from micronet.data.targets import three_class_targets

PALETTE = torch.tensor([[230, 210, 225], [60, 40, 160], [20, 200, 40]], dtype=torch.float32)


def colour_coded_batch(synthetic_glands, batch: int = 4):
    """Patches whose colour and weight both encode the class, so geometry errors show up."""
    _, labels = synthetic_glands
    target = torch.from_numpy(three_class_targets(labels).astype(np.int64))
    image = PALETTE[target].permute(2, 0, 1).to(torch.uint8)
    weight = target.float() * 3 + 1
    return (image.expand(batch, -1, -1, -1).contiguous(), target.expand(batch, -1, -1).contiguous(),
            weight.expand(batch, -1, -1).contiguous())


def identity_params(batch: int, offset=(0, 0)) -> AugmentParams:
    zeros = torch.zeros(batch)
    return AugmentParams(offset=torch.tensor([offset] * batch), k1=zeros, k2=zeros, sigma=zeros,
                         dihedral=torch.zeros(batch, dtype=torch.long))


def test_identity_params_give_a_plain_crop(synthetic_glands) -> None:
    image, target, weight = colour_coded_batch(synthetic_glands, 2)
    out_image, out_target, out_weight = apply_params(image, target, weight,
                                                     identity_params(2, (7, 21)), 200, 6)
    assert torch.equal(out_image, image[:, :, 7:207, 21:221])
    assert torch.equal(out_target, target[:, 7:207, 21:221])
    torch.testing.assert_close(out_weight, weight[:, 7:207, 21:221], atol=1e-4, rtol=0)


def test_zero_distortion_grid_is_the_identity_grid() -> None:
    grid = radial_grid((64, 64), 64, torch.zeros(1, 2), torch.zeros(1), torch.zeros(1))
    identity = F.affine_grid(torch.eye(2, 3)[None], [1, 1, 64, 64], align_corners=False)
    torch.testing.assert_close(grid, identity, atol=1e-6, rtol=0)


def blob_centroid(image: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(image.shape[-2]), torch.arange(image.shape[-1]),
                            indexing="ij")
    mass = image.float()
    return torch.stack([(ys * mass).sum(), (xs * mass).sum()]) / mass.sum()


@pytest.mark.parametrize("k1, k2, inward", [(-0.12, 0.0, True), (0.12, 0.0, False)])
def test_barrel_pulls_in_and_pincushion_pushes_out(k1: float, k2: float, inward: bool) -> None:
    size = 201
    centre = (size - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    source = (150.0, 160.0)  # a small blob off-centre
    blob = torch.exp(-((ys - source[0]) ** 2 + (xs - source[1]) ** 2) / (2 * 2.0**2))
    grid = radial_grid((size, size), size, torch.zeros(1, 2), torch.tensor([k1]),
                       torch.tensor([k2]))
    warped = F.grid_sample(blob[None, None], grid, align_corners=False)[0, 0]
    found = blob_centroid(warped)
    r_u = math.hypot(source[0] - centre, source[1] - centre) / (math.hypot(size, size) / 2)
    r_d = r_u * (1 + k1 * r_u**2 + k2 * r_u**4)  # the lens model: where the blob should appear
    expected = centre + (torch.tensor(source) - centre) * (r_d / r_u)
    torch.testing.assert_close(found, expected, atol=0.3, rtol=0)
    moved_in = math.dist(found.tolist(), (centre, centre)) < math.dist(source, (centre, centre))
    assert moved_in == inward


@pytest.mark.parametrize("k1, k2", [(-0.12, 0.0), (0.12, 0.0), (-0.12, 0.2), (-0.05, 0.08)])
def test_newton_inverse_solves_the_lens_model(k1: float, k2: float) -> None:
    size, margin = 120, 6
    grid = radial_grid((size, size), size + 2 * margin, torch.full((1, 2), -margin),
                       torch.tensor([k1]), torch.tensor([k2]))
    scale = math.hypot(size, size) / 2
    src = ((grid + 1) * size - 1) / 2 - (size - 1) / 2  # source offsets from the centre, pixels
    steps = torch.arange(-margin, size + margin, dtype=torch.float32) - (size - 1) / 2
    out_y, out_x = torch.meshgrid(steps, steps, indexing="ij")
    r_u = src.norm(dim=-1)[0] / scale
    r_d = torch.sqrt(out_x**2 + out_y**2) / scale
    torch.testing.assert_close(r_u * (1 + k1 * r_u**2 + k2 * r_u**4), r_d, atol=1e-5, rtol=0)


def test_dihedral_round_trips_and_has_eight_distinct_elements() -> None:
    x = torch.arange(2 * 5 * 5).view(2, 5, 5)
    results = set()
    for element in range(8):
        moved = dihedral(x, element)
        assert torch.equal(dihedral_inverse(moved, element), x)
        results.add(tuple(moved.flatten().tolist()))
    assert len(results) == 8


def test_blur_preserves_mean_and_constants() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, 3, 64, 64, generator=generator) * 255
    sigma = torch.tensor([0.0, 0.7, 2.0])
    blurred = gaussian_blur(image, sigma, 6)
    assert torch.equal(blurred[0], image[0])  # sigma 0 leaves the sample untouched
    torch.testing.assert_close(blurred.mean((1, 2, 3)), image.mean((1, 2, 3)), atol=0.5, rtol=0)
    assert blurred[2].std() < blurred[1].std() < image[1].std()
    constant = torch.full((2, 3, 40, 40), 77.0)
    torch.testing.assert_close(gaussian_blur(constant, torch.tensor([0.5, 2.0]), 6), constant)
    valid = gaussian_blur(image, sigma, 6, valid=True)
    assert valid.shape == (3, 3, 52, 52)
    torch.testing.assert_close(valid, blurred[:, :, 6:-6, 6:-6], atol=1e-3, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_geometry_moves_image_target_and_weight_together(synthetic_glands, seed: int) -> None:
    image, target, weight = colour_coded_batch(synthetic_glands, 6)
    config = AugmentConfig(distort_p=1.0, blur_p=0.0)
    out_image, out_target, out_weight = augment_patches(
        image, target, weight, 200, config, torch.Generator().manual_seed(seed))
    colours = out_image.permute(0, 2, 3, 1).float()
    nearest = torch.cdist(colours.reshape(-1, 3), PALETTE).argmin(1).view_as(out_target)
    assert (nearest == out_target).float().mean() > 0.98  # only boundary pixels may disagree
    level = ((out_weight - 1) / 3).round()  # bilinear weights: nearest level, as for the colours
    assert (level == out_target).float().mean() > 0.98
    assert (out_image != image[:, :, :200, :200]).any()  # it did transform something


def test_blur_changes_the_image_only(synthetic_glands) -> None:
    image, target, weight = colour_coded_batch(synthetic_glands, 2)
    params = identity_params(2, (10, 10))
    params.sigma = torch.tensor([0.0, 2.0])
    out_image, out_target, out_weight = apply_params(image, target, weight, params, 200, 6)
    assert torch.equal(out_image[0], image[0, :, 10:210, 10:210])
    assert not torch.equal(out_image[1], image[1, :, 10:210, 10:210])
    assert torch.equal(out_target, target[:, 10:210, 10:210])


def test_outputs_are_reproducible_and_typed(synthetic_glands) -> None:
    image, target, weight = colour_coded_batch(synthetic_glands, 4)
    config = AugmentConfig()
    run = lambda seed: augment_patches(image, target, weight, 128, config,  # noqa: E731
                                       torch.Generator().manual_seed(seed))
    first, again, other = run(3), run(3), run(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    out_image, out_target, out_weight = first
    assert out_image.shape == (4, 3, 128, 128) and out_image.dtype == torch.uint8
    assert out_target.shape == (4, 128, 128) and out_target.dtype == torch.int64
    assert out_weight.shape == (4, 128, 128) and out_weight.dtype == torch.float32
    assert set(out_target.unique().tolist()) <= {0, 1, 2}


def test_draw_params_ranges() -> None:
    config = AugmentConfig(distort_p=0.5, blur_p=0.5)
    params = draw_params(400, (600, 600), 508, config, torch.Generator().manual_seed(0))
    assert params.offset.min() >= 0 and params.offset.max() <= 92
    distorted = (params.k1 != 0).float().mean()
    assert 0.4 < distorted < 0.6
    blurred = params.sigma[params.sigma > 0]
    assert blurred.min() >= 0.2 and blurred.max() <= 2.0
    assert set(params.dihedral.tolist()) == set(range(8))
    mustache = params.k2 != 0
    assert (params.k1[mustache] < 0).all() and (params.k2[mustache] > 0).all()
    fixed = draw_params(50, (600, 600), 508, AugmentConfig(rotate_flip=False),
                        torch.Generator().manual_seed(0))
    assert (fixed.dihedral == 0).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"blur_p": 1.5}, "blur_p"),
    ({"barrel_k1": (-0.01, -0.1)}, "reversed"),
    ({"barrel_k1": (-0.5, -0.1)}, "folds"),
    ({"blur_sigma": (0.0, 2.0)}, "positive"),
])
def test_bad_config_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AugmentConfig(**kwargs)


def test_crop_larger_than_patch_is_refused() -> None:
    with pytest.raises(ValueError, match="larger than the patch"):
        draw_params(1, (100, 100), 101, AugmentConfig(), torch.Generator())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(synthetic_glands) -> None:
    image, target, weight = colour_coded_batch(synthetic_glands, 8)
    config = AugmentConfig(distort_p=1.0, blur_p=1.0)
    cpu = augment_patches(image, target, weight, 200, config, torch.Generator().manual_seed(5))
    gpu = augment_patches(image.cuda(), target.cuda(), weight.cuda(), 200, config,
                          torch.Generator().manual_seed(5))
    assert all(t.device.type == "cuda" for t in gpu)
    assert (cpu[0].int() - gpu[0].cpu().int()).abs().max() <= 1
    assert (cpu[1] == gpu[1].cpu()).float().mean() > 0.999
    torch.testing.assert_close(cpu[2], gpu[2].cpu(), atol=1e-3, rtol=0)
