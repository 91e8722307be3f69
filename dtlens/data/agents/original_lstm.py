"""Load the original project's PPO LSTM agent (``TrajectoryLSTM``) into an :class:`LSTMAgent`.

Background:
    The DecisionTransformerInterpretability project saved its PPO agents as ``.pt``
    dicts: ``model_state_dict`` (keys ``model.image_conv.0.embedding.weight``,
    ``model.image_conv.1.weight`` ...) plus JSON strings ``model_config``
    (``arch``, ``use_memory``, ``recurrence``, ...), ``environment_config`` and
    ``online_config``. The file is read with ``torch.load(weights_only=True)`` only,
    so no pickled code ever runs. :func:`convert_original_lstm` is the pure mapping
    (raw dict in, state dict + config + metadata out); :func:`load_original_lstm`
    builds the agent.

Usage:
    >>> from dtlens.data.agents import load_original_lstm
    >>> agent = load_original_lstm("../shared/checkpoints/dti_memory_ppo_lstm.pt")  # doctest: +SKIP
    >>> agent.metadata["env"]["env_id"], agent.metadata["recurrence"]  # doctest: +SKIP
    ('MiniGrid-MemoryS7FixedStart-v0', 8)
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from dtlens.data.agents.lstm import LSTMAgent, LSTMAgentConfig
from dtlens.errors import CheckpointError, ConfigError

__all__ = ["ORIGINAL_KEY_MAP", "convert_original_lstm", "load_original_lstm"]

#: original ``model_state_dict`` key prefix -> :class:`LSTMAgent` module
ORIGINAL_KEY_MAP: dict[str, str] = {
    "model.image_conv.0.embedding.": "bow.",
    "model.image_conv.1.": "conv1.",
    "model.image_conv.2.": "bn1.",
    "model.image_conv.4.": "conv2.",
    "model.image_conv.5.": "bn2.",
    "model.memory_rnn.": "memory_rnn.",
    "model.actor.": "actor.",
    "model.critic.": "critic.",
}
_SUPPORTED_ARCHS = ("bow_endpool_res", "bow_endpool")


def _json_field(raw: dict, name: str, required: bool) -> dict[str, Any]:
    if name not in raw:
        if required:
            raise CheckpointError(
                f"the checkpoint has no {name!r} entry (an original PPO checkpoint holds "
                "model_state_dict, model_config, environment_config and online_config)"
            )
        return {}
    value = raw[name]
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"the checkpoint's {name!r} is not a JSON string: {err}") from err
    if not isinstance(parsed, dict):
        raise CheckpointError(f"the checkpoint's {name!r} is not a JSON object")
    return parsed


def _shape(state_dict: dict[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise CheckpointError(f"model_state_dict is missing {key!r}")
    return tuple(state_dict[key].shape)


def convert_original_lstm(
    raw: dict[str, Any],
) -> tuple[dict[str, Float[Tensor, "..."]], LSTMAgentConfig, dict[str, Any]]:
    """Map an original PPO LSTM checkpoint dict onto :class:`LSTMAgent`'s state dict.

    Args:
        raw: The dict ``torch.load(path, weights_only=True)`` returns.

    Returns:
        ``(state_dict, config, metadata)``; metadata holds ``env`` (the environment
        config), ``model_config``, ``online_config`` and ``recurrence``.

    Raises:
        CheckpointError: A missing entry or key, an unexpected key, a wrong shape, or
            an unsupported variant (arch other than bow_endpool[_res], no memory,
            instructions, auxiliary heads), naming the field and value.

    Example:
        >>> raw = torch.load("dti_memory_ppo_lstm.pt", weights_only=True)  # doctest: +SKIP
        >>> state_dict, cfg, meta = convert_original_lstm(raw)  # doctest: +SKIP
        >>> cfg.image_dim, cfg.memory_dim, cfg.max_value  # doctest: +SKIP
        (128, 128, 9)
    """
    if not isinstance(raw, dict):
        raise CheckpointError(f"expected an original checkpoint dict, got {type(raw).__name__}")
    model_cfg = _json_field(raw, "model_config", required=True)
    env_cfg = _json_field(raw, "environment_config", required=False)
    if not env_cfg and isinstance(model_cfg.get("environment_config"), dict):
        env_cfg = model_cfg["environment_config"]
    online_cfg = _json_field(raw, "online_config", required=False)
    state_dict = raw.get("model_state_dict")
    if not isinstance(state_dict, dict):
        raise CheckpointError("the checkpoint has no 'model_state_dict' dict of tensors")

    arch = model_cfg.get("arch")
    if arch not in _SUPPORTED_ARCHS:
        raise CheckpointError(
            f"model_config.arch={arch!r} is not supported; dtlens loads {list(_SUPPORTED_ARCHS)}"
        )
    for field, wanted in (("use_memory", True), ("use_instr", False)):
        if bool(model_cfg.get(field, not wanted)) != wanted:
            raise CheckpointError(
                f"model_config.{field}={model_cfg.get(field)!r} is not supported "
                f"(dtlens loads agents with {field}={wanted})"
            )
    if model_cfg.get("aux_info"):
        raise CheckpointError(
            f"model_config.aux_info={model_cfg['aux_info']!r} is not supported (no extra heads)"
        )

    table_rows, image_dim = _shape(state_dict, "model.image_conv.0.embedding.weight")
    if table_rows % 3:
        raise CheckpointError(
            f"model.image_conv.0.embedding.weight has {table_rows} rows, expected 3 * max_value"
        )
    memory_dim = _shape(state_dict, "model.memory_rnn.weight_hh")[1]
    hidden_dim, _ = _shape(state_dict, "model.actor.0.weight")
    n_actions, _ = _shape(state_dict, "model.actor.2.weight")
    for field, found in (("image_dim", image_dim), ("memory_dim", memory_dim)):
        if field in model_cfg and model_cfg[field] != found:
            raise CheckpointError(
                f"model_config.{field}={model_cfg[field]!r} disagrees with the weights ({found})"
            )
    try:
        config = LSTMAgentConfig(
            image_dim=image_dim,
            memory_dim=memory_dim,
            hidden_dim=hidden_dim,
            n_actions=n_actions,
            max_value=table_rows // 3,
            view_size=int(env_cfg.get("view_size", 7)),
        )
    except ConfigError as err:
        raise CheckpointError(f"unsupported agent sizes in the checkpoint: {err}") from err

    converted: dict[str, Tensor] = {}
    for key, tensor in state_dict.items():
        prefix = next((p for p in ORIGINAL_KEY_MAP if key.startswith(p)), None)
        if prefix is None:
            raise CheckpointError(
                f"unexpected key {key!r} in model_state_dict (known prefixes: "
                f"{list(ORIGINAL_KEY_MAP)})"
            )
        if not isinstance(tensor, Tensor):
            raise CheckpointError(f"model_state_dict[{key!r}] is a {type(tensor).__name__}")
        converted[ORIGINAL_KEY_MAP[prefix] + key[len(prefix) :]] = tensor

    expected = LSTMAgent(config).state_dict()
    for key, tensor in expected.items():
        if key not in converted:
            original = next(
                o + key[len(n) :] for o, n in ORIGINAL_KEY_MAP.items() if key.startswith(n)
            )
            raise CheckpointError(f"model_state_dict is missing {original!r}")
        if converted[key].shape != tensor.shape:
            raise CheckpointError(
                f"{key!r} has shape {tuple(converted[key].shape)}, expected {tuple(tensor.shape)}"
            )
    metadata = {
        "source": "DecisionTransformerInterpretability",
        "env": env_cfg,
        "model_config": {k: v for k, v in model_cfg.items() if k != "environment_config"},
        "online_config": online_cfg,
        "recurrence": model_cfg.get("recurrence"),
    }
    return converted, config, metadata


def load_original_lstm(path: str | Path, device: torch.device | str = "cpu") -> LSTMAgent:
    """Load an original-project PPO LSTM ``.pt`` as an :class:`LSTMAgent` in eval mode.

    Args:
        path: The ``.pt`` file (e.g. ``../shared/checkpoints/dti_memory_ppo_lstm.pt``).
        device: Where to put the weights.

    Returns:
        The agent; ``agent.metadata`` keeps the environment, model and online configs
        and the file's path.

    Raises:
        CheckpointError: The file is missing, not a torch file, needs unpickling code
            (refused), or is not a supported PPO LSTM checkpoint.

    Example:
        >>> path = "../shared/checkpoints/dti_memory_ppo_lstm.pt"
        >>> agent = load_original_lstm(path)  # doctest: +SKIP
        >>> agent.config.state_dim  # doctest: +SKIP
        256
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no original PPO checkpoint at {str(path)!r}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses both code ("... was not an allowed global") and junk bytes
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        needs_code = [line for line in lines if "global" in line.lower()]
        if needs_code:
            raise CheckpointError(
                f"{str(path)!r} needs to run pickled code to load, which dtlens refuses "
                f"(torch.load(weights_only=True) rejected it): {needs_code[0].split('. Please')[0]}"
            ) from err
        raise CheckpointError(
            f"{str(path)!r} is not a readable torch file (weights-only unpickling failed: "
            f"{lines[-2] if len(lines) > 1 else err})"
        ) from err
    except Exception as err:  # torch raises RuntimeError/EOFError/... on junk
        raise CheckpointError(
            f"{str(path)!r} is not a readable torch file ({type(err).__name__}: {err})"
        ) from err
    state_dict, config, metadata = convert_original_lstm(raw)
    agent = LSTMAgent(config, metadata={**metadata, "path": str(path)})
    agent.load_state_dict(state_dict, strict=True)
    return agent.to(device).eval()
