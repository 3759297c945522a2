"""Checks for the GlaS release and for imported GlaS folders.

Two layers share this module: decoding one release file from bytes with a one-line problem
message (used by the importer in :mod:`micronet.data.glas`), and re-checking an imported folder
against the SHA-256 sums in its ``manifest.json`` (``micronet data verify``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import sha256_file
from ..errors import InputError, MicronetError

__all__ = [
    "GLAS_SPLITS",
    "GLAS_COUNTS",
    "MANIFEST_NAME",
    "MANIFEST_FORMAT",
    "PAIR_FILE",
    "GRADE_FILE",
    "ReleaseProblems",
    "find_release_pairs",
    "parse_grades",
    "decode_rgb",
    "decode_labels",
    "sha256_bytes",
    "sha256_file",
    "read_manifest",
    "verify_import",
]

GLAS_SPLITS: tuple[str, ...] = ("train", "testA", "testB")
#: Image/annotation pairs per split in the official Warwick-QU release (2016-07-08).
GLAS_COUNTS: dict[str, int] = {"train": 85, "testA": 60, "testB": 20}
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "micronet-glas-import"
#: Release file names: ``train_12.bmp``, ``testA_3_anno.bmp`` (PNG copies are accepted too).
PAIR_FILE = re.compile(r"^(train|testA|testB)_(\d+)(_anno)?(?i:\.bmp|\.png)$")
GRADE_FILE = "grade.csv"  # compared lower-case

# Pillow modes that hold one integer per pixel; RGB, float and alpha modes are refused.
_LABEL_MODES = {"L", "P", "I", "I;16", "I;16L", "I;16B"}
_MODE_NAMES = {"RGB": "RGB", "RGBA": "RGBA", "LA": "grayscale+alpha", "L": "8-bit grayscale",
               "P": "palette", "1": "1-bit", "F": "float", "CMYK": "CMYK", "I": "32-bit integer"}


class ReleaseProblems(MicronetError):
    """A source or imported folder failed its checks; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str], summary: str) -> None:
        self.problems = list(problems)
        self.summary = summary
        super().__init__("\n".join([*self.problems, summary]))


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _open(data: bytes, name: str):
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InputError(f"{name}: empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except UnidentifiedImageError:
        raise InputError(f"{name}: not a readable image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{name}: unreadable or truncated image ({exc})") from None
    if img.width == 0 or img.height == 0:
        raise InputError(f"{name}: zero-size image")
    return img


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    """Decode an 8-bit RGB image file held in memory as ``(H, W, 3) uint8``.

    Raises:
        InputError: ``"NAME: problem"`` for unreadable, truncated or non-RGB data.
    """
    img = _open(data, name)
    if img.mode != "RGB":
        raise InputError(f"{name}: {_MODE_NAMES.get(img.mode, img.mode)} image; "
                         "expected 8-bit RGB (H&E colour)")
    return np.asarray(img, dtype=np.uint8).copy()


def decode_labels(data: bytes, name: str) -> np.ndarray:
    """Decode a single-channel integer instance map held in memory as ``(H, W) int32``.

    Palette images give their palette indices (the ids, whatever colours the palette assigns).

    Raises:
        InputError: ``"NAME: problem"`` for unreadable data, colour images, floats or negatives.
    """
    img = _open(data, name)
    if img.mode not in _LABEL_MODES:
        raise InputError(f"{name}: {_MODE_NAMES.get(img.mode, img.mode)} image; an annotation "
                         "must be a single-channel integer instance map")
    labels = np.asarray(img).astype(np.int32)
    if labels.ndim != 2:
        raise InputError(f"{name}: shape {labels.shape}; expected a 2-D instance map")
    if labels.min() < 0:
        raise InputError(f"{name}: negative instance ids")
    return labels


def find_release_pairs(names: Iterable[str],
                       counts: Mapping[str, int]) -> tuple[list[tuple[str, str]], list[str]]:
    """Complete ``(split, stem)`` pairs among release file names, in natural order.

    Returns:
        The pairs, and one line per lone image or annotation and per split whose number of
        names differs from ``counts`` (a missing half is reported once, not also as a count).
    """
    halves: dict[tuple[str, int], dict[bool, str]] = {}
    for base in names:
        match = PAIR_FILE.match(base)
        if match:
            split, index, anno = match.group(1), int(match.group(2)), bool(match.group(3))
            halves.setdefault((split, index), {})[anno] = base
    problems: list[str] = []
    pairs: list[tuple[str, str]] = []
    for split, index in sorted(halves, key=lambda k: (GLAS_SPLITS.index(k[0]), k[1])):
        files = halves[(split, index)]
        stem = f"{split}_{index}"
        if True not in files:
            problems.append(f"{stem}_anno.bmp: missing (annotation of {files[False]})")
        elif False not in files:
            problems.append(f"{stem}.bmp: missing (image for {files[True]})")
        else:
            pairs.append((split, stem))
    for split in GLAS_SPLITS:
        found = sum(key[0] == split for key in halves)
        if found != counts.get(split, 0):
            problems.append(f"{split}: {found} image/annotation pairs in the source, "
                            f"expected {counts.get(split, 0)}")
    return pairs, problems


def parse_grades(data: bytes | None, name: str, stems: Sequence[str],
                 problems: list[str]) -> dict[str, dict[str, str]]:
    """Rows of ``Grade.csv`` by image name: ``patient_id``, ``grade``, ``grade_sirinukunwattana``.

    Columns are found by header words (``patient``, ``glas``, ``sirinukunwattana``), else by
    position (name, patient ID, GlaS grade, 2015 grade), so header spelling can vary. A missing
    file, an undecodable one, or a stem without a row each add one line to ``problems``.
    """
    if data is None:
        problems.append(f"{name}: missing")
        return {}
    try:
        rows = [r for r in csv.reader(io.StringIO(data.decode("utf-8-sig"))) if r]
    except (UnicodeDecodeError, csv.Error) as exc:
        problems.append(f"{name}: unreadable ({exc})")
        return {}
    header = [h.strip().lower() for h in rows[0]] if rows else []

    def column(words: tuple[str, ...], default: int) -> int:
        return next((i for i, h in enumerate(header) if any(w in h for w in words)), default)

    columns = {"patient_id": column(("patient",), 1), "grade": column(("glas",), 2),
               "grade_sirinukunwattana": column(("sirinukunwattana", "2015"), 3)}
    name_col = column(("name",), 0)
    if rows and not PAIR_FILE.match(f"{rows[0][min(name_col, len(rows[0]) - 1)].strip()}.bmp"):
        rows = rows[1:]  # a header row
    grades: dict[str, dict[str, str]] = {}
    for row in rows:
        cells = [c.strip() for c in row]
        if len(cells) > name_col:
            grades[cells[name_col]] = {key: cells[i] if i < len(cells) else ""
                                       for key, i in columns.items()}
    problems.extend(f"{name}: no row for {stem}" for stem in stems if stem not in grades)
    return grades


def read_manifest(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Load ``root/manifest.json`` of an imported GlaS folder.

    Raises:
        MicronetError: ``root`` has no manifest (not imported) or an unreadable one.
    """
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise MicronetError(f"{root}: not an imported GlaS folder "
                            f"(run `micronet data glas --source ... --dest {root}`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MicronetError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise MicronetError(f"{path}: not a micronet GlaS manifest (format is not "
                            f"{MANIFEST_FORMAT!r})")
    if not isinstance(manifest.get("files"), list):
        raise MicronetError(f"{path}: manifest has no file list")
    return manifest


def verify_import(root: str | os.PathLike[str],
                  expected_counts: Mapping[str, int] | None = None) -> list[str]:
    """Re-check an imported folder: every listed file present with its recorded SHA-256.

    Args:
        root: folder written by :func:`micronet.data.glas.import_glas`.
        expected_counts: pairs per split; ``None`` means the GlaS counts (85, 60, 20). Only
            the splits the manifest declares are expected (a pack holds one split).

    Returns:
        One line per problem (file name + problem); empty when the folder is intact.

    Raises:
        MicronetError: no or unreadable manifest.
    """
    root = Path(root)
    manifest = read_manifest(root)
    counts = dict(GLAS_COUNTS if expected_counts is None else expected_counts)
    declared = manifest.get("splits")
    if isinstance(declared, dict) and declared:
        counts = {split: n for split, n in counts.items() if split in declared}
    problems: list[str] = []
    found = dict.fromkeys(counts, 0)
    for entry in manifest["files"]:
        try:
            split = entry["split"]
            files = [(entry["image"], entry["image_sha256"]),
                     (entry["labels"], entry["labels_sha256"])]
        except (KeyError, TypeError):
            problems.append(f"{MANIFEST_NAME}: malformed file entry {entry!r:.80}")
            continue
        found[split] = found.get(split, 0) + 1
        for rel, expected in files:
            path = root / rel
            if not path.is_file():
                problems.append(f"{rel}: missing")
            elif sha256_file(path) != expected:
                problems.append(f"{rel}: SHA-256 differs from the manifest (modified or corrupt)")
    for split in sorted(set(counts) | set(found), key=_split_order):
        want, have = counts.get(split, 0), found.get(split, 0)
        if want != have:
            problems.append(f"{split}: manifest lists {have} pairs, expected {want}")
    return problems


def _split_order(split: str) -> tuple[int, str]:
    return (GLAS_SPLITS.index(split) if split in GLAS_SPLITS else len(GLAS_SPLITS), split)
