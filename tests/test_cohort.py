"""Cohorts on a Dask cluster (`segment_cohort`, `micronet segment --cluster`): equal outputs,
a killed worker, resuming, a corrupt slide, one slide split across workers, Ctrl-C, the SLURM
job script."""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
import threading
import time

import pytest
import torch

distributed = pytest.importorskip("distributed")
import cloudpickle  # noqa: E402

import fakes  # noqa: E402
from fakes import PurpleGlandModel, purple_image, write_pyramid  # noqa: E402
from micronet.cli import main  # noqa: E402
from micronet.infer import Segmenter, cohort  # noqa: E402
from micronet.infer.batch import segment_files  # noqa: E402
from micronet.infer.cohort import open_cluster, read_slide_list, segment_cohort  # noqa: E402
from micronet.infer.outputs import MANIFEST  # noqa: E402
from micronet.infer.slide import plan_slide  # noqa: E402

# workers unpickle the fake models by value: they cannot import the tests folder
cloudpickle.register_pickle_by_value(fakes)
cloudpickle.register_pickle_by_value(sys.modules[__name__])
FORMATS = ("labels", "overlay", "geojson", "csv")
PP = {"min_size": 30}


class SlowPurple(PurpleGlandModel):
    """The purple model, slow enough (and counting forwards) to catch a task mid-slide."""

    calls = 0

    def __init__(self, input_size: int = 64, delay: float = 0.0) -> None:
        super().__init__(input_size)
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        SlowPurple.calls += 1
        time.sleep(self.delay)
        return super().forward(x)


def spec(model=None) -> dict:
    return {"model": model or PurpleGlandModel(64), "device": "cpu", "precision": "fp32",
            "postprocess": PP}


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    """Four small pyramidal TIFFs (different glands) and one PNG tile."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("cohort")
    paths = []
    for i in range(4):
        image, _ = purple_image((192, 256), [(50 + 20 * i, 60, 30, 40), (130, 170 - 10 * i, 35,
                                                                         25)], seed=i)
        paths.append(write_pyramid(folder / f"s{i}.tif", image, mpp=0.62, downsamples=(2,)))
    image, _ = purple_image((128, 128), [(64, 64, 30, 30)], seed=9)
    Image.fromarray(image).save(folder / "tile.png")
    return [*paths, folder / "tile.png"]


@pytest.fixture(scope="module")
def reference(slides, tmp_path_factory):
    """The single-process `micronet segment` pipeline's outputs."""
    out = tmp_path_factory.mktemp("ref")
    seg = Segmenter(**spec())
    assert segment_files(slides, out, seg, FORMATS, echo=lambda _: None) == []
    return out


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def outputs(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and p.name != "summary.csv"}


def finished(folder):
    entries = json.loads((folder / MANIFEST).read_text())["inputs"].values()
    return sorted(e["name"] for e in entries if e["row"]["status"] == "ok")


def summary(folder):
    return {r["name"]: r for r in csv.DictReader((folder / "summary.csv").open())}


def assert_same(out, reference):
    got, want = outputs(out), outputs(reference)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], name  # label for label, polygon for polygon
    ref = summary(reference)
    for name, row in summary(out).items():
        assert row["status"] == "ok"
        for column in ("glands", "gland_area_px", "width_px", "mpp", "kind"):
            assert row[column] == ref[name][column], (name, column)


def test_read_slide_list(tmp_path):
    (tmp_path / "list.csv").write_text("path,mpp\n# a comment\na.svs,0.25\nsub/b.tif\n"
                                       "/abs/c.ndpi,0.5\n")
    assert read_slide_list(tmp_path / "list.csv") == [
        (tmp_path / "a.svs", 0.25), (tmp_path / "sub/b.tif", None), (tmp_path / "/abs/c.ndpi",
                                                                     0.5)]
    (tmp_path / "list.txt").write_text("a.svs\t0.25\n\nb.tif\n")
    assert read_slide_list(tmp_path / "list.txt") == [(tmp_path / "a.svs", 0.25),
                                                      (tmp_path / "b.tif", None)]
    (tmp_path / "bad.txt").write_text("a.svs,fast\n")
    with pytest.raises(Exception, match=r"bad.txt:1: expected PATH or PATH,MPP"):
        read_slide_list(tmp_path / "bad.txt")


