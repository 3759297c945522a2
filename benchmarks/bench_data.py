"""Is data preparation fast enough? Time per training sample vs one training step.

Data side (one process, torch threads = 1): per-image preparation (3-class target + U-Net weight
map + padding, done once per image and cached by ``PatchSampler``), the cached sampling path
(patch + augmentation + crop from the cached tensors, amortised per sample at batch 1 and 8), and
an uncached path (preparing the image again for every sample). Training side: one forward +
backward + Adam step of ``micronet508`` width 0.125 at batch 1 on a 508x508 input, loss = weighted
cross entropy on the main output plus the three auxiliary outputs, with torch's default threads.

    python benchmarks/bench_data.py                      # GlaS train images from ../shared/glas
    python benchmarks/bench_data.py --device cuda --synthetic 16

Writes ``benchmarks/results/data_vs_train_step.md`` (``..._cuda.md`` on a GPU) unless --out.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from micronet._io import atomic_path
from micronet.data.sampling import PatchSampler, SamplingConfig, prepare_image
from micronet.data.targets import three_class_targets
from micronet.data.weightmap import unet_weight_map
from micronet.models import create, normalize

REPO = Path(__file__).resolve().parents[1]
GLAS_ZIP = REPO.parent / "shared" / "glas" / "warwick_qu_dataset_released_2016_07_08.zip"
RELEASE = "Warwick QU Dataset (Released 2016_07_08)/"


def load_glas(path: Path, count: int) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """The first ``count`` training images and annotations, read straight from the zip."""
    from PIL import Image

    images, labels = [], []
    with zipfile.ZipFile(path) as archive:
        for index in range(1, count + 1):
            raw = archive.read(f"{RELEASE}train_{index}.bmp")
            anno = archive.read(f"{RELEASE}train_{index}_anno.bmp")
            images.append(np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")))
            labels.append(np.asarray(Image.open(io.BytesIO(anno))).astype(np.int32))
    return images, labels, f"GlaS train_1..train_{count} (reconstructed labels)"


def synthetic_glas(count: int) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """GlaS-sized (522x775) images with ~20 elliptical glands, a few touching (no data needed)."""
    from skimage.draw import ellipse

    rng = np.random.default_rng(0)
    images, labels = [], []
    for _ in range(count):
        label = np.zeros((522, 775), np.int32)
        for index in range(1, 21):
            rr, cc = ellipse(rng.uniform(0, 522), rng.uniform(0, 775), rng.uniform(15, 70),
                             rng.uniform(15, 70), shape=label.shape, rotation=rng.uniform(0, 3))
            free = label[rr, cc] == 0
            label[rr[free], cc[free]] = index
        image = np.where(label[..., None] > 0, (150, 60, 140), (235, 200, 225))
        images.append(np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8))
        labels.append(label)
    return images, labels, f"{count} synthetic 775x522 images (20 elliptical glands each)"


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    def run() -> float:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    run()
    return statistics.median(run() for _ in range(repeats))


def train_step_seconds(sampler: PatchSampler, device: torch.device, repeats: int) -> float:
    torch.manual_seed(0)
    model = create("micronet508", width=0.125).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = sampler.sample(1, torch.Generator().manual_seed(0))

    def step() -> None:
        out = model(normalize(batch.image))
        loss = sum((F.cross_entropy(logits, batch.target, reduction="none") * batch.weight).mean()
                   for logits in (out.main, *out.aux))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return timed(step, repeats, device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=8, help="GlaS images to read")
    parser.add_argument("--synthetic", type=int, default=0, help="use N synthetic images instead")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.synthetic:
        images, labels, source = synthetic_glas(args.synthetic)
    elif GLAS_ZIP.exists():
        images, labels, source = load_glas(GLAS_ZIP, args.images)
    else:
        print(f"{GLAS_ZIP} not found; pass --synthetic N", file=sys.stderr)
        return 1
    train_threads = torch.get_num_threads()
    config = SamplingConfig()
    rows: list[tuple[str, float]] = []

    torch.set_num_threads(1)  # the data side gets one thread
    targets = [timed(lambda la=la: three_class_targets(la), 3, device) for la in labels]
    weights = [timed(lambda la=la, t=t: unet_weight_map(la, target=t), 3, device)
               for la, t in zip(labels, map(three_class_targets, labels), strict=True)]
    prepare = [timed(lambda im=im, la=la: prepare_image(im, la, config), 3, device)
               for im, la in zip(images, labels, strict=True)]
    rows += [("3-class target, per image", statistics.mean(targets)),
             ("U-Net weight map, per image", statistics.mean(weights)),
             ("prepare_image (target + weights + padding), per image", statistics.mean(prepare))]
    start = time.perf_counter()
    sampler = PatchSampler(images, labels, config, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    rows.append((f"PatchSampler init, {len(images)} images, per image",
                 (time.perf_counter() - start) / len(images)))
    generator = torch.Generator().manual_seed(0)
    cached_1 = timed(lambda: sampler.sample(1, generator), args.repeats, device)
    cached_8 = timed(lambda: sampler.sample(8, generator), args.repeats, device) / 8
    rows += [("cached sample, batch 1, per sample", cached_1),
             ("cached sample, batch 8, per sample", cached_8)]
    if device.type == "cuda":
        cached_32 = timed(lambda: sampler.sample(32, generator), args.repeats, device) / 32
        rows.append(("cached sample, batch 32, per sample", cached_32))

    def uncached() -> None:
        PatchSampler(images[:1], labels[:1], config, device=device).sample(1, generator)

    uncached_1 = timed(uncached, args.repeats, device)
    rows.append(("uncached sample (prepare image + sample), batch 1", uncached_1))

    torch.set_num_threads(train_threads)
    step = train_step_seconds(sampler, device, args.train_repeats)
    rows.append((f"training step, micronet508 w=0.125, batch 1 ({train_threads} threads)", step))

    command_args = sys.argv[1:] if argv is None else argv
    lines = [
        "# Data preparation vs one training step",
        "",
        f"Command: `python benchmarks/bench_data.py{''.join(' ' + a for a in command_args)}`",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
        + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "")
        + f"; torch {torch.__version__}; device {device}",
        f"Images: {source}. Data side: 1 process, torch threads = 1; medians of "
        f"{args.repeats} runs (training: {args.train_repeats}) after a warm-up.",
        "",
        "| what | ms |",
        "|---|---:|",
        *(f"| {name} | {seconds * 1e3:.1f} |" for name, seconds in rows),
        "",
        f"Cached sample (batch 1) / training step = {cached_1 / step:.4f} "
        f"(a training step lasts {step / cached_1:.1f} cached samples); uncached sample / "
        f"training step = {uncached_1 / step:.4f} ({step / uncached_1:.1f} uncached samples).",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    out = args.out or REPO / "benchmarks" / "results" / f"data_vs_train_step{suffix}.md"
    with atomic_path(out) as tmp:
        tmp.write_text(report, encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
