"""The weights card and the run folder: one description for shipped and trained weights."""

from __future__ import annotations

import json

import pytest
import torch

from micronet.errors import MicronetError
from micronet.infer.run_folder import RunFolder, read_postprocess
from micronet.infer.runtime import load_weights_file
from micronet.models import DEFAULT_MPP, WeightsCard, create, get_pretrained
from micronet.models.weights_io import load_weights, save_weights
from micronet.train.checkpoint import save_model_weights


def test_shipped_and_trained_weights_share_one_card(tmp_path):
    shipped = get_pretrained("micronet252", "glas")
    assert isinstance(shipped, WeightsCard) and shipped.name == "micronet252.glas_w025"
    assert (shipped.mpp, shipped.input_mpp) == (2 * DEFAULT_MPP, DEFAULT_MPP)
    assert len(shipped.sha256) == 64
    model = create("micronet252", width=1 / 16, upsample_init="nearest")
    save_model_weights(model, tmp_path / "w.safetensors", mpp=1.24, input_mpp=0.62, step=7)
    loaded, card = load_weights_file(tmp_path / "w.safetensors", with_info=True)
    assert (card.arch, card.width, card.mpp, card.input_mpp) == ("micronet252", 1 / 16, 1.24,
                                                                  0.62)
    assert card.model_kwargs["upsample_init"] == "nearest" and card.provenance == {"step": 7}
    assert loaded.build_kwargs == model.build_kwargs
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert WeightsCard.from_dict(card.to_dict()) == card


def test_model_options_in_metadata_rebuild_the_network(tmp_path):
    """Options written as plain metadata keys (not only model_kwargs) are recognised by the
    architecture's constructor, so a new model option needs no new card field."""
    model = create("micronet252", width=1 / 16, upsample_init="nearest")
    meta = {"arch": "micronet252", "width": str(1 / 16), "upsample_init": "nearest",
            "epoch": "2.5"}
    save_weights(model.state_dict(), tmp_path / "w.safetensors", meta)
    _, card = load_weights_file(tmp_path / "w.safetensors", with_info=True)
    assert card.model_kwargs == {"upsample_init": "nearest"}
    assert card.provenance == {"epoch": 2.5}


def test_run_folder_supplies_what_the_metadata_lacks(tmp_path):
    model = create("micronet252", width=1 / 16)
    run = RunFolder(tmp_path / "run")
    save_weights(model.state_dict(), run.best, {})
    with pytest.raises(MicronetError, match="no architecture/width"):
        load_weights_file(run.path)
    run.config.write_text(json.dumps({"model": {"name": "micronet252", "width": 1 / 16,
                                                "dropout": 0.3, "grad_checkpointing": True}}))
    (run.path / "postprocess.json").write_text(json.dumps({"postprocess": {"min_size": 7}}))
    _, card = load_weights_file(run.path, with_info=True)
    assert card.model_kwargs == {"dropout": 0.3} and card.postprocess["min_size"] == 7
    run.postprocess.write_text(json.dumps({"postprocess": {"min_size": -1}}))
    with pytest.raises(MicronetError, match="postprocess.json: not usable post-processing"):
        load_weights_file(run.path)


def test_weights_that_do_not_fit_name_the_file_and_model(tmp_path):
    model = create("micronet252", width=1 / 16)
    path = tmp_path / "w.safetensors"
    save_weights(model.state_dict(), path, {"arch": "micronet252", "width": "0.125"})
    with pytest.raises(MicronetError, match=r"w.safetensors: weights do not fit micronet252 at "
                                            r"width 0.125 \("):
        load_weights_file(path)


def test_run_folder_owns_its_files(tmp_path):
    from micronet.infer import PostprocessConfig

    run = RunFolder(tmp_path / "run")
    assert run.read_split() is None and run.read_config() == {} and run.read_summary() == {}
    run.write_split(["a", "b"], ["c"])
    assert run.read_split() == (["a", "b"], ["c"])
    run.append_log({"type": "step", "step": 1})
    run.append_log({"type": "epoch", "epoch": 1})
    assert [r["type"] for r in run.read_log()] == ["step", "epoch"]
    tuned = PostprocessConfig(min_size=50)
    run.write_postprocess(tuned, [{"f1": 0.5}], ["c"])
    assert run.read_postprocess() == tuned == read_postprocess(run.postprocess)
    run.write_summary({"step": 3})
    assert run.read_summary() == {"step": 3}
    assert RunFolder.of(run.best) == run == RunFolder.of(run.path)
    run.split.write_text("[1]")
    with pytest.raises(MicronetError, match="split.json: unreadable split"):
        run.read_split()


def test_shipped_metadata_is_read_as_a_card():
    """The shipped file's own safetensors metadata reads as a card
    that agrees with its index.json entry."""
    from micronet.infer.runtime import weights_card
    from micronet.models import weights_dir

    shipped = get_pretrained("micronet252", "glas")
    _, meta = load_weights(weights_dir() / shipped.file)
    card = weights_card(weights_dir() / shipped.file, meta)
    assert (card.arch, card.width, card.num_classes) == (shipped.arch, shipped.width,
                                                         shipped.num_classes)
