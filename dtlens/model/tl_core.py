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

Three more, so that hooks mean what they mean in HookedTransformer (see
docs/tl_compat.md):

* ``blocks.L.hook_resid_mid`` is a hook point on the residual stream between
  attention and MLP (:class:`_DTBlock`); the bridge makes it an alias of
  ``blocks.L.ln2.hook_in``, the MLP's input only, which stays as it is;
* ``blocks.L.attn.hook_attn_scores`` sees the masked pre-softmax scores
  (:class:`_DTAttention`); the bridge fires it with the pattern;
* every hook point's ``name`` is HookedTransformer's (``blocks.0.hook_resid_pre``,
  ``blocks.0.attn.hook_z``) where it has one; the bridge's module-path spellings
  (``blocks.0.hook_in``, ``blocks.0.attn.o.hook_in``) stay keys of ``hook_dict``.

:class:`DTActivationCache` is TransformerLens' ``ActivationCache`` with a
``logit_attrs`` that applies the unfolded ``ln_final.w``.

A model with ``action_tanh`` (continuous actions, :mod:`dtlens.model.hf`) gets a
:class:`TanhActionHead`: the biased Linear, then a tanh, with the hook points
``hook_action_pre_tanh`` and ``hook_action_post_tanh`` on either side of the tanh.
The tanh lives inside the head module, so the bridge's forward, the ``unembed``
component and the plain re-runs of :func:`native_parts` all apply it; ``W_U`` and
``b_U`` are still the Linear's weights (they give the pre-tanh actions).

Examples:
    >>> from dtlens.model.config import DTConfig
    >>> core = build_core(DTConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=8))
    >>> tuple(core.W_U.shape), tuple(core.b_U.shape)
    ((16, 7), (7,))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
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
    NativeBlock,
    NativeGatedMLP,
    NativeMLP,
    NativeModel,
)
from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

from dtlens.errors import CheckpointError, ConfigError
from dtlens.model.config import DTConfig
from dtlens.torch_context import seeded

