"""`micronet segment` over many images: network pass overlapped with finishing vs one by one.

    python benchmarks/bench_pipeline.py [--copies 3] [--device auto]

Segments the bundled GlaS sample tiles (``copies`` times each) into all four outputs twice in
one run: (a) a plain loop, read → ``Segmenter.predict`` → export, one image at a time, and
(b) ``micronet.infer.batch.segment_files``, where post-processing and export of an image run in
a worker thread while the next image is inferred, with the shipped width-0.25 weights. Labels
must be identical. On a CPU the network pass takes ~95 % of the time and both use the same
cores, so expect no gain there; the overlap is for GPUs, where the network pass is short.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def plain_loop(files, out: Path, segmenter, formats) -> None:
    from micronet._io import read_rgb
    from micronet.infer.export import export_segmentation

    for path in files:
        image = read_rgb(path)
        export_segmentation(segmenter.predict(image, progress=False), image, out, path.stem,
                            formats)


def main() -> None:
    import torch

    from micronet._console import make_progress
    from micronet._io import read_labels
    from micronet.data.bundled import list_samples, sample_paths
    from micronet.infer import Segmenter
    from micronet.infer.batch import segment_files

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    formats = ("labels", "overlay", "geojson", "csv")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for k in range(args.copies):
            for name in list_samples():
                shutil.copy(sample_paths(name)[0], src / f"{name}_{k}.png")
        files = sorted(src.iterdir())
        models = {"shipped w0.25": Segmenter.from_pretrained("glas", device=args.device)}
        print(f"{len(files)} GlaS tiles (about 775x522 px), outputs {','.join(formats)}, "
              f"torch threads {torch.get_num_threads()}")
        print("| model | device | one by one (s/image) | pipelined (s/image) | speed-up |")
        print("|---|---|---:|---:|---:|")
        for k, (label, seg) in enumerate(models.items()):
            seg.predict(np.zeros((600, 600, 3), np.uint8), progress=False)  # warm-up
            plain, piped = Path(tmp) / f"plain_{k}", Path(tmp) / f"piped_{k}"
            plain.mkdir()
            start = time.perf_counter()
            plain_loop(files, plain, seg, formats)
            t_plain = time.perf_counter() - start
            start = time.perf_counter()
            with make_progress(False) as progress, contextlib.redirect_stdout(io.StringIO()):
                errors = segment_files(files, piped, seg, formats, None, True, progress)
            t_piped = time.perf_counter() - start
            assert not errors, errors
            for f in files:
                name = f"{f.stem}_labels.png"
                assert np.array_equal(read_labels(plain / name), read_labels(piped / name)), name
            n = len(files)
            print(f"| {label} | {seg.device} | {t_plain / n:.3f} | {t_piped / n:.3f} | "
                  f"{t_plain / t_piped:.2f}x |")


if __name__ == "__main__":
    main()
