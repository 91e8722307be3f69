"""Figures of circuits: the kept edges as a graph, and the faithfulness curve.

:func:`plot_circuit` lays the graph out by layer (embeddings at the bottom, logits at
the top) and, within a layer, by node: the embeddings by token type (R, S, A, t; one
column per token for per-token senders), then each head and the MLP. An edge is
drawn from its sender to its receiver's node, its width proportional to its score's
magnitude, blue where patching it restores the clean behaviour and red where it
works against it; the receiving input (q, k, v) is in the hover text and the line
style (solid q/MLP/logits, dotted k, dashed v). :func:`plot_faithfulness` draws
faithfulness against the number of edges kept, with the clean (1) and corrupt (0)
levels.

Examples:
    >>> from dtlens.analysis.circuits import DTGraph, EdgeScores
    >>> from tests.conftest import build_model
    >>> graph = DTGraph(build_model())
    >>> scores = EdgeScores(graph, graph.reach.float(), "demo")
    >>> fig = plot_circuit(scores, graph.edges[:3])
    >>> len([t for t in fig.data if t.mode == "lines"])
    3
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from dtlens.errors import BatchError, DTLensError
from dtlens.plotting import style
from dtlens.plotting.heatmaps import as_numpy

__all__ = ["plot_circuit", "plot_faithfulness"]

_EMBED_COLUMN = {"rtg": "R", "state": "S", "action": "A", "time": "t"}
_DASH = {"q": "solid", "k": "dot", "v": "dash"}
#: where on a head's box an edge into its query, key or value input ends
_INPUT_OFFSET = {"q": -0.06, "k": 0.0, "v": 0.06}


def _node_key(node: Any, n_layers: int) -> tuple[int, str]:
    """(row, column label) of a sender or receiver: row 0 the embeddings, 2l + 1 layer
    l's heads, 2l + 2 its MLP (which reads after the heads), 2 n_layers + 1 the logits."""
    kind = type(node).__name__
    if kind == "Embed":
        column = _EMBED_COLUMN[node.kind]
        if node.pos:
            column = ",".join(str(p) for p in node.pos) + ("" if node.kind != "time" else " t")
        return 0, column
    if kind in ("Head", "HeadInput"):
        return 2 * node.layer + 1, f"H{node.head}"
    if kind in ("MLP", "MLPInput"):
        return 2 * node.layer + 2, f"MLP{node.layer}"
    return 2 * n_layers + 1, "logits"


def plot_circuit(
    scores: Any,
    edges: Sequence[Any],
    title: str | None = None,
    max_width: float = 8.0,
) -> go.Figure:
    """The ``edges`` of a scored graph (``EdgeScores`` or an ACDC result's scores).

    Rows, bottom to top: the embeddings, then per layer its heads and its MLP, then the
    logits. An edge ends on the left of a head's box for its query, in the middle for
    its key and on the right for its value.

    Args:
        scores: an :class:`~dtlens.analysis.circuits.eap.EdgeScores` (its ``graph`` and
            ``score(edge)`` are used).
        edges: the edges to draw (e.g. ``scores.top(20)``).
        title: the figure title (default: method, number of edges).
        max_width: the line width of the largest score.

    Raises:
        BatchError: ``scores`` has no ``graph``/``score``, or an edge is not in its graph.

    Examples:
        >>> fig = plot_circuit(scores, scores.top(10))  # doctest: +SKIP
    """
    if not hasattr(scores, "graph") or not hasattr(scores, "score"):
        raise BatchError(f"plot_circuit expects EdgeScores, got {type(scores).__name__}.")
    graph = scores.graph
    values = {}
    for spec in edges:
        try:  # the graph parses shorthands and names a bad edge (ConfigError)
            (edge,) = graph.edges_of(graph.mask([spec]))
        except DTLensError as err:
            raise BatchError(f"cannot draw edge {spec}: {err}") from None
        values[edge] = scores.score(edge)
    n_layers = graph.n_layers
    rows: dict[int, list[str]] = {}
    for node in (*graph.senders, *graph.receivers):
        row, column = _node_key(node, n_layers)
        if column not in rows.setdefault(row, []):
            rows[row].append(column)
    position = {
        (row, column): (i - (len(columns) - 1) / 2, row)
        for row, columns in rows.items()
        for i, column in enumerate(columns)
    }
    largest = max((abs(v) for v in values.values()), default=0.0) or 1.0
    fig = go.Figure()
    used: set[tuple[int, str]] = set()
    for edge, value in sorted(values.items(), key=lambda item: abs(item[1])):
        start, end = _node_key(edge.sender, n_layers), _node_key(edge.receiver, n_layers)
        used |= {start, end}
        kind = getattr(edge.receiver, "kind", "")
        (x0, y0), (x1, y1) = position[start], position[end]
        fig.add_trace(
            go.Scatter(
                x=[x0, x1 + _INPUT_OFFSET.get(kind, 0.0)], y=[y0, y1], mode="lines",
                showlegend=False,
                line={"width": 0.5 + max_width * abs(value) / largest,
                      "color": style.SUCCESS_COLOUR if value >= 0 else style.FAILURE_COLOUR,
                      "dash": _DASH.get(kind, "solid")},
                opacity=0.75, hoverinfo="text", text=f"{edge}: {value:+.4f}",
            )
        )  # fmt: skip
    nodes = sorted(position, key=lambda key: (key[0], position[key][0]))
    fig.add_trace(
        go.Scatter(
            x=[position[k][0] for k in nodes], y=[position[k][1] for k in nodes],
            mode="markers+text", text=[k[1] for k in nodes], textposition="middle center",
            marker={"size": 34, "symbol": "square",
                    "color": ["#dfe8f1" if k in used else "#f4f4f4" for k in nodes],
                    "line": {"color": [style.MEAN_COLOUR if k in used else "#cccccc"
                                       for k in nodes], "width": 1}},
            hoverinfo="skip", showlegend=False,
        )
    )  # fmt: skip
    ticks = {0: "embeddings", 2 * n_layers + 1: "logits"}
    for layer in range(n_layers):
        ticks |= {2 * layer + 1: f"layer {layer} heads", 2 * layer + 2: f"layer {layer} MLP"}
    fig.update_layout(
        template=style.TEMPLATE,
        title=title or f"{getattr(scores, 'method', 'circuit')}: {len(values)} edges",
        xaxis={"visible": False},
        yaxis={"tickvals": sorted(ticks), "ticktext": [ticks[k] for k in sorted(ticks)],
               "zeroline": False, "showgrid": False},
        height=120 + 70 * (2 * n_layers + 2),
        annotations=[{"text": "width = |score|; blue restores the clean behaviour, red opposes "
                      "it; into a head: q solid (left), k dotted (middle), v dashed (right)",
                      "xref": "paper", "yref": "paper", "x": 0, "y": -0.06,
                      "showarrow": False, "font": {"size": 11}}],
    )  # fmt: skip
    return fig


