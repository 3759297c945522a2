"""Grade a batch of images into one folder: ``NAME_grade.csv`` each and ``grades.csv``.

The pipeline behind ``micronet grade``: each image is segmented (or its label map read from a
folder), its :data:`~.features.FEATURES` measured and both classifiers applied. A bad input
gets one error line and a row saying why; the others are still graded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._console import console
from ..errors import InputError, MicronetError
from .features import FEATURES, GLAS_MPP, image_features
from .grader import Grader

if TYPE_CHECKING:
    from ..infer import Segmenter

__all__ = ["GRADE_COLUMNS", "grade_files", "grade_columns", "find_labels"]

GRADE_COLUMNS = ("input", "name", "status", "p_malignant", "malignant", "grade",
                 "grade_probability", "top_features", "glands_source", *FEATURES)


def grade_columns(grader: Grader, labels: np.ndarray, image: np.ndarray,
                  mpp: float | None) -> dict[str, Any]:
    """``p_malignant`` and ``grade`` of one segmented image (e.g. for ``summary.csv``)."""
    result = grader.predict([image_features(labels, image, mpp=mpp or GLAS_MPP)])[0]
    return {"p_malignant": result["p_malignant"], "grade": result["grade"]}


def find_labels(folder: Path, name: str) -> Path:
    """``folder/NAME_labels.png`` (as ``micronet segment`` writes it), ``.tif``, or
    ``folder/NAME.png``.

    Raises:
        InputError: none of them exists.
    """
    for candidate in (f"{name}_labels.png", f"{name}_labels.tif", f"{name}.png"):
        if (folder / candidate).is_file():
            return folder / candidate
    raise InputError(f"{folder}: no label map for {name} ({name}_labels.png or {name}.png)")


def grade_files(files: Sequence[Path], out: str | Path, grader: Grader, *,
                segmenter: Segmenter | None = None, labels_dir: str | Path | None = None,
                mpp: float | None = None,
                echo: Callable[[str], None] = print) -> list[str]:
    """Grade each image into ``out``; returns one error line per failed input.

    Args:
        files: image files.
        out: output folder (``NAME_grade.csv`` per image, ``grades.csv`` for all).
        grader: the classifiers (:func:`~.grader.load_grader`).
        segmenter: a :class:`~micronet.Segmenter`; needed unless ``labels_dir`` is given.
        labels_dir: read each image's gland labels here instead of segmenting.
        mpp: µm per pixel of the images (``None``: GlaS's 0.62).
        echo: gets one result line per image.
    """
    from .._io import read_labels, read_rgb
    from ..infer.batch import is_slide, output_names
    from ..infer.export import write_csv

    if segmenter is None and labels_dir is None:
        raise MicronetError("grading needs a segmenter or a folder of label maps")
    out = Path(out)
    names = output_names(list(files))
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    for path in files:
        name = names[path]
        try:
            if is_slide(path):
                raise InputError(f"{path}: whole slides are not graded; grade image tiles")
            image = read_rgb(path)
            source: str | Path
            if labels_dir is not None:
                source = find_labels(Path(labels_dir), name)
                labels = read_labels(source)
                if labels.shape != image.shape[:2]:
                    raise InputError(f"{source}: size {labels.shape[1]}x{labels.shape[0]} does "
                                     f"not match {path} ({image.shape[1]}x{image.shape[0]})")
            else:  # a segmenter: checked before the loop
                assert segmenter is not None
                source = f"segmented ({segmenter.info.name})"
                labels = segmenter.predict(image, mpp=mpp, progress=False).labels
            features = image_features(labels, image, mpp=mpp or GLAS_MPP)
            result = grader.predict([features])[0]
        except (MicronetError, OSError) as exc:
            line = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            errors.append(line)
            console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
            rows.append({"input": str(path), "name": name, "status": f"error: {line}"})
            continue
        row = {"input": str(path), "name": name, "status": "ok", **result,
               "glands_source": str(source), **{k: round(v, 6) for k, v in features.items()}}
        write_csv(out / f"{name}_grade.csv", [row], first=GRADE_COLUMNS)
        rows.append(row)
        echo(f"{path}: p(malignant) {result['p_malignant']:.2f}, {result['grade']} "
             f"({result['top_features']})")
    if rows:
        write_csv(out / "grades.csv", rows, first=GRADE_COLUMNS)
    return errors