def test_two_worker_cluster_equals_single_process(slides, reference, client, tmp_path):
    out = tmp_path / "out"
    lines = []
    assert segment_cohort(slides, out, spec(), client=client, formats=FORMATS,
                          echo=lines.append) == []
    assert_same(out, reference)
    rows = summary(out)
    assert {r["worker"] for r in rows.values()} <= set(client.scheduler_info()["workers"])
    assert all(float(r["seconds"]) > 0 for r in rows.values())
    assert len(lines) == len(slides) and not (out / ".micronet-staging").exists()
    assert finished(out) == ["s0", "s1", "s2", "s3", "tile"]


def test_worker_killed_mid_slide_is_retried_elsewhere(slides, reference, client, tmp_path):
    pids = client.run(os.getpid)
    killed = {}

    def executing(dask_worker):
        return [str(ts.key) for ts in dask_worker.state.executing
                if str(ts.key).startswith("micronet-segment-")]

    done = threading.Event()

    def killer():
        while not killed and not done.is_set():
            for address, keys in client.run(executing).items():
                if keys:
                    os.kill(pids[address], signal.SIGKILL)
                    killed.update(address=address, key=keys[0])
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=killer)
    out = tmp_path / "out"
    thread.start()
    try:
        errors = segment_cohort(slides, out, spec(SlowPurple(64, delay=0.3)), client=client,
                                formats=FORMATS, echo=lambda _: None)
    finally:
        done.set()
        thread.join()
    assert errors == [] and killed, killed
    assert pids[killed["address"]] not in client.run(os.getpid).values()  # the process died
    starts = [t for t in client.story(killed["key"]) if t[2] == "processing"]
    assert len(starts) >= 2, starts  # its slide was started again
    name = killed["key"].split("micronet-segment-")[1].rsplit("-", 1)[0]
    assert summary(out)[name]["status"] == "ok"
    assert_same(out, reference)


def test_interrupted_run_resumes_without_redoing_finished_slides(slides, reference, client,
                                                                 tmp_path):
    out = tmp_path / "out"

    def ctrl_c(line):
        raise KeyboardInterrupt  # as the first slide finishes

    model = SlowPurple(64)  # the same model (settings) in every run
    with pytest.raises(KeyboardInterrupt):
        segment_cohort(slides, out, spec(model), client=client, formats=FORMATS, echo=ctrl_c)
    (first,) = finished(out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()
              if p.name.startswith(f"{first}_") or p.name == f"{first}.geojson"}
    assert len(stamps) >= 3
    partial = "s3" if first != "s3" else "s2"
    (out / f"{partial}.geojson").write_text("{partial")  # a slide left half-written
    lines = []
    SlowPurple.calls = 0
    assert segment_cohort(slides, out, spec(model), formats=FORMATS, echo=lines.append) == []
    assert sum("skipped" in line for line in lines) == 1 and SlowPurple.calls > 0
    assert {p: (out / p).stat().st_mtime_ns for p in stamps} == stamps  # not redone
    assert_same(out, reference)
    # a third run does no work at all (counted in forward passes, in this process)
    SlowPurple.calls = 0
    lines.clear()
    assert segment_cohort(slides, out, spec(model), formats=FORMATS, echo=lines.append) == []
    assert SlowPurple.calls == 0 and sum("skipped" in line for line in lines) == len(slides)
    assert_same(out, reference)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from micronet.models import create
    from micronet.models.weights_io import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(create("micronet508", width=1 / 16).state_dict(), path,
                 {"arch": "micronet508", "width": str(1 / 16), "num_classes": "3"})
    return str(path)


def run_cli_with_corrupt_slide(slides, weights, tmp_path, capsys, *cluster):
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"II*\x00 not really a slide")
    listing = tmp_path / "cohort.csv"
    listing.write_text(f"path,mpp\n{slides[0]},0.62\n{bad}\n{slides[1]}\n")
    out = tmp_path / "out"
    code = main(["segment", str(listing), "--out", str(out), "--weights", weights,
                 "--device", "cpu", "-q", *cluster])
    captured = capsys.readouterr()
    assert code == 1
    assert "dashboard" in captured.err and "1 input(s) failed" in captured.err
    rows = summary(out)
    assert rows["s0"]["status"] == rows["s1"]["status"] == "ok"
    assert rows["broken"]["status"] == "error"
    assert rows["broken"]["error"].startswith(f"{bad}: ")  # whatever the reader says
    assert "\n" not in rows["broken"]["error"]
    assert finished(out) == ["s0", "s1"]


