"""Convert the original DecisionTransformerInterpretability checkpoints to dtlens.

The original project (jbloomAus/DecisionTransformerInterpretability) saved a dict
with ``model_state_dict`` and three JSON strings: ``model_config``,
``environment_config`` and ``offline_config``. Its model embeds the observation
flattened in (channel, x, y) order with a bias-free Linear, the RTG with a
bias-free Linear(1, d), the action with an Embedding(n_actions + 1) whose last row
is padding, and the timestep with an Embedding(max_steps + 1) (or a Linear(1, d)
when ``time_embedding_type == "linear"``), adds the time embedding to every token
of its step, and runs a HookedTransformer whose token and unembedding layers were
replaced by identities, followed by ``action_predictor = Linear(d_model, n_actions)``.

:func:`convert_original` is a pure function from that dict to a dtlens state dict
and config. It is exact: the converted model computes the same function (see
``tests/integration/test_original_checkpoint.py`` for the check against an
independent plain-torch forward).

Examples:
    >>> import torch
    >>> raw = torch.load("dti_memory_gated_mlp.pt", weights_only=True)  # doctest: +SKIP
    >>> state_dict, cfg, env = convert_original(raw)  # doctest: +SKIP
    >>> cfg.n_layers, cfg.gated_mlp, env["env_id"]  # doctest: +SKIP
    (2, True, 'MiniGrid-MemoryS7FixedStart-v0')
"""

from __future__ import annotations

import json
from typing import Any

from torch import Tensor

from dtlens.checkpoint_files import check_tensors_match
from dtlens.errors import CheckpointError
from dtlens.model import tl_core
from dtlens.model.config import DTConfig

__all__ = ["ORIGINAL_KEYS", "convert_original"]

#: The keys an original checkpoint dict must have.
ORIGINAL_KEYS = ("model_state_dict", "model_config", "environment_config")
_MODEL_TYPES = {
    "decision_transformer": "decision_transformer",
    "clone_transformer": "clone",
}
_UNUSED_HEADS = ("state_predictor.", "reward_predictor.")


