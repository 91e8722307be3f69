"""Checkpoint directories: a JSON config with a format tag + a safetensors file of weights.

dtlens' decision transformers (:mod:`dtlens.model.checkpoint`) and LSTM agents
(:mod:`dtlens.data.agents.lstm`) are both stored as a directory holding a JSON config
(with ``"format"`` and ``"format_version"`` keys) and a safetensors file of weights:
no pickle, so loading runs no code. This module writes and reads such a directory
once, with the checks both share, and leaves building the object to the caller.

What it guarantees:

* **Saving is atomic**: both files are written in full to temporary files and only
  then renamed into place (:func:`dtlens.files.write_files_atomic`), so a save that
  fails half-way (disk full, Ctrl+C) leaves the checkpoint it was replacing loadable.
* **Weights are verified**: the config records the SHA-256 of the weights file
  (``"weights_sha256"``); loading recomputes it, and a file changed after saving (a
  flipped byte, an interrupted copy, weights from another checkpoint) is named, not
  loaded. Checkpoints written before the hash existed still load, unverified.
* **Weights are finite**: a tensor holding NaN or inf is refused, by name.
* **Configs are checked**: a config that is not UTF-8, not JSON, nested too deeply,
  a directory, or has fields of the wrong type raises a
  :class:`~dtlens.errors.CheckpointError` naming the file and the field.

Examples:
    >>> import tempfile, pathlib, torch
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "ckpt"
    >>> config = {"format": "my-format", "format_version": 1}
    >>> _ = write_checkpoint_dir(folder, "c.json", "w.safetensors", config,
    ...                          torch.nn.Linear(2, 1), "checkpoint")
    >>> read, tensors = read_checkpoint_dir(folder, "c.json", "w.safetensors",
    ...                                     fmt="my-format", max_version=1, what="a test")
    >>> sorted(tensors), len(read["weights_sha256"])
    (['bias', 'weight'], 64)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from dtlens.errors import CheckpointError, DeviceError
from dtlens.files import write_files_atomic

__all__ = [
    "WEIGHTS_HASH_KEY",
    "check_finite",
    "check_tensors_match",
    "read_checkpoint_dir",
    "read_json_file",
    "resolve_device",
    "sha256_hex",
    "write_checkpoint_dir",
]

#: The config key holding the SHA-256 (hex) of the weights file.
WEIGHTS_HASH_KEY = "weights_sha256"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_LISTED = 8


def read_checkpoint_dir(
    directory: str | Path,
    config_name: str,
    weights_name: str,
    fmt: str,
    max_version: int,
    what: str,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config dict and the tensors of a checkpoint directory, checked.

    Args:
        directory: the checkpoint directory.
        config_name: its JSON config's file name.
        weights_name: its safetensors file's name.
        fmt: the ``"format"`` value the config must carry.
        max_version: the newest ``"format_version"`` this dtlens reads.
        what: how to name the expected kind in errors, e.g. ``"a dtlens checkpoint"``.

    Raises:
        CheckpointError: a file is missing or is a directory; the config is not UTF-8
            JSON, is nested too deeply, has another format, a newer version or a field
            of the wrong type; the weights do not match the SHA-256 the config records,
            are not readable safetensors, or hold NaN/inf (the tensor is named).

    Examples:
        >>> config, tensors = read_checkpoint_dir(  # doctest: +SKIP
        ...     "runs/ppo/final", "agent.json", "agent.safetensors",
        ...     fmt="dtlens-lstm-agent", max_version=1, what="a dtlens LSTM agent")
        >>> config["agent"]["memory_size"]  # doctest: +SKIP
        128
    """
    directory = Path(directory)
    config_path, weights_path = directory / config_name, directory / weights_name
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{str(directory)!r} is not {what}: it is a file, not a directory")
    for required in (config_path, weights_path):
        if not required.exists():
            raise CheckpointError(
                f"{str(directory)!r} is not {what}: {required.name} is missing "
                f"(expected {config_name} and {weights_name})"
            )
        if not required.is_file():
            raise CheckpointError(
                f"{str(directory)!r} is not {what}: {required.name} is a directory, not a "
                "file; restore the checkpoint from a copy or save it again"
            )
    config = read_json_file(config_path, f"{what} config")
    if not isinstance(config, dict) or config.get("format") != fmt:
        raise CheckpointError(f'{config_path} is not {what} config (expected "format": {fmt!r})')
    version = config.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise CheckpointError(
            f"{config_path}: format_version must be an int >= 0, got {version!r}; the file "
            "was edited or damaged: restore it or save the checkpoint again"
        )
    if version > max_version:
        raise CheckpointError(
            f"{config_path} has format_version {version}, newer than this "
            f"dtlens reads ({max_version}); upgrade dtlens"
        )
    for key in ("metadata", "model", "agent"):
        if key in config and not isinstance(config[key], dict):
            raise CheckpointError(
                f"{config_path}: {key!r} must be a JSON object, got "
                f"{type(config[key]).__name__} {_short(config[key])}; the file was edited or "
                "damaged: restore it or save the checkpoint again"
            )
    try:
        data = weights_path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read {weights_path}: {err}") from err
    _verify_hash(config, config_path, weights_path, data)
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {err}") from err
    check_finite(tensors, str(weights_path))
    return config, tensors


