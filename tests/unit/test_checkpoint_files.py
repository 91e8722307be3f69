"""read_checkpoint_dir: every check both checkpoint kinds rely on, on hand-made files.

Faults are injected into the files: a flipped byte in the weights, NaN and inf written
into a tensor, configs that are not UTF-8, nested too deeply, directories, or have fields
of the wrong type; and into saving: ``os.fsync`` failing for the second file half-way
(disk full) and the writer interrupted (Ctrl+C).
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from dtlens.checkpoint_files import (
    check_tensors_match,
    read_checkpoint_dir,
    resolve_device,
    write_checkpoint_dir,
)
from dtlens.errors import CheckpointError, DeviceError


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
    weights = (tmp_path / "ckpt" / "w.safetensors").read_bytes()
    assert read_config == {**config, "weights_sha256": hashlib.sha256(weights).hexdigest()}
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


def _saved(path, module=None):
    torch.manual_seed(0)
    module = module or torch.nn.Linear(3, 2)
    config = {"format": "fmt-x", "format_version": 1, "metadata": {"note": "n"}}
    write_checkpoint_dir(path, "c.json", "w.safetensors", config, module, "x")
    return path


def test_a_flipped_byte_in_the_weights_is_named_not_loaded(tmp_path):
    path = _saved(tmp_path / "ckpt")
    weights = path / "w.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # inside the last tensor's data: still a valid safetensors file
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"w\.safetensors is not the file c\.json was saved"):
        _read(path)
    # the same bytes without a recorded hash (a checkpoint from before hashes) load
    config = json.loads((path / "c.json").read_text())
    del config["weights_sha256"]
    (path / "c.json").write_text(json.dumps(config))
    assert _read(path)[1]["bias"].shape == (2,)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_by_name(tmp_path, bad):
    module = torch.nn.Linear(3, 2)
    with torch.no_grad():
        module.weight[1, 2] = bad
    path = _saved(tmp_path / "ckpt", module)  # saving keeps them: a diverged run is evidence
    with pytest.raises(CheckpointError, match=r"tensor 'weight' holds .* of its 6 values"):
        _read(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe{}", r"c\.json is not UTF-8 text \(byte 0xff at offset 0\)"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"format": "fmt-x", "format_version": "1"}', "format_version must be an int >= 0"),
        (b'{"format": "fmt-x", "format_version": true}', "format_version must be an int >= 0"),
        (b'{"format": "fmt-x", "metadata": [1, 2]}', "'metadata' must be a JSON object, got list"),
        (b'{"format": "fmt-x", "model": "big"}', "'model' must be a JSON object, got str"),
        (b'{"format": "fmt-x", "weights_sha256": 12}', "weights_sha256 must be 64 lower-case hex"),
    ],
)
def test_configs_that_are_not_what_they_claim_are_named(tmp_path, content, message):
    _write(tmp_path, "{}")
    (tmp_path / "c.json").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        _read(tmp_path)


@pytest.mark.parametrize("which", ["c.json", "w.safetensors"])
def test_a_directory_in_place_of_a_file_is_named(tmp_path, which):
    _write(tmp_path, {"format": "fmt-x"})
    target = tmp_path / which
    target.unlink()
    target.mkdir()
    with pytest.raises(CheckpointError, match=f"{which.replace('.', '[.]')} is a directory"):
        _read(tmp_path)


def test_a_save_failing_half_way_leaves_the_earlier_checkpoint_loadable(tmp_path, monkeypatch):
    path = _saved(tmp_path / "ckpt")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    calls = []
    real_fsync = os.fsync

    def disk_full_on_the_second_file(fd):  # the weights are written, then the config fails
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full_on_the_second_file)
    with pytest.raises(OSError, match="No space"):
        write_checkpoint_dir(
            path, "c.json", "w.safetensors", {"format": "fmt-x"}, torch.nn.Linear(3, 2), "x"
        )
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before  # and no temp file
    assert _read(path)[0]["metadata"] == {"note": "n"}


def test_check_tensors_match_lists_every_difference():
    expected = {"a": (2,), "b": (3, 4), "c": (1,)}
    found = {"a": torch.zeros(2), "b": torch.zeros(4, 3), "d": torch.zeros(1), "e": "text"}
    with pytest.raises(CheckpointError) as caught:
        check_tensors_match(expected, found, "w.safetensors")
    message = str(caught.value)
    assert "not tensors ['e']" in message and "missing ['c']" in message
    assert (
        "unexpected ['d', 'e']" in message and "wrong shape: b [4, 3] (expected [3, 4])" in message
    )
    assert "a [" not in message
    check_tensors_match(expected, {k: torch.zeros(v) for k, v in expected.items()}, "w")


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("gpu", "device='gpu' is not a device torch knows"),
        ("cuda:999", "device='cuda:999' but"),
        (0.5, "device must be a str"),
    ],
)
def test_bad_devices_are_named(device, message):
    with pytest.raises(DeviceError, match=message):
        resolve_device(device)
    assert resolve_device("cpu") == torch.device("cpu")