def test_cli_existing_scheduler_corrupt_slide_fails_alone(slides, tiny_weights, client,
                                                          tmp_path, capsys):
    run_cli_with_corrupt_slide(slides, tiny_weights, tmp_path, capsys, "--cluster",
                               client.scheduler.address)


def test_cli_local_cluster_corrupt_slide_fails_alone(slides, tiny_weights, tmp_path, capsys):
    run_cli_with_corrupt_slide(slides, tiny_weights, tmp_path, capsys, "--cluster", "local",
                               "--workers", "2")


def test_slurm_job_script_has_the_users_options():
    cluster = cohort.slurm_cluster(queue="short", cores=6, memory="12GB", walltime="03:00:00",
                            scheduler_options={"dashboard_address": None})
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#SBATCH -p short", "#SBATCH --cpus-per-task=6", "#SBATCH --mem=12G",
                 "#SBATCH -t 03:00:00"):
        assert line in script, script
    assert "--nthreads 1" in script  # one slide at a time per job, with all 6 cores


def test_cli_slurm_submits_jobs_through_sbatch(tmp_path, monkeypatch, slides):
    """With a stand-in `sbatch` on PATH: the jobs dask-jobqueue submits carry the options."""
    from micronet.infer.cohort import open_cluster

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\ncp \"$1\" {tmp_path}/job_$$.sh\n"
                                    "echo Submitted batch job $$\n")
    (bin_dir / "scancel").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "scancel"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with open_cluster("slurm", jobs=2, queue="long", cores=3, memory="4GB",
                      walltime="00:30:00") as (client, threads):
        assert threads == 3
        deadline = time.time() + 30
        while len(list(tmp_path.glob("job_*.sh"))) < 2 and time.time() < deadline:
            time.sleep(0.1)
    scripts = [p.read_text() for p in tmp_path.glob("job_*.sh")]
    assert len(scripts) == 2
    assert all("#SBATCH -p long" in s and "--cpus-per-task=3" in s for s in scripts)


def test_cli_slurm_without_sbatch_is_one_line_error(tmp_path, monkeypatch, capsys, slides):
    monkeypatch.setenv("PATH", str(tmp_path))
    code = main(["segment", str(slides[0]), "--out", str(tmp_path / "o"), "--cluster",
                 "slurm", "--memory", "4GB"])
    assert code == 1
    assert "sbatch not found" in capsys.readouterr().err


# --- one slide split across workers -----------------------------------------------------------

CHUNK = 96  # working px: the big slide's 320x200 working level is 4 x 3 chunks
# level-0 ellipses, several across the chunk borders (level-0 rows/cols 192, 384, 576)
BIG_GLANDS = [(120, 180, 50, 60), (200, 420, 60, 40), (330, 120, 40, 70), (300, 560, 50, 30),
              (60, 520, 30, 50)]


class SmallChunks(Segmenter):
    """`micronet segment`'s segmenter, with chunks small enough for a tiny slide to have many."""

    def predict_slide(self, path, **kwargs):
        return super().predict_slide(path, chunk=CHUNK, **kwargs)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    image, _ = purple_image((400, 640), BIG_GLANDS, seed=7)
    return write_pyramid(tmp_path_factory.mktemp("big") / "big.tif", image, mpp=0.31)


@pytest.fixture(scope="module")
def split_reference(slides, big, tmp_path_factory):
    """The single-process `micronet segment` pipeline's outputs, with the same chunks."""
    out = tmp_path_factory.mktemp("split_ref")
    assert segment_files([big, *slides[:2]], out, SmallChunks(**spec()), FORMATS,
                         echo=lambda _: None) == []
    return out


