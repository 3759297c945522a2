"""Can post-processing split the merged glands? (issue 14; README "Why this run").

    python .../probes/split_merges.py maps.pkl train open 2,4,6,9
    python .../probes/split_merges.py maps.pkl train high 0.5,0.7,0.85

Relabels the cached maps with seeds cut apart by an opening of radius r (``open``) or grown by
watershed from markers above a higher threshold (``high``), grid-searches threshold, growth and
min size for each, and prints the best pooled object F1 and Dice per r (``r 0`` = as shipped).
The grid here is threshold 0 / 0.1 / 0.2, growth 9 / 15, min size 1,000 / 2,000 / 3,000 (the
``high`` figures in the README); the ``open`` figures came from a wider one (threshold 0–0.5,
growth 6 / 9 / 15, min size 100–3,000), with the same best values.
"""

import dataclasses
import json
import pickle
import sys

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.morphology import disk

from micronet.infer import postprocess as P
from micronet.infer.postprocess import ClassMaps, PostprocessConfig
from micronet.metrics.glas import pooled_f1_dice
from micronet.metrics.matching import matching

d = pickle.load(open(sys.argv[1], "rb"))
split = json.load(open("training_runs/cpu_recipe_relu_b4_glass35_115min/split.json"))
val = set(split["val"])
which = sys.argv[2]
keys = [
    k
    for k in d["maps"]
    if (k[0] == "train" and ((k[1] in val) == (which == "val"))) or k[0] == which
]
gts = {
    k: np.array(Image.open(f"data/glas/{k[0]}/labels/{k[1]}.png")).astype(np.int32) for k in keys
}
maps = {k: ClassMaps(*d["maps"][k]) for k in keys}


def label(m, cfg, r, mode):
    seeds = P._seed_mask(m, cfg)
    lab = np.zeros(m.shape, np.int32)
    if r > 0 and mode == "open":
        core = ndi.binary_erosion(seeds, disk(r))
        n = ndi.label(core, output=lab)
        lab = P.expand_labels(lab, r + 1) * seeds
        rest = seeds & (lab == 0)
        extra, ne = ndi.label(rest)
        lab = np.where(extra > 0, extra + n, lab).astype(np.int32)
        # re-number connected pieces: a marker's region may be fine
    elif r > 0 and mode == "high":
        hi = dataclasses.replace(cfg, threshold=r)
        core = P._seed_mask(m, hi)
        n = ndi.label(core, output=lab)
        from skimage.segmentation import watershed

        inter = m.gland.astype(np.int16) - m.contour
        lab = watershed(-inter, lab, mask=seeds).astype(np.int32)
        rest = seeds & (lab == 0)
        extra, ne = ndi.label(rest)
        lab = np.where(extra > 0, extra + n, lab).astype(np.int32)
    else:
        ndi.label(seeds, output=lab)
    if cfg.fill_holes:
        P._fill_holes(lab, cfg.max_hole_size)
    P._grow(lab, m, cfg, 1024)
    return lab


mode = sys.argv[3]
rs = [0] + [float(x) for x in sys.argv[4].split(",")]
res = []
for r in rs:
    for t in [0.0, 0.1, 0.2]:
        for g in [9.0, 15.0]:
            cfg = PostprocessConfig(
                threshold=t, contour_growth=g, foreground_seeds=True, min_size=0
            )
            labs = {
                k: label(maps[k], cfg, r if mode == "open" else (r if r > t else 0), mode)
                for k in keys
            }
            for ms in [1000, 2000, 3000]:
                f1, dice = pooled_f1_dice(
                    [matching(gts[k], P.remove_small(labs[k].copy(), ms)) for k in keys]
                )
                res.append((round(f1, 4), round(dice, 4), r, t, g, ms))
res.sort(reverse=True)
for r in rs:
    best = [x for x in res if x[2] == r][0]
    print("r", r, "best", best)
