"""GlaS import, verification, datasets and bundled samples.

Broken inputs use tiny fake releases (2 pairs per split) from ``fakes.py``; the real release is
imported once per session (marker ``data``).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakes import (
    BREAKAGES,
    FAKE_COUNTS,
    RELEASE_DIR,
    break_release,
    fake_pair,
    write_fake_release,
    zip_release,
)
from micronet.cli import main
from micronet.data import (
    GlaSDataset,
    ImageFolderDataset,
    ReleaseProblems,
    import_glas,
    read_manifest,
    train_val_split,
    verify_import,
)
from micronet.data.bundled import list_samples, load_sample, sample_paths
from micronet.data.verify import sha256_file
from micronet.errors import MicronetError


@pytest.fixture
def fake_release(tmp_path: Path) -> Path:
    return write_fake_release(tmp_path / "src")


@pytest.fixture
def fake_zip(fake_release: Path, tmp_path: Path) -> Path:
    return zip_release(fake_release, tmp_path / "release.zip")


def leftovers(parent: Path) -> list[str]:
    """Hidden build/old/download folders left beside DEST."""
    return [p.name for p in parent.iterdir() if p.name.startswith(".dest.")]


# --- import of fake releases ---------------------------------------------------------------


def test_import_fake_zip_writes_lossless_pngs_and_manifest(fake_zip: Path, tmp_path: Path):
    dest = tmp_path / "dest"
    result = import_glas(fake_zip, dest, expected_counts=FAKE_COUNTS)
    assert not result.already_verified
    assert result.pairs == FAKE_COUNTS
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["source"] == {"kind": "zip", "path": str(fake_zip.resolve()),
                                  "sha256": sha256_file(fake_zip)}
    assert manifest["labels_origin"] == "as distributed in the source"
    assert manifest["glands"] == 3 * (2 + 3) == result.glands
    assert [f["name"] for f in manifest["files"]] == [
        "train_1", "train_2", "testA_1", "testA_2", "testB_1", "testB_2"]
    for entry in manifest["files"]:
        index = int(entry["name"].split("_")[1])
        image, labels = fake_pair(index)
        assert np.array_equal(np.asarray(Image.open(dest / entry["image"])), image)
        assert np.array_equal(np.asarray(Image.open(dest / entry["labels"])), labels)
        assert (entry["width"], entry["height"], entry["glands"]) == (40, 30, index + 1)
        assert entry["image_sha256"] == sha256_file(dest / entry["image"])
        assert entry["labels_sha256"] == sha256_file(dest / entry["labels"])
        assert entry["grade"] == ("benign" if index % 2 else "malignant")
        assert entry["patient_id"] == str(index)
        assert entry["grade_sirinukunwattana"] == "healthy"
    assert verify_import(dest, FAKE_COUNTS) == []
    assert leftovers(tmp_path) == []


def test_folder_source_gives_the_same_files_as_the_zip(fake_release, fake_zip, tmp_path):
    from_zip = import_glas(fake_zip, tmp_path / "a", expected_counts=FAKE_COUNTS).manifest
    # the folder itself and its parent (an unpacked zip) both work
    for i, source in enumerate((fake_release, fake_release.parent)):
        manifest = import_glas(source, tmp_path / f"b{i}", expected_counts=FAKE_COUNTS).manifest
        assert manifest["files"] == from_zip["files"]
        assert manifest["source"]["kind"] == "folder"


def test_more_than_255_glands_are_stored_as_uint16(tmp_path: Path):
    folder = write_fake_release(tmp_path / "src")
    labels = np.arange(30 * 40, dtype=np.int32).reshape(30, 40) % 300  # ids 0..299
    Image.fromarray(labels.astype(np.uint16)).save(folder / "train_1_anno.png")
    (folder / "train_1_anno.bmp").unlink()
    manifest = import_glas(folder, tmp_path / "dest", expected_counts=FAKE_COUNTS).manifest
    entry = manifest["files"][0]
    written = np.asarray(Image.open(tmp_path / "dest" / entry["labels"]))
    assert written.dtype == np.uint16 and np.array_equal(written, labels)
    assert entry["glands"] == 299


@pytest.mark.parametrize("problem", BREAKAGES)
@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_broken_release_gives_one_line_and_no_dest(tmp_path, problem, as_zip):
    folder = write_fake_release(tmp_path / "src")
    name = break_release(folder, problem)
    source = zip_release(folder, tmp_path / "r.zip") if as_zip else folder
    with pytest.raises(ReleaseProblems) as info:
        import_glas(source, tmp_path / "dest", expected_counts=FAKE_COUNTS)
    assert len(info.value.problems) == 1, info.value.problems
    assert info.value.problems[0].startswith(f"{name}: ")
    assert "nothing written" in info.value.summary
    assert not (tmp_path / "dest").exists() and leftovers(tmp_path) == []


def test_every_problem_is_reported_at_once(tmp_path: Path):
    folder = write_fake_release(tmp_path / "src")
    names = {break_release(folder, p)
             for p in ("missing annotation", "truncated image", "size mismatch")}
    with pytest.raises(ReleaseProblems) as info:
        import_glas(folder, tmp_path / "dest", expected_counts=FAKE_COUNTS)
    assert {line.split(":")[0] for line in info.value.problems} == names
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("kind", ["empty folder", "not a zip", "truncated zip", "absent"])
def test_unusable_sources(tmp_path: Path, fake_zip: Path, kind: str):
    source = tmp_path / "source"
    if kind == "empty folder":
        source.mkdir()
    elif kind == "not a zip":
        source.write_bytes(b"not a zip at all")
    elif kind == "truncated zip":  # e.g. an interrupted download
        source.write_bytes(fake_zip.read_bytes()[: fake_zip.stat().st_size // 2])
    with pytest.raises(MicronetError, match=re.escape(str(source))):
        import_glas(source, tmp_path / "dest", expected_counts=FAKE_COUNTS)
    assert not (tmp_path / "dest").exists()


def test_sha256_option_is_checked(fake_zip: Path, tmp_path: Path):
    with pytest.raises(MicronetError, match="SHA-256 is"):
        import_glas(fake_zip, tmp_path / "dest", expected_counts=FAKE_COUNTS, sha256="0" * 64)
    assert not (tmp_path / "dest").exists()
    import_glas(fake_zip, tmp_path / "dest", expected_counts=FAKE_COUNTS,
                sha256=sha256_file(fake_zip).upper())


def test_foreign_dest_is_never_overwritten(fake_zip: Path, tmp_path: Path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    for force in (False, True):
        with pytest.raises(MicronetError, match="not an imported GlaS folder"):
            import_glas(fake_zip, dest, expected_counts=FAKE_COUNTS, force=force)
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]


def test_rerun_is_noop_and_damage_is_detected(fake_zip: Path, tmp_path: Path):
    dest = tmp_path / "dest"
    first = import_glas(fake_zip, dest, expected_counts=FAKE_COUNTS)
    mtimes = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    again = import_glas(fake_zip, dest, expected_counts=FAKE_COUNTS)
    assert again.already_verified and again.manifest == first.manifest
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == mtimes

    (dest / "testA/labels/testA_1.png").write_bytes(b"garbage")
    (dest / "train/images/train_2.png").unlink()
    problems = verify_import(dest, FAKE_COUNTS)
    assert problems == ["train/images/train_2.png: missing",
                        "testA/labels/testA_1.png: SHA-256 differs from the manifest "
                        "(modified or corrupt)"]
    with pytest.raises(ReleaseProblems, match="--force"):
        import_glas(fake_zip, dest, expected_counts=FAKE_COUNTS)
    rebuilt = import_glas(fake_zip, dest, expected_counts=FAKE_COUNTS, force=True)
    assert not rebuilt.already_verified and verify_import(dest, FAKE_COUNTS) == []
    assert leftovers(tmp_path) == []


# --- datasets ------------------------------------------------------------------------------


def test_glas_dataset_items_and_subsets(fake_zip: Path, tmp_path: Path):
    dest = tmp_path / "dest"
    import_glas(fake_zip, dest, expected_counts=FAKE_COUNTS)
    dataset = GlaSDataset(dest, "testA")
    assert len(dataset) == 2 and dataset.names == ["testA_1", "testA_2"]
    item = dataset[1]
    image, labels = fake_pair(2)
    assert item["name"] == "testA_2"
    assert item["image"].dtype == np.uint8 and np.array_equal(item["image"], image)
    assert item["labels"].dtype == np.int32 and np.array_equal(item["labels"], labels)
    subset = GlaSDataset(dest, "train", names=["train_2"])
    assert subset.names == ["train_2"] and subset[0]["name"] == "train_2"
    with pytest.raises(MicronetError, match="train_9"):
        GlaSDataset(dest, "train", names=["train_9"])
    with pytest.raises(MicronetError, match="unknown GlaS split"):
        GlaSDataset(dest, "val")


def test_glas_dataset_needs_an_imported_folder(fake_release: Path):
    with pytest.raises(MicronetError, match=re.escape(
            f"{fake_release}: not an imported GlaS folder (run `micronet data glas")):
        GlaSDataset(fake_release)
    with pytest.raises(MicronetError, match="not an imported GlaS folder"):
        read_manifest(fake_release)


def test_image_folder_dataset_pairs_by_stem(fake_release: Path, tmp_path: Path):
    # the raw release is itself a folder of pairs with the "_anno" suffix
    dataset = ImageFolderDataset(fake_release, fake_release, label_suffix="_anno")
    assert dataset.names == ["testA_1", "testA_2", "testB_1", "testB_2", "train_1", "train_2"]
    assert np.array_equal(dataset[0]["labels"], fake_pair(1)[1])
    same = GlaSDataset.from_pairs(fake_release, fake_release, label_suffix="_anno")
    assert same.names == dataset.names

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    for stem in ("a", "b"):
        Image.fromarray(fake_pair(1)[0]).save(images / f"{stem}.png")
    Image.fromarray(fake_pair(1)[1]).save(labels / "a.png")
    Image.fromarray(fake_pair(1)[1]).save(labels / "c.tif")
    with pytest.raises(MicronetError, match=r"2 unpaired file\(s\): b.png \(no label.*c.tif"):
        ImageFolderDataset(images, labels)


def test_train_val_split_is_deterministic_and_disjoint():
    names = [f"train_{i}" for i in range(1, 86)]
    train, val = train_val_split(names, val_fraction=0.1, seed=0)
    assert len(val) == 8 and len(train) == 77
    assert set(train) | set(val) == set(names) and not set(train) & set(val)
    assert train_val_split(list(reversed(names)), 0.1, seed=0) == (train, val)
    assert train_val_split(names, 0.1, seed=1)[1] != val
    natural = sorted(names, key=lambda n: int(n.split("_")[1]))  # train_2 before train_10
    assert train == [n for n in natural if n in set(train)]
    assert val == [n for n in natural if n in set(val)]
    assert train_val_split(names, 0.0) == (natural, [])
    with pytest.raises(ValueError):
        train_val_split(names, 1.0)
    with pytest.raises(ValueError):
        train_val_split(["a"], 0.5)


def test_train_val_split_by_stratum_holds_out_each_class_in_proportion():
    names = [f"train_{i}" for i in range(1, 86)]
    strata = {n: "malignant" if i < 48 else "benign" for i, n in enumerate(names)}
    train, val = train_val_split(names, 0.1, seed=0, strata=strata)
    assert sorted(strata[n] for n in val) == ["benign"] * 4 + ["malignant"] * 5
    assert set(train) | set(val) == set(names) and not set(train) & set(val)
    assert train_val_split(list(reversed(names)), 0.1, seed=0, strata=strata) == (train, val)
    tiny = {"a": "x", "b": "y"}  # rounding leaves no class a held-out image: one overall
    assert len(train_val_split(list(tiny), 0.1, strata=tiny)[1]) == 1
    with pytest.raises(ValueError, match="no stratum for train_85"):
        train_val_split(names, 0.1, strata={n: "x" for n in names[:-1]})


def test_validation_split_by_grade_needs_glas_grades(fake_zip: Path, tmp_path: Path):
    from micronet.train.data import validation_split

    dest = tmp_path / "glas"
    import_glas(fake_zip, dest, expected_counts=FAKE_COUNTS)
    dataset = GlaSDataset(dest, "train")
    train, val = validation_split(dataset, 0.5, seed=0, how="grade")
    grades = {r["name"]: r["grade"] for r in dataset.records}
    assert len(val) == 1 and len(train) == 1 and {grades[train[0]], grades[val[0]]} == {
        "benign", "malignant"}
    pairs = ImageFolderDataset(dest / "train" / "images", dest / "train" / "labels")
    with pytest.raises(MicronetError, match="val_split=grade needs an imported GlaS folder"):
        validation_split(pairs, 0.5, seed=0, how="grade")
    with pytest.raises(MicronetError, match="expected random or grade"):
        validation_split(dataset, 0.5, seed=0, how="patient")


# --- bundled samples -----------------------------------------------------------------------


def _readme_rows() -> dict[str, list[str]]:
    readme = sample_paths(list_samples()[0])[0].parent / "README.md"
    rows = re.findall(r"^\| (test[AB]_\d+) \|(.*)\|$", readme.read_text(), flags=re.M)
    return {name: [c.strip() for c in rest.split("|")] for name, rest in rows}


def test_bundled_samples_match_their_readme():
    rows = _readme_rows()
    assert list_samples() == sorted(rows) and len(rows) == 4
    assert {r[0] for r in rows.values()} == {"Test A", "Test B"}
    assert {r[2] for r in rows.values()} == {"benign", "malignant"}
    total = 0
    for name, row in rows.items():
        image, labels = load_sample(name)
        assert image.dtype == np.uint8 and image.shape == (522, 775, 3)
        assert labels.dtype == np.int32 and labels.shape == (522, 775)
        assert np.count_nonzero(np.unique(labels)) == int(row[4]) >= 5
        total += sum(p.stat().st_size for p in sample_paths(name))
    assert total < 4_000_000
    with pytest.raises(MicronetError, match="testA_1"):
        load_sample("nope")


# --- the real release ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def glas_import(glas_zip: Path, tmp_path_factory) -> tuple[Path, float]:
    """The shared release imported once; (DEST, seconds the import took)."""
    dest = tmp_path_factory.mktemp("glas") / "glas"
    start = time.perf_counter()
    import_glas(glas_zip, dest)
    return dest, time.perf_counter() - start


@pytest.mark.data
def test_real_release_import(glas_import, glas_zip: Path):
    dest, seconds = glas_import
    print(f"imported the GlaS zip in {seconds:.1f} s")
    manifest = read_manifest(dest)
    assert {s: v["pairs"] for s, v in manifest["splits"].items()} == {
        "train": 85, "testA": 60, "testB": 20}
    assert manifest["glands"] == 1553 == sum(f["glands"] for f in manifest["files"])
    assert manifest["source"]["sha256"] == sha256_file(glas_zip)
    assert manifest["labels_origin"] == "reconstructed"
    assert "reconstructed labels" in manifest["provenance"] and manifest["citation"]
    by_name = {f["name"]: f for f in manifest["files"]}
    assert by_name["testA_1"]["grade"] == "benign"
    assert by_name["testA_1"]["grade_sirinukunwattana"] == "adenomatous"
    assert by_name["testA_1"]["patient_id"] == "4"
    assert {f["grade"] for f in manifest["files"]} == {"benign", "malignant"}
    for entry in manifest["files"]:
        labels = np.asarray(Image.open(dest / entry["labels"]))
        assert labels.shape == (entry["height"], entry["width"])
        assert np.count_nonzero(np.unique(labels)) == entry["glands"]
    with zipfile.ZipFile(glas_zip) as archive:  # pixels survive BMP -> PNG
        raw = archive.read(f"{RELEASE_DIR}/testB_20.bmp")
    assert by_name["testB_20"]["source_image_sha256"] == hashlib.sha256(raw).hexdigest()
    with Image.open(io.BytesIO(raw)) as bmp:
        assert np.array_equal(np.asarray(bmp), GlaSDataset(dest, "testB", ["testB_20"])[0]["image"])


@pytest.mark.data
def test_real_release_rerun_verify_and_dataset(glas_import, glas_zip: Path, capsys):
    dest, _ = glas_import
    again = import_glas(glas_zip, dest)
    assert again.already_verified
    assert verify_import(dest) == []
    assert main(["data", "glas", "--source", str(glas_zip), "--dest", str(dest)]) == 0
    assert main(["data", "verify", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "already imported and verified: 165 pairs (train 85, testA 60, testB 20), 1553 glands" \
        in out and f"{dest}: verified 165 pairs" in out
    train = GlaSDataset(dest, "train")
    assert len(train) == 85
    fit, val = train_val_split(train.names)
    assert len(val) == 8 and len(GlaSDataset(dest, "train", names=val)) == 8


@pytest.mark.data
def test_bundled_samples_are_the_imported_tiles(glas_import):
    dest, _ = glas_import
    for name in list_samples():
        split = name.split("_")[0]
        item = GlaSDataset(dest, split, names=[name])[0]
        image, labels = load_sample(name)
        assert np.array_equal(image, item["image"]) and np.array_equal(labels, item["labels"])
