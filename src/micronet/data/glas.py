"""GlaS (Warwick-QU) import and datasets.

``import_glas`` takes the official release (zip, unpacked folder, or an http(s) URL to the zip),
checks every image/annotation pair, and writes a normalised copy::

    DEST/{train,testA,testB}/images/NAME.png   lossless RGB
    DEST/{train,testA,testB}/labels/NAME.png   instance ids (uint8, or uint16 past 255 glands)
    DEST/manifest.json                         source, provenance, per-pair sizes/sha256/grade

PNG is lossless and about a third smaller than the release's BMPs. The copy is built in a hidden
sibling folder and renamed into place, so DEST is either complete and verified or absent.
``GlaSDataset`` reads that folder; ``ImageFolderDataset`` reads any folder of image/mask pairs.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import tempfile
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._console import track
from ..errors import InputError, MicronetError
from .datasets import GlaSDataset, GlaSSample, ImageFolderDataset, train_val_split
from .verify import (
    GLAS_COUNTS,
    GLAS_SPLITS,
    GRADE_FILE,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    PAIR_FILE,
    ReleaseProblems,
    decode_labels,
    decode_rgb,
    find_release_pairs,
    parse_grades,
    read_manifest,
    sha256_bytes,
    sha256_file,
    verify_import,
)

__all__ = [
    "GLAS_COUNTS",
    "GLAS_SPLITS",
    "GlaSDataset",
    "GlaSImport",
    "GlaSSample",
    "ImageFolderDataset",
    "ReleaseProblems",
    "import_glas",
    "read_manifest",
    "train_val_split",
    "verify_import",
]

DATASET_TITLE = "GlaS: Warwick-QU Dataset (Released 2016_07_08)"
CITATION = [
    "K. Sirinukunwattana et al., Gland segmentation in colon histology images: The GlaS challenge"
    " contest, Medical Image Analysis 35 (2017) 489-502.",
    "K. Sirinukunwattana, D. Snead, N. Rajpoot, A stochastic polygons model for glandular"
    " structures in colon histology images, IEEE TMI 34 (2015) 2366-2378.",
]
# SHA-256 over the sorted "NAME_anno.bmp SHA256" lines of a copy whose annotations were rebuilt
# as 8-connected components of the official foreground. Only used to label the manifest; any
# other annotation set (the official one included) imports the same way.
_RECONSTRUCTED_ANNOTATIONS = "8c83aad4e0443ad8ad05104c484e09e0f78d989a9b510261d2d7e2d810e918e3"


@dataclass(frozen=True)
class GlaSImport:
    """Result of :func:`import_glas`: where the data is and whether it was already there."""

    dest: Path
    manifest: dict[str, Any]
    already_verified: bool

    @property
    def pairs(self) -> dict[str, int]:
        """Image/annotation pairs per split."""
        return {s: v["pairs"] for s, v in self.manifest["splits"].items()}

    @property
    def glands(self) -> int:
        """Total annotated objects over all splits."""
        return int(self.manifest["glands"])


class _Release:
    """Files of a release by base name, read from a zip or a folder (no extraction to disk)."""

    def __init__(self, location: str, readers: dict[str, Callable[[], bytes]],
                 problems: list[str]) -> None:
        self.location = location
        self.readers = readers
        self.problems = problems  # duplicates found while listing

    @classmethod
    def from_zip(cls, archive: zipfile.ZipFile, location: str) -> _Release:
        readers: dict[str, Callable[[], bytes]] = {}
        problems: list[str] = []
        for info in archive.infolist():
            base = info.filename.rstrip("/").rsplit("/", 1)[-1]
            if info.is_dir() or base.startswith("._") or "__MACOSX" in info.filename:
                continue
            cls._add(readers, problems, base, functools.partial(archive.read, info))
        return cls(location, readers, problems)

    @classmethod
    def from_folder(cls, folder: Path) -> _Release:
        readers: dict[str, Callable[[], bytes]] = {}
        problems: list[str] = []
        # The folder itself or its parent (an unpacked zip holds one release folder); no deeper.
        for path in sorted([*folder.glob("*"), *folder.glob("*/*")]):
            if path.is_file() and not path.name.startswith("."):
                cls._add(readers, problems, path.name, path.read_bytes)
        return cls(str(folder), readers, problems)

    @staticmethod
    def _add(readers: dict[str, Callable[[], bytes]], problems: list[str], base: str,
             reader: Callable[[], bytes]) -> None:
        if not (PAIR_FILE.match(base) or base.lower() == GRADE_FILE):
            return
        if base in readers:
            problems.append(f"{base}: found twice in the source")
        readers[base] = reader

    def read(self, name: str) -> bytes:
        """Bytes of one file; a corrupt zip member or unreadable file becomes InputError."""
        try:
            return self.readers[name]()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise InputError(f"{name}: cannot be read from the source ({exc})") from None


def import_glas(source: str | os.PathLike[str], dest: str | os.PathLike[str], *,
                expected_counts: Mapping[str, int] | None = None, force: bool = False,
                sha256: str | None = None, workers: int | None = None,
                progress: bool | None = None) -> GlaSImport:
    """Check the GlaS release at ``source`` and write a normalised, verified copy to ``dest``.

    Args:
        source: the release zip, its unpacked folder, or an http(s) URL to the zip.
        dest: output folder; must be absent, empty, or an earlier import.
        expected_counts: pairs per split; ``None`` means GlaS (train 85, testA 60, testB 20).
        force: rebuild even when ``dest`` already holds a verified import (replaced atomically).
        sha256: expected SHA-256 of the zip (checked before anything is decoded).
        workers: decode/encode threads (PNG compression releases the GIL).
        progress: show progress bars (``None``: only on a TTY).

    Returns:
        The manifest, and ``already_verified=True`` when ``dest`` was left untouched.

    Raises:
        ReleaseProblems: one line per bad file (missing, truncated, size mismatch, colour
            annotation, count, grade); ``dest`` is not created.
        MicronetError: unusable source, or a ``dest`` that is not ours to replace.
    """
    dest = Path(dest)
    counts = dict(GLAS_COUNTS if expected_counts is None else expected_counts)
    if dest.exists():
        if not dest.is_dir():
            raise MicronetError(f"{dest}: exists and is not a folder")
        has_manifest = (dest / MANIFEST_NAME).is_file()
        if has_manifest:
            read_manifest(dest)  # a manifest that is not ours means a folder that is not ours
        if has_manifest and not force:
            problems = verify_import(dest, counts)
            if not problems:
                return GlaSImport(dest, read_manifest(dest), already_verified=True)
            raise ReleaseProblems(problems, f"{dest}: an earlier import fails verification; "
                                  "use --force to import again")
        if not has_manifest and any(dest.iterdir()):
            raise MicronetError(f"{dest}: exists, is not empty and is not an imported GlaS "
                                "folder; choose a new or empty --dest")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _open_source(source, dest, sha256, progress) as (release, source_info):
        build = dest.with_name(f".{dest.name}.partial-{uuid.uuid4().hex[:8]}")
        build.mkdir()  # (not mkdtemp: its 0700 mode would carry over to DEST)
        try:
            manifest = _build(release, build, source_info, counts, workers, progress)
            problems = release.problems + manifest.pop("problems")
            if problems:
                raise ReleaseProblems(problems, f"{len(problems)} problem(s) in "
                                      f"{release.location}; nothing written to {dest}")
            (build / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n",
                                               encoding="utf-8")
            _move_into_place(build, dest)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return GlaSImport(dest, manifest, already_verified=False)


@contextlib.contextmanager
def _open_source(source: str | os.PathLike[str], dest: Path, sha256: str | None,
                 progress: bool | None) -> Iterator[tuple[_Release, dict[str, Any]]]:
    text = os.fspath(source)
    if text.startswith(("http://", "https://")):
        from .download import download

        with tempfile.TemporaryDirectory(prefix=f".{dest.name}.download-", dir=dest.parent) as tmp:
            zip_path = Path(tmp) / "release.zip"
            download(text, zip_path, progress=progress)
            with _open_zip(zip_path, text, sha256) as (release, info):
                yield release, {"kind": "url", "url": text, **info}
        return
    path = Path(text)
    if not path.exists():
        raise MicronetError(f"{path}: source not found")
    if path.is_dir():
        if sha256:
            raise MicronetError(f"{path}: --sha256 checks a zip; this source is a folder")
        yield _Release.from_folder(path), {"kind": "folder", "path": str(path.resolve())}
        return
    with _open_zip(path, str(path.resolve()), sha256) as (release, info):
        yield release, {"kind": "zip", "path": str(path.resolve()), **info}


@contextlib.contextmanager
def _open_zip(path: Path, location: str,
              sha256: str | None) -> Iterator[tuple[_Release, dict[str, Any]]]:
    digest = sha256_file(path)
    if sha256 and digest != sha256.strip().lower():
        raise MicronetError(f"{location}: SHA-256 is {digest}, expected {sha256.strip().lower()}")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise MicronetError(f"{location}: not a readable zip file ({exc})") from None
    with archive:
        yield _Release.from_zip(archive, location), {"sha256": digest}


def _build(release: _Release, build: Path, source_info: dict[str, Any], counts: dict[str, int],
           workers: int | None, progress: bool | None) -> dict[str, Any]:
    """Convert every complete pair into ``build``; collect problems instead of stopping early."""
    pairs, problems = find_release_pairs(release.readers, counts)
    if not pairs and not problems:
        problems.append(f"{release.location}: no GlaS files (train_N.bmp, testA_N_anno.bmp, ...)")
    grade_name = next((n for n in release.readers if n.lower() == GRADE_FILE), None)
    try:
        grade_data = release.read(grade_name) if grade_name else None
    except InputError as exc:
        problems.append(str(exc))
        grade_data = None
    grades = parse_grades(grade_data, grade_name or "Grade.csv", [s for _, s in pairs], problems)
    for split in GLAS_SPLITS:
        for sub in ("images", "labels"):
            (build / split / sub).mkdir(parents=True)
    records: list[dict[str, Any]] = []
    workers = workers or min(4, os.cpu_count() or 1)
    failed = threading.Event()  # after the first problem, pairs are only checked, not written
    if problems:
        failed.set()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_convert_pair, release, split, stem, build, failed)
                   for split, stem in pairs]
        for future in track(as_completed(futures), "Importing GlaS", total=len(futures),
                            show=progress):
            record, pair_problems = future.result()
            if pair_problems:
                problems.extend(pair_problems)
                failed.set()
            if record is not None:
                records.append({**record, **grades.get(record["name"], {})})
    order = {key: i for i, key in enumerate(pairs)}
    records.sort(key=lambda r: order[(r["split"], r["name"])])
    splits = {s: {"pairs": sum(r["split"] == s for r in records),
                  "glands": sum(r["glands"] for r in records if r["split"] == s)}
              for s in GLAS_SPLITS}
    anno_lines = sorted(f"{r['source_labels']} {r['source_labels_sha256']}\n" for r in records)
    reconstructed = sha256_bytes("".join(anno_lines).encode()) == _RECONSTRUCTED_ANNOTATIONS
    return {
        "format": MANIFEST_FORMAT,
        "format_version": 1,
        "dataset": DATASET_TITLE,
        "source": source_info,
        "labels_origin": "reconstructed" if reconstructed else "as distributed in the source",
        "provenance": (
            "Converted by micronet-seg from the GlaS challenge release (MICCAI 2015, Tissue Image"
            " Analytics lab, University of Warwick; research use). Images: BMP decoded and"
            " re-encoded as PNG, pixel-identical. Labels: the release's instance ids unchanged."
            " Grades and patient IDs from Grade.csv."
            + (" These annotations are a reconstruction (8-connected components of the official"
               " foreground), not the original instance maps: report scores as 'GlaS"
               " (reconstructed labels)'." if reconstructed else "")),
        "citation": CITATION,
        "splits": splits,
        "glands": sum(v["glands"] for v in splits.values()),
        "files": records,
        "problems": problems,
    }


def _convert_pair(release: _Release, split: str, stem: str, build: Path,
                  failed: threading.Event) -> tuple[dict[str, Any] | None, list[str]]:
    """Decode, check and re-encode one pair; return its manifest record or its problems."""
    image_name, labels_name = (n if n in release.readers else n[:-4] + ".png"
                               for n in (f"{stem}.bmp", f"{stem}_anno.bmp"))
    problems: list[str] = []
    decoded = []
    for name, decode in ((image_name, decode_rgb), (labels_name, decode_labels)):
        try:
            data = release.read(name)
            decoded.append((decode(data, name), sha256_bytes(data)))
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        return None, problems
    (image, image_src_sha), (labels, labels_src_sha) = decoded
    if labels.shape != image.shape[:2]:
        (h, w), (lh, lw) = image.shape[:2], labels.shape
        return None, [f"{labels_name}: size {lw}x{lh} does not match its image {image_name} "
                      f"({w}x{h})"]
    if labels.max() > np.iinfo(np.uint16).max:
        return None, [f"{labels_name}: more than 65535 instance ids"]
    if failed.is_set():
        return None, []
    labels_out = labels.astype(np.uint8 if labels.max() <= 255 else np.uint16)
    written = {}
    for kind, array in (("image", image), ("labels", labels_out)):
        rel = f"{split}/{'images' if kind == 'image' else 'labels'}/{stem}.png"
        data = _encode_png(array)
        (build / rel).write_bytes(data)
        written[kind] = (rel, sha256_bytes(data))
    return {
        "split": split, "name": stem, "width": int(image.shape[1]), "height": int(image.shape[0]),
        "glands": int(np.count_nonzero(np.unique(labels))),
        "image": written["image"][0], "labels": written["labels"][0],
        "image_sha256": written["image"][1], "labels_sha256": written["labels"][1],
        "source_image": image_name, "source_labels": labels_name,
        "source_image_sha256": image_src_sha, "source_labels_sha256": labels_src_sha,
    }, []


def _encode_png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _move_into_place(build: Path, dest: Path) -> None:
    """Rename the finished folder onto ``dest``; an earlier import is swapped out, then removed."""
    if dest.exists() and not any(dest.iterdir()):
        dest.rmdir()
    if not dest.exists():
        os.replace(build, dest)
        return
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(dest, old)
    try:
        os.replace(build, dest)
    except OSError:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
