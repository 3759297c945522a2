"""``micronet bench segment``: speed and peak memory of tiled inference vs a plain tile loop.

Each measurement runs in a fresh (spawned) process so its peak RSS (``ru_maxrss``) is its own.
The *segmenter* row is the full ``Segmenter.predict`` (overlapping tiles, batching, blending,
precision choice, post-processing, measurements). The *plain loop* row runs the same weights on
non-overlapping tiles one at a time in fp32 and takes the arg-max: fewer tiles and no blending
or instances, so it is the floor a naive script would pay, not an equal-output comparison.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
import time
from typing import Any

import numpy as np

__all__ = ["synthetic_image", "run_segment_benchmark", "format_rows"]


def synthetic_image(size: int, seed: int = 0) -> np.ndarray:
    """An H&E-coloured ``(size, size, 3) uint8`` image with purple elliptical 'glands'."""
    import cv2

    rng = np.random.default_rng(seed)
    image = np.empty((size, size, 3), np.uint8)
    image[:] = (235, 200, 225)
    n = max(1, size * size // 40_000)
    for cy, cx, ry, rx, ang in zip(rng.integers(0, size, n), rng.integers(0, size, n),
                                   rng.integers(15, 60, n), rng.integers(15, 60, n),
                                   rng.integers(0, 180, n), strict=True):
        cv2.ellipse(image, (int(cx), int(cy)), (int(rx), int(ry)), int(ang), 0, 360,
                    (150, 60, 140), -1)
    for r in range(0, size, 2048):  # noise in strips: no full-size float temporaries
        block = image[r:r + 2048]
        block[:] = np.clip(block + rng.integers(-8, 9, block.shape), 0, 255).astype(np.uint8)
    return image


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _measure(kind: str, size: int, width: float, batch_size: int, device: str,
             queue: Any) -> None:
    import torch

    from ..models import DEFAULT_ARCH, create, normalize
    from .segmenter import Segmenter

    try:
        torch.manual_seed(0)
        model = create(DEFAULT_ARCH, width=width).eval()
        image = synthetic_image(size)
        base_rss = _peak_rss_mb()
        if kind == "segmenter":
            seg = Segmenter(model, device=device, batch_size=batch_size)
            seg.predict(image[:seg.tile, :seg.tile], progress=False)  # warm-up
            start = time.perf_counter()
            result = seg.predict(image, progress=False)
            seconds = time.perf_counter() - start
            extra = {"glands": result.num_glands, "tiles": len(_spread_tiles(seg, size)),
                     "precision": repr(seg).split("precision=")[1].split(",")[0]}
        else:
            dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                               else ("cpu" if device == "auto" else device))
            model.to(dev)
            t = model.input_size
            n = -(-size // t)
            padded = np.pad(image, ((0, n * t - size), (0, n * t - size), (0, 0)),
                            mode="reflect")
            out = np.empty((n * t, n * t), np.uint8)
            with torch.inference_mode():
                model(normalize(torch.zeros(1, 3, t, t, dtype=torch.uint8, device=dev)))
                start = time.perf_counter()
                for i in range(n):
                    for j in range(n):
                        tile = padded[i * t:(i + 1) * t, j * t:(j + 1) * t]
                        x = torch.from_numpy(np.ascontiguousarray(tile)).to(dev)
                        logits = model(normalize(x.permute(2, 0, 1)[None]))
                        out[i * t:(i + 1) * t, j * t:(j + 1) * t] = \
                            logits.argmax(1)[0].cpu().numpy()
                seconds = time.perf_counter() - start
            extra = {"tiles": n * n, "precision": "fp32"}
        queue.put({"kind": kind, "width": width, "size": size, "seconds": seconds,
                   "mpx_per_s": size * size / 1e6 / seconds, "peak_rss_mb": _peak_rss_mb(),
                   "image_rss_mb": base_rss, **extra})
    except Exception as exc:  # report, don't hang the parent
        queue.put({"kind": kind, "width": width, "error": f"{type(exc).__name__}: {exc}"})


def _spread_tiles(seg: Any, size: int) -> Any:
    from .tiling import TileGrid

    return TileGrid.spread(size, size, seg.tile, seg.overlap)


def run_segment_benchmark(size: int, widths: list[float], batch_size: int = 4,
                          device: str = "auto", baseline: bool = True) -> list[dict[str, Any]]:
    """Measure the segmenter (and the plain loop) for each width, each in its own process."""
    ctx = mp.get_context("spawn")
    rows = []
    for width in widths:
        for kind in ("segmenter", "plain loop") if baseline else ("segmenter",):
            queue = ctx.Queue()
            proc = ctx.Process(target=_measure, args=(kind, size, width, batch_size, device,
                                                      queue))
            proc.start()
            row = queue.get()
            proc.join()
            rows.append(row)
        if baseline and "error" not in rows[-1] and "error" not in rows[-2]:
            rows[-2]["speed_vs_plain"] = rows[-2]["mpx_per_s"] / rows[-1]["mpx_per_s"]
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of benchmark rows."""
    lines = [f"{'width':>7} {'kind':<11} {'size':>6} {'tiles':>6} {'prec':>9} {'s':>8} "
             f"{'MPx/s':>7} {'peak RSS MB':>11} {'vs plain':>8}"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['width']:>7g} {r['kind']:<11} error: {r['error']}")
            continue
        ratio = f"{r['speed_vs_plain']:.2f}x" if "speed_vs_plain" in r else ""
        lines.append(f"{r['width']:>7g} {r['kind']:<11} {r['size']:>6} {r['tiles']:>6} "
                     f"{r['precision']:>9} {r['seconds']:>8.2f} {r['mpx_per_s']:>7.3f} "
                     f"{r['peak_rss_mb']:>11.0f} {ratio:>8}")
    return "\n".join(lines)