def _verify_hash(config: dict[str, Any], config_path: Path, weights_path: Path, data: bytes):
    recorded = config.get(WEIGHTS_HASH_KEY)
    if recorded is None:
        return  # written before dtlens recorded hashes: load unverified
    if not isinstance(recorded, str) or not _SHA256.fullmatch(recorded):
        raise CheckpointError(
            f"{config_path}: {WEIGHTS_HASH_KEY} must be 64 lower-case hex digits, got "
            f"{_short(recorded)}; the file was edited or damaged: restore it or save the "
            "checkpoint again"
        )
    actual = sha256_hex(data)
    if actual != recorded:
        raise CheckpointError(
            f"{weights_path} is not the file {config_path.name} was saved with: its SHA-256 "
            f"is {actual[:16]}..., the config records {recorded[:16]}... The weights were "
            "changed or damaged after saving (a flipped byte, an interrupted copy, or a file "
            "from another checkpoint); copy the checkpoint again or re-save it"
        )


def write_checkpoint_dir(
    directory: str | Path,
    config_name: str,
    weights_name: str,
    config: dict[str, Any],
    module: torch.nn.Module,
    what: str,
) -> Path:
    """Write ``config`` as JSON and ``module``'s weights as safetensors into ``directory``.

    The config is serialised first, so a non-JSON value (in user metadata, say) raises
    before anything is written. The config records the weights' SHA-256
    (``"weights_sha256"``), checked by :func:`read_checkpoint_dir`. Both files are
    written to temporary files first and renamed into place only when both are
    complete: a save that fails half-way leaves the earlier checkpoint as it was.

    Args:
        directory: created if missing.
        config_name: the JSON config's file name.
        weights_name: the safetensors file's name.
        config: the config, with its ``"format"`` and ``"format_version"`` keys.
        module: whose ``state_dict()`` is saved (copied to CPU, contiguous).
        what: how to name the kind in errors, e.g. ``"checkpoint"``.

    Raises:
        CheckpointError: ``config`` is not JSON-serialisable.

    Examples:
        >>> import tempfile, pathlib, torch
        >>> folder = pathlib.Path(tempfile.mkdtemp()) / "ckpt"
        >>> write_checkpoint_dir(folder, "c.json", "w.safetensors", {"format": "x"},
        ...                      torch.nn.Linear(2, 1), "checkpoint") == folder
        True
        >>> sorted(p.name for p in folder.iterdir())
        ['c.json', 'w.safetensors']
    """
    directory = Path(directory)
    try:
        json.dumps(config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{what} metadata must be JSON-serialisable: {err}") from err
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    data = save_safetensors(tensors)
    config = {**config, WEIGHTS_HASH_KEY: sha256_hex(data)}
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    write_files_atomic({directory / weights_name: data, directory / config_name: text})
    return directory


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 hex digits.

    Example:
        >>> sha256_hex(b"")[:16]
        'e3b0c44298fc1c14'
    """
    return hashlib.sha256(data).hexdigest()


def read_json_file(path: str | Path, what: str) -> Any:
    """The JSON value in ``path``, with every way the file can be broken named.

    Args:
        path: the JSON file.
        what: how to name it in errors, e.g. ``"a dtlens checkpoint config"``.

    Raises:
        CheckpointError: ``path`` is missing, a directory, unreadable, not UTF-8, not
            JSON, or nested too deeply to parse.

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.json"
        >>> _ = p.write_bytes(b"\\xff\\xfe{}")
        >>> read_json_file(p, "a config")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        dtlens.errors.CheckpointError: ...c.json is not UTF-8 text (byte 0x...
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} should be {what} (a JSON file) but is a directory")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read {what} {path}: {err}") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CheckpointError(
            f"{path} is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}), so "
            f"not {what}; the file was damaged or replaced by a binary file: restore it or "
            "save the checkpoint again"
        ) from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err
    except RecursionError as err:
        raise CheckpointError(
            f"{path} is nested too deeply to be {what} (thousands of levels of [ or {{); "
            "the file is damaged or not a dtlens file"
        ) from err


