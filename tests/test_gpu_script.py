"""``scripts/gpu_train.py`` on the CPU: a budgeted first part, a resumed part, fp16 export.

The GPU run is prepared here because device time is scarce: a broken script must fail CI, not a
lent GPU session.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from fakes import make_synthetic_glands
from micronet.models.weights_io import load_weights

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_train.py"


@pytest.mark.slow
def test_gpu_script_trains_resumes_and_exports_fp16_shards(tmp_path: Path):
    data = tmp_path / "data"
    for sub in ("images", "labels"):
        (data / sub).mkdir(parents=True)
    for i in range(4):
        image, labels = make_synthetic_glands(size=280, seed=i)
        Image.fromarray(image).save(data / "images" / f"img{i}.png")
        Image.fromarray(labels.astype("uint8")).save(data / "labels" / f"img{i}.png")
    run, out = tmp_path / "run", tmp_path / "export"
    common = ["--minutes", "0.05", "--device", "cpu"]
    overrides = ["model.name=micronet252", "data.patch_size=280", "data.crop_size=252",
                 "data.val_fraction=0.25", "run.threads=1", "run.checkpoint_every=1",
                 "run.log_every=1"]  # a log line per step: a slow CPU may stop before step 10
    first = [sys.executable, str(SCRIPT), "--data", str(data), "--out", str(run), "--width",
             "0.0625", "--batch-size", "1", "--epochs", "2", "--workers", "0",
             "--budget-minutes", "1", *common, *[a for o in overrides for a in ("--set", o)]]
    subprocess.run(first, check=True, capture_output=True, timeout=600)
    part1 = json.loads((run / "gpu_summary.json").read_text())
    assert part1["best_metric"] == "val_f1_tuned" and part1["steps"] >= 1

    # a schedule far longer than the 3 s first part (a schedule sized from a slow first step on a
    # busy CPU could otherwise end inside it), and 15 s for the resumed part's first steps
    second = [sys.executable, str(SCRIPT), "--resume", str(run), "--export", str(out),
              "--export-which", "last", "--minutes", "0.25", "--device", "cpu"]
    subprocess.run(second, check=True, capture_output=True, timeout=600)
    part2 = json.loads((run / "gpu_summary.json").read_text())
    assert part2["steps"] > part1["steps"]
    assert part2["part_steps"] == part2["steps"] - part1["steps"]

    state, meta = load_weights(out / "last_fp16.safetensors")
    assert all(t.dtype == torch.float16 for t in state.values() if t.is_floating_point())
    trained, _ = load_weights(run / "last.safetensors")
    assert state.keys() == trained.keys()
    for k in trained:
        assert torch.allclose(state[k].float(), trained[k].float(), rtol=1e-2, atol=1e-3), k
    assert (out / "config.json").exists() and (out / "log.jsonl").exists()
