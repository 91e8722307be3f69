"""Re-run only the last positions of a window, reusing the base run's keys and values.

Attention is causal: a change that first touches token position p leaves every
earlier position exactly as it was, at every layer. So an intervention on a window
only needs positions ``p..n-1`` recomputed; the earlier positions' keys, values and
logits are the unchanged run's. Position-by-position activation patching
(:mod:`dtlens.analysis.patching.engine`) uses this to skip about half of each sweep's
work, on top of starting at the patched layer.

The computation runs the blocks' plain torch modules (:func:`dtlens.model.tl_core.
native_parts`), so no hook fires in it: callers use it only when the model has no
hooks attached (:func:`model_has_hooks`), and fall back to a full forward otherwise.

Examples:
    >>> import torch
    >>> from tests.conftest import build_batch, build_model
    >>> model, batch = build_model(), build_batch()
    >>> prefix = build_prefix_cache(model, batch)
    >>> _, cache = model.run_with_cache(batch)
    >>> resid = cache["blocks.1.hook_resid_pre"]  # entering block 1
    >>> resid = resid[:, 5:]  # positions 5..
    >>> logits = forward_suffix(model, prefix, resid, 1, 5, torch.arange(2))
    >>> torch.allclose(logits, model(batch), atol=1e-5)
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from dtlens.errors import BatchError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.model.tl_core import NativeBlockParts, native_parts

__all__ = [
    "PrefixCache",
    "blocked_keys",
    "build_prefix_cache",
    "forward_suffix",
    "model_has_hooks",
]


@dataclass(frozen=True)
class PrefixCache:
    """What a suffix re-run reads from the base run of B windows.

    Attributes:
        blocks: the blocks' plain modules; ``final_norm`` and ``head`` likewise.
        keys, values: per layer, the base run's ``[B, head, pos, d_head]``.
        logits: the base run's ``[B, pos, action]``.
        token_mask: ``[B, pos]``, True at real tokens; None when nothing is padded.
    """

    blocks: tuple[NativeBlockParts, ...]
    final_norm: nn.Module
    head: nn.Linear
    keys: tuple[Float[Tensor, "batch head pos d_head"], ...]
    values: tuple[Float[Tensor, "batch head pos d_head"], ...]
    logits: Float[Tensor, "batch pos action"]
    token_mask: Bool[Tensor, "batch pos"] | None


def model_has_hooks(model: HookedDecisionTransformer) -> bool:
    """Whether any hook point of ``model`` has a forward or backward hook attached.

    Examples:
        >>> model_has_hooks(model)
        False
    """
    return any(
        len(point._forward_hooks) or len(point._backward_hooks)
        for point in model.hook_dict.values()
    )


def build_prefix_cache(
    model: HookedDecisionTransformer,
    batch: TrajectoryBatch,
    logits: Float[Tensor, "batch pos action"] | None = None,
    resid_pre: Mapping[int, Float[Tensor, "batch pos d_model"]] | None = None,
) -> PrefixCache:
    """What suffix re-runs of ``batch`` need.

    Pass the base run's ``logits`` and ``{layer: blocks.L.hook_resid_pre}`` for every
    layer if a cache already holds them; otherwise ``batch`` is run once.

    Raises:
        ConfigError: the transformer core uses a feature the plain re-run does not
            implement (see :func:`dtlens.model.tl_core.native_parts`).

    Examples:
        >>> prefix = build_prefix_cache(model, batch)
        >>> prefix.keys[0].shape  # [batch, head, pos, d_head]
        torch.Size([2, 4, 11, 8])
    """
    blocks, final_norm, head = native_parts(model.core)
    n_layers = len(blocks)
    with torch.no_grad():
        if logits is None or resid_pre is None or any(i not in resid_pre for i in range(n_layers)):
            names = [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)]
            logits, cache = model.run_with_cache(batch, names_filter=names)
            resid_pre = {layer: cache[name] for layer, name in enumerate(names)}
        keys, values = [], []
        for layer, block in enumerate(blocks):
            x = block.ln1(resid_pre[layer])
            keys.append(_heads(block.k(x), block))
            values.append(_heads(block.v(x), block))
    return PrefixCache(
        blocks=tuple(blocks),
        final_norm=final_norm,
        head=head,
        keys=tuple(keys),
        values=tuple(values),
        logits=logits,
        token_mask=model.token_mask(batch),
    )


def forward_suffix(
    model: HookedDecisionTransformer,
    prefix: PrefixCache,
    resid: Float[Tensor, "row suffix d_model"],
    start_layer: int,
    first_pos: int,
    pair: Int[Tensor, " row"],
    mid: bool = False,
    head_inputs: Mapping[tuple[int, str], tuple[list[int], Tensor]] | None = None,
) -> Float[Tensor, "row pos action"]:
    """Full-window logits of rows that equal their base window before ``first_pos``.

    Row r is a variant of base window ``pair[r]`` whose residual stream entering
    block ``start_layer`` (or, with ``mid=True``, between that block's attention and
    MLP) is ``resid[r]`` at positions ``first_pos..n-1`` and the base run's at the
    positions before. Only the suffix is computed; queries attend to the base run's
    keys and values before ``first_pos`` and to the suffix's own from there, under
    the causal and padding masks of the model's forward. Positions before
    ``first_pos`` get the base run's logits.

    ``head_inputs`` replaces some heads' attention inputs, as a hook on
    ``blocks.L.attn.hook_q/k/v`` would (path patching's receivers): ``{(layer, kind):
    (heads, values [row, suffix, len(heads), d_head])}`` with kind ``"q"``, ``"k"`` or
    ``"v"``; the values replace those heads' suffix positions.

    Raises:
        BatchError: ``resid`` does not cover positions ``first_pos..n-1``.

    Examples:
        >>> prefix = build_prefix_cache(model, batch)
        >>> resid = cache["blocks.1.hook_resid_pre"][:, 5:]  # positions 5.. entering block 1
        >>> logits = forward_suffix(model, prefix, resid, 1, 5, torch.arange(2))
        >>> logits.shape  # [row, pos, action]
        torch.Size([2, 11, 7])
    """
    n_pos = prefix.logits.shape[1]
    if resid.ndim != 3 or resid.shape[1] != n_pos - first_pos:
        raise BatchError(
            f"resid must cover positions {first_pos}..{n_pos - 1}: shape [row, "
            f"{n_pos - first_pos}, d_model], got {list(resid.shape)}."
        )
    token_mask = None if prefix.token_mask is None else prefix.token_mask[pair]
    blocked = blocked_keys(token_mask, n_pos, resid.device, first_pos)
    replace = {} if head_inputs is None else head_inputs
    for layer in range(start_layer, len(prefix.blocks)):
        block = prefix.blocks[layer]
        if not (mid and layer == start_layer):
            given = {kind: replace[layer, kind] for kind in "qkv" if (layer, kind) in replace}
            resid = resid + _attention(block, prefix, layer, resid, first_pos, pair, blocked, given)
        resid = resid + block.mlp(block.ln2(resid))
    logits = prefix.head(prefix.final_norm(resid))
    return torch.cat([prefix.logits[pair, :first_pos], logits], dim=1)


def _heads(x: Float[Tensor, "batch pos hd"], block: NativeBlockParts) -> Tensor:
    batch, pos, _ = x.shape
    return x.view(batch, pos, block.n_heads, block.d_head).transpose(1, 2)


def blocked_keys(
    token_mask: Bool[Tensor, "row pos"] | None,
    n_pos: int,
    device: torch.device | str,
    first_pos: int = 0,
) -> Bool[Tensor, "row_or_1 1 query pos"]:
    """The attention mask of a plain forward: True where a query may not look.

    Later keys (causal), and padding keys except the query itself (a padding token
    attends to itself only, as the model's own attention does). Queries are the
    positions ``first_pos..n_pos-1``; the leading dimension is 1 without ``token_mask``
    (``model.token_mask(batch)``, True at real tokens), one row per window with it.

    Examples:
        >>> blocked_keys(None, 3, "cpu")[0, 0].int().tolist()
        [[0, 1, 1], [0, 0, 1], [0, 0, 0]]
        >>> blocked_keys(torch.tensor([[False, True, True]]), 3, "cpu", 1)[0, 0].int().tolist()
        [[1, 0, 1], [1, 0, 0]]
    """
    query = torch.arange(first_pos, n_pos, device=device)[:, None]
    key = torch.arange(n_pos, device=device)[None, :]
    blocked = (key > query)[None, None]
    if token_mask is not None:
        padding = ~token_mask[:, None, None, :] & (key != query)[None, None]
        blocked = blocked | padding
    return blocked


def _attention(
    block: NativeBlockParts,
    prefix: PrefixCache,
    layer: int,
    resid: Tensor,
    first_pos: int,
    pair: Tensor,
    blocked: Tensor,
    given: Mapping[str, tuple[list[int], Tensor]],
) -> Float[Tensor, "row suffix d_model"]:
    x = block.ln1(resid)
    q, k, v = (_given(_heads(proj(x), block), given.get(kind)) for kind, proj in
               (("q", block.q), ("k", block.k), ("v", block.v)))  # fmt: skip
    keys = torch.cat([prefix.keys[layer][pair, :, :first_pos], k], 2)
    values = torch.cat([prefix.values[layer][pair, :, :first_pos], v], 2)
    scores = (q @ keys.transpose(-2, -1)) / block.scale
    pattern = torch.softmax(scores.masked_fill(blocked, float("-inf")), dim=-1)
    pattern = pattern.masked_fill(blocked, 0.0)
    z = (pattern @ values).transpose(1, 2)
    return block.o(z.reshape(*z.shape[:2], -1))


def _given(
    act: Float[Tensor, "row head suffix d_head"], replace: tuple[list[int], Tensor] | None
) -> Float[Tensor, "row head suffix d_head"]:
    """``act`` with the heads in ``replace`` set to its values ``[row, suffix, head, d_head]``."""
    if replace is None:
        return act
    heads, values = replace
    act = act.clone()
    act[:, heads] = values.transpose(1, 2).to(act.dtype)
    return act
