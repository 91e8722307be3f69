"""Faithfulness: how much of the clean behaviour a circuit recovers on its own.

Background:
    Hanna et al. (2024) showed that circuits found by different methods can overlap
    little yet be equally good, and the other way round, so a circuit must be judged by
    *faithfulness*, not overlap: run the clean input with every edge outside the
    circuit carrying the corrupt run's value (exact edge patching,
    :mod:`dtlens.analysis.circuits.edge_patching`, ``direction="noise"``) and ask what
    share of the clean - corrupt difference of the metric survives::

        faithfulness = (metric(circuit) - metric(corrupt)) / (metric(clean) - metric(corrupt))

    per pair, then averaged: 1 = the circuit alone gives the clean behaviour, 0 = no
    better than the corrupt run. The empty circuit is the corrupt run (0) and the full
    graph the clean run (1), exactly. :func:`faithfulness_curve` draws it against the
    number of edges kept, for edges ranked by any score.

Usage:
    >>> from dtlens.analysis.circuits import edge_attribution_patching
    >>> from tests.conftest import build_batch, build_model
    >>> model, clean, corrupt = build_model(), build_batch(seed=0), build_batch(seed=1)
    >>> metric = lambda logits: logits[:, -1, 0] - logits[:, -1, 1]
    >>> scores = edge_attribution_patching(model, clean, corrupt, metric)
    >>> curve = faithfulness_curve(model, clean, corrupt, metric, scores, sizes=[0, 10, 191])
    >>> round(curve.at(0), 3) + 0.0, round(curve.at(191), 3)  # the corrupt run, the clean run
    (0.0, 1.0)

References:
    Hanna, Pezzelle and Belinkov 2024, "Have Faith in Faithfulness"; Miller et al. 2024,
    "Transformer Circuit Faithfulness Metrics are not Robust".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from dtlens.analysis.circuits.eap import EdgeScores
from dtlens.analysis.circuits.edge_patching import DEFAULT_EDGE_BATCH, patched_edge_values
from dtlens.analysis.circuits.graph import DTGraph, EdgeSpec
from dtlens.analysis.circuits.graph_runs import GraphRuns
from dtlens.analysis.metrics import MetricFn, metric_name
from dtlens.errors import ConfigError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["FaithfulnessCurve", "circuit_faithfulness", "default_sizes", "faithfulness_curve"]


@dataclass(frozen=True)
class FaithfulnessCurve:
    """Faithfulness of the top-k edges of a ranking, for several k.

    Attributes:
        sizes: the numbers of edges kept ``[n]``.
        faithfulness: the faithfulness at each size ``[n]``.
        n_edges_total: the graph's number of edges.
        method: what ranked the edges (``"eap-ig"``, ``"eap"``, ...).
        metric_name: the metric whose clean - corrupt gap is recovered.
        info: the clean and corrupt metrics, and the per-pair values ``[n, B]``.
    """

    sizes: Int[Tensor, " size"]
    faithfulness: Float[Tensor, " size"]
    n_edges_total: int
    method: str
    metric_name: str = "metric"
    info: dict[str, Any] = field(default_factory=dict)

    def smallest(self, target: float = 0.9) -> int | None:
        """The fewest edges whose faithfulness reaches ``target`` (None if none does).

        Examples:
            >>> curve.smallest(0.5)  # doctest: +SKIP
            12
        """
        hits = (self.faithfulness >= target).nonzero()
        return None if len(hits) == 0 else int(self.sizes[hits[0, 0]])

    def at(self, size: int) -> float:
        """The faithfulness at one of the curve's sizes."""
        where = (self.sizes == size).nonzero()
        if len(where) == 0:
            raise ConfigError(f"{size} is not one of the curve's sizes {self.sizes.tolist()}.")
        return float(self.faithfulness[where[0, 0]])

    def plot(self, **kwargs: Any) -> go.Figure:
        """The curve (:func:`dtlens.plotting.plot_faithfulness`)."""
        from dtlens.plotting.circuits import plot_faithfulness

        return plot_faithfulness(self, **kwargs)


