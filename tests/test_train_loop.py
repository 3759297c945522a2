"""Training loop end to end on tiny data: outputs, exact resume (also after SIGKILL), DDP, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from micronet.errors import MicronetError
from micronet.infer import PostprocessConfig, Segmenter
from micronet.models.weights_io import load_weights
from micronet.train.config import TrainConfig, apply_overrides
from micronet.train.loop import train


def tiny_config(data: Path, out: Path, **extra: str) -> TrainConfig:
    """Micro-Net-252 at width 1/16, 2 epochs of 3 steps, batch 1, no validation."""
    overrides = {"model.name": "micronet252", "model.width": "0.0625", "data.root": str(data),
                 "data.patch_size": "280", "data.crop_size": "252", "data.val_fraction": "0.25",
                 "schedule.epochs": "2", "schedule.steps_per_epoch": "3",
                 "schedule.batch_size": "1", "run.out": str(out), "run.device": "cpu",
                 "run.validate": "false", "run.checkpoint_every": "1", "run.log_every": "1",
                 "run.threads": "1", **extra}
    return apply_overrides(TrainConfig(), [f"{k}={v}" for k, v in overrides.items()])


def assert_same_weights(a: Path, b: Path) -> None:
    wa, _ = load_weights(a)
    wb, _ = load_weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_keep_freed_memory_sets_glibc_malloc_thresholds():
    import platform

    from micronet._allocator import keep_freed_memory

    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc


def test_run_writes_checkpoints_logs_and_config(pairs_dir, tmp_path, monkeypatch):
    kept: list[bool] = []  # CPU training keeps freed memory (1.4x faster steps)
    monkeypatch.setattr("micronet.train.loop.keep_freed_memory", lambda: kept.append(True))
    result = train(tiny_config(pairs_dir, tmp_path / "run"), progress=False)
    assert kept == [True]
    run = result.run_dir
    assert result.step == 6
    for name in ("config.json", "last.pt", "last.safetensors", "best.safetensors", "log.jsonl"):
        assert (run / name).exists(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["name"] == "micronet252" and cfg["schedule"]["epochs"] == 2
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "step"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert steps[0]["lr"] == pytest.approx(1e-3)
    assert steps[-1]["lr"] == pytest.approx(1e-3 / 10**0.2)
    assert all(r["loss"] > 0 and r["samples_per_s"] > 0 for r in steps)
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["step"] == 6 and json.loads(state["config"]) == cfg
    from micronet.train.plot import plot_run

    assert plot_run(run).stat().st_size > 1000


def test_resume_in_parts_equals_uninterrupted(pairs_dir, tmp_path):
    full = train(tiny_config(pairs_dir, tmp_path / "full"), progress=False)
    part = train(tiny_config(pairs_dir, tmp_path / "part", **{"run.max_steps": "4"}),
                 progress=False)
    assert part.step == 4
    rest = train(tiny_config(pairs_dir, tmp_path / "part"), resume=tmp_path / "part",
                 progress=False)
    assert rest.step == 6
    assert_same_weights(full.run_dir / "last.safetensors", rest.run_dir / "last.safetensors")


def test_existing_run_and_bad_config_are_clear_errors(pairs_dir, tmp_path):
    train(tiny_config(pairs_dir, tmp_path / "run", **{"run.max_steps": "1"}), progress=False)
    with pytest.raises(MicronetError, match="a run already exists"):
        train(tiny_config(pairs_dir, tmp_path / "run"), progress=False)
    with pytest.raises(MicronetError, match="crop_size=508 but micronet252 takes 252"):
        train(tiny_config(pairs_dir, tmp_path / "x",
                          **{"data.crop_size": "508", "data.patch_size": "600"}), progress=False)
    with pytest.raises(MicronetError, match="data folder not found"):
        train(tiny_config(tmp_path / "nowhere", tmp_path / "y"), progress=False)
    with pytest.raises(MicronetError, match="model.width=0.0: must be > 0"):
        train(tiny_config(pairs_dir, tmp_path / "z", **{"model.width": "0"}), progress=False)


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "MICRONET_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "micronet", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _cli_args(pairs_dir: Path, out: Path) -> list[str]:
    cfg = tiny_config(pairs_dir, out, **{"schedule.steps_per_epoch": "4"})
    cfg_path = out.parent / f"{out.name}.json"
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    return ["train", "--config", str(cfg_path)]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches(pairs_dir, tmp_path):
    ref = _cli(_cli_args(pairs_dir, tmp_path / "ref"))
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    victim = _cli(_cli_args(pairs_dir, tmp_path / "victim"))
    log = tmp_path / "victim" / "log.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if sum('"type": "step"' in x for x in lines) >= 3:  # mid-epoch 1 (4 steps per epoch)
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    state = torch.load(tmp_path / "victim" / "last.pt", weights_only=True)
    assert 0 < state["step"] < 8, "killed before the end"
    resumed = _cli(["train", "--resume", str(tmp_path / "victim")])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert_same_weights(tmp_path / "ref" / "last.safetensors",
                        tmp_path / "victim" / "last.safetensors")


def _ddp_worker(rank: int, world: int, cfg_dict: dict, out_dir: str, port: int) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    result = train(TrainConfig.from_dict(cfg_dict), progress=False)
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, f"{out_dir}/rank{rank}.safetensors")


@pytest.mark.slow
def test_ddp_two_cpu_processes_hold_identical_weights(pairs_dir, tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tiny_config(pairs_dir, tmp_path / "ddp", **{"schedule.epochs": "1",
                                                      "schedule.steps_per_epoch": "2"})
    mp.spawn(_ddp_worker, args=(2, cfg.to_dict(), str(tmp_path), port), nprocs=2, join=True)
    assert_same_weights(tmp_path / "rank0.safetensors", tmp_path / "rank1.safetensors")
    start = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert start["step"] == 2 and len(start["rng"]) == 2
    assert not (tmp_path / "ddp" / "rank1").exists()


def test_validation_scores_each_epoch_and_keeps_best(pairs_dir, tmp_path):
    cfg = tiny_config(pairs_dir, tmp_path / "val", **{"run.validate": "true"})
    result = train(cfg, progress=False)
    records = [json.loads(x) for x in (result.run_dir / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    for r in epochs:
        assert 0.0 <= r["val_f1"] <= 1.0 and 0.0 <= r["val_pixel_f1"] <= 1.0
        # the grid holds the default parameters, so tuning can only match or beat them
        assert r["val_f1"] <= r["val_f1_tuned"] <= 1.0
    assert result.best_score == max(r["val_f1_tuned"] for r in epochs)
    tuned = json.loads((result.run_dir / "postprocess.json").read_text())
    assert tuned["tuned_on"] == json.loads((result.run_dir / "split.json").read_text())["val"]
    assert tuned["table"][0]["f1"] == result.best_score
    assert Segmenter(weights=result.run_dir).postprocess == \
        PostprocessConfig.from_dict(tuned["postprocess"])
    _, meta = load_weights(result.run_dir / "best.safetensors")
    assert meta["arch"] == "micronet252" and float(meta["width"]) == 0.0625


def test_fine_tune_starts_from_given_weights(pairs_dir, tmp_path):
    first = train(tiny_config(pairs_dir, tmp_path / "a", **{"run.max_steps": "2"}),
                  progress=False)
    cfg = tiny_config(pairs_dir, tmp_path / "b", **{
        "model.init": str(first.run_dir / "last.safetensors"), "run.max_steps": "1",
        "schedule.lr0": "0.0"})
    tuned = train(cfg, progress=False)
    assert_same_weights(first.run_dir / "last.safetensors", tuned.run_dir / "last.safetensors")
    bad = tiny_config(pairs_dir, tmp_path / "c", **{
        "model.init": str(first.run_dir / "last.safetensors"), "model.width": "0.125"})
    with pytest.raises(MicronetError, match="weights do not fit micronet252 at width 0.125"):
        train(bad, progress=False)


def test_tune_writes_postprocess_that_segmenter_uses(pairs_dir, tmp_path):
    from micronet.cli import main
    from micronet.infer import Segmenter

    run = train(tiny_config(pairs_dir, tmp_path / "run", **{"run.max_steps": "1"}),
                progress=False).run_dir
    assert main(["tune", "--weights", str(run), "--data", str(pairs_dir), "--device", "cpu"]) == 0
    tuned = json.loads((run / "postprocess.json").read_text())
    split = json.loads((run / "split.json").read_text())
    # the run's own hold-out (data.val_fraction 0.25 from its config.json), not tune's defaults
    assert tuned["tuned_on"] == split["val"] and len(split["val"]) == 1
    assert sorted(split["train"] + split["val"]) == [f"img{i}" for i in range(4)]
    assert set(tuned["postprocess"]) >= {"threshold", "min_size", "contour_growth"}
    # the full scores of the chosen values: the grid's best row, plus Hausdorff and pixel F1
    assert tuned["scores"]["f1"] == pytest.approx(tuned["table"][0]["f1"])
    assert tuned["scores"]["object_dice"] == pytest.approx(tuned["table"][0]["dice"])
    assert {"object_hausdorff", "pixel_f1", "precision", "recall"} <= set(tuned["scores"])
    seg = Segmenter(model="micronet252", weights=run, device="cpu")
    assert seg.postprocess.__dict__ == tuned["postprocess"]
    # every image of the split, written elsewhere: the run's own file is left alone
    before = (run / "postprocess.json").read_text()
    assert main(["tune", "--weights", str(run), "--data", str(pairs_dir), "--device", "cpu",
                 "--images", "all", "--out", str(tmp_path / "all.json")]) == 0
    assert json.loads((tmp_path / "all.json").read_text())["tuned_on"] == \
        [f"img{i}" for i in range(4)]
    assert (run / "postprocess.json").read_text() == before
    assert main(["tune", "--weights", str(run), "--data", str(pairs_dir), "--images", "some"]) \
        == 1
    # the hold-out is read from split.json, not recomputed
    other = next(n for n in split["train"])
    (run / "split.json").write_text(json.dumps({"train": [], "val": [other]}))
    assert main(["tune", "--weights", str(run), "--data", str(pairs_dir), "--device", "cpu",
                 "--out", str(tmp_path / "split.json")]) == 0
    assert json.loads((tmp_path / "split.json").read_text())["tuned_on"] == [other]
    assert main(["tune", "--weights", str(run), "--data", str(pairs_dir), "--device", "cpu",
                 "--objective", "dice", "--out", str(tmp_path / "dice.json")]) == 0
    record = json.loads((tmp_path / "dice.json").read_text())
    assert record["objective"] == "dice"
    assert record["table"][0]["dice"] == max(r["dice"] for r in record["table"])
    assert record["tta"] == 1 and tuned["tta"] == 1
    # tuned on maps averaged over the 8 test-time transforms, and says so
    assert main(["tune", "--weights", str(run), "--data", str(pairs_dir), "--device", "cpu",
                 "--tta", "--out", str(tmp_path / "tta.json")]) == 0
    assert json.loads((tmp_path / "tta.json").read_text())["tta"] == 8
    assert main(["tune", "--weights", str(run), "--data", str(pairs_dir), "--objective", "hd"]) \
        == 1


def test_tune_takes_a_sharded_checkpoint_by_its_file_name(pairs_dir, tmp_path):
    """``RUN/last.safetensors`` names the checkpoint whether it was written whole or as shards
    (then only ``last.safetensors.index.json`` and the shards exist)."""
    from micronet.cli import main
    from micronet.models.weights_io import load_weights, save_weights

    run = train(tiny_config(pairs_dir, tmp_path / "run", **{"run.max_steps": "1"}),
                progress=False).run_dir
    last = run / "last.safetensors"
    state, meta = load_weights(last)
    last.unlink()
    shards = save_weights(state, last, meta, shard_mb=0.05)
    assert len(shards) > 1 and not last.exists()
    assert main(["tune", "--weights", str(last), "--data", str(pairs_dir), "--device", "cpu",
                 "--out", str(tmp_path / "pp.json")]) == 0
    split = json.loads((run / "split.json").read_text())
    assert json.loads((tmp_path / "pp.json").read_text())["tuned_on"] == split["val"]


def test_best_after_keeps_early_validations_out_of_best(pairs_dir, tmp_path, capsys):
    """run.best_after 0.9 of 3 steps: epochs 1-2 are validated, only step 3 can be best."""
    cfg = tiny_config(pairs_dir, tmp_path / "late", **{
        "run.validate": "true", "run.best_after": "0.9", "schedule.epochs": "3",
        "schedule.steps_per_epoch": "1"})
    result = train(cfg, progress=False)
    records = [json.loads(x) for x in (result.run_dir / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["step"] for r in epochs] == [1, 2, 3]
    assert all("val_f1_tuned" in r for r in epochs)
    assert [r.get("best", False) for r in epochs] == [False, False, True]
    assert result.best_score == epochs[-1]["val_f1_tuned"]
    console = " ".join(capsys.readouterr().err.split())  # rich wraps long lines at spaces
    assert console.count(", best") == 1 and "best 1" not in console  # the flag, not "best 1"
    with pytest.raises(MicronetError, match=r"run.best_after=1.0: must be in \[0, 1\)"):
        train(tiny_config(pairs_dir, tmp_path / "bad", **{"run.best_after": "1"}), progress=False)


def test_cli_train_writes_summary_naming_the_best_metric(pairs_dir, tmp_path):
    from micronet.cli import main

    sets = [f"--set={k}={v}" for k, v in {
        "data.patch_size": 280, "data.crop_size": 252, "data.val_fraction": 0.25,
        "schedule.steps_per_epoch": 2, "schedule.batch_size": 1, "run.threads": 1,
        "run.best_metric": "val_dice"}.items()]
    out = tmp_path / "run"
    assert main(["train", "--data", str(pairs_dir), "--out", str(out), "--model", "micronet252",
                 "--width", "0.0625", "--epochs", "1", "--device", "cpu", *sets]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 2 and summary["best_metric"] == "val_dice"
    epochs = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
              if r["type"] == "epoch"]
    assert summary["best_score"] == pytest.approx(epochs[-1]["val_dice"])
    assert (out / "curves.png").exists()


def test_ema_run_saves_the_average_and_resumes_exactly(pairs_dir, tmp_path):
    ema = {"schedule.ema_decay": "0.5"}
    full = train(tiny_config(pairs_dir, tmp_path / "full", **ema), progress=False)
    plain = train(tiny_config(pairs_dir, tmp_path / "plain"), progress=False)
    state = torch.load(full.run_dir / "last.pt", weights_only=True)
    assert state["ema"]["updates"] == 6
    saved, _ = load_weights(full.run_dir / "last.safetensors")
    live = state["model"]  # the training weights, kept for resuming
    assert any(not torch.equal(saved[k], live[k]) for k in saved)  # the average is what's saved
    # same seed, same steps: EMA changes what is saved, not how the network trains
    assert all(torch.equal(live[k], torch.load(plain.run_dir / "last.pt",
                                               weights_only=True)["model"][k]) for k in live)
    part = train(tiny_config(pairs_dir, tmp_path / "part", **ema, **{"run.max_steps": "4"}),
                 progress=False)
    assert part.step == 4
    rest = train(tiny_config(pairs_dir, tmp_path / "part", **ema), resume=tmp_path / "part",
                 progress=False)
    assert_same_weights(full.run_dir / "last.safetensors", rest.run_dir / "last.safetensors")
    with pytest.raises(MicronetError, match="ema_decay"):
        train(tiny_config(pairs_dir, tmp_path / "plain", **ema), resume=tmp_path / "plain",
              progress=False)