def convert_original(
    checkpoint: dict[str, Any],
) -> tuple[dict[str, Tensor], DTConfig, dict[str, Any]]:
    """Original checkpoint dict -> (dtlens state dict, DTConfig, environment config).

    The state and reward predictors of the original model are dropped: they are
    not used to choose actions and no dtlens analysis reads them.

    Raises:
        CheckpointError: missing keys, malformed JSON configs, an unsupported
            variant (CNN/ViT state encoders, unknown model types), naming the
            field and value; or a ``model_state_dict`` that lacks tensors its
            ``model_config`` implies or holds them in other shapes, listing every
            missing and mismatched name.
    """
    missing = [key for key in ORIGINAL_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(
            f"not an original DecisionTransformerInterpretability checkpoint: keys {missing} "
            f"are missing (found {sorted(checkpoint)}); expected {list(ORIGINAL_KEYS)}."
        )
    model_cfg = _json_field(checkpoint, "model_config")
    env_cfg = _json_field(checkpoint, "environment_config")
    training_cfg = (
        _json_field(checkpoint, "offline_config") if "offline_config" in checkpoint else {}
    )
    sd = checkpoint["model_state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(
            f"checkpoint field 'model_state_dict' must be a dict of tensors, got "
            f"{type(sd).__name__}; is this an original decision transformer checkpoint?"
        )
    sd = dict(sd)
    not_tensors = sorted(str(key) for key, value in sd.items() if not isinstance(value, Tensor))
    if not_tensors:
        raise CheckpointError(
            f"model_state_dict holds values that are not tensors: {not_tensors[:8]}; "
            "the checkpoint is damaged or not an original decision transformer"
        )
    for key in ("state_embedding.weight", "action_predictor.weight", "time_embedding.weight"):
        if key in sd and sd[key].ndim != 2:
            raise CheckpointError(
                f"model_state_dict[{key!r}] has shape {list(sd[key].shape)}; a 2-D matrix "
                "was expected: the checkpoint is damaged or of another model"
            )
    cfg = _config(model_cfg, env_cfg, training_cfg, sd)
    _check_tensors(sd, cfg)
    return _state_dict(sd, cfg), cfg, env_cfg


def _json_field(checkpoint: dict[str, Any], key: str) -> dict[str, Any]:
    value = checkpoint[key]
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint field {key!r} is not valid JSON: {err}") from err
    if not isinstance(parsed, dict):
        raise CheckpointError(f"checkpoint field {key!r} must be a JSON object, got {parsed!r}.")
    return parsed


def _normalization(value: Any) -> str | None:
    if value in (True, "LN"):
        return "LN"
    if value == "LNPre":
        return "LNPre"
    if value in (False, None, "None", "none"):
        return None
    raise CheckpointError(
        f"model_config.layer_norm={value!r} is not supported; use LN, LNPre or None."
    )


def _config(
    model_cfg: dict[str, Any],
    env_cfg: dict[str, Any],
    training_cfg: dict[str, Any],
    sd: dict[str, Tensor],
) -> DTConfig:
    state_type = model_cfg.get("state_embedding_type", "grid")
    if str(state_type).lower() in ("cnn", "vit"):
        raise CheckpointError(
            f"model_config.state_embedding_type={state_type!r} is not supported: dtlens converts "
            "models with a linear state embedding ('grid' or flat), not CNN/ViT encoders."
        )
    raw_type = training_cfg.get("model_type", "decision_transformer")
    if raw_type not in _MODEL_TYPES:
        raise CheckpointError(
            f"offline_config.model_type={raw_type!r} is not supported; "
            f"supported: {sorted(_MODEL_TYPES)}."
        )
    needed = (
        "state_embedding.weight",
        "action_embedding.0.weight",
        "action_predictor.weight",
        "time_embedding.weight",
    )
    missing = [key for key in needed if key not in sd]
    if missing:
        raise CheckpointError(
            f"model_state_dict has no {missing} (missing tensors); is this a decision "
            "transformer checkpoint, and is it complete?"
        )
    state_dim = sd["state_embedding.weight"].shape[1]
    view = int(env_cfg.get("view_size", 7))
    channels, rem = divmod(state_dim, view * view)
    if rem:
        raise CheckpointError(
            f"state embedding reads {state_dim} features, not a {view}x{view}xC grid "
            f"(environment_config.view_size={view})."
        )
    time_type = model_cfg.get("time_embedding_type", "embedding")
    if time_type == "linear":
        max_timestep = int(env_cfg.get("max_steps", 1000))
    else:
        max_timestep = sd["time_embedding.weight"].shape[0] - 1
    layer_norm = model_cfg.get("layer_norm", "LN")
    try:
        return DTConfig(
            n_layers=int(model_cfg["n_layers"]),
            d_model=int(model_cfg["d_model"]),
            n_heads=int(model_cfg["n_heads"]),
            d_mlp=int(model_cfg["d_mlp"]),
            n_ctx=int(model_cfg["n_ctx"]),
            d_head=int(model_cfg.get("d_head") or model_cfg["d_model"] // model_cfg["n_heads"]),
            act_fn=str(model_cfg.get("activation_fn", "relu")),
            normalization=_normalization(layer_norm),
            gated_mlp=bool(model_cfg.get("gated_mlp", False)),
            obs_shape=(view, view, channels),
            n_actions=int(sd["action_predictor.weight"].shape[0]),
            max_timestep=max_timestep,
            time_embedding="linear" if time_type == "linear" else "embedding",
            time_embedding_bias="time_embedding.bias" in sd,
            model_type=_MODEL_TYPES[raw_type],
            seed=model_cfg.get("seed"),
        )
    except KeyError as err:
        raise CheckpointError(f"model_config has no field {err.args[0]!r}.") from err
    except ValueError as err:  # ConfigError is a ValueError: say where it came from
        raise CheckpointError(f"model_config describes an unsupported model: {err}") from err


def _original_shapes(cfg: DTConfig, sd: dict[str, Tensor]) -> dict[str, tuple[int, ...]]:
    """The tensors an original checkpoint of ``cfg`` must hold, with their shapes.

    Tensors dtlens does not use (attention masks, the state and reward predictors)
    are not listed; a gated MLP's optional ``b_in`` only when ``sd`` has it.
    """
    d, n_heads, d_head, d_mlp = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp
    shapes: dict[str, tuple[int, ...]] = {
        "state_embedding.weight": (d, cfg.state_dim),
        "action_embedding.0.weight": (cfg.n_actions + 1, d),
        "action_predictor.weight": (cfg.n_actions, d),
        "action_predictor.bias": (cfg.n_actions,),
        "transformer.pos_embed.W_pos": (cfg.n_ctx, d),
    }
    if cfg.model_type == "decision_transformer":
        shapes["reward_embedding.0.weight"] = (d, 1)
    if cfg.time_embedding == "linear":
        shapes["time_embedding.weight"] = (d, 1)
        if cfg.time_embedding_bias:
            shapes["time_embedding.bias"] = (d,)
    else:
        shapes["time_embedding.weight"] = (cfg.max_timestep + 1, d)
    norms = cfg.normalization == "LN"
    for layer in range(cfg.n_layers):
        pre = f"transformer.blocks.{layer}."
        if norms:
            for name in ("ln1.w", "ln1.b", "ln2.w", "ln2.b"):
                shapes[pre + name] = (d,)
        for name in ("W_Q", "W_K", "W_V"):
            shapes[pre + f"attn.{name}"] = (n_heads, d, d_head)
        for name in ("b_Q", "b_K", "b_V"):
            shapes[pre + f"attn.{name}"] = (n_heads, d_head)
        shapes[pre + "attn.W_O"] = (n_heads, d_head, d)
        shapes[pre + "attn.b_O"] = (d,)
        shapes[pre + "mlp.W_in"] = (d, d_mlp)
        if cfg.gated_mlp:
            shapes[pre + "mlp.W_gate"] = (d, d_mlp)
        if not cfg.gated_mlp or pre + "mlp.b_in" in sd:
            shapes[pre + "mlp.b_in"] = (d_mlp,)
        shapes[pre + "mlp.W_out"] = (d_mlp, d)
        shapes[pre + "mlp.b_out"] = (d,)
    if norms:
        shapes["transformer.ln_final.w"] = (d,)
        shapes["transformer.ln_final.b"] = (d,)
    return shapes


def _check_tensors(sd: dict[str, Tensor], cfg: DTConfig) -> None:
    """Every tensor ``cfg`` implies is in ``sd`` with its shape; list what is not."""
    expected = _original_shapes(cfg, sd)
    check_tensors_match(
        expected,
        {key: value for key, value in sd.items() if key in expected},  # extras: unused
        "model_state_dict",
        against="its model_config",
    )


def _state_dict(sd: dict[str, Tensor], cfg: DTConfig) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {
        "state_embed.weight": sd.pop("state_embedding.weight"),
        "action_embed.weight": sd.pop("action_embedding.0.weight"),
        "time_embed.weight": sd.pop("time_embedding.weight"),
    }
    if "time_embedding.bias" in sd:
        out["time_embed.bias"] = sd.pop("time_embedding.bias")
    if cfg.model_type == "decision_transformer":
        out["rtg_embed.weight"] = sd.pop("reward_embedding.0.weight")
    ht_core = {
        key.removeprefix("transformer."): value
        for key, value in sd.items()
        if key.startswith("transformer.")
    }
    ht_core["unembed.W_U"] = sd["action_predictor.weight"].T
    ht_core["unembed.b_U"] = sd["action_predictor.bias"]
    leftover = sorted(
        key
        for key in sd
        if not key.startswith(("transformer.", "action_predictor.", *_UNUSED_HEADS))
        and key != "reward_embedding.0.weight"
    )
    if leftover:
        raise CheckpointError(f"model_state_dict has keys dtlens does not know: {leftover}.")
    for key, value in tl_core.convert_hooked_transformer_state_dict(ht_core, cfg).items():
        out[f"core.{key}"] = value
    return out
