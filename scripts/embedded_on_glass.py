"""Score weights on GlaS images laid on synthetic glass (issue 19), tissue mask on and off.

Pooled GlaS object F1 of the images segmented alone; of the same images laid on glass in one
pyramidal slide (``micronet.infer.glass.embed_on_glass``, JPEG TIFF at 0.62 µm/px), segmented
through the slide path and cropped back; and of the first image padded with a pale border. Each
with the tissue mask on (the default) and off (before issue 19). One network pass per image and
canvas is shared by both settings; the slide path runs twice.

    python scripts/embedded_on_glass.py --glas ../shared/glas/warwick_qu_*.zip
    python scripts/embedded_on_glass.py --glas data/glas --weights runs/new --out glass.json
    python scripts/embedded_on_glass.py --glas data/glas --images testA   # all 60 Test A images
    python scripts/embedded_on_glass.py --glas data/glas --variant shrink_um=0  # another mask

``--glas`` is the official release zip or a ``micronet data glas`` import folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from micronet.infer import Segmenter
from micronet.infer.export import rasterize_polygons
from micronet.infer.glass import embed_on_glass
from micronet.infer.postprocess import ClassMaps
from micronet.infer.slide import write_slide
from micronet.infer.tissue import TissueConfig
from micronet.metrics.glas import score_split

SIX = [f"testA_{i}" for i in range(1, 7)]


def read_pairs(glas: Path, names: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(image, labels)`` per name from the release zip or an import folder."""
    from micronet._io import read_labels, read_rgb
    from micronet.data.verify import decode_labels, decode_rgb

    if glas.is_dir():
        return [(read_rgb(glas / n.split("_")[0] / "images" / f"{n}.png"),
                 read_labels(glas / n.split("_")[0] / "labels" / f"{n}.png")) for n in names]
    with zipfile.ZipFile(glas) as z:
        members = {m.rsplit("/", 1)[-1]: m for m in z.namelist()}
        return [(decode_rgb(z.read(members[f"{n}.bmp"]), n),
                 decode_labels(z.read(members[f"{n}_anno.bmp"]), n)) for n in names]


def settings(variants: list[str]) -> dict[str, TissueConfig | None]:
    """Tissue settings by key: ``off``, ``on`` (the defaults) and each ``--variant``
    (``FIELD=VALUE,...`` overriding :class:`TissueConfig`, e.g. ``shrink_um=0``)."""
    out: dict[str, TissueConfig | None] = {"off": None, "on": TissueConfig()}
    for spec in variants:
        fields = dict(item.split("=", 1) for item in spec.split(","))
        out[spec] = dataclasses.replace(TissueConfig(), **{k: float(v) for k, v in fields.items()})
    return out


def both(seg: Segmenter, image: np.ndarray, configs: dict[str, TissueConfig | None]
         ) -> dict[str, np.ndarray]:
    """Labels under each tissue setting, from one network pass."""
    inference = seg.infer(image, mpp=0.62, progress=False)
    out = {}
    for key, config in configs.items():
        seg.tissue = config
        maps = ClassMaps(inference.maps.gland.copy(), inference.maps.contour.copy())
        out[key] = seg.finish(inference._replace(maps=maps)).labels
    return out


def f1(truths: list[np.ndarray], preds: list[np.ndarray]) -> float:
    return round(score_split(list(zip(truths, preds, strict=True))).f1, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glas", type=Path, required=True)
    parser.add_argument("--weights", default="glas")
    parser.add_argument("--images", nargs="+", default=SIX,
                        help="GlaS image names (default: six of Test A), or testA or testB")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--variant", action="append", default=[],
                        help="also score these tissue settings, e.g. shrink_um=0 (repeatable)")
    args = parser.parse_args()
    if args.images in (["testA"], ["testB"]):  # a whole test part
        part = args.images[0]
        args.images = [f"{part}_{i}" for i in range(1, (60 if part == "testA" else 20) + 1)]
    pairs = read_pairs(args.glas, args.images)
    truths = [t for _, t in pairs]
    seg = Segmenter(weights=args.weights, device=args.device)
    configs = settings(args.variant)
    alone = [both(seg, im, configs) for im, _ in pairs]
    glass = embed_on_glass([im for im, _ in pairs], truths, columns=3)
    crops = [(slice(y, y + h), slice(x, x + w)) for y, x, h, w in glass.boxes]
    canvas = both(seg, glass.image, configs)
    result: dict[str, object] = {"weights": args.weights, "images": args.images}
    per_image: dict[str, dict[str, float]] = {name: {} for name in args.images}
    for key in configs:
        result[f"alone_{key}"] = f1(truths, [a[key] for a in alone])
        result[f"canvas_{key}"] = f1(truths, [canvas[key][c] for c in crops])
        for name, truth, a, c in zip(args.images, truths, alone, crops, strict=True):
            per_image[name][f"alone_{key}"] = f1([truth], [a[key]])
            per_image[name][f"canvas_{key}"] = f1([truth], [canvas[key][c]])
    with tempfile.TemporaryDirectory() as tmp:
        path = write_slide(Path(tmp) / "glass.tif", glass.image, 0.62)
        for key, config in configs.items():
            seg.tissue = config
            slide = seg.predict_slide(path, progress=False)
            labels = rasterize_polygons(slide.polygons, glass.image.shape[:2])
            result[f"slide_{key}"] = f1(truths, [labels[c] for c in crops])
            for name, truth, c in zip(args.images, truths, crops, strict=True):
                per_image[name][f"slide_{key}"] = f1([truth], [labels[c]])
            result[f"slide_{key}_glands"] = slide.num_glands
            result[f"slide_{key}_suspect"] = sum(g["suspect"] for g in slide.glands)
    bordered = embed_on_glass([pairs[0][0]], gap=200)
    (y, x, h, w), = bordered.boxes
    padded = both(seg, bordered.image, configs)
    for key in configs:
        labels = padded[key]
        ids, counts = np.unique(labels[labels > 0], return_counts=True)
        result[f"border_{key}"] = f1(truths[:1], [labels[y:y + h, x:x + w]])
        result[f"border_{key}_largest_fraction"] = round(
            float(counts.max() / labels.size) if len(ids) else 0.0, 4)
    result["border_image"] = args.images[0]
    result["per_image"] = per_image  # pooled scores move by a gland or two: see which
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
