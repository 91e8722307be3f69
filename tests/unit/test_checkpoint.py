"""Checkpoint loading refuses what it cannot load safely or exactly, with a named reason."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

import dtlens
from dtlens import CheckpointError
from tests.conftest import build_model
from tests.reference import random_original_checkpoint


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        dtlens.load(tmp_path / "nope")


def test_directory_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"model\.safetensors is missing"):
        dtlens.load(tmp_path)


def test_foreign_config(tmp_path):
    path = dtlens.save(build_model(), tmp_path / "m")
    (path / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a dtlens checkpoint config"):
        dtlens.load(path)


def test_corrupt_weights(tmp_path):
    path = dtlens.save(build_model(), tmp_path / "m")
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        dtlens.load(path)


def test_weights_not_matching_config(tmp_path):
    path = dtlens.save(build_model(), tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    config["model"]["d_mlp"] = 128
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not match its config"):
        dtlens.load(path)


def test_save_load_keeps_metadata_and_weights(tmp_path):
    model = build_model()
    path = dtlens.save(model, tmp_path / "m", metadata={"env": {"max_steps": 50}})
    loaded = dtlens.load(path / "model.safetensors")
    assert loaded.metadata == {"env": {"max_steps": 50}}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this would have run",))

    path = tmp_path / "evil.pt"
    with path.open("wb") as f:
        pickle.dump({"model_state_dict": Evil()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="needs to run pickled code"):
        dtlens.load(path)


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        dtlens.load(path)


def test_original_dict_missing_keys(tmp_path):
    path = tmp_path / "partial.pt"
    torch.save({"model_state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=r"keys \['model_config', 'environment_config'\]"):
        dtlens.load(path)


@pytest.mark.parametrize("encoder", ["CNN", "vit"])
def test_unsupported_state_encoder_is_named(tmp_path, encoder):
    raw = random_original_checkpoint()
    config = json.loads(raw["model_config"])
    config["state_embedding_type"] = encoder
    raw["model_config"] = json.dumps(config)
    path = tmp_path / "cnn.pt"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=f"state_embedding_type='{encoder}' is not supported"):
        dtlens.load(path)


def test_unknown_original_keys_are_reported():
    raw = random_original_checkpoint()
    raw["model_state_dict"]["mystery.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"\['mystery.weight'\]"):
        dtlens.convert_original(raw)


def test_shipped_name_without_files_is_explained(monkeypatch, tmp_path):
    from dtlens.model import checkpoint

    monkeypatch.setattr(checkpoint, "SHIPPED_MODELS", {"memorydt": "does-not-exist"})
    with pytest.raises(CheckpointError, match="shipped model 'memorydt' is missing"):
        dtlens.load("memorydt")
