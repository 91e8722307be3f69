"""Edge attribution patching (EAP) and its integrated-gradients form (EAP-IG): every edge scored.

Background:
    Exact edge patching (:mod:`dtlens.analysis.circuits.edge_patching`) needs one
    forward per edge. EAP (Syed, Rager and Conmy 2023) estimates all of them at once
    from the first-order term: patching edge s -> r changes r's input by
    ``write_source(s) - write_base(s)``, so the metric changes by about that
    difference dotted with the metric's gradient with respect to r's input at the
    base run. One forward and one backward score every edge. EAP-IG (Hanna, Pezzelle
    and Belinkov 2024) averages that gradient over ``steps`` forwards whose
    embeddings lie on the straight line from the base run's to the source run's
    (``alpha = k / steps``, k = 0 .. steps - 1, the left Riemann sum of the EAP-IG
    repository), which follows the metric through the non-linearities better; with
    ``steps=1`` it is EAP.

    A score estimates what :func:`~dtlens.analysis.circuits.edge_patching.edge_patching`
    of that edge alone would change: the restored fraction (``normalize=True``) or the
    mean metric, relative to the base run. On a model whose path from an edge to the
    metric is linear (no LayerNorm, the edge into the logits or a value input of the
    last layer) EAP is exact (tested).

Usage:
    >>> from tests.conftest import build_batch, build_model
    >>> model, clean, corrupt = build_model(), build_batch(seed=0), build_batch(seed=1)
    >>> metric = lambda logits: logits[:, -1, 0] - logits[:, -1, 1]
    >>> scores = edge_attribution_patching(model, clean, corrupt, metric)  # EAP-IG, 5 steps
    >>> scores.values.shape, len(scores.top(5))
    (torch.Size([14, 27]), 5)

References:
    Syed, Rager and Conmy 2023, "Attribution Patching Outperforms Automated Circuit
    Discovery"; Hanna, Pezzelle and Belinkov 2024, "Have Faith in Faithfulness: Going
    Beyond Circuit Overlap When Finding Model Mechanisms"; Nanda 2023, "Attribution
    Patching: Activation Patching At Industrial Scale".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from einops import einsum
from jaxtyping import Bool, Float
from torch import Tensor

from dtlens.analysis.circuits.graph import DTGraph, Edge
from dtlens.analysis.circuits.graph_runs import GraphRuns
from dtlens.analysis.metrics import MetricFn, metric_name
from dtlens.errors import ConfigError
from dtlens.model.batch import TrajectoryBatch
from dtlens.model.hooked_dt import HookedDecisionTransformer

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["EdgeScores", "edge_attribution_patching"]

Method = Literal["eap", "eap-ig"]


@dataclass(frozen=True)
class EdgeScores:
    """A score for every edge of a graph, and the circuits they rank.

    Args:
        graph: the graph scored.
        values: ``[n_senders, n_receivers]``: the estimated effect of patching each edge
            alone (0 where there is no edge).
        method: how they were computed (``"eap"``, ``"eap-ig"``, ``"exact"``).
        metric_name: what they measure.
        info: details (direction, normalize, steps, clean/corrupt metrics).
    """

    graph: DTGraph
    values: Float[Tensor, "sender receiver"]
    method: str
    metric_name: str = "metric"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = (len(self.graph.senders), len(self.graph.receivers))
        if tuple(self.values.shape) != shape:
            raise ConfigError(
                f"EdgeScores values must be [n_senders, n_receivers] = {list(shape)}, got "
                f"{list(self.values.shape)}."
            )

    def score(self, edge: Edge | str) -> float:
        """The score of one edge, e.g. ``score("L0H1->L1H0.v")``."""
        return float(self.values[self.graph.index(edge)])

    def ranked(self) -> list[tuple[Edge, float]]:
        """Every edge with its score, largest magnitude first (ties in graph order)."""
        pairs = [(e, self.score(e)) for e in self.graph.edges]
        return sorted(pairs, key=lambda p: -abs(p[1]))

    def top(self, k: int) -> list[Edge]:
        """The ``k`` edges of largest score magnitude.

        Raises:
            ConfigError: ``k`` is not an int in 0..n_edges.
        """
        n = len(self.graph.edges)
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
            raise ConfigError(f"k must be an int in 0..{n} (the graph's edges), got {k!r}.")
        return [edge for edge, _ in self.ranked()[:k]]

    def above(self, threshold: float) -> list[Edge]:
        """The edges whose score magnitude is at least ``threshold``, largest first."""
        return [edge for edge, value in self.ranked() if abs(value) >= threshold]

    def mask(self, k: int) -> Bool[Tensor, "sender receiver"]:
        """The top-``k`` edges as a mask (:meth:`DTGraph.mask`)."""
        return self.graph.mask(self.top(k))

    def plot(self, k: int = 20, **kwargs: Any) -> go.Figure:
        """The top-``k`` edges drawn as a graph (:func:`dtlens.plotting.plot_circuit`)."""
        from dtlens.plotting.circuits import plot_circuit

        return plot_circuit(self, self.top(k), **kwargs)


def edge_attribution_patching(
    model: HookedDecisionTransformer,
    clean: TrajectoryBatch,
    corrupt: TrajectoryBatch,
    metric: MetricFn,
    method: Method = "eap-ig",
    steps: int = 5,
    direction: Literal["denoise", "noise"] = "denoise",
    normalize: bool = True,
    *,
    graph: DTGraph | None = None,
) -> EdgeScores:
    """Score every edge by EAP or EAP-IG in ``steps`` forward and backward passes.

    Args:
        model: the decision transformer (no hooks attached).
        clean: B clean windows.
        corrupt: B corrupt windows, paired row by row with ``clean``.
        metric: ``logits -> [B]`` or a scalar (:data:`~dtlens.analysis.metrics.MetricFn`).
        method: ``"eap"`` (the gradient at the base run) or ``"eap-ig"`` (averaged
            over ``steps`` points from the base run's embeddings to the source run's).
        steps: integrated-gradient steps (``"eap-ig"`` only; 1 gives EAP).
        direction: ``"denoise"`` (base = corrupt, edges move to clean values) or
            ``"noise"``.
        normalize: score the restored fraction (per pair, then averaged) rather than
            the mean metric.
        graph: the graph to score; default ``DTGraph(model)`` (whole embeddings). For
            one sender per embedding token pass ``DTGraph(model, model.token_labels(clean))``.

    Returns:
        :class:`EdgeScores` whose values estimate each edge's own effect on the value
        :func:`~dtlens.analysis.circuits.edge_patching.edge_patching` reports.

    Raises:
        ConfigError: a bad method or steps, or anything :class:`GraphRuns` refuses.
    """
    if method not in ("eap", "eap-ig"):
        raise ConfigError(f"method must be 'eap' or 'eap-ig', got {method!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be a positive int, got {steps!r}.")
    graph = graph or DTGraph(model)
    runs = GraphRuns(model, clean, corrupt, metric, graph, direction)
    if normalize:
        runs.normalized(runs.base_metric)  # raises, naming the pairs, if a gap is zero
    n_steps = steps if method == "eap-ig" else 1
    grads = sum(runs.receiver_grads(k / n_steps, normalize) for k in range(n_steps)) / n_steps
    diffs = torch.stack([runs.write_diff[i] for i in range(len(graph.senders))])
    values = einsum(diffs, grads, "s b p d, r b p d -> s r").detach().cpu()
    values = values * graph.reach
    return EdgeScores(
        graph=graph,
        values=values,
        method=method,
        metric_name=metric_name(metric, normalize),
        info={
            "direction": direction,
            "normalize": normalize,
            "steps": n_steps,
            "clean_metric": runs.clean_metric,
            "corrupt_metric": runs.corrupt_metric,
        },
    )
