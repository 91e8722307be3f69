"""`from_hf`: a transformers ``DecisionTransformerModel`` as a hooked dtlens model.

The converted model computes what transformers' forward computes (eval mode, so no
dropout), as a :class:`~dtlens.model.hooked_dt.HookedDecisionTransformer` with
``token_embedding="huggingface"``:

=========================================  ===============================================
transformers                               dtlens
=========================================  ===============================================
``embed_return / embed_state /             ``rtg_embed / state_embed / action_embed /
embed_action / embed_timestep``            time_embed`` (``hook_*_embed`` after each)
``embed_ln``                               ``embed_ln`` (then ``hook_embed``)
``encoder.wpe`` with ``position_ids = 0``  ``core`` ``W_pos``, every row ``wpe[0]``
                                           (``hook_pos_embed``)
``encoder.h[L]`` (GPT-2 blocks, Conv1D     ``core.blocks[L]`` (``nn.Linear``: Conv1D weights
weights ``[in, out]``)                     transposed; ``c_attn`` split into q, k, v)
``encoder.ln_f``                           ``core.ln_final``
``predict_action`` (Linear, tanh)          ``core.unembed`` (``W_U``, ``b_U``; the tanh
                                           between ``hook_action_pre_tanh`` and
                                           ``hook_action_post_tanh``)
``predict_state``, ``predict_return``      not converted (nothing reads them when acting)
=========================================  ===============================================

A window of T steps is ``obs [B, T, state_dim]``, ``actions [B, T - 1, act_dim]`` (or
``[B, T, act_dim]``, as transformers takes them), ``rtg [B, T]`` and ``timesteps [B,
T]``; a ``padding_mask`` is transformers' ``attention_mask`` (True = 1 = real step).
``model(batch)`` returns the action predictions (after the tanh) at every token
``[B, n_tokens, act_dim]``; those at the state tokens (``model.action_logits(batch)``,
``[B, T, act_dim]``) are transformers' ``action_preds``.

Examples:
    >>> import torch
    >>> from transformers import DecisionTransformerConfig, DecisionTransformerModel
    >>> from dtlens.model import TrajectoryBatch, from_hf
    >>> hf = DecisionTransformerModel(DecisionTransformerConfig(
    ...     state_dim=11, act_dim=3, hidden_size=128, n_layer=3, n_head=1, max_ep_len=1000))
    >>> model = from_hf(hf.eval(), n_timesteps=20)
    >>> batch = TrajectoryBatch(obs=torch.randn(1, 20, 11), actions=torch.randn(1, 19, 3),
    ...                         rtg=torch.rand(1, 20), timesteps=torch.arange(20)[None])
    >>> tuple(model.action_logits(batch).shape)
    (1, 20, 3)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dtlens.checkpoint_files import read_json_file
from dtlens.errors import CheckpointError, ConfigError
from dtlens.model.config import DTConfig
from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = ["config_from_hf", "from_hf", "state_dict_from_hf"]

#: transformers' ``activation_function`` -> the TransformerLens native core's ``act_fn``
#: (``gelu_new`` and ``gelu_pytorch_tanh`` are both GELU's tanh approximation).
HF_ACTIVATIONS = {
    "relu": "relu",
    "gelu": "gelu",
    "gelu_new": "gelu_new",
    "gelu_pytorch_tanh": "gelu_new",
    "silu": "silu",
    "swish": "silu",
}


def from_hf(
    hf_model: nn.Module | str | os.PathLike[str], n_timesteps: int | None = None
) -> HookedDecisionTransformer:
    """A hooked dtlens model computing what a transformers ``DecisionTransformerModel`` does.

    Args:
        hf_model: a ``transformers.DecisionTransformerModel``, or the directory it was
            saved to with ``save_pretrained`` (read offline, with transformers).
        n_timesteps: the model's context in timesteps (its ``n_ctx`` is 3 x this);
            default ``n_positions // 3``. transformers' decision transformer gives
            every token the same position embedding, so any context computes the
            same; this only bounds window length (and ``pad_context``), e.g. 20 for
            the Gym decision transformers on the Hub.

    Returns:
        The model in eval mode, on the CPU, in float32, with
        ``metadata["converted_from"]`` naming its source.

    Raises:
        CheckpointError: ``hf_model`` is neither a ``DecisionTransformerModel`` nor a
            directory saved from one (no ``config.json``, another ``model_type``,
            missing weights), or uses a variant the GPT-2 core here does not
            implement (the message names the setting).
        ConfigError: a bad ``n_timesteps``.
        ModuleNotFoundError: transformers is not installed (``pip install 'dtlens[hf]'``).

    Examples:
        >>> model = from_hf(hf)  # doctest: +SKIP
        >>> hf.save_pretrained("hopper-dt"); model = from_hf("hopper-dt")  # doctest: +SKIP
    """
    hf = _as_hf_model(hf_model)
    cfg = config_from_hf(hf.config, n_timesteps)
    model = HookedDecisionTransformer(cfg)
    model.load_state_dict(state_dict_from_hf(hf.state_dict(), cfg))
    source = hf_model if isinstance(hf_model, str | os.PathLike) else type(hf).__name__
    model.metadata["converted_from"] = f"transformers DecisionTransformerModel ({source})"
    return model.eval()


def config_from_hf(hf_config: Any, n_timesteps: int | None = None) -> DTConfig:
    """The :class:`DTConfig` of a transformers ``DecisionTransformerConfig``.

    Raises:
        CheckpointError: a setting the converted model cannot reproduce (attention
            without ``1/sqrt(d_head)`` scaling, per-layer attention scaling, cross
            attention, an activation outside ``HF_ACTIVATIONS``).

    Examples:
        >>> from transformers import DecisionTransformerConfig
        >>> from dtlens.model.hf.convert import config_from_hf
        >>> cfg = config_from_hf(DecisionTransformerConfig(state_dim=11, act_dim=3), 20)
        >>> cfg.obs_shape, cfg.n_actions, cfg.n_ctx, cfg.max_timestep, cfg.act_fn
        ((11,), 3, 60, 4095, 'relu')
    """

    def get(name: str) -> Any:
        return getattr(hf_config, name)

    for name, unsupported, why in (
        ("scale_attn_weights", False, "unscaled attention scores"),
        ("scale_attn_by_inverse_layer_idx", True, "attention scaled by 1 / (layer + 1)"),
        ("add_cross_attention", True, "cross-attention blocks"),
    ):
        if getattr(hf_config, name, not unsupported) == unsupported:
            raise CheckpointError(
                f"this DecisionTransformerConfig has {name}={unsupported} ({why}); dtlens' "
                "core implements GPT-2 blocks with 1/sqrt(d_head) scaling only, so it "
                "cannot reproduce this model."
            )
    act = get("activation_function")
    if act not in HF_ACTIVATIONS:
        raise CheckpointError(
            f"activation_function={act!r} is not supported; supported: {sorted(HF_ACTIVATIONS)}."
        )
    d_model = get("hidden_size")
    if n_timesteps is None:
        n_timesteps = get("n_positions") // 3
    if isinstance(n_timesteps, bool) or not isinstance(n_timesteps, int) or n_timesteps < 1:
        raise ConfigError(f"n_timesteps={n_timesteps!r} must be a positive int (steps of context).")
    return DTConfig(
        n_layers=get("n_layer"),
        d_model=d_model,
        n_heads=get("n_head"),
        d_mlp=get("n_inner") or 4 * d_model,
        n_ctx=3 * n_timesteps,
        act_fn=HF_ACTIVATIONS[act],
        normalization="LN",
        obs_shape=(get("state_dim"),),
        n_actions=get("act_dim"),
        max_timestep=get("max_ep_len") - 1,
        eps=float(get("layer_norm_epsilon")),
        token_embedding="huggingface",
        action_tanh=bool(get("action_tanh")),
    )


def state_dict_from_hf(hf_state_dict: dict[str, Tensor], cfg: DTConfig) -> dict[str, Tensor]:
    """A transformers ``DecisionTransformerModel`` state dict in dtlens' format for ``cfg``.

    Conv1D weights (``[in, out]``) are transposed to ``nn.Linear``'s ``[out, in]``;
    ``c_attn`` is split into q, k and v (heads in the same order); every row of the
    core's ``W_pos`` is ``wpe[0]``. ``predict_state``, ``predict_return``, ``wte`` and
    any cached causal-mask buffers are dropped.

    Raises:
        CheckpointError: a weight ``cfg`` needs is missing.

    Examples:
        >>> from transformers import DecisionTransformerConfig, DecisionTransformerModel
        >>> from dtlens.model.hf.convert import config_from_hf, state_dict_from_hf
        >>> hf = DecisionTransformerModel(DecisionTransformerConfig(state_dim=11, act_dim=3))
        >>> sd = state_dict_from_hf(hf.state_dict(), config_from_hf(hf.config, 20))
        >>> tuple(sd["core.blocks.0.attn.q.weight"].shape), tuple(sd["core.pos_embed.weight"].shape)
        ((128, 128), (60, 128))
    """

    def get(key: str) -> Tensor:
        if key not in hf_state_dict:
            raise CheckpointError(
                f"the DecisionTransformerModel state dict has no {key!r}; is it a complete "
                "transformers DecisionTransformerModel?"
            )
        return hf_state_dict[key].detach().float()

    sd: dict[str, Tensor] = {}
    for ours, theirs in (
        ("rtg_embed", "embed_return"),
        ("state_embed", "embed_state"),
        ("action_embed", "embed_action"),
        ("embed_ln", "embed_ln"),
    ):
        sd[f"{ours}.weight"], sd[f"{ours}.bias"] = get(f"{theirs}.weight"), get(f"{theirs}.bias")
    sd["time_embed.weight"] = get("embed_timestep.weight")
    sd["core.embed.weight"] = torch.zeros(1, cfg.d_model)  # never read: tokens are embeddings
    sd["core.pos_embed.weight"] = get("encoder.wpe.weight")[0].expand(cfg.n_ctx, -1).clone()
    for layer in range(cfg.n_layers):
        sd.update(_block(get, layer))
    sd["core.ln_final.weight"], sd["core.ln_final.bias"] = (
        get("encoder.ln_f.weight"),
        get("encoder.ln_f.bias"),
    )
    sd["core.unembed.weight"] = get("predict_action.0.weight")
    sd["core.unembed.bias"] = get("predict_action.0.bias")
    return sd


def _block(get: Any, layer: int) -> dict[str, Tensor]:
    """One GPT-2 block's weights under the native core's names (Conv1D transposed)."""
    hf, ours = f"encoder.h.{layer}.", f"core.blocks.{layer}."
    q, k, v = get(hf + "attn.c_attn.weight").chunk(3, dim=1)
    b_q, b_k, b_v = get(hf + "attn.c_attn.bias").chunk(3)
    return {
        ours + "ln1.weight": get(hf + "ln_1.weight"),
        ours + "ln1.bias": get(hf + "ln_1.bias"),
        ours + "attn.q.weight": q.T.contiguous(),
        ours + "attn.q.bias": b_q.contiguous(),
        ours + "attn.k.weight": k.T.contiguous(),
        ours + "attn.k.bias": b_k.contiguous(),
        ours + "attn.v.weight": v.T.contiguous(),
        ours + "attn.v.bias": b_v.contiguous(),
        ours + "attn.o.weight": get(hf + "attn.c_proj.weight").T.contiguous(),
        ours + "attn.o.bias": get(hf + "attn.c_proj.bias"),
        ours + "ln2.weight": get(hf + "ln_2.weight"),
        ours + "ln2.bias": get(hf + "ln_2.bias"),
        ours + "mlp.in.weight": get(hf + "mlp.c_fc.weight").T.contiguous(),
        ours + "mlp.in.bias": get(hf + "mlp.c_fc.bias"),
        ours + "mlp.out.weight": get(hf + "mlp.c_proj.weight").T.contiguous(),
        ours + "mlp.out.bias": get(hf + "mlp.c_proj.bias"),
    }


def _as_hf_model(obj: object) -> nn.Module:
    """The DecisionTransformerModel ``obj`` is, or the one saved in directory ``obj``."""
    if isinstance(obj, str | os.PathLike):
        return _load_directory(Path(obj))
    transformers = _import_transformers()
    if not isinstance(obj, transformers.DecisionTransformerModel):
        raise CheckpointError(
            f"from_hf takes a transformers DecisionTransformerModel or a directory saved "
            f"with its save_pretrained, got {type(obj).__name__}. Load a Hub model with "
            "DecisionTransformerModel.from_pretrained(name) first."
        )
    return obj


def _load_directory(path: Path) -> nn.Module:
    config_file = path / "config.json"
    if not path.is_dir():
        raise CheckpointError(
            f"{path} is not a directory; from_hf reads a directory written by "
            "DecisionTransformerModel.save_pretrained(path), or takes the model itself."
        )
    if not config_file.is_file():
        raise CheckpointError(
            f"{path} has no config.json; save the model with "
            "DecisionTransformerModel.save_pretrained(path) (it writes config.json and the "
            "weights) and pass that directory."
        )
    config = read_json_file(config_file, "a transformers config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_file} is not a JSON object (got {type(config).__name__}).")
    model_type = config.get("model_type")
    if model_type != "decision_transformer":
        raise CheckpointError(
            f"{path} holds a {model_type!r} model, not a decision transformer "
            "(config.json model_type must be 'decision_transformer')."
        )
    transformers = _import_transformers()
    try:
        return transformers.DecisionTransformerModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot load the decision transformer in {path}: {err}") from None


def _import_transformers() -> Any:
    try:
        import transformers
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "from_hf needs transformers: pip install 'dtlens[hf]' (or transformers>=4.40)."
        ) from err
    return transformers
