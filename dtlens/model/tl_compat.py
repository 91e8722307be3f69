"""The TransformerLens surface of :class:`~dtlens.model.hooked_dt.HookedDecisionTransformer`.

dtlens' users come from TransformerLens, so the calls they make on a
``HookedTransformer`` work on a decision transformer with TransformerLens'
meanings, or raise a :class:`~dtlens.errors.DTLensError` that names what to call
instead. :class:`TransformerLensMixin` holds that surface:

* the weight views ``W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, W_in, W_out, b_in,
  b_out, W_gate, W_pos, W_U, b_U, QK, OV`` (those of ``model.core``, the
  TransformerLens bridge) and the components ``blocks``, ``ln_final``, ``unembed``,
  ``pos_embed``;
* ``hooks``, ``run_with_hooks`` and ``run_with_cache`` with TransformerLens'
  keyword arguments (``names_filter``, ``device``, ``remove_batch_dim``,
  ``incl_bwd``, ``reset_hooks_end``, ``clear_contexts``, ``pos_slice``,
  ``return_cache_object``; the rest goes to ``forward``, e.g. ``return_type``);
* ``tokens_to_residual_directions`` (with the final LayerNorm's weight, like the
  cache's ``logit_attrs``) and the text-model calls a decision transformer has no
  use for (``to_tokens``, ``generate`` ...), which raise naming the alternative.

``forward(batch, return_type=...)`` takes TransformerLens' ``"logits"`` (default),
``"loss"``, ``"both"`` and ``None``; the loss of a decision transformer is that of
its training objective (:mod:`dtlens.model.tl_forward`).

docs/tl_compat.md ("Coming from TransformerLens") tabulates every call checked.

Examples:
    >>> import torch
    >>> from tests.conftest import build_batch, build_model
    >>> model, batch = build_model(), build_batch()
    >>> torch.equal(model.W_Q, model.core.W_Q)
    True
    >>> logits, loss = model(batch, return_type="both")
    >>> tuple(logits.shape), tuple(loss.shape)
    ((2, 11, 7), ())
    >>> _, cache = model.run_with_cache(batch[:1], remove_batch_dim=True)
    >>> tuple(cache["blocks.0.hook_resid_pre"].shape)
    (11, 32)
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.FactoredMatrix import FactoredMatrix

from dtlens.errors import BatchError, DTLensError, HookNameError
from dtlens.model import tl_core
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.tl_forward import unsupported
from dtlens.model.validation import checked_hook

__all__ = ["TransformerLensMixin"]

HookList = Sequence[tuple[str | Callable[[str], bool], Callable[..., Any]]]
NamesFilter = str | Sequence[str] | Callable[[str], bool] | None


class TransformerLensMixin:
    """TransformerLens' model surface for a hooked decision transformer (module docstring).

    Mixed into :class:`~dtlens.model.hooked_dt.HookedDecisionTransformer` before
    ``HookedRootModule``; it reads ``self.core`` (the TransformerLens bridge),
    ``self.cfg`` and ``self.forward``.
    """

    core: Any
    cfg: Any
    hook_dict: dict[str, Any]

    # ---------------------------------------------------------------- weights
    @property
    def W_Q(self) -> Float[Tensor, "layer head d_model d_head"]:
        """Query weights of every head (``model.core.W_Q``)."""
        return self.core.W_Q

    @property
    def W_K(self) -> Float[Tensor, "layer head d_model d_head"]:
        """Key weights of every head."""
        return self.core.W_K

    @property
    def W_V(self) -> Float[Tensor, "layer head d_model d_head"]:
        """Value weights of every head."""
        return self.core.W_V

    @property
    def W_O(self) -> Float[Tensor, "layer head d_head d_model"]:
        """Output weights of every head."""
        return self.core.W_O

    @property
    def b_Q(self) -> Float[Tensor, "layer head d_head"]:
        """Query biases."""
        return self.core.b_Q

    @property
    def b_K(self) -> Float[Tensor, "layer head d_head"]:
        """Key biases."""
        return self.core.b_K

    @property
    def b_V(self) -> Float[Tensor, "layer head d_head"]:
        """Value biases."""
        return self.core.b_V

    @property
    def b_O(self) -> Float[Tensor, "layer d_model"]:
        """Attention output biases."""
        return self.core.b_O

    @property
    def W_in(self) -> Float[Tensor, "layer d_model d_mlp"]:
        """MLP input weights."""
        return self.core.W_in

    @property
    def W_out(self) -> Float[Tensor, "layer d_mlp d_model"]:
        """MLP output weights."""
        return self.core.W_out

    @property
    def b_in(self) -> Float[Tensor, "layer d_mlp"]:
        """MLP input biases; a gated MLP has none (raises, naming ``b_out``)."""
        if self.cfg.gated_mlp:
            raise DTLensError(
                "a gated MLP has no b_in here: HookedTransformer's b_in (added after the "
                "gate product) is folded into b_out (b_out + b_in @ W_out), so use "
                "model.b_out; blocks.L.mlp.hook_post excludes b_in."
            )
        return self.core.b_in

    @property
    def b_out(self) -> Float[Tensor, "layer d_model"]:
        """MLP output biases."""
        return self.core.b_out

    @property
    def W_gate(self) -> Float[Tensor, "layer d_model d_mlp"]:
        """Gate weights of a gated MLP (raises for a plain MLP)."""
        if not self.cfg.gated_mlp:
            raise DTLensError("W_gate exists only for a gated MLP (cfg.gated_mlp); use W_in.")
        return self.core.W_gate

    @property
    def W_pos(self) -> Float[Tensor, "n_ctx d_model"]:
        """The learned positional embedding over token positions."""
        return self.core.W_pos

    @property
    def W_U(self) -> Float[Tensor, "d_model action"]:
        """The action head's weight (TransformerLens' unembed)."""
        return self.core.W_U

    @property
    def b_U(self) -> Float[Tensor, " action"]:
        """The action head's bias."""
        return self.core.b_U

    @property
    def QK(self) -> FactoredMatrix:
        """``W_Q @ W_K^T`` of every head, ``[layer, head, d_model, d_model]``."""
        return self.core.QK

    @property
    def OV(self) -> FactoredMatrix:
        """``W_V @ W_O`` of every head, ``[layer, head, d_model, d_model]``."""
        return self.core.OV

    @property
    def W_E(self) -> Tensor:
        """Raises: a decision transformer has no token embedding matrix."""
        raise DTLensError(
            "a decision transformer has no token embedding W_E: tokens are embedded by "
            "model.rtg_embed, model.state_embed, model.action_embed (plus "
            "model.time_embed); hook_embed holds the interleaved token embeddings."
        )

    # ------------------------------------------------------------- components
    @property
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks (``model.blocks[0].attn.W_Q`` ...)."""
        return self.core.blocks

    @property
    def ln_final(self) -> nn.Module:
        """The final norm."""
        return self.core.ln_final

    @property
    def unembed(self) -> nn.Module:
        """The action head."""
        return self.core.unembed

    @property
    def pos_embed(self) -> nn.Module:
        """The positional embedding."""
        return self.core.pos_embed

    def tokens_to_residual_directions(
        self, actions: int | Int[Tensor, "..."]
    ) -> Float[Tensor, "... d_model"]:
        """The residual direction of each action's logit: ``ln_final.w * W_U[:, action]``.

        HookedTransformer returns ``W_U[:, token]`` of a model whose final LayerNorm
        weight is folded into ``W_U``; dtlens keeps it unfolded, so the direction
        includes it (the dot product with ``cache.apply_ln_to_stack(...)`` is then
        the component's logit contribution, as ``cache.logit_attrs`` computes).

        Examples:
            >>> model.tokens_to_residual_directions(torch.tensor([0, 1])).shape
            torch.Size([2, 32])
        """
        direction = self.core.W_U[:, actions]
        if isinstance(actions, Tensor) and actions.ndim > 0:
            direction = direction.movedim(0, -1)
        weight = tl_core.final_norm_weight(self.core)
        return direction if weight is None else direction * weight

    # ------------------------------------------------- text-model calls (none)
    def to_tokens(self, *args: Any, **kwargs: Any) -> Tensor:
        """Raises: the input of a decision transformer is a TrajectoryBatch."""
        unsupported(
            "to_tokens",
            "build the input with dtlens.TrajectoryBatch(obs=, actions=, rtg=, timesteps=)",
        )

    def to_string(self, *args: Any, **kwargs: Any) -> str:
        """Raises: there is no vocabulary to decode."""
        unsupported("to_string", "model.token_labels(batch) names the tokens")

    def to_single_token(self, *args: Any, **kwargs: Any) -> int:
        """Raises: actions are indices already (``cfg.n_actions`` of them)."""
        unsupported("to_single_token", "actions are integer indices 0..cfg.n_actions-1")

    def to_str_tokens(self, batch: TrajectoryBatch | int) -> list[str]:
        """The token labels ``["R1", "S1", "A1", ...]`` of a batch (``token_labels``)."""
        if not isinstance(batch, TrajectoryBatch | int):
            unsupported("to_str_tokens of text", "pass a TrajectoryBatch or a step count")
        return self.token_labels(batch)  # type: ignore[attr-defined]

    def generate(self, *args: Any, **kwargs: Any) -> Tensor:
        """Raises: a decision transformer acts in an environment."""
        unsupported(
            "generate",
            "the next action is model.action_logits(model.pad_context(batch))[:, -1]; "
            "dtlens.training.evaluate.rollout(model, ...) plays whole episodes",
        )

    def set_use_attn_result(self, use: bool) -> None:
        """Raises: the native core has no ``hook_result``; caches compute it from ``hook_z``."""
        if use:
            unsupported(
                "set_use_attn_result(True) (hook_result)",
                "cache.stack_head_results() or cache.compute_head_results() compute each "
                "head's output from hook_z and W_O; patch a head through blocks.L.attn.hook_z",
            )

    def set_use_split_qkv_input(self, use: bool) -> None:
        """Raises: per-head q/k/v inputs are what dtlens' path patching computes."""
        if use:
            unsupported(
                "set_use_split_qkv_input(True)",
                "dtlens.path_patching(model, clean, corrupt, senders, receivers, metric) "
                "patches a head's q/k/v input",
            )

    def set_use_attn_in(self, use: bool) -> None:
        """Raises: see :meth:`set_use_split_qkv_input`."""
        self.set_use_split_qkv_input(use)

    # ------------------------------------------------------------------ hooks
    def check_hook_names(self, names: Iterable[str | Callable[[str], bool]]) -> None:
        """Raise HookNameError for any name the model has no hook point for."""
        known = None
        for name in names:
            if callable(name):
                continue
            known = known if known is not None else self.hook_dict
            if name not in known:
                close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
                hint = f" Did you mean {close}?" if close else ""
                raise HookNameError(
                    f"unknown hook name {name!r}.{hint} See model.hook_dict for all "
                    f"{len(known)} names (e.g. 'blocks.0.hook_resid_pre', "
                    "'blocks.0.attn.hook_pattern', 'hook_rtg_embed')."
                )

    def hooks(
        self,
        fwd_hooks: HookList = (),
        bwd_hooks: HookList = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ):
        """Context manager adding temporary hooks (TransformerLens semantics), names checked.

        Forward hooks are wrapped by :func:`dtlens.model.validation.checked_hook`: one
        that returns a tensor of another shape raises ``HookShapeError`` naming it.
        """
        self.check_hook_names([name for name, _ in [*fwd_hooks, *bwd_hooks]])
        fwd_hooks = [(name, checked_hook(name, fn)) for name, fn in fwd_hooks]
        return super().hooks(  # type: ignore[misc]
            list(fwd_hooks), list(bwd_hooks), reset_hooks_end, clear_contexts
        )

    def run_with_hooks(
        self,
        batch: TrajectoryBatch,
        fwd_hooks: HookList = (),
        bwd_hooks: HookList = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        **forward_kwargs: Any,
    ) -> Any:
        """Forward with temporary hooks; ``forward_kwargs`` (``return_type`` ...) go to forward.

        Examples:
            >>> def zero_rtg(act, hook):  # ablate every RTG embedding
            ...     return torch.zeros_like(act)
            >>> logits = model.run_with_hooks(batch, fwd_hooks=[("hook_rtg_embed", zero_rtg)])
        """
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end, clear_contexts):
            return self.forward(batch, **forward_kwargs)  # type: ignore[attr-defined]

    def run_with_cache(
        self,
        batch: TrajectoryBatch,
        names_filter: NamesFilter = None,
        device: torch.device | str | None = None,
        remove_batch_dim: bool = False,
        incl_bwd: bool = False,
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        pos_slice: Any = None,
        return_cache_object: bool = True,
        **forward_kwargs: Any,
    ) -> tuple[Any, ActivationCache | dict[str, Tensor]]:
        """Forward that also returns one ``ActivationCache`` of every (or the filtered) hook.

        With ``names_filter=None`` the cache holds every hook under its
        TransformerLens name and the bridge's spelling (``blocks.0.hook_resid_pre``
        and ``blocks.0.hook_in`` ...), plus the DT embedding hooks; a filter keeps
        the names it matched. The cache's model is ``self.core``, so
        ``cache.decompose_resid()``, ``cache.accumulated_resid()`` and
        ``cache.logit_attrs()`` work (the latter with ``ln_final.w`` applied, see
        :class:`~dtlens.model.tl_core.DTActivationCache`).

        Args:
            batch: the input.
            names_filter: a hook name, a list of them, a predicate on names, or None (all).
            device: where to store the activations (the model stays where it is).
            remove_batch_dim: drop the batch dimension (a batch of one window only).
            incl_bwd: also cache gradients (``name + "_grad"``) of the scalar output;
                pass ``return_type="loss"`` (or a hook-free scalar of your own through
                ``run_with_hooks``).
            reset_hooks_end: remove the caching hooks after the run (as in :meth:`hooks`).
            clear_contexts: clear the hook points' contexts after the run.
            pos_slice: keep only these positions of every activation
                (TransformerLens' ``Slice`` input: an int, a list, a slice ...).
            return_cache_object: False returns a plain dict.
            **forward_kwargs: to :meth:`forward` (``return_type``, ``loss_per_token``,
                ``stop_at_layer``).

        Raises:
            HookNameError: a name in ``names_filter`` that the model does not have.
            BatchError: ``remove_batch_dim=True`` with more than one window.
            DTLensError: ``incl_bwd=True`` with an output that is not a scalar.

        Examples:
            >>> name = "blocks.0.attn.hook_pattern"
            >>> logits, cache = model.run_with_cache(batch, names_filter=name)
            >>> list(cache.keys())
            ['blocks.0.attn.hook_pattern']
        """
        if isinstance(names_filter, str):
            self.check_hook_names([names_filter])
        elif isinstance(names_filter, Sequence):
            self.check_hook_names(names_filter)
            names_filter = list(names_filter)
        if remove_batch_dim and isinstance(batch, TrajectoryBatch) and batch.batch_size != 1:
            raise BatchError(
                f"remove_batch_dim=True needs a batch of one window, got {batch.batch_size}; "
                "pass batch[i:i + 1], or index the cache (cache[name][i])."
            )
        store, fwd, bwd = self.core.get_caching_hooks(
            names_filter, incl_bwd=incl_bwd, device=device, pos_slice=pos_slice
        )
        # the caching hooks are dtlens' own (names from hook_dict, shapes kept): they go
        # straight to TransformerLens' hooks(), without the user-hook checks of self.hooks()
        with super().hooks(fwd, bwd, reset_hooks_end, clear_contexts):  # type: ignore[misc]
            out = self.forward(batch, **forward_kwargs)  # type: ignore[attr-defined]
            if incl_bwd:
                if not isinstance(out, Tensor) or out.numel() != 1:
                    raise DTLensError(
                        "incl_bwd=True back-propagates a scalar output; pass "
                        'return_type="loss" (or cache gradients of your own metric with '
                        "run_with_hooks(batch, bwd_hooks=...) and .backward())."
                    )
                out.backward()
        if names_filter is None:
            tl_core.with_alias_keys(self.core, store)
        if remove_batch_dim:
            store = {k: v[0] if v.ndim > 0 and v.shape[0] == 1 else v for k, v in store.items()}
        if not return_cache_object:
            return out, store
        cache = tl_core.make_activation_cache(self.core, store, has_batch_dim=not remove_batch_dim)
        return out, cache
