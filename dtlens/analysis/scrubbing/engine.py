"""The forward pass of causal scrubbing: many forward passes at once, each edge from its own input.

A scrubbed output is computed by several forward passes ("worlds"), one per claim
that starts one (:mod:`~dtlens.analysis.scrubbing.hypothesis`). In world w every
receiver (a head's q/k/v input, an MLP's input, the final residual stream) reads

    the residual stream of w's *random* input, as the clean model computed it,
    + sum over the edges (s -> receiver) a claim gives a source of
      (s's value from that source - s's value on the random input),

where a source is s's clean value on some input (:class:`Source` with ``index``), or
s's value as computed in some world (``live``; an embedding's value there is its
value on that world's input). Every edge without a source therefore carries the
random input's value, and a receiver whose every edge has a source reads exactly their
sum (the decomposition of the residual stream into the senders' writes that
:class:`~dtlens.analysis.circuits.GraphRuns` uses; constant terms, the positional
embedding and attention output biases, are the same on every input).

All worlds run as one batch (rows ``w * M + m``), layer by layer in plain torch (the
model's own modules, no hooks), so a world reads another's value of a sender once that
sender has run.

Examples:
    >>> from tests.conftest import build_batch, build_model
    >>> from dtlens.analysis.circuits import DTGraph
    >>> model, batch = build_model(), build_batch(batch_size=3)
    >>> cache = CleanCache(model, batch, DTGraph(model))
    >>> rows = torch.tensor([2, 0])
    >>> logits = scrub_forward(cache, [World(rows, rows)], [])  # no claim: the random inputs
    >>> torch.allclose(logits, model(batch)[rows], atol=1e-5)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import einsum, rearrange
from jaxtyping import Bool, Float, Int
from torch import Tensor

from dtlens.analysis.circuits.graph import DTGraph
from dtlens.analysis.circuits.node_io import sender_write
from dtlens.analysis.circuits.nodes import (
    MLP,
    Embed,
    Head,
    HeadInput,
    Logits,
    MLPInput,
    resolve_positions,
)
from dtlens.errors import ConfigError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.model.suffix import blocked_keys, model_has_hooks
from dtlens.model.tl_core import NativeBlockParts, native_parts

__all__ = ["CleanCache", "Source", "World", "scrub_forward"]

Act = Float[Tensor, "row pos d_model"]


@dataclass(frozen=True)
class World:
    """One forward pass: its input and its random input, per row (dataset indices)."""

    input: Int[Tensor, " row"]
    random: Int[Tensor, " row"]


@dataclass(frozen=True)
class Source:
    """Where the edges ``mask`` of world ``world`` take their senders' values from.

    Exactly one of ``index`` (the clean values on these dataset rows) and ``live``
    (the values computed in that world) is set.
    """

    world: int
    mask: Bool[Tensor, "sender receiver"]
    index: Int[Tensor, " row"] | None = None
    live: int | None = None


class CleanCache:
    """Every sender's value and every receiver's input on each window, clean.

    Args:
        model: the model (no hooks attached; a core :func:`native_parts` can run).
        batch: the dataset's windows (padded alike).
        graph: the model's graph (its senders and receivers).

    Attributes:
        values: per sender index, its write ``[N, pos, d_model]`` (an embedding at its
            tokens, a head's ``z @ W_O``, an MLP's output).
        reads: per layer, the residual stream the heads read (``pre``) and the one the
            MLP reads (``mid``), and ``final`` (before ``ln_final``), ``[N, pos, d_model]``.
        logits: the model's logits on the windows.

    Raises:
        ConfigError: a model with hooks attached, or a core that is not plainly computable.
    """

    def __init__(self, model: HookedDecisionTransformer, batch: TrajectoryBatch, graph: DTGraph):
        if model_has_hooks(model):
            raise ConfigError(
                "causal scrubbing runs the model's plain modules, so hooks attached to it "
                "would be skipped; remove them first (model.reset_hooks())."
            )
        parts = native_parts(model.core)
        self.model, self.graph = model, graph
        self.blocks, self.final_norm, self.head = parts
        n_layers = model.cfg.n_layers
        names = [*model.embedding_hook_names, "blocks.0.hook_resid_pre", "ln_final.hook_in"]
        for layer in range(n_layers):
            names += [f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.attn.hook_z",
                      f"blocks.{layer}.hook_resid_mid", f"blocks.{layer}.hook_mlp_out"]  # fmt: skip
        with torch.no_grad():
            self.logits, cache = model.run_with_cache(batch, names_filter=names)
            self.labels = model.token_labels(batch)
            self.values: dict[int, Act] = {}
            for i, sender in enumerate(graph.senders):
                positions = resolve_positions(sender.pos, self.labels, sender)
                self.values[i] = sender_write(model, sender, cache, None, positions).detach()
            self.pre = [cache[f"blocks.{i}.hook_resid_pre"].detach() for i in range(n_layers)]
            self.mid = [cache[f"blocks.{i}.hook_resid_mid"].detach() for i in range(n_layers)]
            self.final = cache["ln_final.hook_in"].detach()
        self.embeds = [i for i, s in enumerate(graph.senders) if isinstance(s, Embed)]
        s_index = {s: i for i, s in enumerate(graph.senders)}
        r_index = {r: i for i, r in enumerate(graph.receivers)}
        heads = range(model.cfg.n_heads)
        self.layers = [
            (
                [r_index[HeadInput(layer, h, kind)] for kind in ("q", "k", "v") for h in heads],
                r_index[MLPInput(layer)],
                [s_index[Head(layer, h)] for h in heads],
                s_index[MLP(layer)],
            )
            for layer in range(n_layers)
        ]
        self.logits_receiver = r_index[Logits()]
        token_mask = model.token_mask(batch)
        if token_mask is not None:  # the windows are padded alike (ScrubbingDataset checks)
            token_mask = token_mask[:1]
        self.blocked = blocked_keys(token_mask, len(self.labels), model.device)  # [1, 1, pos, pos]

    def readout(self, final: Act) -> Float[Tensor, "row pos action"]:
        """Logits from a final residual stream (``ln_final``, then the action head)."""
        return self.head(self.final_norm(final))


def scrub_forward(
    cache: CleanCache, worlds: Sequence[World], sources: Sequence[Source]
) -> Float[Tensor, "row pos action"]:
    """The logits of world 0 when every world's edges read what ``sources`` say.

    Args:
        cache: the dataset's clean cache.
        worlds: the forward passes; every world has the same number of rows M.
        sources: the edges that do not carry their world's random input's value.

    Returns:
        World 0's logits ``[M, pos, action]``.
    """
    m = worlds[0].input.shape[0]
    rand = torch.cat([w.random for w in worlds])
    inputs = torch.cat([w.input for w in worlds])
    live: dict[int, Act] = {i: cache.values[i][inputs] for i in cache.embeds}
    diffs: dict[tuple[int, int], Tensor] = {}  # (source, sender) -> value - random's value

    def diff(j: int, s: int) -> Tensor:
        if (j, s) not in diffs:
            src = sources[j]
            base = cache.values[s][rand[src.world * m : (src.world + 1) * m]]
            if src.live is not None:
                value = live[s][src.live * m : (src.live + 1) * m]
            else:
                value = cache.values[s][src.index]
            diffs[j, s] = (value - base).flatten(1)
        return diffs[j, s]

    def correction(receivers: list[int]) -> Float[Tensor, "row receiver pos d_model"]:
        n_pos, d = cache.final.shape[1:]
        out = cache.final.new_zeros(len(worlds) * m, len(receivers), n_pos, d)
        for j, src in enumerate(sources):
            mask = src.mask[:, receivers]
            senders = mask.any(1).nonzero().flatten().tolist()
            if not senders:
                continue
            weight = mask[senders].T.to(out.dtype)  # [receiver, sender]
            stacked = torch.stack([diff(j, s) for s in senders], 1)  # [row, sender, pos * d]
            rows = slice(src.world * m, (src.world + 1) * m)
            out[rows] += (weight @ stacked).view(m, len(receivers), n_pos, d)
        return out

    for layer, (qkv, mlp_in, heads, mlp) in enumerate(cache.layers):
        block, n = cache.blocks[layer], cache.blocks[layer].n_heads
        base = cache.pre[layer][rand]
        projected: list[Tensor] = [base] * (3 * n)  # q of every head, then k, then v
        for group in _alike(qkv, sources):  # receivers reading the same input: one norm
            x = block.ln1(base + correction([qkv[group[0]]])[:, 0])
            for j, proj in enumerate((block.q, block.k, block.v)):
                chosen = [i for i in group if j * n <= i < (j + 1) * n]
                if chosen:
                    out = _project(x, proj, block, [i - j * n for i in chosen])
                    for c, i in enumerate(chosen):
                        projected[i] = out[:, c]
        q, k, v = (torch.stack(projected[j * n : (j + 1) * n], 1) for j in range(3))
        scores = q @ k.transpose(-2, -1) / block.scale
        pattern = torch.softmax(scores.masked_fill(cache.blocked, float("-inf")), dim=-1)
        z = pattern.masked_fill(cache.blocked, 0.0) @ v  # [row, head, pos, d_head]
        w_o = rearrange(block.o.weight, "d (h e) -> h e d", h=n)
        outs = einsum(z, w_o, "row head pos e, head e d -> row head pos d")
        for h, s in enumerate(heads):
            live[s] = outs[:, h]
        x = cache.mid[layer][rand] + correction([mlp_in])[:, 0]
        live[mlp] = block.mlp(block.ln2(x))
    final = cache.final[rand[:m]] + correction([cache.logits_receiver])[:m, 0]
    return cache.readout(final)


def _alike(receivers: list[int], sources: Sequence[Source]) -> list[list[int]]:
    """Positions in ``receivers`` grouped by identical edges and sources (identical inputs)."""
    groups: dict[bytes, list[int]] = {}
    for i, r in enumerate(receivers):
        key = b"".join(src.mask[:, r].numpy().tobytes() for src in sources)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _project(
    x: Float[Tensor, "row pos d_model"],
    proj: torch.nn.Linear,
    block: NativeBlockParts,
    heads: list[int],
) -> Float[Tensor, "row head pos d_head"]:
    """The query/key/value of ``heads`` from one input ``x``."""
    w = proj.weight.view(block.n_heads, block.d_head, -1)[heads]
    out = einsum(x, w, "row pos d, head e d -> row head pos e")
    if proj.bias is not None:
        out = out + proj.bias.view(block.n_heads, 1, block.d_head)[heads]
    return out
