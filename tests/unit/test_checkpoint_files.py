"""read_checkpoint_dir: every check both checkpoint kinds rely on, on hand-made files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from dtlens.checkpoint_files import read_checkpoint_dir, write_checkpoint_dir
from dtlens.errors import CheckpointError


def _write(path, config, tensors=None):
    path.mkdir(parents=True, exist_ok=True)
    (path / "c.json").write_text(config if isinstance(config, str) else json.dumps(config))
    save_file(tensors or {"w": torch.arange(3.0)}, path / "w.safetensors")


def _read(path):
    return read_checkpoint_dir(path, "c.json", "w.safetensors", "fmt-x", 2, "an x")


def test_reads_config_and_tensors(tmp_path):
    _write(tmp_path, {"format": "fmt-x", "format_version": 2, "model": {"a": 1}})
    config, tensors = _read(tmp_path)
    assert config["model"] == {"a": 1}
    assert torch.equal(tensors["w"], torch.arange(3.0))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{not json", r"c\.json is not valid JSON"),
        ({"format": "fmt-y"}, r'is not an x config \(expected "format": \'fmt-x\'\)'),
        (["fmt-x"], "is not an x config"),
        (
            {"format": "fmt-x", "format_version": 3},
            r"format_version 3, newer than this dtlens reads \(2\)",
        ),
    ],
)
def test_bad_configs_are_named(tmp_path, config, message):
    _write(tmp_path, config)
    with pytest.raises(CheckpointError, match=message):
        _read(tmp_path)


def test_missing_and_unreadable_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"is not an x: c\.json is missing"):
        _read(tmp_path)
    _write(tmp_path, {"format": "fmt-x"})
    (tmp_path / "w.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match=r"w\.safetensors is not a readable safetensors file"):
        _read(tmp_path)


def test_write_then_read_round_trips_the_module_weights(tmp_path):
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    config = {"format": "fmt-x", "format_version": 1, "metadata": {"note": "n"}}
    write_checkpoint_dir(tmp_path / "ckpt", "c.json", "w.safetensors", config, module, "x")
    read_config, tensors = _read(tmp_path / "ckpt")
    assert read_config == config
    assert set(tensors) == {"weight", "bias"}
    assert torch.equal(tensors["weight"], module.weight.detach())
    assert torch.equal(tensors["bias"], module.bias.detach())


def test_non_json_config_raises_before_anything_is_written(tmp_path):
    config = {"format": "fmt-x", "metadata": {"bad": object()}}
    with pytest.raises(CheckpointError, match="x metadata must be JSON-serialisable"):
        write_checkpoint_dir(
            tmp_path / "ckpt", "c.json", "w.safetensors", config, torch.nn.Linear(1, 1), "x"
        )
    assert not (tmp_path / "ckpt").exists()