def plot_faithfulness(
    curve: Any, target: float | None = 0.9, title: str | None = None
) -> go.Figure:
    """Faithfulness against the number of edges kept (a ``FaithfulnessCurve``).

    Args:
        curve: a :class:`~dtlens.analysis.circuits.faithfulness.FaithfulnessCurve`.
        target: draw a line at this faithfulness and mark the smallest circuit reaching
            it (None: neither).
        title: the figure title.

    Raises:
        BatchError: ``curve`` is not a faithfulness curve, or its arrays do not match.

    Examples:
        >>> fig = plot_faithfulness(curve)  # doctest: +SKIP
    """
    if not all(hasattr(curve, a) for a in ("sizes", "faithfulness", "n_edges_total")):
        raise BatchError(
            f"plot_faithfulness expects a FaithfulnessCurve, got {type(curve).__name__}."
        )
    sizes = as_numpy(curve.sizes, "curve sizes", 1)
    values = as_numpy(curve.faithfulness, "curve faithfulness", 1)
    if sizes.shape != values.shape:
        raise BatchError(f"curve has {sizes.shape[0]} sizes but {values.shape[0]} values.")
    fig = go.Figure(
        go.Scatter(
            x=sizes, y=values, mode="lines+markers", name=f"top-k by {curve.method}",
            line={"color": style.MEAN_COLOUR},
            hovertemplate="%{x} edges: faithfulness %{y:.3f}<extra></extra>",
        )
    )  # fmt: skip
    for level, name in ((1.0, "clean"), (0.0, "corrupt")):
        fig.add_hline(y=level, line={"color": style.IDENTITY_COLOUR, "dash": "dot"},
                      annotation_text=name, annotation_position="right")  # fmt: skip
    if target is not None:
        smallest = curve.smallest(target)
        fig.add_hline(y=target, line={"color": style.SUCCESS_COLOUR, "dash": "dash"},
                      annotation_text=f"{target:g}", annotation_position="left")  # fmt: skip
        if smallest is not None:
            fig.add_vline(x=smallest, line={"color": style.SUCCESS_COLOUR, "dash": "dash"},
                          annotation_text=f"{smallest} edges")  # fmt: skip
    fig.update_layout(
        template=style.TEMPLATE,
        title=title or f"Faithfulness of the top-k edges ({curve.n_edges_total} in the graph)",
        xaxis_title="edges kept",
        yaxis_title=f"faithfulness ({getattr(curve, 'metric_name', 'metric')})",
    )
    return fig
