"""Mean p_gland and interior evidence of matched vs. unmatched objects (issue 14).

    python .../probes/object_confidence.py maps.pkl

Labels the cached maps with the weights' post-processing and prints, per part, quantiles of each
object's area, mean p_gland and mean max(p_gland - p_contour, 0), for true positives, objects
mostly on background and the other false positives: what led to ``min_confidence``.
"""

import json
import pickle
import sys

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from micronet.infer.postprocess import ClassMaps, label_glands
from micronet.metrics import matching

d = pickle.load(open(sys.argv[1], "rb"))
pp = d["pp"]
split = json.load(open("training_runs/cpu_recipe_relu_b4_glass35_115min/split.json"))
val = set(split["val"])
rows = []
for k, (g, c) in d["maps"].items():
    p = k[0] if k[0] != "train" else ("val" if k[1] in val else "train")
    gt = np.array(Image.open(f"data/glas/{k[0]}/labels/{k[1]}.png")).astype(np.int32)
    lab = label_glands(ClassMaps(g, c), pp)
    m = matching(gt, lab)
    n = lab.max()
    if n == 0:
        continue
    idx = np.arange(1, n + 1)
    gm = ndi.mean(g.astype(float) / 255, lab, idx)
    fm = ndi.mean((g.astype(float) + c) / 255, lab, idx)
    im = ndi.mean(np.clip(g.astype(float) - c, 0, None) / 255, lab, idx)
    on = m.overlap.sum(0) if m.n_gt else np.zeros(n)
    for j in range(n):
        cls = "tp" if m.pred_is_tp[j] else ("bg" if 2 * on[j] <= m.pred_areas[j] else "other")
        rows.append((p, k[1], cls, m.pred_areas[j], gm[j], fm[j], im[j], m.n_gt))
pickle.dump(rows, open(sys.argv[1] + ".objects.pkl", "wb"))
for p in ("train", "testA", "testB"):
    R = [r for r in rows if r[0] == p]
    for cls in ("tp", "bg", "other"):
        a = np.array([r[3:7] for r in R if r[2] == cls], float)
        print(
            p,
            cls,
            len(a),
            f"area med {np.median(a[:, 0]):.0f}",
            "gland mean q10/50 {:.2f} {:.2f}".format(*tuple(np.percentile(a[:, 1], [10, 50]))),
            "interior q10/50 {:.2f} {:.2f}".format(*tuple(np.percentile(a[:, 3], [10, 50]))),
        )
