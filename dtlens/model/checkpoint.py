"""Save and load models: dtlens checkpoints, original-project ``.pt`` files, shipped names.

A dtlens checkpoint is a directory with ``config.json`` (the model config plus
free-form metadata: environment, training config, ..., and the SHA-256 of the
weights) and ``model.safetensors``. Saving is atomic; loading verifies the hash,
refuses NaN/inf weights and names any tensor the config does not account for (see
:mod:`dtlens.checkpoint_files`).
Nothing dtlens reads runs pickled code: original ``.pt`` files are opened with
``torch.load(weights_only=True)``, which refuses any pickled object that is not a
tensor or plain container.

Examples:
    >>> import dtlens
    >>> model = dtlens.load("memorydt")  # the shipped MemoryDT  # doctest: +SKIP
    >>> model = dtlens.load("../shared/checkpoints/dti_memory_gated_mlp.pt")  # doctest: +SKIP
    >>> dtlens.save(model, "my_model/")                          # doctest: +SKIP
"""

from __future__ import annotations

import pickle
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from dtlens.checkpoint_files import (
    check_finite,
    check_tensors_match,
    read_checkpoint_dir,
    resolve_device,
    write_checkpoint_dir,
)
from dtlens.errors import CheckpointError, ConfigError
from dtlens.model.config import DTConfig
from dtlens.model.convert import convert_original
from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = ["CONFIG_FILE", "FORMAT", "SHIPPED_MODELS", "WEIGHTS_FILE", "load", "save"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "dtlens-checkpoint"
FORMAT_VERSION = 1
#: Names ``load`` resolves to checkpoints shipped inside the package (``memorydt-clone``:
#: the behavioural clone of ``dtlens build-memorydt --model-type clone``).
SHIPPED_MODELS = {"memorydt": "memorydt", "memorydt-clone": "memorydt-clone"}
#: the command that rebuilds each shipped model
_REBUILD = {
    "memorydt": "dtlens build-memorydt",
    "memorydt-clone": "dtlens build-memorydt --model-type clone",
}


def save(
    model: HookedDecisionTransformer, directory: str | Path, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` as a dtlens checkpoint directory; returns its path.

    ``metadata`` (JSON-serialisable) is merged over ``model.metadata`` and saved
    in ``config.json``; :func:`load` puts it back on ``model.metadata``.
    ``config.json`` also records the SHA-256 of ``model.safetensors`` (``load`` checks
    it). Both files are written to temporary files first and renamed into place when
    both are complete, so a save that fails half-way (disk full, Ctrl+C) leaves the
    checkpoint it was replacing loadable.

    Raises:
        CheckpointError: ``metadata`` is not JSON-serialisable (nothing is written).

    Examples:
        >>> import tempfile, dtlens
        >>> model = dtlens.load("memorydt")
        >>> path = dtlens.save(model, tempfile.mkdtemp() + "/m", metadata={"note": "seed 0"})
        >>> dtlens.load(path).metadata["note"]
        'seed 0'
    """
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.cfg.to_dict(),
        "metadata": {**model.metadata, **(metadata or {})},
    }
    return write_checkpoint_dir(directory, CONFIG_FILE, WEIGHTS_FILE, config, model, "checkpoint")


def load(path_or_name: str | Path, device: torch.device | str = "cpu") -> HookedDecisionTransformer:
    """Load a model from a dtlens checkpoint directory, an original ``.pt``, or a shipped name.

    A dtlens checkpoint's weights are checked against the SHA-256 its ``config.json``
    records (checkpoints saved before dtlens recorded it load unverified), every
    weight must be finite, and the tensors' names and shapes must be those the config
    describes: a damaged or mismatched file raises, naming the file and the tensors.

    Args:
        path_or_name: ``"memorydt"`` (the MemoryDT shipped with dtlens), a dtlens
            checkpoint directory (or its ``model.safetensors``), or an original
            DecisionTransformerInterpretability ``.pt`` file.
        device: where to put the weights: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...

    Raises:
        CheckpointError: the path is not a str or path, does not exist, is not a
            checkpoint, is corrupt (SHA-256 mismatch, unreadable, NaN/inf weights, a
            config of the wrong types), needs unpickling code, or describes an
            unsupported model or other tensors than it holds.
        DeviceError: ``device`` is not a device torch knows or this machine has.

    Examples:
        >>> import dtlens
        >>> model = dtlens.load("memorydt")
        >>> model.cfg.n_layers
        2
        >>> dtlens.load(None)
        Traceback (most recent call last):
        dtlens.errors.CheckpointError: dtlens.load needs a checkpoint path or a shipped name such as 'memorydt', got None
    """  # noqa: E501
    if not isinstance(path_or_name, (str, PathLike)):
        raise CheckpointError(
            "dtlens.load needs a checkpoint path or a shipped name such as "
            f"{next(iter(SHIPPED_MODELS))!r}, got {path_or_name!r}"
        )
    target = resolve_device(device)
    if isinstance(path_or_name, str) and path_or_name in SHIPPED_MODELS:
        path = _shipped_path(path_or_name)
    else:
        path = Path(path_or_name)
    if not path.exists():
        raise CheckpointError(
            f"no checkpoint at {str(path)!r}: pass a dtlens checkpoint directory, an original "
            f"project .pt file, or one of the shipped names {sorted(SHIPPED_MODELS)}."
        )
    if path.is_file() and path.name == WEIGHTS_FILE:
        path = path.parent
    if path.is_dir():
        model = _load_native(path)
    elif path.suffix in (".pt", ".pth"):
        model = _load_original(path)
    else:
        raise CheckpointError(
            f"{str(path)!r} is neither a dtlens checkpoint directory (with {CONFIG_FILE} and "
            f"{WEIGHTS_FILE}) nor an original project .pt file."
        )
    return model.to(target).eval()


def _shipped_path(name: str) -> Path:
    root = resources.files("dtlens") / "pretrained" / SHIPPED_MODELS[name]
    path = Path(str(root))
    if not (path / WEIGHTS_FILE).exists():
        raise CheckpointError(
            f"the shipped model {name!r} is missing from this installation ({path}); "
            f"rebuild it with `{_REBUILD.get(name, 'dtlens build-memorydt')}` or pass a "
            "checkpoint path."
        )
    return path


def _load_native(directory: Path) -> HookedDecisionTransformer:
    config, state_dict = read_checkpoint_dir(
        directory, CONFIG_FILE, WEIGHTS_FILE, FORMAT, FORMAT_VERSION, "a dtlens checkpoint"
    )
    config_path = directory / CONFIG_FILE
    try:
        cfg = DTConfig.from_dict(config["model"])
    except (KeyError, ConfigError, TypeError) as err:
        raise CheckpointError(f"{config_path} has an invalid model config: {err}") from err
    model = _build(cfg, state_dict, str(directory))
    model.metadata = dict(config.get("metadata", {}))
    model.checkpoint_dir = directory
    return model


def _load_original(path: Path) -> HookedDecisionTransformer:
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{str(path)!r} needs to run pickled code to load, which dtlens refuses "
            "(torch.load(weights_only=True) rejected it). Re-save its tensors as plain "
            f"dicts, or as a dtlens checkpoint. Detail: {str(err).splitlines()[0]}"
        ) from err
    except Exception as err:  # torch raises KeyError/RuntimeError/EOFError... on junk
        raise CheckpointError(
            f"{str(path)!r} is not a readable torch file ({type(err).__name__}: {err})."
        ) from err
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"{str(path)!r} holds a {type(raw).__name__}, not an original checkpoint dict."
        )
    original_weights = raw.get("model_state_dict")
    if isinstance(original_weights, dict):
        check_finite(original_weights, f"{path} (model_state_dict)")
    try:
        state_dict, cfg, env_cfg = convert_original(raw)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err
    model = _build(cfg, state_dict, str(path))
    model.metadata = {
        "source": "DecisionTransformerInterpretability",
        "env": env_cfg,
        # trained and evaluated on left padding run as tokens (see pad_context)
        "context_padding": "tokens",
    }
    return model


def _build(
    cfg: DTConfig, state_dict: dict[str, torch.Tensor], where: str
) -> HookedDecisionTransformer:
    """The model ``cfg`` describes with ``state_dict`` loaded; a tensor the config does
    not expect, or one it expects and the file lacks or shapes otherwise, is named
    before any memory is allocated for the model."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        skeleton = HookedDecisionTransformer(cfg)  # shapes only, no memory
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    check_tensors_match(expected, state_dict, where, against="its config")
    model = HookedDecisionTransformer(cfg)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"weights in {where} do not match its config: {err}") from err
    return model
