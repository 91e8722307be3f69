"""Exact edge patching: the metric when exactly the given edges carry the other run's values.

Background:
    Path patching (:mod:`dtlens.analysis.circuits.path_patching`) moves some senders'
    writes into some receivers. Edge patching generalises it to any set of edges of
    the model's graph (:class:`~dtlens.analysis.circuits.graph.DTGraph`), the unit of
    circuit discovery in ACDC (Conmy et al. 2023) and auto-circuit (Miller et al.
    2024): the base input is run once, and every receiver reads, for each of its
    incoming edges, the source run's write of that sender if the edge is in the set
    and the sender's own, live write otherwise (so the effect of a patched edge flows
    on through everything downstream of its receiver).

    ``direction="denoise"`` (default) runs the corrupt input with the set's edges
    carrying clean values; ``"noise"`` runs the clean input with them carrying corrupt
    values. No edge gives the base run, every edge the source run (tested).

Usage:
    >>> from tests.conftest import build_batch, build_model
    >>> model, clean, corrupt = build_model(), build_batch(seed=0), build_batch(seed=1)
    >>> metric = lambda logits: logits[:, -1, 0] - logits[:, -1, 1]
    >>> float(edge_patching(model, clean, corrupt, metric, ["L0H1->logits"])) != 0
    True
    >>> edge_patching(model, clean, corrupt, metric, [[], ["L0H1->L1H0.v", "L1H0->logits"]]).shape
    torch.Size([2])

Several edge sets run batched (row ``g * B + b`` is set g on pair b, in chunks of
``max_batch`` rows).

References:
    Conmy et al. 2023, "Towards Automated Circuit Discovery for Mechanistic
    Interpretability" (ACDC); Miller, Chughtai and Saunders 2024, "Transformer
    Circuit Faithfulness Metrics are not Robust" (auto-circuit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm

from dtlens.analysis.circuits.graph import DTGraph, Edge, EdgeSpec, parse_edge
from dtlens.analysis.circuits.graph_runs import GraphRuns
from dtlens.analysis.circuits.nodes import Embed
from dtlens.analysis.metrics import MetricFn
from dtlens.errors import ConfigError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer

__all__ = ["DEFAULT_EDGE_BATCH", "edge_patching", "patched_edge_values"]

#: Rows (edge sets x pairs) per batched forward unless the caller says otherwise.
DEFAULT_EDGE_BATCH = 256

EdgeSets = (
    Sequence[EdgeSpec]
    | Sequence[Sequence[EdgeSpec]]
    | Bool[Tensor, "sender receiver"]
    | Bool[Tensor, "set sender receiver"]
)


def edge_patching(
    model: HookedDecisionTransformer,
    clean: TrajectoryBatch,
    corrupt: TrajectoryBatch,
    metric: MetricFn,
    edges: EdgeSets,
    direction: Literal["denoise", "noise"] = "denoise",
    normalize: bool = True,
    *,
    graph: DTGraph | None = None,
    max_batch: int = DEFAULT_EDGE_BATCH,
    show_progress: bool = True,
) -> Float[Tensor, ""] | Float[Tensor, " set"]:
    """The metric with exactly ``edges`` carrying the source run's values (see the module doc).

    Args:
        model: the decision transformer (no hooks attached).
        clean: B clean windows.
        corrupt: B corrupt windows, the same shapes and padding as ``clean``.
        metric: ``logits -> [B]`` or a scalar (:data:`~dtlens.analysis.metrics.MetricFn`).
        edges: one edge set (a list of :class:`Edge` or ``"L0H1->L1H2.v"`` strings, or
            a bool mask ``[n_senders, n_receivers]``) or several (a list of such lists,
            or a mask ``[n_sets, n_senders, n_receivers]``).
        direction: ``"denoise"`` (corrupt run, clean values on the edges) or ``"noise"``.
        normalize: the restored fraction ``(patched - corrupt) / (clean - corrupt)``
            per pair (then averaged) instead of the mean patched metric.
        graph: the graph the edges belong to; default ``DTGraph(model)``, or one with
            per-token embedding senders when an edge names one (``"state_embed@S5"``).
        max_batch: rows (sets x pairs) per forward.
        show_progress: a tqdm bar when there are several forwards.

    Returns:
        A 0-d tensor for one edge set, ``[n_sets]`` for several.

    Raises:
        ConfigError: an edge that is not in the graph (a sender after its receiver is
            named), a bad mask, direction or ``max_batch``, hooks attached to the model.
        BatchError: clean and corrupt do not pair up.
        DTLensError: ``normalize=True`` with a pair whose clean and corrupt metrics agree.
    """
    masks, single, graph = _masks(model, clean, edges, graph)
    runs = GraphRuns(model, clean, corrupt, metric, graph, direction)
    values = patched_edge_values(runs, masks, max_batch, show_progress)
    if normalize:
        values = runs.normalized(values)
    values = values.mean(-1)
    return values[0] if single else values


def patched_edge_values(
    runs: GraphRuns,
    masks: Bool[Tensor, "set sender receiver"],
    max_batch: int = DEFAULT_EDGE_BATCH,
    show_progress: bool = False,
) -> Float[Tensor, "set value"]:
    """The raw metric of every edge set (``[set, B]``; ``[set, 1]`` for a scalar metric).

    Examples:
        >>> runs = GraphRuns(model, clean, corrupt, metric, graph, "denoise")
        >>> patched_edge_values(runs, graph.reach[None]).shape  # every edge: the clean run
        torch.Size([1, 2])
    """
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ConfigError(f"max_batch must be a positive int (rows per forward), got {max_batch!r}")
    runs.graph.check_mask(masks, "edge masks")
    per_chunk = max(1, max_batch // runs.n_pairs)
    starts = range(0, masks.shape[0], per_chunk)
    out = []
    bar = tqdm(starts, desc="edge patching", disable=not show_progress or len(starts) < 2)
    with torch.no_grad():
        for start in bar:
            chunk = masks[start : start + per_chunk].to(runs.model.device)
            out.append(runs.metric_of(runs.forward(chunk)))
    if not out:
        return torch.zeros(0, len(runs.base_metric))
    return torch.cat(out)


def _masks(
    model: HookedDecisionTransformer,
    clean: TrajectoryBatch,
    edges: EdgeSets,
    graph: DTGraph | None,
) -> tuple[Bool[Tensor, "set sender receiver"], bool, DTGraph]:
    """Edge sets as masks; whether one set was given; the graph (built if not given).

    A mask given as a tensor is checked against the graph by :func:`patched_edge_values`.
    """
    if isinstance(edges, Tensor):
        graph = graph or DTGraph(model)
        if edges.ndim not in (2, 3):
            raise ConfigError(
                f"an edge mask is [n_senders, n_receivers] or [n_sets, n_senders, n_receivers], "
                f"got shape {list(edges.shape)}."
            )
        return (edges[None] if edges.ndim == 2 else edges), edges.ndim == 2, graph
    if isinstance(edges, str | Edge) or not isinstance(edges, Sequence):
        raise ConfigError(
            f"edges must be a list of edges (or of edge lists, or a mask), got {edges!r}; "
            "wrap one edge in a list: ['L0H1->logits']."
        )
    single = len(edges) == 0 or isinstance(edges[0], str | Edge)
    sets = [[parse_edge(e) for e in s] for s in ([edges] if single else edges)]
    if graph is None:
        per_token = any(isinstance(e.sender, Embed) and e.sender.pos for s in sets for e in s)
        graph = DTGraph(model, model.token_labels(clean) if per_token else None)
    return torch.stack([graph.mask(s) for s in sets]), single, graph
