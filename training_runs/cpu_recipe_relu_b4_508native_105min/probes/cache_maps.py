"""Cache the labelling maps of every GlaS image for the post-processing probes (issue 14).

    python training_runs/cpu_recipe_relu_b4_508native_105min/probes/cache_maps.py glas maps.pkl

(run from the repository root with ``data/glas`` imported; WEIGHTS may be a run folder).
Writes ``{"pp": the weights' post-processing, "maps": {(split, name): (gland, contour)}}``.
"""

import glob
import pickle
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from micronet.infer import Segmenter

w = sys.argv[1]
out = sys.argv[2]
s = Segmenter(weights=w, device="cpu")
res = {}
for lab in sorted(glob.glob("data/glas/train/labels/*")) + sorted(
    glob.glob("data/glas/test*/labels/*")
):
    stem = Path(lab).stem.replace("_anno", "").replace("_labels", "")
    split = Path(lab).parent.parent.name
    img = np.array(
        Image.open(next(iter(glob.glob(f"data/glas/{split}/images/{stem}.*")))).convert("RGB")
    )
    inf = s.infer(img, progress=False)
    maps, _ = s.labelling_maps(inf)
    res[(split, stem)] = (maps.gland.copy(), maps.contour.copy())
pickle.dump({"pp": s.postprocess, "maps": res}, open(out, "wb"))
