"""Post-processing speed: our seed growth and solidity vs the scikit-image calls they replace.

    python benchmarks/bench_postprocess.py [--size 4000] [--glands 600]

Builds class maps of a synthetic ``size``² image with ``glands`` elliptical glands (blurred
3-class targets, as a network would give), then times ``label_glands`` + ``measure_glands`` with
(a) ``skimage.segmentation.expand_labels`` and ``regionprops`` solidity and (b) this package's
versions, in one run. Both give the same labels; solidity differs by the hull-area definition
(see ``micronet.infer.postprocess.solidity``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage as ndi


def synthetic_maps(size: int, glands: int, seed: int = 0):
    """ClassMaps of ``glands`` random ellipses (GlaS-sized, some touching) on a ``size``² canvas."""
    from skimage.draw import ellipse

    from micronet.data.targets import three_class_targets
    from micronet.infer.postprocess import ClassMaps

    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.int32)
    for i in range(1, glands + 1):
        r, c = rng.integers(40, size - 40, 2)
        rr, cc = ellipse(r, c, rng.integers(25, 70), rng.integers(25, 70), labels.shape,
                         rotation=rng.uniform(0, np.pi))
        labels[rr, cc] = i
    classes = three_class_targets(labels)
    probs = [ndi.gaussian_filter((classes == k).astype(np.float32), 2.0) for k in (1, 2)]
    return ClassMaps(*(np.clip(p * 255 + 0.5, 0, 255).astype(np.uint8) for p in probs))


def run(maps, cfg) -> tuple[float, np.ndarray, list[dict]]:
    from micronet.infer.postprocess import label_glands, measure_glands

    t0 = time.perf_counter()
    labels = label_glands(maps, cfg)
    rows = measure_glands(labels)
    return time.perf_counter() - t0, labels, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=4000)
    ap.add_argument("--glands", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import skimage.segmentation
    from skimage.measure import regionprops_table

    import micronet.infer.postprocess as pp

    maps = synthetic_maps(args.size, args.glands)
    cfg = pp.PostprocessConfig(threshold=0.35, min_size=300, contour_growth=9.0)
    fast = pp.expand_labels, pp.solidity
    slow = (skimage.segmentation.expand_labels,
            lambda labels, ids: regionprops_table(labels, properties=("solidity",))["solidity"])
    times: dict[str, list[float]] = {"skimage": [], "ours": []}
    for _ in range(args.repeats):  # alternate, keep the fastest of each: the machine is noisy
        pp.expand_labels, pp.solidity = slow
        t, labels_sk, rows_sk = run(maps, cfg)
        times["skimage"].append(t)
        pp.expand_labels, pp.solidity = fast
        t, labels_ours, rows_ours = run(maps, cfg)
        times["ours"].append(t)
    t_sk, t_ours = min(times["skimage"]), min(times["ours"])
    assert np.array_equal(labels_sk, labels_ours)
    gap = max((abs(a["solidity"] - b["solidity"]) for a, b in zip(rows_sk, rows_ours,
                                                                    strict=True)), default=0.0)
    mpx = args.size**2 / 1e6
    print(f"{args.size}² px, {len(rows_ours)} glands, best of {args.repeats}: scikit-image "
          f"calls {t_sk:.2f} s "
          f"({mpx / t_sk:.1f} MPx/s), ours {t_ours:.2f} s ({mpx / t_ours:.1f} MPx/s): "
          f"{t_sk / t_ours:.2f}x; labels identical, solidity within {gap:.4f}")


if __name__ == "__main__":
    main()
