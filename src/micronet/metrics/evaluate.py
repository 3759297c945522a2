"""Score folders of predictions (or a model) against ground truth and write the report.

File pairing rule. Every image file of a folder (``micronet.data.folders.IMAGE_SUFFIXES``) gets a
*key*: its stem, minus one trailing label suffix (``_anno``, ``_labels``, ``_label``,
``_instances``, ``_mask``, ``_gt``, ``_pred``: ``micronet.data.folders.label_key``). If some files
of a folder carry such a suffix, only those are label maps and the others are ignored (in a
ground-truth folder they are the RGB images, used for the overlay figure; in a prediction folder,
e.g. overlays written next to the labels). So ``testA_1_anno.bmp`` pairs with ``testA_1.png`` or
``testA_1_labels.png``. Two label files with the same key, a ground-truth file without a prediction
and a prediction without ground truth are errors. With splits, images are selected by key prefix
``<split>_`` (GlaS names) and predictions of unselected splits are ignored.

GlaS folders (``--data``): the official release layout (``testA_1.bmp`` + ``testA_1_anno.bmp``
in one folder, or that folder's parent as unpacked from the zip), or a folder written by
``micronet data glas`` (``<split>/labels/*.png``, ``<split>/images/*.png``, ``manifest.json``,
whose label origin sets the dataset label).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from .._console import track
from .._io import read_labels, read_rgb
from ..data.folders import label_key, list_images, natural_key
from ..errors import InputError, MicronetError
from .glas import ImageScores, SplitScores, pool_scores, score_image
from .report import DEFAULT_DATASET_LABEL, RECONSTRUCTED_LABEL, Example, provenance, write_report

__all__ = ["ImagePair", "ImageSegmenter", "label_key", "find_pairs", "glas_pairs",
           "attach_predictions", "evaluate_folders", "evaluate_model", "DEFAULT_SPLITS"]

DEFAULT_SPLITS = ("testA", "testB")


class Labelled(Protocol):
    """A segmentation result: at least its ``(H, W)`` instance labels (0 = background)."""

    @property
    def labels(self) -> np.ndarray:
        """Gland instance ids."""
        ...


class ImageSegmenter(Protocol):
    """What :func:`evaluate_model` needs: ``predict(image).labels``
    (:class:`micronet.infer.Segmenter` is one)."""

    def predict(self, image: np.ndarray) -> Labelled:
        """Segment an ``(H, W, 3) uint8`` RGB image."""
        ...


ALL_IMAGES = "all"
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ImagePair:
    """One image to score: its key, split, ground truth, and prediction and/or RGB image."""

    key: str
    split: str
    gt_path: Path
    pred_path: Path | None = None
    image_path: Path | None = None

    def path(self, role: Literal["pred", "image"]) -> Path:
        """The prediction or RGB image file; ``MicronetError`` when the pair has none."""
        path = self.pred_path if role == "pred" else self.image_path
        if path is None:
            what = "prediction" if role == "pred" else "RGB image"
            raise MicronetError(f"{self.gt_path}: no {what} for image {self.key!r}")
        return path


def _by_key(files: Sequence[Path], role: str, keyed: bool) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in files:
        key = label_key(path)[0] if keyed else path.stem
        if key in out:
            raise MicronetError(f"{out[key]} and {path}: two {role} files for image {key!r}")
        out[key] = path
    return out


def scan_folder(folder: Path, role: str) -> tuple[dict[str, Path], dict[str, Path]]:
    """Label files and other image files of ``folder``, each keyed as the module doc says."""
    if not folder.is_dir():
        raise MicronetError(f"{folder}: {role} folder not found")
    files = list_images(folder)
    tagged = [p for p in files if label_key(p)[1]]
    if not tagged:
        return _by_key(files, role, keyed=False), {}
    return (_by_key(tagged, role, keyed=True),
            _by_key([p for p in files if not label_key(p)[1]], "image", keyed=False))


def _in_split(key: str, splits: Sequence[str]) -> str | None:
    return next((s for s in splits if key.startswith(f"{s}_")), None)


def find_pairs(gt_dir: PathLike, images_dir: PathLike | None = None,
               splits: Sequence[str] | None = None) -> list[ImagePair]:
    """Ground-truth files of a flat folder, by split (key prefix), with their RGB images if any."""
    gt_dir = Path(gt_dir)
    labels, others = scan_folder(gt_dir, "ground-truth")
    images = scan_folder(Path(images_dir), "image")[0] if images_dir is not None else others
    pairs = []
    for key, path in labels.items():
        split = ALL_IMAGES if not splits else _in_split(key, splits)
        if split is not None:
            pairs.append(ImagePair(key, split, path, image_path=images.get(key)))
    for split in splits or [ALL_IMAGES]:
        if not any(p.split == split for p in pairs):
            what = f"named {split}_*" if splits else "(images)"
            raise MicronetError(f"{gt_dir}: no ground-truth label files {what}")
    order = {s: i for i, s in enumerate(splits or [ALL_IMAGES])}
    return sorted(pairs, key=lambda p: (order[p.split], natural_key(p.key)))


def glas_pairs(data_dir: PathLike, splits: Sequence[str] | None = None
               ) -> tuple[list[ImagePair], str | None]:
    """Ground truth and images of a GlaS folder (official or imported layout, see module doc).

    Returns:
        The pairs, and the dataset label implied by an import manifest (None without one).
    """
    root = Path(data_dir)
    splits = list(splits or DEFAULT_SPLITS)
    if root.is_file():
        raise MicronetError(f"{root}: expected a folder; unpack the release or import it first "
                            f"(`micronet data glas --source {root} --dest DIR`)")
    if not root.is_dir():
        raise MicronetError(f"{root}: GlaS folder not found")
    if (root / "manifest.json").is_file() or any((root / s / "labels").is_dir() for s in splits):
        pairs = []
        for split in splits:
            if not (root / split / "labels").is_dir():
                raise MicronetError(f"{root}: no {split}/labels folder in this GlaS import")
            images = root / split / "images"
            pairs += [replace(p, split=split) for p in find_pairs(
                root / split / "labels", images if images.is_dir() else None)]
        return pairs, _manifest_label(root / "manifest.json")
    folder = root
    if not any(root.glob("*_anno.*")):
        inner = [d for d in root.iterdir() if d.is_dir() and any(d.glob("*_anno.*"))]
        if len(inner) != 1:
            raise MicronetError(f"{root}: not a GlaS folder (no *_anno.bmp files, no import)")
        folder = inner[0]
    return find_pairs(folder, splits=splits), None


def _manifest_label(path: Path) -> str | None:
    try:
        origin = json.loads(path.read_text(encoding="utf-8")).get("labels_origin", "")
    except (OSError, ValueError, AttributeError):
        return None
    return RECONSTRUCTED_LABEL if origin == "reconstructed" else DEFAULT_DATASET_LABEL


def attach_predictions(pairs: Sequence[ImagePair], pred_dir: PathLike,
                       splits: Sequence[str] | None = None) -> list[ImagePair]:
    """Give every ground-truth pair its prediction file from ``pred_dir`` (matched by key).

    Raises:
        MicronetError: a ground-truth image without prediction, or a prediction (of a selected
            split) without ground truth; the message names the files.
    """
    pred_dir = Path(pred_dir)
    preds = scan_folder(pred_dir, "prediction")[0]
    missing = [p for p in pairs if p.key not in preds]
    if missing:
        names = ", ".join(p.gt_path.name for p in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise MicronetError(f"{pred_dir}: no prediction for ground truth {names}{more} "
                            f"(expected e.g. {missing[0].key}.png or {missing[0].key}_labels.png)")
    known = {p.key for p in pairs}
    extra = [path for key, path in preds.items()
             if key not in known and (not splits or _in_split(key, splits))]
    if extra:
        raise MicronetError(f"{extra[0]}: prediction without ground truth"
                            + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    return [replace(p, pred_path=preds[p.key]) for p in pairs]


def _check_prediction(pred: np.ndarray, gt: np.ndarray, source: str, gt_path: Path) -> np.ndarray:
    if pred.ndim != 2 or not (np.issubdtype(pred.dtype, np.integer) or pred.dtype == bool):
        raise InputError(f"{source}: shape {pred.shape} dtype {pred.dtype} is not an integer "
                         "label map")
    if pred.shape != gt.shape:
        raise InputError(f"{source}: size {pred.shape[1]}x{pred.shape[0]} differs from its "
                         f"ground truth {gt_path} ({gt.shape[1]}x{gt.shape[0]})")
    if pred.size and pred.min() < 0:
        raise InputError(f"{source}: negative label ids")
    return pred


def _score_pairs(pairs: Sequence[ImagePair], predict: Callable[[ImagePair, np.ndarray], np.ndarray],
                 description: str) -> tuple[dict[str, SplitScores], dict[str, list[Example]]]:
    """Score every pair; keep the best and worst prediction per split for the figure."""
    per_split: dict[str, list[ImageScores]] = {}
    # The figure shows each split's best and worst image, so it needs every image of the split.
    with_images = {p.split for p in pairs} - {p.split for p in pairs if p.image_path is None}
    kept: dict[str, dict[str, tuple[ImageScores, np.ndarray]]] = {}
    for pair in track(pairs, description):
        gt = read_labels(pair.gt_path)
        pred = predict(pair, gt)
        scores = score_image(gt, pred, pair.key)
        per_split.setdefault(pair.split, []).append(scores)
        if pair.split in with_images:
            slot = kept.setdefault(pair.split, {})
            if "best" not in slot or _rank(scores) > _rank(slot["best"][0]):
                slot["best"] = (scores, pred)
            if "worst" not in slot or _rank(scores) < _rank(slot["worst"][0]):
                slot["worst"] = (scores, pred)
    results = {split: pool_scores(images, split) for split, images in per_split.items()}
    by_key = {p.key: p for p in pairs}
    examples = {}
    for split, slot in kept.items():
        chosen = [("best", *slot["best"])]
        if slot["worst"][0] is not slot["best"][0]:
            chosen.append(("worst", *slot["worst"]))
        examples[split] = [Example(kind, s, read_rgb(by_key[s.name].path("image")),
                                   read_labels(by_key[s.name].gt_path), pred)
                           for kind, s, pred in chosen]
    return results, examples


def _rank(s: ImageScores) -> tuple[float, float, float, str]:
    return (s.f1, s.object_dice, -s.object_hausdorff, s.name)


def evaluate_folders(pred_dir: PathLike, gt_dir: PathLike | None, out_dir: PathLike,
                     images_dir: PathLike | None = None, *, data_dir: PathLike | None = None,
                     splits: Sequence[str] | None = None,
                     dataset_label: str | None = None) -> dict[str, Any]:
    """Score a folder of label-map predictions against ground truth; write the report.

    Args:
        pred_dir: predictions (integer label images), paired by key (module doc).
        gt_dir: flat ground-truth folder; or None with ``data_dir``.
        out_dir: receives metrics.json, per_image.csv, report.md and PNG figures. Nothing is
            written unless every file was read and scored.
        images_dir: RGB images (by key) for the best/worst overlay figure; optional.
        data_dir: a GlaS folder instead of ``gt_dir`` (ground truth and images).
        splits: select images by split (key prefix); default all of ``gt_dir`` as one split
            ``"all"``, or Test A and B of ``data_dir``.
        dataset_label: names the data in the report (default: for ``data_dir`` the import
            manifest's label, else ``"GlaS"``; for ``gt_dir`` "ground truth in GT_DIR"). Only
            ``data_dir`` reports compare with the published GlaS results.

    Returns:
        The content of metrics.json.
    """
    if data_dir is not None and gt_dir is None:
        pairs, manifest_label = glas_pairs(data_dir, splits)
        splits = list(splits or DEFAULT_SPLITS)
    elif gt_dir is not None and data_dir is None:
        pairs, manifest_label = find_pairs(gt_dir, images_dir, splits), None
    else:
        raise MicronetError("give exactly one of a ground-truth folder (--gt) or a GlaS folder "
                            "(--data)")
    if images_dir is not None and data_dir is not None:
        images = scan_folder(Path(images_dir), "image")[0]
        pairs = [replace(p, image_path=images.get(p.key)) for p in pairs]
    pairs = attach_predictions(pairs, pred_dir, splits)

    def load(pair: ImagePair, gt: np.ndarray) -> np.ndarray:
        return _check_prediction(read_labels(pair.path("pred")), gt, str(pair.pred_path),
                                 pair.gt_path)

    results, examples = _score_pairs(pairs, load, "scoring")
    made = provenance(mode="predictions", predictions=Path(pred_dir), ground_truth=gt_dir,
                      data=data_dir, images=images_dir, splits=list(results))
    glas = data_dir is not None
    default = (manifest_label or DEFAULT_DATASET_LABEL) if glas else f"ground truth in {gt_dir}"
    return write_report(out_dir, results, dataset_label or default, made, examples, glas=glas,
                        reconstructed=manifest_label == RECONSTRUCTED_LABEL)


def evaluate_model(segmenter: ImageSegmenter, data_dir: PathLike, out_dir: PathLike, *,
                   splits: Sequence[str] | None = None, dataset_label: str | None = None,
                   model_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Segment the images of a GlaS folder with ``segmenter`` and score them; write the report.

    Args:
        segmenter: a `micronet.infer.Segmenter`, or anything with ``predict(image).labels``.
        data_dir: GlaS folder (module doc); default splits Test A and Test B.
        out_dir: as in `evaluate_folders`; nothing is written if any image fails.
        splits: split names.
        dataset_label: as in `evaluate_folders`.
        model_info: model name, weights, width... recorded in the provenance.
    """
    pairs, manifest_label = glas_pairs(data_dir, splits)
    lacking = [p for p in pairs if p.image_path is None]
    if lacking:
        raise MicronetError(f"{lacking[0].gt_path}: no RGB image with key {lacking[0].key!r} "
                            f"in {data_dir}")

    def predict(pair: ImagePair, gt: np.ndarray) -> np.ndarray:
        image = read_rgb(pair.path("image"))
        if image.shape[:2] != gt.shape:
            raise InputError(f"{pair.image_path}: size {image.shape[1]}x{image.shape[0]} differs "
                             f"from its ground truth {pair.gt_path} ({gt.shape[1]}x{gt.shape[0]})")
        labels = np.asarray(segmenter.predict(image).labels)
        return _check_prediction(labels, gt, f"prediction for {pair.image_path}", pair.gt_path)

    results, examples = _score_pairs(pairs, predict, "segmenting")
    made = provenance(mode="model", **(model_info or {}), data=Path(data_dir),
                      splits=list(results))
    return write_report(out_dir, results, dataset_label or manifest_label or DEFAULT_DATASET_LABEL,
                        made, examples, glas=True,
                        reconstructed=manifest_label == RECONSTRUCTED_LABEL)
