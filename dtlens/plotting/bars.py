"""Grouped bar charts of a few summary numbers (e.g. entropy on/off routine x RTG).

Examples:
    >>> fig = plot_grouped_bars({"on routine": {"RTG 0.9": 0.2, "RTG 0.0": 0.9}},
    ...                         y_title="entropy (nats)")
    >>> [trace.name for trace in fig.data]
    ['RTG 0.9', 'RTG 0.0']
"""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go

from dtlens.errors import DTLensError

__all__ = ["plot_grouped_bars"]


def plot_grouped_bars(
    values: Mapping[str, Mapping[str, float]],
    y_title: str = "",
    title: str | None = None,
    errors: Mapping[str, Mapping[str, float]] | None = None,
) -> go.Figure:
    """Bars grouped by the outer keys, one coloured series per inner key.

    Args:
        values: ``{group: {series: value}}``; every group must have the same series.
        y_title: label of the value axis.
        title: figure title.
        errors: optional error-bar half-widths, same layout as ``values``.
    """
    groups = list(values)
    if not groups:
        raise DTLensError("plot_grouped_bars needs at least one group of values.")
    series = list(values[groups[0]])
    for group in groups:
        if list(values[group]) != series:
            raise DTLensError(
                f"group {group!r} has series {list(values[group])}, expected {series} "
                "(every group needs the same series, in the same order)."
            )
    fig = go.Figure()
    for name in series:
        error = None
        if errors is not None:
            error = dict(type="data", array=[errors[g][name] for g in groups])
        fig.add_bar(x=groups, y=[values[g][name] for g in groups], name=name, error_y=error)
    fig.update_layout(barmode="group", title=title, yaxis_title=y_title, template="plotly_white")
    return fig
