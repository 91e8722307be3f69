"""Figures of patching results: a bar chart, a heatmap or a grid of heatmaps.

:func:`plot_patching` draws a :class:`~dtlens.analysis.patching.results.PatchingResult`: a bar
chart for one axis, a heatmap for two (rows = first axis), a grid of heatmaps for three
(one per entry of the first axis). Signed values use a diverging colour scale centred
at ``zmid`` (0: the patch has no effect).

The input checks and the labelled heatmap it shares with every other figure are in
:mod:`dtlens.plotting.heatmaps`.

Examples:
    >>> import torch
    >>> from dtlens.analysis.patching.results import PatchingResult
    >>> result = PatchingResult(torch.tensor([[0.1, 0.9], [0.0, 1.0]]), axes=("layer", "pos"),
    ...                         labels={"layer": ["0", "1"], "pos": ["R1", "S1"]},
    ...                         metric_name="restored logit diff")
    >>> fig = plot_patching(result)
    >>> fig.data[0].type, list(fig.data[0].x), fig.data[0].colorbar.title.text
    ('heatmap', ['R1', 'S1'], 'restored logit diff')
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dtlens.errors import BatchError
from dtlens.plotting import style
from dtlens.plotting.heatmaps import as_numpy, check_labels, labelled_heatmap


class _PatchingValues(Protocol):
    """What :func:`plot_patching` reads: a
    :class:`~dtlens.analysis.patching.results.PatchingResult` or anything shaped like it
    (plotting does not import the analysis package, which imports plotting)."""

    values: Any
    axes: tuple[str, ...]
    labels: dict[str, list[str]]
    metric_name: str


__all__ = ["plot_patching"]

#: facets per row of a three-axis patching grid.
FACET_COLUMNS = 4


def plot_patching(result: _PatchingValues, title: str | None = None, zmid: float = 0.0) -> go.Figure:
    """Draw an activation-patching result: bars (1 axis), heatmap (2 axes) or facets (3 axes).

    Rows of a heatmap are the result's first axis (first entry on top), columns its
    second; a three-axis result gets one heatmap per entry of its first axis, all on
    one colour scale. The colour scale is diverging and centred at ``zmid``, and the
    colour bar (or the value axis of the bar chart) is titled ``result.metric_name``.

    Args:
        result: the sweep's values with their axis names and labels.
        title: figure title; defaults to the metric name and the axes.
        zmid: the value drawn white (no effect).

    Returns:
        A plotly figure.

    Raises:
        BatchError: ``result`` is not a PatchingResult, or has 0 or more than 3 axes.

    Examples:
        >>> import torch
        >>> r = PatchingResult(torch.tensor([0.2, 0.7]), axes=("layer",),
        ...                    labels={"layer": ["0", "1"]}, metric_name="restored")
        >>> fig = plot_patching(r)
        >>> fig.data[0].type, fig.layout.yaxis.title.text
        ('bar', 'restored')
    """
    if not all(hasattr(result, a) for a in ("values", "axes", "labels", "metric_name")):
        raise BatchError(f"plot_patching expects a PatchingResult, got {type(result).__name__}.")
    values = as_numpy(result.values, f"PatchingResult values {result.axes}", (1, 2, 3))
    axes = result.axes
    labels = [
        check_labels(result.labels[axis], size, f"{axis} labels")
        for axis, size in zip(axes, values.shape, strict=True)
    ]
    metric = result.metric_name
    title = title if title is not None else f"{metric} by {' × '.join(axes)}"
    if values.ndim == 1:
        fig = _bar(values, labels[0], axes[0], metric, zmid)
    elif values.ndim == 2:
        hover = f"{axes[0]} %{{y}}<br>{axes[1]} %{{x}}<br>{metric} %{{z:.3f}}<extra></extra>"
        fig = go.Figure(
            labelled_heatmap(
                values,
                labels[0],
                labels[1],
                hover,
                colorscale=style.DIVERGING,
                zmid=zmid,
                colorbar={"title": {"text": metric}},
            )
        )
        fig.update_xaxes(title_text=axes[1], type="category")
        fig.update_yaxes(title_text=axes[0], autorange="reversed", type="category")
    else:
        fig = _facets(values, labels, axes, metric, zmid)
    return fig.update_layout(title=title, template=style.TEMPLATE)


def _bar(values: np.ndarray, labels: list[str], axis: str, metric: str, zmid: float) -> go.Figure:
    bar = go.Bar(
        x=labels,
        y=values,
        marker={"color": values, "colorscale": style.DIVERGING, "cmid": zmid},
        hovertemplate=f"{axis} %{{x}}<br>{metric} %{{y:.3f}}<extra></extra>",
    )
    fig = go.Figure(bar)
    fig.update_xaxes(title_text=axis, type="category")
    return fig.update_yaxes(title_text=metric)


def _facets(
    values: np.ndarray, labels: list[list[str]], axes: tuple[str, ...], metric: str, zmid: float
) -> go.Figure:
    n = values.shape[0]
    n_cols = min(n, FACET_COLUMNS)
    n_rows = math.ceil(n / n_cols)
    fig = make_subplots(
        rows=n_rows,
        cols=n_cols,
        subplot_titles=[f"{axes[0]} {label}" for label in labels[0]],
        horizontal_spacing=0.06,
        vertical_spacing=0.12,
    )
    hover = (
        f"{axes[0]} %{{meta}}<br>{axes[1]} %{{y}}<br>{axes[2]} %{{x}}"
        f"<br>{metric} %{{z:.3f}}<extra></extra>"
    )
    for i in range(n):
        row, col = i // n_cols + 1, i % n_cols + 1
        trace = labelled_heatmap(
            values[i], labels[1], labels[2], hover, coloraxis="coloraxis", meta=labels[0][i]
        )
        fig.add_trace(trace, row=row, col=col)
        fig.update_yaxes(autorange="reversed", row=row, col=col)
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    fig.update_xaxes(title_text=axes[2], row=n_rows)
    fig.update_yaxes(title_text=axes[1], col=1)
    return fig.update_layout(
        coloraxis={"colorscale": style.DIVERGING, "cmid": zmid, "colorbar": {"title": metric}}
    )