def test_big_slide_split_into_chunk_tasks_equals_single_process(slides, big, split_reference,
                                                                client, tmp_path):
    out = tmp_path / "out"
    lines = []
    with distributed.get_task_stream(client) as stream:
        assert segment_cohort([big, *slides[:2]], out, spec(), client=client, formats=FORMATS,
                              split_above=0.1, chunk=CHUNK, echo=lines.append) == []
    assert_same(out, split_reference)  # label for label, polygon for polygon
    todo = plan_slide(Segmenter(**spec()), big, chunk=CHUNK).todo
    assert len(todo) == 12
    keys = [str(t["key"]) for t in stream.data]
    chunk_keys = {k for k in keys if k.startswith("micronet-chunk-big-")}
    assert len(chunk_keys) == len(todo)  # one task per chunk
    assert sum(k.startswith("micronet-merge-big-") for k in keys) == 1
    assert not any(k.startswith("micronet-segment-big-") for k in keys)
    assert sum(k.startswith("micronet-segment-s") for k in keys) == 2  # small: one task each
    workers = {t["worker"] for t in stream.data if str(t["key"]) in chunk_keys}
    assert workers <= set(client.scheduler_info()["workers"])
    assert set(summary(out)["big"]["worker"].split()) >= workers
    assert any(line.startswith(f"{big}:") and "12 chunk tasks" in line for line in lines)
    assert finished(out) == ["big", "s0", "s1"]


def _alive(pid):
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_ctrl_c_stops_the_cluster_it_started_and_leaves_complete_outputs(
        slides, big, split_reference, tmp_path, monkeypatch):
    from distributed.core import Status
    from PIL import Image

    started = []

    def local(workers=None, dashboard=None):
        started.append(real(workers, dashboard=":0"))
        return started[-1]

    real = cohort.local_cluster
    monkeypatch.setattr(cohort, "local_cluster", local)
    state = {}

    def ctrl_c(line):  # as the first input finishes, once the split slide is under way
        deadline = time.time() + 60
        while time.time() < deadline and not state["client"].run_on_scheduler(
                lambda dask_scheduler: [k for k, ts in dask_scheduler.tasks.items()
                                        if str(k).startswith("micronet-chunk-big-")
                                        and ts.state == "memory"]):
            time.sleep(0.05)
        raise KeyboardInterrupt

    out, inputs = tmp_path / "out", [big, *slides[:2]]
    with pytest.raises(KeyboardInterrupt), open_cluster("local", workers=2) as (c, threads):
        state["client"] = c
        pids = list(c.run(os.getpid).values())
        segment_cohort(inputs, out, spec(SlowPurple(64, delay=0.05)), client=c, formats=FORMATS,
                       threads=threads, split_above=0.1, chunk=CHUNK, echo=ctrl_c)
    (cluster,) = started
    assert cluster.status == Status.closed
    assert len(pids) == 2 and not any(_alive(p) for p in pids)  # the workers are gone
    assert len(finished(out)) == 1
    for path in out.iterdir():  # no temporary files; every output complete
        assert path.name in (".micronet", ".micronet-staging") or path.name[0] != ".", path
        if path.suffix == ".png":
            Image.open(path).load()
        elif path.suffix == ".geojson":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            assert path.read_text().endswith("\n")
    # the next run redoes what was not finished (the split slide whole) and equals one process
    lines = []
    assert segment_cohort(inputs, out, spec(SlowPurple(64, delay=0.05)), formats=FORMATS,
                          chunk=CHUNK, echo=lines.append) == []
    assert sum("skipped" in line for line in lines) == 1
    assert_same(out, split_reference)
    assert not (out / ".micronet-staging").exists()


def test_warm_worker_builds_the_segmenter_the_tasks_then_reuse(slides, tiny_weights, tmp_path):
    from micronet.infer import cohort_tasks

    def weights_spec() -> dict:  # a worker unpickles its own copy for every task
        return {"weights": str(tiny_weights), "device": "cpu", "precision": "fp32",
                "postprocess": PP}

    warm = cohort_tasks.warm_worker(weights_spec())
    assert cohort_tasks.warm_worker(weights_spec()) is warm  # one per spec, built once
    row = cohort_tasks.segment_one(slides[0], "s0", tmp_path / "one",
                                   cohort.spec_key(weights_spec()), weights_spec(), FORMATS)
    assert "error" not in row
    assert list(cohort_tasks._SEGMENTERS.values()) == [warm]  # the task used the warm one


def test_megapixels_reads_slide_headers_and_leaves_broken_ones_to_their_task(slides, tmp_path):
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"II*\x00 not a tiff at all")
    assert cohort._megapixels(slides[0]) == pytest.approx(192 * 256 / 1e6)
    assert cohort._megapixels(bad) is None
    assert cohort._megapixels(slides[-1]) is None  # a PNG tile is not a slide
