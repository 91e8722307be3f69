"""The one place dtlens touches TransformerLens' semi-internal 4.x bridge API.

A decision transformer's transformer core (learned positional embedding, blocks,
final norm, action head) is a TransformerLens *native* model wrapped in a
``TransformerBridge``, exactly what ``TransformerBridge.boot_native`` builds, so
every TransformerLens hook name, ``ActivationCache`` method and weight property
(``W_Q``, ``W_U``, ``b_out`` ...) works on it. Everything in this module is
TransformerLens-version specific; the rest of dtlens calls these functions only.

Two differences from ``boot_native`` (the reason this module builds the native
model itself and wraps it with ``build_bridge_from_module``, as ``boot_native``
does internally):

* the action head has a bias (``b_U``): decision transformers' action predictors
  are ``nn.Linear(d_model, n_actions)`` with bias, and TransformerLens' native
  head has none;
* a gated MLP's output projection has a bias (``b_out``). TransformerLens'
  native gated MLP has no biases at all; HookedTransformer's gated MLP computed
  ``post = act(x W_gate) * (x W_in) + b_in`` and ``out = post W_out + b_out``, so
  ``b_in`` folds exactly into the output bias (``b_out + b_in W_out``). As a
  consequence ``blocks.L.mlp.hook_post`` of a gated model is HookedTransformer's
  ``hook_post`` minus ``b_in``.

Both are subclass changes of the native model class (no TransformerLens code is
patched). Verified against transformer-lens 4.3.0 (see ``constraints.txt``).

Examples:
    >>> from dtlens.model.config import DTConfig
    >>> core = build_core(DTConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=8))
    >>> tuple(core.W_U.shape), tuple(core.b_U.shape)
    ((16, 7), (7,))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.hook_points import HookPoint
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.bridge_core import build_alias_to_canonical_map
from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module
from transformer_lens.model_bridge.sources.native.init import initialize_native_model
from transformer_lens.model_bridge.sources.native.model import (
    NativeAttention,
    NativeGatedMLP,
    NativeMLP,
    NativeModel,
)
from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

from dtlens.errors import CheckpointError
from dtlens.model.config import DTConfig

__all__ = [
    "NativeBlockParts",
    "attach_hook_point",
    "bridge_config",
    "build_core",
    "convert_hooked_transformer_state_dict",
    "make_activation_cache",
    "native_parts",
    "with_alias_keys",
]


def bridge_config(cfg: DTConfig) -> TransformerBridgeConfig:
    """The TransformerLens config of a DT's core: tokens in, ``n_actions`` logits out."""
    return TransformerBridgeConfig(
        architecture="TransformerLensNative",
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        d_head=cfg.d_head,
        d_mlp=cfg.d_mlp,
        n_ctx=cfg.n_ctx,
        # The core is fed embeddings, never token ids: a one-row token table
        # satisfies the native model and is never read.
        d_vocab=1,
        d_vocab_out=cfg.n_actions,
        act_fn=cfg.act_fn,
        normalization_type=cfg.normalization,
        gated_mlp=cfg.gated_mlp,
        eps=cfg.eps,
        positional_embedding_type="standard",
        attention_dir="causal",
        default_prepend_bos=False,
        seed=cfg.seed,
        model_name=f"dtlens-{cfg.model_type}",
    )


class _DecisionTransformerCore(NativeModel):
    """TransformerLens' native model with the two biases a DT's core needs (see module doc)."""

    def __init__(self, cfg: TransformerBridgeConfig):
        super().__init__(cfg)
        d_mlp = cfg.d_mlp
        self.head = nn.Linear(cfg.d_model, cfg.d_vocab_out, bias=True)
        if cfg.gated_mlp and not cfg.attn_only:
            for block in self.layers:
                block.mlp.out = nn.Linear(d_mlp, cfg.d_model, bias=True)


def build_core(cfg: DTConfig) -> TransformerBridge:
    """A freshly initialised TransformerLens bridge for ``cfg`` (seeded by ``cfg.seed``)."""
    tl_cfg = bridge_config(cfg)
    if cfg.seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = _DecisionTransformerCore(tl_cfg)
            initialize_native_model(model, tl_cfg)
    else:
        model = _DecisionTransformerCore(tl_cfg)
        initialize_native_model(model, tl_cfg)
    _zero_new_biases(model)
    return build_bridge_from_module(
        model, architecture="TransformerLensNative", tl_config=tl_cfg, model_name=tl_cfg.model_name
    )


def _zero_new_biases(model: _DecisionTransformerCore) -> None:
    with torch.no_grad():
        model.head.bias.zero_()
        if model.cfg.gated_mlp:
            for block in model.layers:
                block.mlp.out.bias.zero_()


def attach_hook_point(core: TransformerBridge, name: str) -> HookPoint:
    """Register a new HookPoint on the bridge, so it joins ``hook_dict`` and caches."""
    hook = HookPoint()
    setattr(core, name, hook)
    return hook


def embed_hook(core: TransformerBridge) -> HookPoint:
    """The bridge's ``hook_embed`` point, through which DT tokens enter the core."""
    return core.hook_dict["hook_embed"]