def circuit_faithfulness(
    model: HookedDecisionTransformer,
    clean: TrajectoryBatch,
    corrupt: TrajectoryBatch,
    metric: MetricFn,
    circuits: Sequence[Sequence[EdgeSpec]],
    *,
    graph: DTGraph | None = None,
    max_batch: int = DEFAULT_EDGE_BATCH,
) -> Float[Tensor, " circuit"]:
    """The faithfulness of each circuit (a list of edges), batched.

    Raises:
        ConfigError: an edge that is not in the graph.
        DTLensError: a pair whose clean and corrupt metrics agree (nothing to recover).

    Examples:
        >>> values = circuit_faithfulness(model, clean, corrupt, metric, [[], DTGraph(model).edges])
        >>> [round(v, 3) + 0.0 for v in values.tolist()]
        [0.0, 1.0]
    """
    graph = graph or DTGraph(model)
    runs = GraphRuns(model, clean, corrupt, metric, graph, "noise")
    kept = torch.stack([graph.mask(c) for c in circuits]) if circuits else graph.reach[None][:0]
    return circuit_values(runs, kept, max_batch).mean(-1)


def default_sizes(n_edges: int, n_points: int = 24) -> list[int]:
    """Sizes for a faithfulness curve: every size up to 16, then about geometric steps.

    Examples:
        >>> default_sizes(191)[:5], default_sizes(191)[-1]
        ([0, 1, 2, 3, 4], 191)
    """
    small = list(range(min(n_edges, 16) + 1))
    if n_edges <= 16:
        return small
    ratio = (n_edges / 16) ** (1 / max(1, n_points - len(small)))
    sizes, value = set(small), 16.0
    while value < n_edges:
        value *= ratio
        sizes.add(min(n_edges, round(value)))
    return sorted(sizes | {n_edges})


def faithfulness_curve(
    model: HookedDecisionTransformer,
    clean: TrajectoryBatch,
    corrupt: TrajectoryBatch,
    metric: MetricFn,
    scores: EdgeScores,
    sizes: Sequence[int] | None = None,
    *,
    max_batch: int = DEFAULT_EDGE_BATCH,
) -> FaithfulnessCurve:
    """Faithfulness of the ``k`` best-scored edges (by magnitude) for every ``k`` in ``sizes``.

    Args:
        model: the decision transformer (no hooks attached).
        clean: B clean windows.
        corrupt: B corrupt windows, paired row by row with ``clean``.
        metric: ``logits -> [B]`` or a scalar (:data:`~dtlens.analysis.metrics.MetricFn`).
        scores: the edge ranking (:func:`edge_attribution_patching`, or an ACDC result's).
        sizes: edge counts to evaluate; default :func:`default_sizes`.
        max_batch: rows (sizes x pairs) per forward.

    Returns:
        A :class:`FaithfulnessCurve`; every size is one batched exact run.

    Raises:
        ConfigError: a size outside 0..n_edges.
    """
    graph = scores.graph
    n = len(graph.edges)
    sizes = default_sizes(n) if sizes is None else list(sizes)
    for k in sizes:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
            raise ConfigError(f"sizes must be ints in 0..{n} (the graph's edges), got {k!r}.")
    ranked = [edge for edge, _ in scores.ranked()]
    runs = GraphRuns(model, clean, corrupt, metric, graph, "noise")
    kept = torch.stack([graph.mask(ranked[:k]) for k in sizes])
    per_pair = circuit_values(runs, kept, max_batch)
    return FaithfulnessCurve(
        sizes=torch.tensor(sizes),
        faithfulness=per_pair.mean(-1),
        n_edges_total=n,
        method=scores.method,
        metric_name=metric_name(metric),
        info={
            "clean_metric": runs.clean_metric,
            "corrupt_metric": runs.corrupt_metric,
            "per_pair": per_pair,
        },
    )


def circuit_values(
    runs: GraphRuns,
    kept: Bool[Tensor, "circuit sender receiver"],
    max_batch: int = DEFAULT_EDGE_BATCH,
) -> Float[Tensor, "circuit value"]:
    """Per-pair faithfulness of each kept-edge mask (``runs``: direction ``"noise"``).

    Every edge outside the circuit carries the corrupt run's value; the result is the
    restored fraction of each circuit and pair (``[circuit, B]``, ``[circuit, 1]`` for
    a scalar metric).

    Examples:
        >>> graph = DTGraph(model)
        >>> runs = GraphRuns(model, clean, corrupt, metric, graph, "noise")
        >>> circuit_values(runs, torch.stack([graph.reach, torch.zeros_like(graph.reach)])).shape
        torch.Size([2, 2])
    """
    outside = runs.graph.reach[None] & ~kept
    return runs.normalized(patched_edge_values(runs, outside, max_batch))