__all__ = [
    "TANH_HOOKS",
    "DTActivationCache",
    "NativeBlockParts",
    "TanhActionHead",
    "attach_hook_point",
    "bridge_config",
    "build_core",
    "convert_hooked_transformer_state_dict",
    "final_norm_weight",
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


#: The hook points on either side of a :class:`TanhActionHead`'s tanh.
TANH_HOOKS = ("hook_action_pre_tanh", "hook_action_post_tanh")


class TanhActionHead(nn.Linear):
    """A continuous-action head: ``tanh(x W^T + b)``, hooked before and after the tanh.

    The hook points belong to the bridge (:func:`build_core` registers them there, so
    they are in its ``hook_dict`` and caches); the head only calls them.

    Examples:
        >>> head = TanhActionHead(4, 2)
        >>> bool((head(torch.randn(3, 4)).abs() < 1).all())
        True
    """

    def __init__(self, d_model: int, n_actions: int):
        super().__init__(d_model, n_actions, bias=True)
        # a plain tuple: the hook points are not registered as submodules here
        self.tanh_hooks: tuple[HookPoint, HookPoint] | None = None

    def forward(self, x: Tensor) -> Tensor:
        pre = super().forward(x)
        if self.tanh_hooks is None:
            return torch.tanh(pre)
        before, after = self.tanh_hooks
        return after(torch.tanh(before(pre)))


class _DTAttention(NativeAttention):
    """Native attention whose ``hook_attn_scores`` sees the scores, as in HookedTransformer.

    The bridge fires ``hook_attn_scores`` after the wrapped module has run, with the
    pattern the module returned (post-softmax): a cache would hold the pattern twice
    and a hook could not change the scores. This forward passes the masked,
    pre-softmax scores (``-inf`` where blocked) through the bridge's
    ``hook_attn_scores`` before the softmax and returns only the output, so the
    bridge does not fire it again. The pattern still passes ``hook_pattern``
    (``pattern_fn``). The core never uses rotary embeddings, grouped keys/values or
    score soft caps (:func:`bridge_config`), so this forward has none of them.
    """

    #: ``(hook_attn_scores,)`` once :func:`build_core` has wired the bridge (a tuple:
    #: the hook point belongs to the bridge, not to this module).
    scores_hook: tuple[HookPoint, ...] = ()

    def forward(  # type: ignore[override]
        self,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        pattern_fn: Callable[[Tensor], Tensor] | None = None,
        **kwargs: Any,
    ) -> tuple[Tensor]:
        batch, seq, _ = hidden_states.shape
        q, k, v = (
            proj(hidden_states).view(batch, seq, self.n_heads, self.d_head).transpose(1, 2)
            for proj in (self.q, self.k, self.v)
        )
        block_mask = self.causal_mask[:seq, :seq]
        if attention_mask is not None:
            block_mask = self._combine_attention_mask(block_mask, attention_mask, batch=batch)
        scores = (q @ k.transpose(-2, -1) / self.scale).masked_fill(block_mask, float("-inf"))
        for hook in self.scores_hook:
            scores = hook(scores)
        # fully blocked rows softmax to NaN: zero them, as the native module does
        pattern = F.softmax(scores, dim=-1).masked_fill(block_mask, 0.0)
        if pattern_fn is not None:
            pattern = pattern_fn(pattern)
        z = (pattern @ v).transpose(1, 2).reshape(batch, seq, -1)
        return (self.o(z),)


class _DTBlock(NativeBlock):
    """A native block with HookedTransformer's ``hook_resid_mid`` on the residual stream.

    The bridge's ``blocks.L.hook_resid_mid`` is an alias of ``blocks.L.ln2.hook_in``,
    the MLP's input only: a hook writing to it left the residual stream unpatched.
    Here the residual between attention and MLP passes a real hook point (wired by
    :func:`build_core`) before it feeds both ``ln2`` and the skip connection, as in
    HookedTransformer; ``blocks.L.ln2.hook_in`` keeps patching the MLP's input only.
    """

    #: ``(hook_resid_mid,)`` once :func:`build_core` has wired the bridge.
    resid_mid_hook: tuple[HookPoint, ...] = ()

    def forward(  # type: ignore[override]
        self,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[Tensor]:
        attn_out = self.attn(
            self.ln1(hidden_states), attention_mask=attention_mask, position_ids=position_ids
        )[0]
        hidden_states = hidden_states + attn_out
        if not self.cfg.attn_only:
            for hook in self.resid_mid_hook:
                hidden_states = hook(hidden_states)
            hidden_states = hidden_states + self.mlp(self.ln2(hidden_states))
        return (hidden_states,)


class _DecisionTransformerCore(NativeModel):
    """TransformerLens' native model with the two biases a DT's core needs (see module doc).

    Its blocks and attention are :class:`_DTBlock` and :class:`_DTAttention` (the
    classes are swapped after construction, so building draws the same random
    numbers as the native model and seeded weights do not change).
    """

    def __init__(self, cfg: TransformerBridgeConfig, action_tanh: bool = False):
        super().__init__(cfg)
        d_mlp = cfg.d_mlp
        head = TanhActionHead if action_tanh else partial(nn.Linear, bias=True)
        self.head = head(cfg.d_model, cfg.d_vocab_out)
        for block in self.layers:
            block.__class__ = _DTBlock
            block.attn.__class__ = _DTAttention
            if cfg.gated_mlp and not cfg.attn_only:
                block.mlp.out = nn.Linear(d_mlp, cfg.d_model, bias=True)


def build_core(cfg: DTConfig) -> TransformerBridge:
    """A freshly initialised TransformerLens bridge for ``cfg`` (seeded by ``cfg.seed``)."""
    tl_cfg = bridge_config(cfg)
    with seeded(cfg.seed):
        model = _DecisionTransformerCore(tl_cfg, cfg.action_tanh)
        initialize_native_model(model, tl_cfg)
    _zero_new_biases(model)
    core = build_bridge_from_module(
        model, architecture="TransformerLensNative", tl_config=tl_cfg, model_name=tl_cfg.model_name
    )
    if cfg.action_tanh:
        head = _plain(model.head)
        head.tanh_hooks = (
            attach_hook_point(core, TANH_HOOKS[0]),
            attach_hook_point(core, TANH_HOOKS[1]),
        )
    _wire_block_hooks(core)
    _use_transformer_lens_names(core)
    return core


def _wire_block_hooks(core: TransformerBridge) -> None:
    """Give each block a real ``hook_resid_mid`` and the true ``hook_attn_scores``.

    ``blocks.L.hook_resid_mid`` becomes a hook point of its own (registered on the
    block bridge, in the bridge's registry, and mapped to itself so the template's
    alias to ``ln2.hook_in`` no longer applies); see :class:`_DTBlock` and
    :class:`_DTAttention`.
    """
    registry = core._hook_registry
    for layer, block in enumerate(core.blocks):
        native = _plain(block)
        _plain(block.attn).scores_hook = (block.attn.hook_attn_scores,)
        if native.cfg.attn_only:
            continue
        hook = HookPoint()
        block.hook_resid_mid = hook  # the block bridge registers it
        name = f"blocks.{layer}.hook_resid_mid"
        hook.name = name
        registry[name] = hook
        block.hook_aliases = {**block.hook_aliases, "hook_resid_mid": "hook_resid_mid"}
        native.resid_mid_hook = (hook,)


def _use_transformer_lens_names(core: TransformerBridge) -> None:
    """Set each hook point's ``name`` to its HookedTransformer name (``hook.name`` in hooks).

    The bridge names its hook points by module path (``blocks.0.hook_in``,
    ``blocks.0.attn.o.hook_in``) and serves HookedTransformer's names
    (``blocks.0.hook_resid_pre``, ``blocks.0.attn.hook_z``) as aliases. Both stay
    keys of ``hook_dict``; the name a hook function sees, and a cache is keyed by,
    becomes HookedTransformer's. Hook points without one keep the bridge's name.

    Examples:
        >>> from dtlens.model.config import DTConfig
        >>> core = build_core(DTConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=8))
        >>> core.hook_dict["blocks.0.attn.o.hook_in"].name
        'blocks.0.attn.hook_z'
    """
    hook_dict = core.hook_dict
    renamed: set[int] = set()
    for alias, bridge_name in sorted(build_alias_to_canonical_map(hook_dict).items()):
        hook = hook_dict[bridge_name]
        if id(hook) not in renamed:
            hook.name = alias
            renamed.add(id(hook))


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
    """Add the other spelling (``blocks.0.hook_in`` ...) of every cached hook and gradient."""
    for alias, canonical in build_alias_to_canonical_map(core.hook_dict).items():
        for suffix in ("", "_grad"):
            if canonical + suffix in cache and alias + suffix not in cache:
                cache[alias + suffix] = cache[canonical + suffix]
    return cache


def final_norm_weight(core: TransformerBridge) -> Tensor | None:
    """The final LayerNorm's weight ``ln_final.w``, or None if the final norm has none (LNPre)."""
    if core.cfg.normalization_type not in ("LN", "RMS"):
        return None
    return getattr(_plain(core.ln_final), "weight", None)


class DTActivationCache(ActivationCache):
    """TransformerLens' ``ActivationCache`` whose ``logit_attrs`` applies ``ln_final.w``.

    ``ActivationCache.logit_attrs`` divides each component by the final norm's
    cached scale and dots it with ``W_U[:, token]``: right for a model whose final
    LayerNorm weight is folded into ``W_U`` (HookedTransformer's default), silently
    wrong for dtlens' cores, which keep ``ln_final.w`` unfolded (the logits are
    unchanged; ``W_U`` is the trained head). Here the scaled components are also
    multiplied by ``ln_final.w``, so the attributions are those TransformerLens
    gives on the folded model: they sum to the logit (difference) minus the
    final norm's bias and ``b_U`` terms. Everything else is TransformerLens' own.
    """

    _final_weight: Tensor | None = None

    def logit_attrs(self, residual_stack, tokens, *args: Any, **kwargs: Any) -> Tensor:  # type: ignore[override]
        """Logit attributions with the final norm's weight applied (see the class docstring)."""
        self._final_weight = final_norm_weight(self.model)
        try:
            return super().logit_attrs(residual_stack, tokens, *args, **kwargs)
        finally:
            self._final_weight = None

    def apply_ln_to_stack(self, residual_stack, layer=None, mlp_input=False, *args, **kwargs):  # type: ignore[override]
        """TransformerLens' ``apply_ln_to_stack`` (inside ``logit_attrs``: times ``ln_final.w``)."""
        out = super().apply_ln_to_stack(residual_stack, layer, mlp_input, *args, **kwargs)
        final = layer is None or layer in (-1, self.model.cfg.n_layers)
        if self._final_weight is not None and final and not mlp_input:
            out = out * self._final_weight
        return out

    def apply_slice_to_batch_dim(self, batch_slice) -> DTActivationCache:  # type: ignore[override]
        """TransformerLens' batch slice, keeping this class."""
        sliced = super().apply_slice_to_batch_dim(batch_slice)
        return DTActivationCache(sliced.cache_dict, self.model, has_batch_dim=sliced.has_batch_dim)


def make_activation_cache(
    core: TransformerBridge, cache: dict[str, Tensor], has_batch_dim: bool = True
) -> DTActivationCache:
    """Wrap a dict of activations into an ``ActivationCache`` for ``core``."""
    return DTActivationCache(cache, core, has_batch_dim=has_batch_dim)


@dataclass(frozen=True)
class NativeBlockParts:
    """The plain torch modules of one native block, without the bridge's hook wrappers.

    For computations that must not fire hooks and want no wrapper overhead, such as
    :mod:`dtlens.model.suffix` re-running the last positions of a window. The
    attention is split-QKV causal self-attention: ``pattern = softmax(q k^T /
    scale)`` with blocked entries at ``-inf`` (then 0), ``out = o(pattern v)``.

    Attributes:
        ln1, ln2: the block's norms.
        q, k, v, o: the attention projections (``nn.Linear``, ``[*, n_heads * d_head]``).
        mlp: ``resid -> mlp_out`` for ``ln2``'s output.
        n_heads, d_head: the heads' layout.
        scale: the attention scores' divisor.
    """

    ln1: nn.Module
    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    ln2: nn.Module
    mlp: Callable[[Tensor], Tensor]
    n_heads: int
    d_head: int
    scale: float


def native_parts(
    core: TransformerBridge,
) -> tuple[list[NativeBlockParts], nn.Module, nn.Linear]:
    """``(blocks, final norm, action head)`` as plain modules.

    Raises:
        ConfigError: the native model uses a feature :class:`NativeBlockParts` does not
            describe (rotary embeddings, grouped keys/values, score or logit soft caps,
            non-causal or attention-only blocks, a mid-MLP LayerNorm). No dtlens config
            builds one (:func:`bridge_config` enables none of them): this guards the
            plain re-runs (:mod:`dtlens.model.suffix`, edge patching, causal scrubbing)
            against a TransformerLens change.
    """
    native = core.original_model
    if not isinstance(native, NativeModel) or float(native.output_logits_soft_cap) > 0:
        raise _unsupported("its native model (or its logit soft cap)")
    blocks = []
    for block in native.layers:
        attn = _plain(block.attn)
        if not isinstance(attn, NativeAttention) or attn.rotary is not None:
            raise _unsupported("its attention (or rotary embeddings)")
        if attn.kv_repeats != 1 or attn.attn_scores_soft_cap > 0 or not attn.causal:
            raise _unsupported("grouped keys/values, a score soft cap or non-causal attention")
        mlp = None if block.cfg.attn_only else _plain_mlp(_plain(block.mlp))
        if mlp is None or mlp is False:
            raise _unsupported("attention-only blocks or its MLP")
        blocks.append(
            NativeBlockParts(
                ln1=_plain(block.ln1),
                q=_plain(attn.q),
                k=_plain(attn.k),
                v=_plain(attn.v),
                o=_plain(attn.o),
                ln2=_plain(block.ln2),
                mlp=mlp,
                n_heads=attn.n_heads,
                d_head=attn.d_head,
                scale=float(attn.scale),
            )
        )
    return blocks, _plain(native.ln_out), _plain(native.head)


def _unsupported(feature: str) -> ConfigError:
    return ConfigError(
        f"this model's transformer core uses {feature}, which dtlens' plain re-runs "
        "(suffix re-runs, edge patching, causal scrubbing) do not implement; use "
        "path_patching or activation patching, which run the bridge."
    )


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
