"""Checkpoint loading refuses what it cannot load safely or exactly, with a named reason.

Faults are injected into saved checkpoints: a flipped byte in ``model.safetensors``,
NaN written into a tensor, tensors deleted, added or reshaped (with the hash updated,
so the shape check is what catches them), config fields of the wrong type; and into
original ``.pt`` checkpoints: tensors deleted or reshaped, NaN written.
"""

from __future__ import annotations

import hashlib
import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

import dtlens
from dtlens import CheckpointError
from dtlens.errors import DeviceError
from tests.conftest import ORIGINAL_DT, build_model, requires_shared
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
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not the file config\.json"):
        dtlens.load(path)
    _drop_hash(path)  # a checkpoint from before hashes: the file itself is checked
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        dtlens.load(path)


def _drop_hash(path):
    config = json.loads((path / "config.json").read_text())
    del config["weights_sha256"]
    (path / "config.json").write_text(json.dumps(config))


def _rewrite_weights(path, change):
    """Change the saved tensors and record the new file's hash (a consistent pair)."""
    tensors = load_file(path / "model.safetensors")
    change(tensors)
    save_file(tensors, path / "model.safetensors")
    config = json.loads((path / "config.json").read_text())
    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    config["weights_sha256"] = digest
    (path / "config.json").write_text(json.dumps(config))


def test_a_flipped_byte_is_named_and_an_unhashed_checkpoint_still_loads(tmp_path):
    model = build_model()
    path = dtlens.save(model, tmp_path / "m")
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 0x40
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"SHA-256 is [0-9a-f]{16}\.\.\., the config records"):
        dtlens.load(path)
    _drop_hash(path)
    loaded = dtlens.load(path)  # old checkpoints (no hash) load, unverified
    changed = [
        k for k, v in model.state_dict().items() if not torch.equal(loaded.state_dict()[k], v)
    ]
    assert len(changed) == 1  # the flipped byte really changed a weight


def test_the_shipped_checkpoint_records_and_passes_its_hash():
    from dtlens.model.checkpoint import _shipped_path

    path = _shipped_path("memorydt")
    config = json.loads((path / "config.json").read_text())
    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    assert config["weights_sha256"] == digest
    assert dtlens.load("memorydt").cfg.n_layers == 2


def test_nan_weights_are_refused_with_the_tensor_name(tmp_path):
    path = dtlens.save(build_model(), tmp_path / "m")

    def poison(tensors):
        tensors["state_embed.weight"][0, 3] = float("nan")

    _rewrite_weights(path, poison)
    with pytest.raises(
        CheckpointError, match=r"tensor 'state_embed\.weight' holds 1 NaN and 0 inf"
    ):
        dtlens.load(path)


def test_missing_extra_and_misshapen_tensors_are_listed(tmp_path):
    path = dtlens.save(build_model(), tmp_path / "m")

    def damage(tensors):
        del tensors["rtg_embed.weight"]
        tensors["extra.weight"] = torch.zeros(2)
        tensors["action_embed.weight"] = torch.zeros(3, 3)

    _rewrite_weights(path, damage)
    with pytest.raises(CheckpointError) as caught:
        dtlens.load(path)
    message = str(caught.value)
    assert "missing ['rtg_embed.weight']" in message
    assert "unexpected ['extra.weight']" in message
    assert "wrong shape: action_embed.weight [3, 3] (expected [8, 32])" in message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(model=[1, 2]), "'model' must be a JSON object, got list"),
        (
            lambda c: c["model"].update(d_model="wide"),
            r"invalid model config: DTConfig\.d_model='wide' must be",
        ),
        (lambda c: c["model"].pop("n_heads"), r"invalid model config: .*'n_heads'"),
        (lambda c: c.update(metadata="notes"), "'metadata' must be a JSON object, got str"),
    ],
)
def test_config_fields_of_the_wrong_type_are_named(tmp_path, change, message):
    path = dtlens.save(build_model(), tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    change(config)
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        dtlens.load(path)


@pytest.mark.parametrize("bad", [None, 3, ["memorydt"]])
def test_load_needs_a_path_or_a_name(bad):
    with pytest.raises(CheckpointError, match="needs a checkpoint path or a shipped name"):
        dtlens.load(bad)


@pytest.mark.parametrize("device", ["gpu", "cuda:999", "cpu:x"])
def test_bad_devices_are_named_before_loading(tmp_path, device):
    path = dtlens.save(build_model(), tmp_path / "m")
    with pytest.raises(DeviceError, match=f"device='{device}'"):
        dtlens.load(path, device=device)
    assert dtlens.load(path, device="cpu").cfg.d_model == 32


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


def _original_file(tmp_path, raw, name="orig.pt"):
    path = tmp_path / name
    torch.save(raw, path)
    return path


def test_original_checkpoint_missing_tensors_are_listed(tmp_path):
    raw = random_original_checkpoint()
    for key in ("transformer.blocks.1.attn.W_K", "transformer.blocks.0.mlp.b_out"):
        del raw["model_state_dict"][key]
    with pytest.raises(CheckpointError) as caught:
        dtlens.load(_original_file(tmp_path, raw))
    assert "missing ['transformer.blocks.0.mlp.b_out', 'transformer.blocks.1.attn.W_K']" in str(
        caught.value
    )


def test_original_checkpoint_wrong_shapes_are_listed(tmp_path):
    raw = random_original_checkpoint()  # d_model 32, 4 heads of 8
    raw["model_state_dict"]["transformer.blocks.0.attn.W_Q"] = torch.zeros(4, 32, 9)
    raw["model_state_dict"]["transformer.pos_embed.W_pos"] = torch.zeros(25, 32)
    with pytest.raises(CheckpointError) as caught:
        dtlens.load(_original_file(tmp_path, raw))
    message = str(caught.value)
    assert "transformer.blocks.0.attn.W_Q [4, 32, 9] (expected [4, 32, 8])" in message
    assert "transformer.pos_embed.W_pos [25, 32] (expected [26, 32])" in message


def test_original_checkpoint_with_nan_is_refused_by_name(tmp_path):
    raw = random_original_checkpoint()
    raw["model_state_dict"]["transformer.blocks.1.mlp.W_out"][2, 2] = float("inf")
    with pytest.raises(CheckpointError, match=r"'transformer\.blocks\.1\.mlp\.W_out' holds 0 NaN"):
        dtlens.load(_original_file(tmp_path, raw))


@requires_shared(ORIGINAL_DT)
def test_the_shared_original_checkpoint_damaged_is_named(tmp_path):
    raw = torch.load(ORIGINAL_DT, map_location="cpu", weights_only=True)
    sd = raw["model_state_dict"]
    del sd["transformer.blocks.1.mlp.W_gate"]
    sd["action_predictor.bias"] = torch.zeros(5)
    with pytest.raises(CheckpointError) as caught:
        dtlens.load(_original_file(tmp_path, raw, "damaged.pt"))
    message = str(caught.value)
    assert "missing ['transformer.blocks.1.mlp.W_gate']" in message
    assert "action_predictor.bias [5] (expected [7])" in message
    assert message.startswith(f"{tmp_path / 'damaged.pt'}: ")
