"""Hypothesis strategies for instance label images, keyword-bounded (like xarray.testing).

Label maps are painted from random rectangles and ellipses with random, non-consecutive ids, so
they include touching objects, objects split in parts by later paint, objects painted over
entirely, and empty images. Predictions are either drawn independently or derived from the
ground truth (shifted, objects dropped, merged or split, spurious blobs), so matched, partly
matched and unmatched objects all occur.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

__all__ = ["shapes", "label_images", "label_image_pairs", "relabel"]


def shapes(*, min_side: int = 1, max_side: int = 32) -> st.SearchStrategy[tuple[int, int]]:
    """(H, W) image shapes with sides in ``[min_side, max_side]``."""
    side = st.integers(min_side, max_side)
    return st.tuples(side, side)


@st.composite
def label_images(draw: st.DrawFn, *, shape: tuple[int, int] | None = None, min_side: int = 1,
                 max_side: int = 32, max_objects: int = 6, max_id: int = 1000) -> np.ndarray:
    """(H, W) int32 instance maps painted from up to ``max_objects`` boxes, ellipses and rings
    (ellipses with a hole) with random ids."""
    h, w = shape if shape is not None else draw(shapes(min_side=min_side, max_side=max_side))
    labels = np.zeros((h, w), np.int32)
    n = draw(st.integers(0, max_objects))
    ids = draw(st.lists(st.integers(1, max_id), min_size=n, max_size=n, unique=True))
    rows, cols = np.mgrid[:h, :w]
    for obj_id in ids:
        r0, c0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        r1, c1 = draw(st.integers(r0, h - 1)), draw(st.integers(c0, w - 1))
        kind = draw(st.sampled_from(["box", "ellipse", "ring"]))
        if kind == "box":
            mask = (rows >= r0) & (rows <= r1) & (cols >= c0) & (cols <= c1)
        else:
            cr, cc = (r0 + r1) / 2, (c0 + c1) / 2
            rr, rc = (r1 - r0) / 2 + 0.5, (c1 - c0) / 2 + 0.5
            dist = ((rows - cr) / rr) ** 2 + ((cols - cc) / rc) ** 2
            # A ring is a gland with its lumen left out, as predictions often have.
            mask = (dist <= 1) & (dist > 0.3 if kind == "ring" else True)
        labels[mask] = obj_id
    return labels


def relabel(labels: np.ndarray, rng: np.random.Generator, max_id: int = 60_000) -> np.ndarray:
    """The same objects under a random injective renumbering of the non-zero ids."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    new = rng.choice(np.arange(1, max_id + 1), size=ids.size, replace=False)
    lut = dict(zip(ids.tolist(), new.tolist(), strict=True))
    out = np.zeros_like(labels)
    for old, nid in lut.items():
        out[labels == old] = nid
    return out


@st.composite
def _perturbed(draw: st.DrawFn, gt: np.ndarray, max_objects: int) -> np.ndarray:
    pred = gt.copy()
    h, w = gt.shape
    ids = [int(i) for i in np.unique(gt) if i]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["shift", "drop", "merge", "split", "blob", "noise"]))
        if kind == "shift":
            dr, dc = draw(st.integers(-3, 3)), draw(st.integers(-3, 3))
            shifted = np.zeros_like(pred)  # no wrap-around, unlike np.roll
            src = pred[max(0, -dr):h - max(0, dr), max(0, -dc):w - max(0, dc)]
            r, c = max(0, dr), max(0, dc)
            shifted[r:r + src.shape[0], c:c + src.shape[1]] = src
            pred = shifted
        elif kind == "drop" and ids:
            pred[pred == draw(st.sampled_from(ids))] = 0
        elif kind == "merge" and len(ids) >= 2:
            a, b = draw(st.lists(st.sampled_from(ids), min_size=2, max_size=2, unique=True))
            pred[pred == b] = a
        elif kind == "split" and ids:
            target = draw(st.sampled_from(ids))
            cut = draw(st.integers(0, w))
            pred[(pred == target) & (np.arange(w)[None, :] >= cut)] = 5000 + target
        elif kind == "blob":
            blob = draw(label_images(shape=(h, w), max_objects=max(1, max_objects // 2)))
            pred = np.where(blob > 0, blob + 10_000, pred)
        elif kind == "noise":  # salt: erase random pixels, leaving ragged, partly split objects
            noise = np.random.default_rng(draw(st.integers(0, 2**16)))
            pred = np.where(noise.random((h, w)) < 0.2, 0, pred)
    return pred.astype(np.int32)


@st.composite
def label_image_pairs(draw: st.DrawFn, *, min_side: int = 1, max_side: int = 32,
                      max_objects: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """(gt, pred) int32 maps of one shape; pred is independent or a perturbed copy of gt."""
    shape = draw(shapes(min_side=min_side, max_side=max_side))
    gt = draw(label_images(shape=shape, max_objects=max_objects))
    if draw(st.booleans()):
        pred = draw(label_images(shape=shape, max_objects=max_objects))
    else:
        pred = draw(_perturbed(gt, max_objects))
    return gt, pred
