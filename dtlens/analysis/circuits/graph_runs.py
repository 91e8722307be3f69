"""The engine of edge patching and edge scores: a forward pass in which every edge can differ.

:class:`GraphRuns` caches the clean and corrupt runs once (in base/source roles, as
path patching does) and holds what every sender wrote in each. :meth:`GraphRuns.forward`
then runs the base input in plain torch (the blocks' own modules, no hooks) with each
receiver reading

    its own run's residual stream + sum over the edges (s -> receiver) that are
    switched on of (s's write in the source run - s's write in this run),

so an edge that is on carries the source run's value and every other edge its own,
*live* value (a head downstream of a patched edge writes what it now computes). Many
edge sets run as one batch: row ``g * B + b`` is set g applied to pair b. With every
edge on each receiver reads the source run's residual stream, so the forward gives the
source run; with none, the base run. :meth:`GraphRuns.receiver_grads` differentiates
the metric with respect to every receiver's input in one backward (at the base run, or
with the embeddings moved a fraction ``alpha`` of the way to the source run's, for
integrated gradients).

Examples:
    >>> from tests.conftest import build_batch, build_model
    >>> model, clean, corrupt = build_model(), build_batch(seed=0), build_batch(seed=1)
    >>> graph = DTGraph(model)
    >>> runs = GraphRuns(model, clean, corrupt, lambda x: x[:, -1, 0], graph, "denoise")
    >>> none, every = torch.zeros_like(graph.reach), graph.reach
    >>> logits = runs.forward(torch.stack([none, every]))  # [2 sets * 2 pairs, pos, action]
    >>> torch.allclose(logits[:2], model(corrupt), atol=1e-5)  # no edge: the base run
    True
    >>> torch.allclose(logits[2:], model(clean), atol=1e-5)  # every edge: the source run
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import einsum, rearrange
from jaxtyping import Bool, Float
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
from dtlens.analysis.circuits.runs import check_path_pair
from dtlens.analysis.metrics import MetricFn, metric_values, restored_fraction
from dtlens.errors import ConfigError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer
from dtlens.model.suffix import blocked_keys, model_has_hooks
from dtlens.model.tl_core import NativeBlockParts, native_parts

__all__ = ["GraphRuns"]

Act = Float[Tensor, "row pos d_model"]


@dataclass(frozen=True)
class _Layer:
    """Where one block's receivers and senders sit in the graph's order."""

    q: list[int]  # receiver index of each head's q input
    k: list[int]
    v: list[int]
    mlp_in: int  # receiver index of the MLP input
    heads: list[int]  # sender index of each head
    mlp: int  # sender index of the MLP
    block: NativeBlockParts


class GraphRuns:
    """Cached clean and corrupt runs, and the forward pass with per-edge values.

    Args:
        model: the decision transformer, with no hooks attached (the forward runs
            its plain modules; hooks would be silently skipped, so they are refused).
        clean: B clean windows.
        corrupt: B corrupt windows, paired row by row with ``clean`` (same shapes and
            padding).
        metric: a :data:`~dtlens.analysis.metrics.MetricFn` (``[B]`` or a scalar).
        graph: the model's graph (:class:`~dtlens.analysis.circuits.graph.DTGraph`).
        direction: ``"denoise"`` (base = corrupt, edges carry clean values) or
            ``"noise"`` (base = clean, edges carry corrupt values).

    Attributes (besides the arguments): ``clean_metric`` / ``corrupt_metric`` /
    ``base_metric`` (``[B]``, or ``[1]`` for a scalar metric), ``base`` (the patched
    runs' input), ``n_pairs``, ``labels`` (token labels), ``write_diff`` (per sender:
    its source-minus-base write ``[B, pos, d_model]``).

    Raises:
        ConfigError: a bad direction, a model with hooks attached or one whose core
            is not plainly computable.
        BatchError: clean and corrupt do not pair up.
    """

    def __init__(
        self,
        model: HookedDecisionTransformer,
        clean: TrajectoryBatch,
        corrupt: TrajectoryBatch,
        metric: MetricFn,
        graph: DTGraph,
        direction: str = "denoise",
    ) -> None:
        if direction not in ("denoise", "noise"):
            raise ConfigError(f"direction must be 'denoise' or 'noise', got {direction!r}.")
        if not isinstance(graph, DTGraph):
            raise ConfigError(f"graph must be a DTGraph, got {type(graph).__name__}.")
        if model_has_hooks(model):
            raise ConfigError(
                "edge patching runs the model's plain modules, so hooks attached to it would "
                "be skipped; remove them first (model.reset_hooks())."
            )
        parts = native_parts(model.core)
        check_path_pair(model, clean, corrupt)
        self.model, self.graph, self.metric = model, graph, metric
        self.n_pairs = clean.batch_size
        self.labels = model.token_labels(clean)
        if graph.token_embeddings is not None and tuple(graph.token_embeddings) != tuple(
            self.labels
        ):
            raise ConfigError(
                f"the graph's per-token embedding senders were built for tokens "
                f"{list(graph.token_embeddings)[:6]}..., but the batch has {self.labels[:6]}..."
                "; build the graph with token_embeddings=model.token_labels(batch)."
            )
        blocks, self._final_norm, self._head = parts
        cfg = model.cfg
        names = [*model.embedding_hook_names, "blocks.0.hook_resid_pre"]
        names += [f"blocks.{i}.attn.hook_z" for i in range(cfg.n_layers)]
        names += [f"blocks.{i}.hook_mlp_out" for i in range(cfg.n_layers)]
        n = self.n_pairs
        with torch.no_grad():
            logits, cache = model.run_with_cache(
                TrajectoryBatch.cat([clean, corrupt]), names_filter=names
            )
            self.clean_metric = metric_values(metric, logits[:n], n)
            self.corrupt_metric = metric_values(metric, logits[n:], n)
        clean_cache = {k: cache[k][:n] for k in names}
        corrupt_cache = {k: cache[k][n:] for k in names}
        denoise = direction == "denoise"
        self.base = corrupt if denoise else clean
        base, src = (corrupt_cache, clean_cache) if denoise else (clean_cache, corrupt_cache)
        self.base_metric = self.corrupt_metric if denoise else self.clean_metric
        self._resid0 = base["blocks.0.hook_resid_pre"].detach()
        self._layers = [self._layer(graph, blocks[i], i) for i in range(cfg.n_layers)]
        self._logits_receiver = graph.receivers.index(Logits())
        self._src_out: dict[int, Tensor] = {}
        self.write_diff: dict[int, Tensor] = {}
        with torch.no_grad():
            for i, sender in enumerate(graph.senders):
                positions = resolve_positions(sender.pos, self.labels, sender)
                self.write_diff[i] = sender_write(model, sender, src, base, positions).detach()
                if isinstance(sender, Head):
                    z = src[f"blocks.{sender.layer}.attn.hook_z"][:, :, sender.head]
                    w_o = model.core.blocks[sender.layer].attn.W_O[sender.head]
                    self._src_out[i] = (z @ w_o).detach()
                elif isinstance(sender, MLP):
                    self._src_out[i] = src[f"blocks.{sender.layer}.hook_mlp_out"].detach()
        self._embeds = [i for i, s in enumerate(graph.senders) if isinstance(s, Embed)]
        self._blocked = blocked_keys(model.token_mask(self.base), len(self.labels), model.device)

    def _layer(self, graph: DTGraph, block: NativeBlockParts, layer: int) -> _Layer:
        r_index = {r: i for i, r in enumerate(graph.receivers)}
        s_index = {s: i for i, s in enumerate(graph.senders)}
        heads = range(graph.n_heads)
        return _Layer(
            q=[r_index[HeadInput(layer, h, "q")] for h in heads],
            k=[r_index[HeadInput(layer, h, "k")] for h in heads],
            v=[r_index[HeadInput(layer, h, "v")] for h in heads],
            mlp_in=r_index[MLPInput(layer)],
            heads=[s_index[Head(layer, h)] for h in heads],
            mlp=s_index[MLP(layer)],
            block=block,
        )

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        masks: Bool[Tensor, "set sender receiver"],
        receiver_delta: Float[Tensor, "row receiver pos d_model"] | None = None,
        alpha: float = 0.0,
    ) -> Float[Tensor, "row pos action"]:
        """Logits of the base run of every pair under every edge set (row ``g * B + b``).

        Args:
            masks: ``[n_sets, n_senders, n_receivers]`` bool, True at the edges that
                carry the source run's value (:meth:`DTGraph.mask`).
            receiver_delta: added to every receiver's input (zeros that require grad
                give :meth:`receiver_grads` its gradients).
            alpha: move every embedding this fraction of the way from the base run's
                value to the source run's (0: the base run's).
        """
        model, n = self.model, self.n_pairs
        n_sets = masks.shape[0]
        pair = torch.arange(n, device=model.device).repeat(n_sets)
        weight = masks.to(self._resid0.dtype).repeat_interleave(n, dim=0)  # [row, S, R]
        resid = self._resid0[pair]
        if alpha:
            resid = resid + alpha * sum(self.write_diff[i][pair] for i in self._embeds)
        diffs: dict[int, Tensor] = {i: self.write_diff[i][pair] for i in self._embeds}
        blocked = self._blocked if self._blocked.shape[0] == 1 else self._blocked[pair]
        for spec in self._layers:
            block = spec.block
            qkv = [*spec.q, *spec.k, *spec.v]
            inputs = resid[:, None] + self._delta(diffs, weight, qkv, receiver_delta)
            inputs = block.ln1(inputs)
            q, k, v = (
                self._project(inputs[:, j * len(spec.q) : (j + 1) * len(spec.q)], proj, block)
                for j, proj in enumerate((block.q, block.k, block.v))
            )
            scores = q @ k.transpose(-2, -1) / block.scale
            pattern = torch.softmax(scores.masked_fill(blocked, float("-inf")), dim=-1)
            z = pattern.masked_fill(blocked, 0.0) @ v  # [row, head, pos, d_head]
            w_o = rearrange(block.o.weight, "d (h e) -> h e d", h=block.n_heads)
            outs = einsum(z, w_o, "row head pos e, head e d -> row head pos d")
            resid = resid + outs.sum(1) + (0 if block.o.bias is None else block.o.bias)
            for h, s in enumerate(spec.heads):
                diffs[s] = self._src_out[s][pair] - outs[:, h]
            x = resid + self._delta(diffs, weight, [spec.mlp_in], receiver_delta)[:, 0]
            mlp_out = block.mlp(block.ln2(x))
            resid = resid + mlp_out
            diffs[spec.mlp] = self._src_out[spec.mlp][pair] - mlp_out
        logits = self._logits_receiver
        resid = resid + self._delta(diffs, weight, [logits], receiver_delta)[:, 0]
        return self._head(self._final_norm(resid))

    def _delta(
        self,
        diffs: dict[int, Tensor],
        weight: Float[Tensor, "row sender receiver"],
        receivers: list[int],
        receiver_delta: Tensor | None,
    ) -> Float[Tensor, "row receiver pos d_model"]:
        """Each receiver's sum over its switched-on edges of (source - live) write."""
        senders = list(diffs)
        w = weight[:, senders][:, :, receivers]  # [row, s, r]
        rows, n_pos, d = next(iter(diffs.values())).shape
        out = torch.zeros(rows, len(receivers), n_pos, d, dtype=w.dtype, device=w.device)
        if bool(w.any()):
            stacked = torch.stack([diffs[s] for s in senders], dim=1)
            out = einsum(w, stacked, "row s r, row s pos d -> row r pos d")
        if receiver_delta is not None:
            out = out + receiver_delta[:, receivers]
        return out

    @staticmethod
    def _project(
        x: Float[Tensor, "row head pos d_model"], proj: torch.nn.Linear, block: NativeBlockParts
    ) -> Float[Tensor, "row head pos d_head"]:
        w = proj.weight.view(block.n_heads, block.d_head, -1)
        out = einsum(x, w, "row head pos d, head e d -> row head pos e")
        if proj.bias is not None:
            out = out + proj.bias.view(block.n_heads, 1, block.d_head)
        return out

    # ------------------------------------------------------------------ metrics
    def metric_of(self, logits: Float[Tensor, "row pos action"]) -> Float[Tensor, "set value"]:
        """The metric of every edge set (``[set, B]``, or ``[set, 1]`` for a scalar metric)."""
        n = self.n_pairs
        return torch.stack([metric_values(self.metric, chunk, n) for chunk in logits.split(n)])

    def normalized(self, values: Float[Tensor, "... value"]) -> Float[Tensor, "... value"]:
        """The restored fraction ``(values - corrupt) / (clean - corrupt)`` per pair."""
        return restored_fraction(values, self.clean_metric, self.corrupt_metric)

    def receiver_grads(
        self, alpha: float = 0.0, normalize: bool = True
    ) -> Float[Tensor, "receiver batch pos d_model"]:
        """d(objective)/d(every receiver's input) in one forward and one backward.

        The objective is the mean over pairs of the metric (of the restored fraction
        with ``normalize``), so ``write_diff . grad`` estimates an edge's change of
        the value :func:`~dtlens.analysis.circuits.edge_patching.edge_patching` reports.
        ``alpha`` moves the embeddings towards the source run (integrated gradients).
        """
        n, n_pos = self.n_pairs, len(self.labels)
        none = torch.zeros(1, len(self.graph.senders), len(self.graph.receivers), dtype=torch.bool)
        delta = torch.zeros(
            n, len(self.graph.receivers), n_pos, self.model.cfg.d_model,
            device=self.model.device, requires_grad=True,
        )  # fmt: skip
        with torch.enable_grad():
            logits = self.forward(none.to(self.model.device), delta, alpha)
            values = self.metric(logits)
            if not isinstance(values, Tensor) or tuple(values.shape) not in ((n,), ()):
                metric_values(self.metric, logits.detach(), n)  # raises the named error
            values = values.reshape(-1)
            if normalize:
                gap = self.clean_metric - self.corrupt_metric
                values = values / gap.to(values)
            objective = values.mean()
            (grad,) = torch.autograd.grad(objective, delta)
        return grad.transpose(0, 1)
