"""What path-patching nodes are in a forward pass: a sender's write, a receiver's input.

:mod:`dtlens.analysis.circuits.nodes` names the nodes; this module computes with them.
:func:`sender_write` is a sender's write to the residual stream, source run minus base
run, from two caches; :func:`receiver_hook` is the hook whose value is a receiver's
input, and :func:`receiver_input` / :func:`receiver_inputs` compute that input from an
edited residual stream. :mod:`dtlens.analysis.circuits.path_patching` combines them.

Example:
    >>> _, src = model.run_with_cache(clean)
    >>> _, base = model.run_with_cache(corrupt)
    >>> write = sender_write(model, Head(0, 1), src, base)  # [batch, pos, d_model]
    >>> q = receiver_input(model, HeadInput(1, 0, "q"), base["blocks.1.hook_resid_pre"] + write)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor

from dtlens.analysis.circuits.nodes import (
    MLP,
    Head,
    HeadInput,
    MLPInput,
    Receiver,
    ResidPre,
    Sender,
)
from dtlens.errors import ConfigError

if TYPE_CHECKING:
    from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = ["receiver_hook", "receiver_input", "receiver_inputs", "sender_write"]


def sender_write(
    model: HookedDecisionTransformer,
    sender: Sender,
    source: Mapping[str, Tensor],
    base: Mapping[str, Tensor] | None,
    positions: list[int] | None = None,
) -> Float[Tensor, "batch pos d_model"]:
    """What ``sender`` writes to the residual stream in the source run minus the base run.

    Each run's write is computed from that run's own inputs (the direct contribution):
    a head's ``(z_source - z_base)[:, :, head] @ W_O[layer, head]`` (``b_O`` cancels), an
    MLP's ``hook_mlp_out`` difference, an embedding's hook difference placed at the
    tokens it is added to (the time embedding at every token of its step). Zero
    outside ``positions`` (resolved token indices; None = all).

    Args:
        model: the model both caches come from.
        sender: the node.
        source: the source run's cache (or a dict) holding ``blocks.L.attn.hook_z``,
            ``blocks.L.hook_mlp_out``, the embedding hooks and ``blocks.0.hook_resid_pre``.
        base: the base run's cache (or dict), with the same hooks; None: the source
            run's own write (its hook values minus zero; a head's without ``b_O``).
        positions: token indices to keep.

    Example:
        >>> _, src = model.run_with_cache(clean)
        >>> _, base = model.run_with_cache(corrupt)
        >>> write = sender_write(model, Head(0, 1), src, base)  # [batch, pos, d_model]
        >>> own = sender_write(model, Head(0, 1), src, None)  # z_clean @ W_O
        >>> torch.allclose(write, own - sender_write(model, Head(0, 1), base, None))
        True
    """

    def minus(name: str) -> Tensor:
        return source[name] if base is None else source[name] - base[name]

    if isinstance(sender, Head):
        dz = minus(f"blocks.{sender.layer}.attn.hook_z")[:, :, sender.head]
        delta = dz @ model.core.blocks[sender.layer].attn.W_O[sender.head]  # one layer's
    elif isinstance(sender, MLP):
        delta = minus(f"blocks.{sender.layer}.hook_mlp_out")
    else:
        if model.cfg.token_embedding == "huggingface":
            raise ConfigError(
                f"{sender}: this model (token_embedding='huggingface') normalises the sum of "
                "its embeddings with embed_ln, so one embedding's write to the residual stream "
                "is not defined; use heads and MLPs as senders."
            )
        n_tokens = source["blocks.0.hook_resid_pre"].shape[1]
        step_delta = minus(sender.hook_name)
        delta = _embed_tokens(model.cfg.tokens_per_step, sender.kind, step_delta)[:, :n_tokens]
    if positions is None:
        return delta
    keep = torch.zeros(delta.shape[1], dtype=delta.dtype, device=delta.device)
    keep[positions] = 1
    return delta * keep[:, None]


def _embed_tokens(
    per: int, kind: str, delta: Float[Tensor, "batch step d_model"]
) -> Float[Tensor, "batch token d_model"]:
    """Per-step embedding values at their tokens R1, S1, A1, ... (S1, A1, ... for a clone)."""
    if kind == "time":
        return delta.repeat_interleave(per, dim=1)
    n_steps = delta.shape[1] + (kind == "action")  # the last action may be absent
    tokens = delta.new_zeros(delta.shape[0], n_steps, per, delta.shape[-1])
    tokens[:, : delta.shape[1], ("rtg", "state", "action").index(kind) - (3 - per)] = delta
    return rearrange(tokens, "b t k d -> b (t k) d")


def receiver_hook(receiver: Receiver) -> str:
    """The hook whose value is the receiver's input.

    ``blocks.L.attn.hook_q/k/v`` (all heads; the receiver is one head's slice),
    ``blocks.L.ln2.hook_in`` for an MLP (the MLP's input only: in TransformerLens'
    native bridge, editing it leaves the residual stream alone) and
    ``ln_final.hook_in`` for the logits.

    Example:
        >>> receiver_hook(HeadInput(2, 1, "k")), receiver_hook(MLPInput(0))
        ('blocks.2.attn.hook_k', 'blocks.0.ln2.hook_in')
    """
    if isinstance(receiver, HeadInput):
        return f"blocks.{receiver.layer}.attn.hook_{receiver.kind}"
    if isinstance(receiver, MLPInput):
        return f"blocks.{receiver.layer}.ln2.hook_in"
    if isinstance(receiver, ResidPre):
        return f"blocks.{receiver.layer}.hook_resid_pre"
    return "ln_final.hook_in"


def receiver_input(
    model: HookedDecisionTransformer, receiver: Receiver, resid: Float[Tensor, "batch pos d_model"]
) -> Float[Tensor, "batch pos d_in"]:
    """The receiver's input (its :func:`receiver_hook` value) when it reads ``resid``.

    A head's q/k/v is ``norm1(resid) @ W[layer, head] + b[layer, head]``, with the norm
    (LN, LNPre or none) recomputed on ``resid``, since TransformerLens' native bridge
    cannot split per-head inputs (``d_in = d_head``). An MLP's input and the final
    residual are ``resid`` itself (``d_in = d_model``).

    Examples:
        >>> _, cache = model.run_with_cache(batch)
        >>> q = receiver_input(model, HeadInput(1, 0, "q"), cache["blocks.1.hook_resid_pre"])
        >>> torch.allclose(q, cache["blocks.1.attn.hook_q"][:, :, 0], atol=1e-5)
        True
    """
    return receiver_inputs(model, [receiver], resid)[receiver]


def receiver_inputs(
    model: HookedDecisionTransformer,
    receivers: Sequence[Receiver],
    resid: Float[Tensor, "batch pos d_model"],
) -> dict[Receiver, Float[Tensor, "batch pos d_in"]]:
    """:func:`receiver_input` of several receivers that read the same ``resid``.

    Head inputs must then belong to one layer; the norm is computed once and each
    kind (q, k, v) is projected for all its heads in one matmul.

    Raises:
        ConfigError: head inputs of different layers (they read different residuals).

    Example:
        >>> resid = cache["blocks.1.hook_resid_pre"]
        >>> qs = receiver_inputs(model, [HeadInput(1, 0, "q"), HeadInput(1, 2, "q")], resid)
        >>> one = receiver_input(model, HeadInput(1, 2, "q"), resid)
        >>> torch.allclose(qs[HeadInput(1, 2, "q")], one, atol=1e-6)
        True
    """
    heads = [r for r in receivers if isinstance(r, HeadInput)]
    out: dict[Receiver, Tensor] = {r: resid for r in receivers if not isinstance(r, HeadInput)}
    if not heads:
        return out
    layers = {r.layer for r in heads}
    if len(layers) > 1:
        raise ConfigError(
            f"receiver_inputs reads one residual stream, so its head inputs must share a "
            f"layer; got layers {sorted(layers)}. Call it once per layer."
        )
    layer = layers.pop()
    core, x, norm = model.core, resid, model.cfg.normalization
    if norm is not None:
        x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
        if norm == "LN":
            x = x * core.blocks[layer].ln1.weight + core.blocks[layer].ln1.bias
    for kind in sorted({r.kind for r in heads}):
        of_kind = [r for r in heads if r.kind == kind]
        index = sorted({r.head for r in of_kind})
        attn = core.blocks[layer].attn  # one layer's weights: core.W_Q stacks every layer
        weight = getattr(attn, f"W_{kind.upper()}")[index]  # [head, d_model, d_head]
        bias = getattr(attn, f"b_{kind.upper()}")[index]  # [head, d_head]
        projected = torch.einsum("bpd,hde->bphe", x, weight) + bias
        for r in of_kind:
            out[r] = projected[:, :, index.index(r.head)]
    return out
