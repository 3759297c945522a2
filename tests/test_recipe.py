"""The CPU training recipe's levers: cosine/budget schedule, AdamW, training resolution, stain and
zoom jitter, synthetic glass; and the µm/px round trip of weights trained at another resolution."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fakes import make_synthetic_glands
from micronet.data.appearance import hed_jitter, lay_on_glass
from micronet.data.augment import AugmentConfig, AugmentParams, apply_params, draw_params
from micronet.data.sampling import SamplingConfig, prepare_image
from micronet.data.targets import CONTOUR, three_class_targets
from micronet.infer import Segmenter
from micronet.models.weights_io import load_weights
from micronet.train.config import TrainConfig, apply_overrides
from micronet.train.loop import train
from micronet.train.schedule import budget_steps, cosine_lr


@pytest.mark.parametrize("total,warmup", [(10, 0), (100, 7), (3851, 100), (3, 1)])
def test_cosine_reaches_its_floor_exactly_at_the_last_step(total: int, warmup: int) -> None:
    lrs = [cosine_lr(step, total, 1e-3, 1e-5, warmup) for step in range(total)]
    assert lrs[-1] == pytest.approx(1e-5, abs=1e-12)
    assert lrs[0] == pytest.approx(1e-5 if warmup else 1e-3)  # warm-up starts at lr0/100
    assert max(lrs) == pytest.approx(1e-3)
    after = lrs[warmup:]
    assert all(a >= b for a, b in zip(after, after[1:], strict=False))  # never rises


def test_budget_sizes_steps_from_measured_times() -> None:
    # 600 s left, 2 s a step, a 30 s validation every 60 steps: 2.5 s per step -> 240 more
    assert budget_steps(100, 600.0, 2.0, 30.0, 60) == 340
    assert budget_steps(5, 0.0, 2.0, 0.0, 0) == 6  # always at least one more step


def test_recipe_options_are_validated() -> None:
    bad = apply_overrides(TrainConfig(), [])
    assert not bad.problems()
    with pytest.raises(Exception, match="schedule.lr_schedule"):
        apply_overrides(TrainConfig(), ["schedule.lr_schedule=linear"])
    with pytest.raises(Exception, match="data.glass_p"):
        apply_overrides(TrainConfig(), ["data.glass_p=2"])
    with pytest.raises(Exception, match="schedule.dice_weight"):
        apply_overrides(TrainConfig(), ["schedule.dice_weight=-1"])
    cfg = apply_overrides(TrainConfig(), ["data.mpp=1.24"])
    assert cfg.data.train_mpp == 1.24 and cfg.data.scale == pytest.approx(0.5)


def test_targets_made_at_full_resolution_then_halved_keep_contours() -> None:
    image, labels = make_synthetic_glands(size=200, seed=3)
    img, target, weight = prepare_image(image, labels, SamplingConfig(
        patch_size=100, crop_size=96, scale=0.5))
    assert img.shape == (3, 100, 100) and target.shape == weight.shape == (100, 100)
    full = three_class_targets(labels)
    assert np.array_equal(np.unique(target), np.unique(full))
    # every contour pixel at half size is a contour pixel of the full-size target
    ys, xs = np.nonzero(target == CONTOUR)
    assert (full[2 * ys, 2 * xs] == CONTOUR).all()


def _params(batch: int) -> AugmentParams:
    zero = torch.zeros(batch)
    return AugmentParams(offset=torch.zeros(batch, 2, dtype=torch.long), k1=zero, k2=zero,
                         sigma=zero, dihedral=torch.zeros(batch, dtype=torch.long))


def test_neutral_stain_and_zoom_change_nothing(synthetic_glands) -> None:
    image, labels = synthetic_glands
    img, target, weight = (torch.from_numpy(a)[None] for a in prepare_image(
        image, labels, SamplingConfig(patch_size=256, crop_size=200)))
    plain = apply_params(img, target, weight, _params(1), 200, 0)
    params = _params(1)
    params.zoom = torch.ones(1)
    params.stain = torch.tensor([[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]])
    neutral = apply_params(img, target, weight, params, 200, 0)
    assert torch.equal(plain[1], neutral[1])
    assert (plain[0].int() - neutral[0].int()).abs().max() <= 1  # float round trip
    params.zoom = torch.full((1,), 1.3)
    zoomed = apply_params(img, target, weight, params, 200, 0)
    # magnified about the crop centre: the centre pixel stays, glands get larger
    assert zoomed[1][0, 100, 100] == plain[1][0, 100, 100]
    assert (zoomed[1] > 0).sum() != (plain[1] > 0).sum()


def test_stain_jitter_moves_colours_but_not_white() -> None:
    pixels = torch.tensor([255.0, 120.0, 60.0]).view(1, 3, 1, 1).repeat(2, 1, 4, 4)
    pixels[0, :, 0, 0] = 255.0
    stain = torch.tensor([[[1.1, 0.9, 1.0], [0.0, 0.0, 0.0]], [[1.0] * 3, [0.0] * 3]])
    out = hed_jitter(pixels, stain)
    assert torch.allclose(out[1], pixels[1], atol=0.5)  # identity jitter
    assert torch.allclose(out[0, :, 0, 0], pixels[0, :, 0, 0], atol=0.5)  # white stays white
    assert (out[0, :, 1, 1] - pixels[0, :, 1, 1]).abs().max() > 2


def test_glass_is_pale_background_with_the_smallest_weight() -> None:
    batch, size = 3, 64
    pixels = torch.full((batch, 3, size, size), 100.0)
    target = torch.ones(batch, size, size, dtype=torch.long)
    weight = torch.linspace(1, 5, size * size).view(1, size, size).repeat(batch, 1, 1)
    glass = torch.rand(batch, 12, generator=torch.Generator().manual_seed(0))
    glass[:, 0] = torch.tensor([1.0, 1.0, 0.0])  # third sample: no glass
    glass[:, 2] = 0.5  # edge through the centre: about half the crop
    out, tgt, wgt = lay_on_glass(pixels, target, weight, glass)
    for b in range(2):
        covered = tgt[b] == 0
        assert 0.3 < covered.float().mean() < 0.7
        assert out[b][:, covered].mean() > 190  # pale
        assert torch.all(wgt[b][covered] == weight[b].min())
    assert torch.equal(out[2], pixels[2]) and torch.equal(tgt[2], target[2])


def test_glass_draws_only_when_enabled() -> None:
    gen = torch.Generator().manual_seed(0)
    assert draw_params(2, (64, 64), 32, AugmentConfig(), gen).glass is None
    params = draw_params(50, (64, 64), 32, AugmentConfig(glass_p=0.5), gen)
    assert params.glass is not None and 0 < params.glass[:, 0].sum() < 50


def test_recipe_trains_on_a_budget_and_records_its_resolution(pairs_dir, tmp_path) -> None:
    overrides = {"model.name": "micronet252", "model.width": "0.0625",
                 "data.root": str(pairs_dir), "data.mpp": "1.24", "data.patch_size": "140",
                 "data.crop_size": "252", "data.stain_p": "1", "data.zoom": "0.2",
                 "data.glass_p": "0.5", "data.val_fraction": "0.25",
                 "schedule.dice_weight": "0.5",
                 "schedule.optimizer": "adamw", "schedule.lr_schedule": "cosine",
                 "schedule.warmup_steps": "2", "schedule.budget_min": "0.05",
                 "schedule.steps_per_epoch": "30", "schedule.batch_size": "1",
                 "run.out": str(tmp_path / "run"), "run.device": "cpu", "run.threads": "1",
                 "run.log_every": "1", "run.checkpoint_every": "100"}
    with pytest.raises(Exception, match="patch_size"):  # patch smaller than the crop
        apply_overrides(TrainConfig(), [f"{k}={v}" for k, v in overrides.items()])
    overrides["data.patch_size"] = "260"
    config = apply_overrides(TrainConfig(), [f"{k}={v}" for k, v in overrides.items()])
    result = train(config, progress=False)
    steps = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    last = [r for r in steps if r["type"] == "step"][-1]
    epochs = [r for r in steps if r["type"] == "epoch"]
    assert epochs[-1]["total_steps"] == result.step == last["step"]  # stopped where it planned
    assert last["lr"] == pytest.approx(1e-5)  # the floor, at the last step
    assert math.isfinite(last["loss"]) and 0 <= last["dice"] <= 1  # the Dice term is on
    _, meta = load_weights(result.run_dir / "best.safetensors")
    assert float(meta["mpp"]) == 1.24 and float(meta["input_mpp"]) == 0.62
    seg = Segmenter(model="micronet252", weights=result.run_dir, device="cpu")
    assert (seg.info.mpp, seg.info.input_mpp) == (1.24, 0.62)
    image, _ = make_synthetic_glands(size=280, seed=0)
    assert seg.predict(image, progress=False).labels.shape == image.shape[:2]


def test_half_size_image_with_its_mpp_segments_like_the_native_one() -> None:
    """A model at 1.24 µm/px: the native image (0.62, resampled down) and the same image given
    at half size with mpp 1.24 (used as it is) give the same maps at the working resolution,
    hence labels that agree after the bigger one is brought back to size."""
    torch.manual_seed(0)
    from micronet.models import WeightsCard, create

    model = create("micronet252", width=0.0625)
    seg = Segmenter(model=model, device="cpu", precision="fp32",
                    card=WeightsCard.from_model(model, mpp=1.24, input_mpp=0.62))
    assert (seg.info.mpp, seg.info.input_mpp, seg.info.arch) == (1.24, 0.62, "micronet252")
    image, _ = make_synthetic_glands(size=400, seed=5)
    import cv2

    half = cv2.resize(image, (200, 200), interpolation=cv2.INTER_AREA)
    native = seg.infer(image, progress=False)
    small = seg.infer(half, mpp=1.24, progress=False)
    assert native.factor == pytest.approx(0.5) and small.factor == 1.0
    assert np.array_equal(native.maps.gland, small.maps.gland)
    big = seg.finish(native).labels
    assert big.shape == image.shape[:2]
    up = small.maps.resized(image.shape[:2])
    assert np.array_equal(up.gland, native.maps.resized(image.shape[:2]).gland)


@pytest.mark.parametrize("norm,act", [("none", "relu"), ("batch", "leaky_relu"),
                                      ("group", "relu"), ("instance", "tanh")])
def test_norm_and_activation_options_build_and_train_a_step(norm: str, act: str) -> None:
    from micronet.models import create
    from micronet.train.step import model_input, training_step

    torch.manual_seed(0)
    model = create("micronet252", width=0.0625, norm=norm, act=act).train()
    paper = create("micronet252", width=0.0625)
    conv_keys = {k for k in paper.state_dict() if k.endswith("0.weight")}
    assert conv_keys <= set(model.state_dict())  # convolutions keep their names
    assert (len(model.state_dict()) > len(paper.state_dict())) == (norm != "none")
    image, labels = make_synthetic_glands(size=252, seed=1)
    x = model_input(torch.from_numpy(image).permute(2, 0, 1)[None].repeat(2, 1, 1, 1), False)
    target = torch.from_numpy((labels > 0).astype("int64"))[None].repeat(2, 1, 1)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    loss, _ = training_step(model, optimizer, x, target, torch.ones_like(target, dtype=torch.float),
                            amp=None, aux_weight=1.0)
    assert math.isfinite(float(loss))
    assert all(p.grad is not None for p in model.parameters())
    rebuilt = create("micronet252", width=0.0625, **model.build_kwargs)
    rebuilt.load_state_dict(model.state_dict(), strict=True)  # the recorded settings rebuild it


def test_post_processing_sizes_follow_the_resolution_instances_are_labelled_at(
        tmp_path, monkeypatch) -> None:
    """Sizes are tuned in pixels at the weights' input µm/px (0.62): an image at 0.62 is labelled
    with them as they are, one given at 1.24 and every slide chunk (labelled at the network's
    1.24) with lengths halved and areas quartered (before, slide glands had to be 4× larger)."""
    import dataclasses

    import cv2

    from micronet.infer import PostprocessConfig
    from micronet.infer import segmenter as segmenter_module
    from micronet.infer import slide as slide_module
    from micronet.infer.slide import write_slide

    seg = Segmenter(model="micronet252", width=0.0625, device="cpu", precision="fp32")
    seg.info = dataclasses.replace(seg.info, mpp=1.24, input_mpp=0.62)
    seg.postprocess = PostprocessConfig(min_size=400, contour_growth=8.0, max_hole_size=80)
    assert seg.postprocess_at(0.62) is seg.postprocess
    assert seg.postprocess_at(1.24) == PostprocessConfig(min_size=100, contour_growth=4.0,
                                                         max_hole_size=20)
    seen: list[PostprocessConfig] = []

    def spy(module):
        real = module.label_glands
        monkeypatch.setattr(module, "label_glands",
                            lambda maps, config=None: seen.append(config) or real(maps, config))

    spy(segmenter_module)
    spy(slide_module)
    image, _ = make_synthetic_glands(size=300, seed=2)
    seg.predict(image, progress=False)
    seg.predict(cv2.resize(image, (150, 150), interpolation=cv2.INTER_AREA), mpp=1.24,
                progress=False)
    assert [c.min_size for c in seen] == [400, 100]
    seen.clear()
    seg.predict_slide(write_slide(tmp_path / "s.tif", image, 0.62), progress=False)
    assert seen and {c.min_size for c in seen} == {100}
