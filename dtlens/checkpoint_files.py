"""Checkpoint directories: a JSON config with a format tag + a safetensors file of weights.

dtlens' decision transformers (:mod:`dtlens.model.checkpoint`) and LSTM agents
(:mod:`dtlens.data.agents.lstm`) are both stored as a directory holding a JSON config
(``"format"`` and ``"format_version"`` keys first) and a safetensors file of weights:
no pickle, so loading runs no code. This module writes and reads such a directory
once, with the checks both share, and leaves building the object to the caller.

Examples:
    >>> config, tensors = read_checkpoint_dir(  # doctest: +SKIP
    ...     "runs/dt/final", "config.json", "model.safetensors",
    ...     fmt="dtlens-decision-transformer", max_version=1, what="a dtlens checkpoint")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dtlens.errors import CheckpointError

__all__ = ["read_checkpoint_dir", "write_checkpoint_dir"]


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
        CheckpointError: a file is missing, the config is not JSON or has another
            format or a newer version, or the weights are not readable safetensors.

    Examples:
        >>> config, tensors = read_checkpoint_dir(  # doctest: +SKIP
        ...     "runs/ppo/final", "agent.json", "agent.safetensors",
        ...     fmt="dtlens-lstm-agent", max_version=1, what="a dtlens LSTM agent")
        >>> config["agent"]["memory_size"]  # doctest: +SKIP
        128
    """
    directory = Path(directory)
    config_path, weights_path = directory / config_name, directory / weights_name
    for required in (config_path, weights_path):
        if not required.exists():
            raise CheckpointError(
                f"{str(directory)!r} is not {what}: {required.name} is missing "
                f"(expected {config_name} and {weights_name})"
            )
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_path} is not valid JSON: {err}") from err
    if not isinstance(config, dict) or config.get("format") != fmt:
        raise CheckpointError(f'{config_path} is not {what} config (expected "format": {fmt!r})')
    if config.get("format_version", 0) > max_version:
        raise CheckpointError(
            f"{config_path} has format_version {config['format_version']}, newer than this "
            f"dtlens reads ({max_version}); upgrade dtlens"
        )
    try:
        tensors = load_file(weights_path)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {err}") from err
    return config, tensors


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
    before anything is written.

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
        >>> write_checkpoint_dir(  # doctest: +SKIP
        ...     "runs/dt/final", "config.json", "model.safetensors",
        ...     {"format": "dtlens-decision-transformer", "format_version": 1}, model, "checkpoint")
        PosixPath('runs/dt/final')
    """
    directory = Path(directory)
    try:
        text = json.dumps(config, indent=2, sort_keys=True)
    except TypeError as err:
        raise CheckpointError(f"{what} metadata must be JSON-serialisable: {err}") from err
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    save_file(tensors, directory / weights_name)
    (directory / config_name).write_text(text + "\n")
    return directory
