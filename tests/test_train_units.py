"""Training pieces that need no data: config, schedule, loss, checkpoints, weight files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from micronet.errors import MicronetError
from micronet.models import MicroNetOutput, create
from micronet.models.weights_io import load_weights, save_weights
from micronet.train.checkpoint import load_state, save_model_weights, save_state
from micronet.train.config import TrainConfig, apply_overrides, load_config
from micronet.train.loss import micronet_loss, soft_dice_loss, weighted_cross_entropy
from micronet.train.schedule import aux_weight, learning_rate


def test_paper_schedule():
    assert learning_rate(0) == pytest.approx(1e-3)
    assert learning_rate(5) == pytest.approx(1e-4)
    assert learning_rate(10) == pytest.approx(1e-5)
    assert aux_weight(0) == 1.0 and aux_weight(3) == pytest.approx(0.25)


def test_weighted_cross_entropy_by_hand():
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 1, 0, 0] = math.log(2.0)  # p = (1, 2, 1) / 4 at pixel 0
    target = torch.tensor([[[1, 0]]])
    weight = torch.tensor([[[2.0, 1.0]]])
    want = (2.0 * -math.log(0.5) + 1.0 * -math.log(1 / 3)) / 2
    assert float(weighted_cross_entropy(logits, target, weight)) == pytest.approx(want)


def test_micronet_loss_weighs_aux_by_epoch():
    torch.manual_seed(0)
    main = torch.randn(2, 3, 4, 4)
    aux = tuple(torch.randn(2, 3, 4, 4) for _ in range(3))
    target = torch.randint(0, 3, (2, 4, 4))
    weight = torch.rand(2, 4, 4) + 0.5
    out = MicroNetOutput(main, aux)
    total, parts = micronet_loss(out, target, weight, aux_weight(1))
    assert float(total) == pytest.approx(float(parts["main"] + parts["aux"] / 2), rel=1e-5)
    assert float(parts["aux"]) == pytest.approx(sum(float(weighted_cross_entropy(a, target, weight))
                                             for a in aux), rel=1e-5)


def test_soft_dice_of_the_gland_class():
    target = torch.tensor([[[1, 1, 0, 2]]])
    sure = torch.full((1, 3, 1, 4), -30.0)
    sure.scatter_(1, target[:, None], 30.0)  # one-hot logits: a perfect prediction
    assert float(soft_dice_loss(sure, target)) == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(1, 3, 1, 4)  # p(gland) = 1/3 everywhere: 2*(2/3)+1 over 4/3+2+1
    assert float(soft_dice_loss(uniform, target)) == pytest.approx(1 - (7 / 3) / (13 / 3))
    uniform.requires_grad_(True)
    soft_dice_loss(uniform, target).backward()
    grad = uniform.grad[0, 1, 0]  # descending it raises p(gland) on gland pixels only
    assert (grad[:2] < 0).all() and (grad[2:] > 0).all()


def test_dice_weight_adds_the_gland_dice_to_the_paper_loss():
    torch.manual_seed(0)
    out = MicroNetOutput(torch.randn(2, 3, 4, 4), tuple(torch.randn(2, 3, 4, 4) for _ in range(3)))
    target = torch.randint(0, 3, (2, 4, 4))
    weight = torch.ones(2, 4, 4)
    paper, parts = micronet_loss(out, target, weight, 1.0)
    assert "dice" not in parts
    total, parts = micronet_loss(out, target, weight, 1.0, dice_weight=0.5)
    want = float(paper) + 0.5 * float(soft_dice_loss(out.main, target))
    assert float(total) == pytest.approx(want, rel=1e-6)
    assert float(parts["dice"]) == pytest.approx(float(soft_dice_loss(out.main, target)))


def test_config_files_and_overrides(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("model:\n  width: 0.25\nschedule:\n  epochs: 3\n")
    cfg = load_config(yml)
    assert cfg.model.width == 0.25 and cfg.schedule.epochs == 3 and cfg.schedule.lr0 == 1e-3
    toml = tmp_path / "c.toml"
    toml.write_text("[run]\nseed = 7\n")
    assert load_config(toml).run.seed == 7
    cfg = apply_overrides(cfg, ["run.compile=true", "data.val_fraction=0.2"])
    assert cfg.run.compile is True and cfg.data.val_fraction == 0.2
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(("text", "message"), [
    ("model:\n  widht: 0.25\n", "unknown key model.widht"),
    ("modle:\n  width: 0.25\n", "unknown section 'modle'"),
    ("model: [1, 2\n", "cannot parse config"),
])
def test_config_errors_name_the_problem(tmp_path, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(MicronetError, match=message):
        load_config(bad)


def test_override_errors():
    with pytest.raises(MicronetError, match="no such config key"):
        apply_overrides(TrainConfig(), ["model.depth=3"])
    with pytest.raises(MicronetError, match="expected a int"):
        apply_overrides(TrainConfig(), ["schedule.epochs=many"])


def test_every_bad_value_is_reported_at_once(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedule:\n  optimizer: rmsprop\n  batch_size: 0\n"
                   "run:\n  best_metric: loss\n  device: gpu\ndata:\n  val_fraction: 1.5\n")
    with pytest.raises(MicronetError) as err:
        load_config(bad)
    message = str(err.value)
    assert message.startswith(f"{bad}: ") and "\n" not in message
    for part in ("schedule.optimizer='rmsprop': expected adam, adamw, sgd",
                 "schedule.batch_size=0: must be >= 1", "run.best_metric='loss'",
                 "run.device='gpu'", "data.val_fraction=1.5"):
        assert part in message
    with pytest.raises(MicronetError, match="overrides: data.patch_size=500: is smaller"):
        apply_overrides(TrainConfig(), ["data.patch_size=500"])
    assert TrainConfig().problems() == []
    assert apply_overrides(TrainConfig(), ["run.device=cuda:1"]).run.device == "cuda:1"


def test_state_roundtrip_weights_only(tmp_path):
    model = create("micronet252", width=1 / 16)
    opt = torch.optim.Adam(model.parameters())
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 3,
             "rng": [{"torch": torch.get_rng_state()}]}
    save_state(tmp_path / "last.pt", state)
    loaded = torch.load(tmp_path / "last.pt", weights_only=True)
    assert loaded["step"] == 3
    assert load_state(tmp_path / "last.pt")["step"] == 3
    assert not list(tmp_path.glob(".*tmp*")), "no temporary files left behind"


def test_sharded_weights_roundtrip(tmp_path):
    model = create("micronet508", width=0.125)
    files = save_model_weights(model, tmp_path / "w.safetensors", shard_mb=4, step=9)
    assert len(files) > 3 and all(f.stat().st_size < 4 * 2**20 for f in files)
    state, meta = load_weights(tmp_path / "w.safetensors")
    assert meta["arch"] == "micronet508" and meta["width"] == "0.125" and meta["step"] == "9"
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v)
    half = save_weights(model.state_dict(), tmp_path / "h.safetensors", meta, dtype=torch.float16)
    assert load_weights(half[0])[0]["heads.main.1.weight"].dtype == torch.float16


def test_unreadable_weights_and_missing_state(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(MicronetError, match="bad.safetensors: not a readable safetensors"):
        load_weights(bad)
    with pytest.raises(MicronetError, match="no training state"):
        load_state(tmp_path / "nothing.pt")


def test_out_of_disk_on_checkpoint_is_a_clear_error(tmp_path, monkeypatch):
    import errno

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(MicronetError, match="last.pt: out of disk space"):
        save_state(tmp_path / "last.pt", {"step": 1})
    assert not list(tmp_path.iterdir()), "no partial checkpoint left behind"


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "training_runs")
                                        .rglob("*.yaml")), ids=lambda p: p.parent.name)
def test_recorded_run_configs_still_load(path):
    """The configs in training_runs/ are documentation users rerun: they must stay valid, and
    where the run has been made (its config.json is committed beside it) match what it ran."""
    config = load_config(path)
    assert config.schedule.epochs > 0 and config.run.out
    recorded_path = path.parent / "config.json"
    if not recorded_path.exists():
        assert not (path.parent / "log.jsonl").exists(), f"{path.parent}: log without config"
        return
    recorded = json.loads(recorded_path.read_text())
    assert config.model.name == recorded["model"]["name"]
    assert config.data.mpp == recorded["data"].get("mpp", 0.0)


def test_bench_train_reports_speedup_against_a_measured_peak(tmp_path, capsys, monkeypatch):
    """`micronet bench train` times both step variants and, on a CPU, reports the optimised
    step's GFLOP/s as a share of a matmul rate measured in the same run; the optimised step
    keeps freed memory as `micronet train` does, the naive one runs before that is set."""
    from micronet.cli import main
    from micronet.train import bench
    from micronet.train.bench import matmul_tflops

    events: list[str] = []
    monkeypatch.setattr(bench, "keep_freed_memory", lambda: events.append("kept"))
    timed = bench._time_steps
    monkeypatch.setattr(bench, "_time_steps",
                        lambda *a, **k: events.append("timed") or timed(*a, **k))

    assert matmul_tflops(torch.device("cpu"), None, size=64, repeats=2) > 0
    out = tmp_path / "bench.json"
    assert main(["bench", "train", "--model", "micronet252", "--width", "0.0625",
                 "--batch-size", "1", "--steps", "1", "--warmup", "0", "--device", "cpu",
                 "--json", str(out)]) in (0, None)
    r = json.loads(out.read_text())
    assert [t["name"].split(" ")[0] for t in r["timings"]] == ["naive", "optimised"]
    assert events == ["timed", "kept", "timed"]
    assert "kept freed memory" in r["timings"][1]["name"]
    assert r["speedup"] == pytest.approx(r["timings"][0]["step_s"] / r["timings"][1]["step_s"])
    assert r["peak_tflops"] > 0 and "measured" in r["peak_source"]
    assert r["fraction_of_peak"] == pytest.approx(r["timings"][1]["tflops"] / r["peak_tflops"])
    assert "% of" in capsys.readouterr().out


def test_weight_average_follows_the_ema_formula_and_swaps_back():
    from micronet.train.ema import WeightAverage

    model = torch.nn.Linear(3, 2)
    start = model.weight.detach().clone()
    ema = WeightAverage(model, decay=0.9)
    assert ema.current_decay() == pytest.approx(0.1)  # warm-up: (1+0)/(10+0)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update()  # average = 0.1·start + 0.9·(start+1)
    expected = start + 0.9
    with ema.applied() as averaged:
        assert averaged is model and torch.allclose(model.weight, expected)
    assert torch.equal(model.weight, start + 1.0)  # training weights are back
    for _ in range(100):
        ema.update()
    assert ema.current_decay() == pytest.approx(0.9)  # warm-up over: the configured decay
    restored = WeightAverage(model, decay=0.9)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 101 and all(
        torch.equal(a, b) for a, b in zip(restored.average, ema.average, strict=True))
    ema.copy_to_model()
    assert torch.allclose(model.weight, start + 1.0, atol=1e-3)  # converged to the live weights
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)
