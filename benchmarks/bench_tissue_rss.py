"""Peak RAM of `segment` on a 10,000 x 10,000 image full of glands, tissue mask on (issue 19).

    python benchmarks/bench_tissue_rss.py [--size 10000] [--no-tissue]

The image is a mosaic of the four bundled GlaS sample tiles (thousands of glands). The network is
a stand-in that calls dark (haematoxylin-rich) pixels gland, so the run costs minutes on a CPU
and measures what the issue asks about: blending, tissue detection and masking, labelling,
measurement and export of thousands of glands. Real weights add their own activations (one
batch of tiles) on top. Prints the gland count, the time and the process's peak RSS
(ru_maxrss), measured in one run.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np
import torch
from torch import nn

from micronet.data.bundled import list_samples, load_sample
from micronet.infer import Segmenter
from micronet.infer.export import export_segmentation


class DarkGlands(nn.Module):
    """Gland where the green channel is dark (nuclei-rich epithelium), contour at its rim."""

    input_size, num_classes = 508, 3

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dark = nn.functional.avg_pool2d(((x[:, 1:2] + 1) * 127.5 < 120).float(), 9, 1, 4)
        gland = (dark > 0.5).float()
        interior = -nn.functional.max_pool2d(-gland, 7, 1, 3)
        return torch.cat([1 - gland, interior, gland - interior], 1) * 20 - 10 + self.offset


def mosaic(size: int) -> np.ndarray:
    tiles = [load_sample(name)[0] for name in list_samples()]
    h, w = tiles[0].shape[:2]
    rows = [np.concatenate([tiles[(r + c) % 4][:h, :w] for c in range(-(-size // w))], 1)
            for r in range(-(-size // h))]
    return np.ascontiguousarray(np.concatenate(rows, 0)[:size, :size])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--no-tissue", action="store_true")
    args = ap.parse_args()
    image = mosaic(args.size)
    seg = Segmenter(DarkGlands(), device="cpu", precision="fp32", tissue=not args.no_tissue,
                    postprocess={"min_size": 200})
    t0 = time.perf_counter()
    result = seg.predict(image, mpp=0.62, progress=False)
    with tempfile.TemporaryDirectory() as out:
        export_segmentation(result, image, out, "mosaic", ["labels", "csv"])
    seconds = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    tissue = "off" if result.tissue is None else f"{result.tissue.fraction:.1%} tissue"
    print(f"{args.size}x{args.size} GlaS mosaic, tissue mask {tissue}: {result.num_glands} "
          f"glands, {sum(g['suspect'] for g in result.glands)} suspect, {seconds:.0f} s, "
          f"peak RSS {peak_gib:.2f} GiB (image {image.nbytes / 2**30:.2f} GiB)")


if __name__ == "__main__":
    main()