def convert_hooked_transformer_state_dict(
    ht_state_dict: dict[str, Tensor], cfg: DTConfig
) -> dict[str, Tensor]:
    """HookedTransformer-format core weights -> this bridge's ``state_dict`` format.

    Keys as ``HookedTransformer.state_dict()`` wrote them (``pos_embed.W_pos``,
    ``blocks.0.attn.W_Q [n_heads, d_model, d_head]``, ``blocks.0.mlp.W_in``,
    ``ln_final.w``, ``unembed.W_U``...). A gated MLP's ``b_in`` is folded into
    ``b_out`` (see the module docstring); an absent ``embed.W_E`` gets the unused
    one-row placeholder.
    """
    sd = dict(ht_state_dict)
    if cfg.gated_mlp:
        for layer in range(cfg.n_layers):
            prefix = f"blocks.{layer}.mlp."
            b_in = sd.pop(prefix + "b_in", None)
            if b_in is not None:
                sd[prefix + "b_out"] = sd[prefix + "b_out"] + b_in @ sd[prefix + "W_out"]
    sd.setdefault("embed.W_E", torch.zeros(1, cfg.d_model))
    try:
        return convert_tl_checkpoint(sd, bridge_config(cfg))
    except ValueError as err:
        raise CheckpointError(f"core weights do not match the config: {err}") from err


def with_alias_keys(core: TransformerBridge, cache: dict[str, Tensor]) -> dict[str, Tensor]:
    """Add every alias spelling (``blocks.0.hook_resid_pre`` ...) of the cached hooks."""
    for alias, canonical in build_alias_to_canonical_map(core.hook_dict).items():
        if canonical in cache and alias not in cache:
            cache[alias] = cache[canonical]
    return cache


def make_activation_cache(core: TransformerBridge, cache: dict[str, Tensor]) -> ActivationCache:
    """Wrap a dict of activations into TransformerLens' ``ActivationCache`` for ``core``."""
    return ActivationCache(cache, core)


@dataclass(frozen=True)
class NativeBlockParts:
    """The plain torch modules of one native block, without the bridge's hook wrappers.

    For computations that must not fire hooks and want no wrapper overhead, such as
    :mod:`dtlens.model.suffix` re-running the last positions of a window. The
    attention is split-QKV causal self-attention: ``pattern = softmax(q k^T /
    scale)`` with blocked entries at ``-inf`` (then 0), ``out = o(pattern v)``.

    Attributes:
        ln1, ln2: the block's norms (``ln2`` None for attention-only blocks).
        q, k, v, o: the attention projections (``nn.Linear``, ``[*, n_heads * d_head]``).
        mlp: ``resid -> mlp_out`` for ``ln2``'s output (None for attention-only blocks).
        n_heads, d_head: the heads' layout.
        scale: the attention scores' divisor.
    """

    ln1: nn.Module
    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    ln2: nn.Module | None
    mlp: Callable[[Tensor], Tensor] | None
    n_heads: int
    d_head: int
    scale: float


def native_parts(
    core: TransformerBridge,
) -> tuple[list[NativeBlockParts], nn.Module, nn.Linear] | None:
    """``(blocks, final norm, action head)`` as plain modules, or None if not plainly computable.

    None when the native model uses a feature :class:`NativeBlockParts` does not
    describe (rotary embeddings, grouped keys/values, score soft caps, a mid-MLP
    LayerNorm, logit soft caps): callers then run the bridge as usual.
    """
    native = core.original_model
    if not isinstance(native, NativeModel) or float(native.output_logits_soft_cap) > 0:
        return None
    blocks = []
    for block in native.layers:
        attn = _plain(block.attn)
        if not isinstance(attn, NativeAttention) or attn.rotary is not None:
            return None
        if attn.kv_repeats != 1 or attn.attn_scores_soft_cap > 0 or not attn.causal:
            return None
        mlp = None if block.cfg.attn_only else _plain_mlp(_plain(block.mlp))
        if mlp is False:
            return None
        blocks.append(
            NativeBlockParts(
                ln1=_plain(block.ln1),
                q=_plain(attn.q),
                k=_plain(attn.k),
                v=_plain(attn.v),
                o=_plain(attn.o),
                ln2=None if block.cfg.attn_only else _plain(block.ln2),
                mlp=mlp,
                n_heads=attn.n_heads,
                d_head=attn.d_head,
                scale=float(attn.scale),
            )
        )
    return blocks, _plain(native.ln_out), _plain(native.head)


def _plain(module: nn.Module) -> nn.Module:
    """The module a bridge component wraps (the module itself if it is not wrapped)."""
    inner = getattr(module, "original_component", None)
    return module if inner is None else inner


def _plain_mlp(mlp: nn.Module) -> Callable[[Tensor], Tensor] | bool:
    if isinstance(mlp, NativeGatedMLP):
        gate, up, out, act = _plain(mlp.gate), _plain(getattr(mlp, "in")), _plain(mlp.out), mlp.act
        return lambda x: out(act(gate(x)) * up(x))
    if isinstance(mlp, NativeMLP) and mlp.ln is None:
        fc_in, fc_out, act = _plain(mlp.fc_in), _plain(mlp.fc_out), mlp.act
        return lambda x: fc_out(act(fc_in(x)))
    return False
