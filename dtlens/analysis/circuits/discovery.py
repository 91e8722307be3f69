"""ACDC: greedy circuit discovery by exact edge patching.

Background:
    ACDC (Conmy et al. 2023) starts from the full graph and visits the receivers from
    the logits backwards (the last layer first), and, for each, its incoming edges.
    It tentatively removes one edge (the edge now carries the corrupt run's value, the
    rest of the current circuit the clean run's) and keeps it removed if that moves
    the output away from the clean run's by less than ``threshold``; otherwise it puts
    the edge back. Every decision is one exact forward
    (:class:`~dtlens.analysis.circuits.graph_runs.GraphRuns`), so the circuit it
    returns is exactly as faithful as it reports. ACDC measures the distance to the
    clean output by a KL divergence; here it is ``|1 - faithfulness|``, where the
    faithfulness (:mod:`dtlens.analysis.circuits.faithfulness`) is the share of the
    clean - corrupt gap of the metric the circuit keeps, averaged over the pairs, so
    ``threshold`` is a fraction of that gap.

Usage:
    >>> from tests.conftest import build_batch, build_model
    >>> model, clean, corrupt = build_model(), build_batch(seed=0), build_batch(seed=1)
    >>> metric = lambda logits: logits[:, -1, 0] - logits[:, -1, 1]
    >>> result = acdc(model, clean, corrupt, metric, threshold=0.05)
    >>> len(result.edges) < len(result.graph.edges), abs(result.faithfulness - 1) < 0.5
    (True, True)

References:
    Conmy, Mavor-Parker, Lynch, Heimersheim and Garriga-Alonso 2023, "Towards
    Automated Circuit Discovery for Mechanistic Interpretability".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from dtlens.analysis.circuits.eap import EdgeScores
from dtlens.analysis.circuits.faithfulness import circuit_values
from dtlens.analysis.circuits.graph import DTGraph, Edge
from dtlens.analysis.circuits.graph_runs import GraphRuns
from dtlens.analysis.metrics import MetricFn, metric_name
from dtlens.errors import ConfigError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["ACDCResult", "acdc"]


@dataclass(frozen=True)
class ACDCResult:
    """The circuit ACDC kept, and what each decision measured.

    Attributes:
        graph: the graph pruned.
        edges: the edges kept, in graph order.
        faithfulness: the kept circuit's faithfulness (exact).
        scores: per edge, how much its removal increased ``|1 - faithfulness|`` when it
            was tried (``EdgeScores`` with ``method="acdc"``; kept edges: at least
            ``threshold``).
        threshold: the pruning threshold.
        info: the number of forwards and the clean/corrupt metrics.
    """

    graph: DTGraph
    edges: list[Edge]
    faithfulness: float
    scores: EdgeScores
    threshold: float
    info: dict[str, Any] = field(default_factory=dict)

    def plot(self, **kwargs: Any) -> go.Figure:
        """The kept circuit drawn as a graph (:func:`dtlens.plotting.plot_circuit`)."""
        from dtlens.plotting.circuits import plot_circuit

        return plot_circuit(self.scores, self.edges, **kwargs)


def acdc(
    model: HookedDecisionTransformer,
    clean: TrajectoryBatch,
    corrupt: TrajectoryBatch,
    metric: MetricFn,
    threshold: float = 0.02,
    *,
    graph: DTGraph | None = None,
    show_progress: bool = False,
) -> ACDCResult:
    """Prune the graph greedily, keeping the edges whose removal costs ``threshold`` or more.

    Args:
        model: the decision transformer (no hooks attached).
        clean: B clean windows (the behaviour the circuit must keep).
        corrupt: B corrupt windows, paired row by row with ``clean``.
        metric: ``logits -> [B]`` or a scalar (:data:`~dtlens.analysis.metrics.MetricFn`).
        threshold: how much an edge's removal may increase ``|1 - faithfulness|`` (a
            fraction of the clean - corrupt gap), e.g. 0.02.
        graph: the graph to prune; default ``DTGraph(model)``.
        show_progress: a tqdm bar over the edges.

    Returns:
        An :class:`ACDCResult` (one forward of B rows per edge).

    Raises:
        ConfigError: a negative or non-number threshold, or anything :class:`GraphRuns`
            refuses.
        DTLensError: a pair whose clean and corrupt metrics agree.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold < 0:
        raise ConfigError(f"threshold must be a number >= 0, got {threshold!r}.")
    graph = graph or DTGraph(model)
    runs = GraphRuns(model, clean, corrupt, metric, graph, "noise")
    outside = torch.zeros_like(graph.reach)  # edges removed: they carry corrupt values

    def faithfulness(outside: torch.Tensor) -> float:
        return float(circuit_values(runs, (graph.reach & ~outside)[None]).mean())

    current = faithfulness(outside)  # 1 up to float error: the full graph is the clean run
    cost = torch.zeros(len(graph.senders), len(graph.receivers))
    order = [(s, r) for r in reversed(range(len(graph.receivers)))
             for s in reversed(range(len(graph.senders))) if graph.reach[s, r]]  # fmt: skip
    for s, r in tqdm(order, desc="ACDC", disable=not show_progress):
        outside[s, r] = True
        trial = faithfulness(outside)
        cost[s, r] = abs(1 - trial) - abs(1 - current)
        if cost[s, r] < threshold:
            current = trial
        else:
            outside[s, r] = False
    kept = graph.reach & ~outside
    scores = EdgeScores(graph, cost, "acdc", metric_name(metric, True), {"threshold": threshold})
    return ACDCResult(
        graph=graph,
        edges=graph.edges_of(kept),
        faithfulness=current,
        scores=scores,
        threshold=float(threshold),
        info={
            "forwards": len(order) + 1,
            "clean_metric": runs.clean_metric,
            "corrupt_metric": runs.corrupt_metric,
        },
    )
