"""Adapters that let TransformerLens' own tools run on dtlens models.

``transformer_lens.patching`` (``get_act_patch_resid_pre``,
``get_act_patch_attn_head_out_by_pos``, ``generic_activation_patch`` ...) sweeps a
text model: it calls ``model.run_with_hooks(corrupted_tokens, fwd_hooks=[...])``
once per patch, reads ``model.cfg.n_layers``, ``n_heads``, ``n_key_value_heads``
and ``device``, the batch size from ``corrupted_tokens.shape[0]`` and the number of
positions from ``corrupted_tokens.shape[-1]``. A decision transformer's input is a
:class:`~dtlens.model.batch.TrajectoryBatch`, so :func:`tl_patching_inputs` returns
a model adapter and a stand-in for the tokens: a ``[batch, n_tokens]`` tensor whose
row i holds the index i of the corrupt window it stands for. The adapter turns it
back into those windows of the batch, so TransformerLens' loops, index inference
and per-example reductions (``reduce="mean"`` / ``"none"``, ``baseline=True``)
work unchanged, and give the numbers of dtlens' own batched sweeps
(:func:`dtlens.activation_patching`), which are much faster.

Not supported (the adapter raises a :class:`~dtlens.errors.DTLensError` naming the
dtlens function): ``get_act_patch_direct_path`` and its ``_all_sources`` variant,
which need per-head q/k/v input forks the native core does not have
(:func:`dtlens.path_patching` patches those paths).

Examples:
    >>> from transformer_lens import patching
    >>> from tests.conftest import build_batch, build_model
    >>> model, clean, corrupt = build_model(), build_batch(seed=0), build_batch(seed=1)
    >>> tl_model, tokens = tl_patching_inputs(model, corrupt)
    >>> _, clean_cache = model.run_with_cache(clean)
    >>> def metric(logits):  # a scalar, TransformerLens' default reduce="scalar"
    ...     return (logits[:, -1, 0] - logits[:, -1, 1]).mean()
    >>> patching.get_act_patch_resid_pre(tl_model, tokens, clean_cache, metric).shape
    torch.Size([2, 11])
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from dtlens.errors import BatchError, DTLensError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = ["TLPatchingModel", "tl_patching_inputs"]


class TLPatchingModel:
    """What ``transformer_lens.patching`` calls on a model, for a dtlens model and batch.

    Args:
        model: the dtlens model (put it in eval mode: TransformerLens' sweeps check).
        batch: the windows the "tokens" stand for (the corrupt run of a sweep).

    Attributes:
        model: the dtlens model (also ``original_model``, where TransformerLens'
            eval-mode check looks).
        batch: the windows.
        cfg: the config fields the sweeps read (``n_layers``, ``n_heads``,
            ``n_key_value_heads``, ``d_model``, ``d_head``, ``n_ctx``, ``device``).
        tokens: ``[batch, n_tokens]`` long tensor, row i filled with i: pass it as
            ``corrupted_tokens``.
    """

    def __init__(self, model: HookedDecisionTransformer, batch: TrajectoryBatch):
        if not isinstance(model, HookedDecisionTransformer):
            raise DTLensError(
                f"TLPatchingModel wraps a dtlens HookedDecisionTransformer, got "
                f"{type(model).__name__}."
            )
        model.validate(batch)
        self.model, self.batch = model, batch
        cfg = model.cfg
        self.cfg = SimpleNamespace(
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            n_key_value_heads=None,
            d_model=cfg.d_model,
            d_head=cfg.d_head,
            n_ctx=cfg.n_ctx,
            device=model.device,
        )
        n_tokens = batch.n_tokens(cfg.tokens_per_step)
        rows = torch.arange(batch.batch_size, device=model.device)
        self.tokens: Int[Tensor, "batch pos"] = rows[:, None].expand(-1, n_tokens).contiguous()

    @property
    def original_model(self) -> HookedDecisionTransformer:
        """The dtlens model (TransformerLens checks its modules are in eval mode)."""
        return self.model

    def batch_of(self, tokens: Int[Tensor, "batch pos"] | TrajectoryBatch) -> TrajectoryBatch:
        """The windows ``tokens`` stand for (a TrajectoryBatch passes through).

        Raises:
            BatchError: ``tokens`` is not this adapter's token tensor (or rows of it).
        """
        if isinstance(tokens, TrajectoryBatch):
            return tokens
        n_tokens = self.tokens.shape[1]
        if (
            not isinstance(tokens, Tensor)
            or tokens.ndim != 2
            or tokens.shape[1] != n_tokens
            or tokens.dtype.is_floating_point
            or not bool((tokens == tokens[:, :1]).all())
            or int(tokens.min()) < 0
            or int(tokens.max()) >= self.batch.batch_size
        ):
            shape = list(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise BatchError(
                f"this adapter reads the tokens returned by tl_patching_inputs (a [batch, "
                f"{n_tokens}] tensor of window indices), got {shape}; pass adapter.tokens "
                "(or rows of it) as corrupted_tokens."
            )
        rows = tokens[:, 0]
        if torch.equal(rows.cpu(), self.tokens[:, 0].cpu()):  # the whole batch, in order
            return self.batch
        return self.batch[rows.to(self.batch.device)]

    def run_with_hooks(self, tokens: Any, fwd_hooks=(), bwd_hooks=(), **kwargs: Any) -> Any:
        """``model.run_with_hooks`` on the windows ``tokens`` stand for."""
        return self.model.run_with_hooks(self.batch_of(tokens), fwd_hooks, bwd_hooks, **kwargs)

    def run_with_cache(self, tokens: Any, **kwargs: Any) -> Any:
        """``model.run_with_cache`` on the windows ``tokens`` stand for."""
        return self.model.run_with_cache(self.batch_of(tokens), **kwargs)

    def __call__(self, tokens: Any, **kwargs: Any) -> Any:
        """``model(batch)`` on the windows ``tokens`` stand for."""
        return self.model(self.batch_of(tokens), **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise DTLensError(
            f"TLPatchingModel has no {name!r}: it serves transformer_lens.patching's "
            "activation sweeps (get_act_patch_*, generic_activation_patch). Direct path "
            "patching needs per-head q/k/v inputs the native core lacks: use "
            "dtlens.path_patching(model, clean, corrupt, senders, receivers, metric); "
            "for the model itself use adapter.model."
        )


def tl_patching_inputs(
    model: HookedDecisionTransformer, corrupt: TrajectoryBatch
) -> tuple[TLPatchingModel, Int[Tensor, "batch pos"]]:
    """The ``model`` and ``corrupted_tokens`` arguments of ``transformer_lens.patching``.

    Args:
        model: the dtlens model, in eval mode.
        corrupt: the corrupt windows (the run that receives the clean activations).

    Returns:
        ``(adapter, tokens)``: pass them as the first two arguments of any
        ``transformer_lens.patching.get_act_patch_*`` function, with
        ``model.run_with_cache(clean)[1]`` as the clean cache. The metric gets
        ``[batch, n_tokens, n_actions]`` logits.

    Raises:
        BatchError: ``corrupt`` does not fit the model.

    Examples:
        >>> tl_model, tokens = tl_patching_inputs(model, corrupt)
        >>> tuple(tokens.shape), tokens[1, 0].item()
        ((2, 11), 1)
    """
    adapter = TLPatchingModel(model, corrupt)
    return adapter, adapter.tokens