def check_finite(tensors: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse weights holding NaN or inf, naming the first such tensor.

    Raises:
        CheckpointError: a floating-point tensor holds NaN or inf.

    Examples:
        >>> import torch
        >>> check_finite({"w": torch.ones(2)}, "here")
        >>> check_finite({"w": torch.tensor([1.0, float("nan")])}, "model.safetensors")
        Traceback (most recent call last):
        dtlens.errors.CheckpointError: model.safetensors: tensor 'w' holds 1 NaN and 0 inf of its 2 values; these weights come from a diverged run or a damaged file: load an earlier checkpoint
    """  # noqa: E501
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            continue
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            n_nan = int(torch.isnan(tensor).sum())
            n_inf = int((~finite).sum()) - n_nan
            raise CheckpointError(
                f"{where}: tensor {name!r} holds {n_nan} NaN and {n_inf} inf of its "
                f"{tensor.numel()} values; these weights come from a diverged run or a "
                "damaged file: load an earlier checkpoint"
            )


def check_tensors_match(
    expected: Mapping[str, Sequence[int]],
    tensors: Mapping[str, Any],
    where: str,
    against: str = "its config",
    allow_extra: bool = False,
) -> None:
    """Check ``tensors`` has exactly the ``expected`` names and shapes, listing what differs.

    Args:
        expected: tensor name -> shape the config implies.
        tensors: the tensors found (values must be tensors).
        where: the file or field that holds them, for the message.
        against: what implies ``expected``, for the message.
        allow_extra: tolerate names not in ``expected``.

    Raises:
        CheckpointError: a tensor is missing, not a tensor, has another shape, or (unless
            ``allow_extra``) is unexpected; the message lists the names.

    Examples:
        >>> import torch
        >>> check_tensors_match({"a": (2,), "b": (3,)}, {"a": torch.zeros(4)}, "w.safetensors")
        Traceback (most recent call last):
        dtlens.errors.CheckpointError: the weights in w.safetensors do not match its config: missing ['b']; wrong shape: a [4] (expected [2]). The weights and the config come from different models, or the file is damaged: use the matching pair
    """  # noqa: E501
    problems = []
    not_tensors = sorted(k for k, v in tensors.items() if not isinstance(v, torch.Tensor))
    missing = sorted(set(expected) - set(tensors))
    extra = [] if allow_extra else sorted(set(tensors) - set(expected))
    wrong = [
        f"{name} {list(tensors[name].shape)} (expected {list(expected[name])})"
        for name in sorted(set(expected) & set(tensors))
        if name not in not_tensors and tuple(tensors[name].shape) != tuple(expected[name])
    ]
    if not_tensors:
        problems.append(f"not tensors {_listing(not_tensors)}")
    if missing:
        problems.append(f"missing {_listing(missing)}")
    if extra:
        problems.append(f"unexpected {_listing(extra)}")
    if wrong:
        shown = "; ".join(wrong[:_MAX_LISTED])
        more = f"; and {len(wrong) - _MAX_LISTED} more" if len(wrong) > _MAX_LISTED else ""
        problems.append(f"wrong shape: {shown}{more}")
    if problems:
        raise CheckpointError(
            f"the weights in {where} do not match {against}: {'; '.join(problems)}. The "
            "weights and the config come from different models, or the file is damaged: "
            "use the matching pair"
        )


def resolve_device(device: Any) -> torch.device:
    """``device`` as a :class:`torch.device` this machine has, or a named error.

    Args:
        device: a ``torch.device`` or a string such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``.

    Raises:
        DeviceError: not a device string torch knows, or a device this machine does
            not have (``"cuda"`` without CUDA, ``"cuda:7"`` with fewer GPUs).

    Examples:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("gpu")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        dtlens.errors.DeviceError: device='gpu' is not a device torch knows ...
    """
    if isinstance(device, torch.device):
        parsed = device
    elif isinstance(device, str):
        try:
            parsed = torch.device(device)
        except (RuntimeError, ValueError) as err:
            raise DeviceError(
                f"device={device!r} is not a device torch knows ({_first_line(err)}); "
                "use 'cpu', 'cuda', 'cuda:0' or 'mps'"
            ) from err
    else:
        raise DeviceError(
            f"device must be a str such as 'cpu' or 'cuda:0', or a torch.device, got "
            f"{type(device).__name__} {device!r}"
        )
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(
                f"device={str(device)!r} but CUDA is not available on this machine; "
                "use device='cpu'"
            )
        if parsed.index is not None and parsed.index >= count:
            raise DeviceError(
                f"device={str(device)!r} but this machine has {count} CUDA device(s) "
                f"(cuda:0..cuda:{count - 1}); pick one of those or 'cpu'"
            )
        return parsed
    try:
        torch.empty(0, device=parsed)
    except Exception as err:  # torch raises RuntimeError/AssertionError/... per backend
        raise DeviceError(
            f"device={str(device)!r} is not available on this machine ({_first_line(err)}); "
            "use device='cpu'"
        ) from err
    return parsed


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _listing(names: Sequence[str]) -> str:
    shown = list(names[:_MAX_LISTED])
    more = f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
    return f"{shown}{more}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
