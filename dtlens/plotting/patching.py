"""Figures of patching results: a bar chart, a heatmap or a grid of heatmaps.

:func:`plot_patching` draws a :class:`~dtlens.analysis.patching.results.PatchingResult`: a bar
chart for one axis, a heatmap for two (rows = first axis), a grid of heatmaps for three
(one per entry of the first axis). Signed values use a diverging colour scale centred
at ``zmid`` (0: the patch has no effect).

The input checks and the labelled heatmap it shares with every other figure are in
:mod:`dtlens.plotting.heatmaps`.

No misleading picture: a restored fraction divides by ``clean - corrupt``, so when the
two runs barely differ the values are ratios of noise that can still fill a saturated
map. When the result's ``info`` holds the clean and corrupt metrics (every dtlens sweep
stores them) and their mean gap ``|clean - corrupt|`` is below :data:`MIN_GAP` (or the
``min_gap`` argument), the figure is drawn on the grey scale
:data:`~dtlens.plotting.style.GREYED` with a warning inside it that states the gap. A
result whose first axis is :data:`PAIR_AXIS` (one facet per clean/corrupt pair, as the
report stacks them) is judged facet by facet.

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
from plotly.colors import get_colorscale, sample_colorscale
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


__all__ = ["MIN_GAP", "PAIR_AXIS", "greyed_out", "metric_gaps", "plot_patching"]

#: facets per row of a three-axis patching grid.
FACET_COLUMNS = 4
#: A patching figure is greyed out when its clean and corrupt metrics differ by less
#: than this on average (in the metric's units: logits for a logit difference). Read at
#: call time, so assigning ``dtlens.plotting.patching.MIN_GAP`` changes the default.
MIN_GAP = 0.5
#: The name of a first axis whose entries are clean/corrupt pairs: each facet of such a
#: result is judged by its own pair's gap (``info["clean_metric"][i]`` for facet i).
PAIR_AXIS = "pair"


def plot_patching(
    result: _PatchingValues,
    title: str | None = None,
    zmid: float = 0.0,
    min_gap: float | None = None,
) -> go.Figure:
    """Draw an activation-patching result: bars (1 axis), heatmap (2 axes) or facets (3 axes).

    Rows of a heatmap are the result's first axis (first entry on top), columns its
    second; a three-axis result gets one heatmap per entry of its first axis, all on
    one colour scale. The colour scale is diverging and centred at ``zmid``, and the
    colour bar (or the value axis of the bar chart) is titled ``result.metric_name``.

    Greyed out: when ``result.info`` holds ``clean_metric`` and ``corrupt_metric`` and
    their mean ``|clean - corrupt|`` (:func:`metric_gaps`) is below ``min_gap``, the
    figure uses the grey scale and carries a warning annotation stating the gap. With
    a first axis named :data:`PAIR_AXIS` and one metric per facet, each facet is judged
    (and greyed) on its own, with a short warning inside it; the figure is fully greyed
    when every facet is.

    Args:
        result: the sweep's values with their axis names and labels (and, for the
            greying, ``info`` with the clean and corrupt metrics).
        title: figure title; defaults to the metric name and the axes.
        zmid: the value drawn white (no effect).
        min_gap: the smallest mean clean - corrupt gap drawn in colour; ``None`` =
            :data:`MIN_GAP`; ``0`` never greys.

    Returns:
        A plotly figure.

    Raises:
        BatchError: ``result`` is not a PatchingResult, or has 0 or more than 3 axes.

    Examples:
        >>> import torch
        >>> from dtlens.analysis.patching.results import PatchingResult
        >>> r = PatchingResult(torch.tensor([0.2, 0.7]), axes=("layer",),
        ...                    labels={"layer": ["0", "1"]}, metric_name="restored")
        >>> fig = plot_patching(r)
        >>> fig.data[0].type, fig.layout.yaxis.title.text
        ('bar', 'restored')
        >>> weak = PatchingResult(torch.tensor([0.2, 0.7]), axes=("layer",),
        ...                       labels={"layer": ["0", "1"]}, metric_name="restored",
        ...                       info={"clean_metric": [0.01], "corrupt_metric": [0.0]})
        >>> plot_patching(weak).layout.annotations[0].text.startswith("<b>Greyed out")
        True
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
    threshold = MIN_GAP if min_gap is None else float(min_gap)
    gaps = metric_gaps(result)
    per_facet = (
        values.ndim == 3 and axes[0] == PAIR_AXIS and gaps is not None and len(gaps) == len(values)
    )
    greyed = greyed_out(result, threshold)
    if values.ndim == 1:
        fig = _bar(values, labels[0], axes[0], metric, zmid, greyed)
    elif values.ndim == 2:
        hover = f"{axes[0]} %{{y}}<br>{axes[1]} %{{x}}<br>{metric} %{{z:.3f}}<extra></extra>"
        fig = go.Figure(
            labelled_heatmap(
                values,
                labels[0],
                labels[1],
                hover,
                colorscale=style.GREYED if greyed else style.DIVERGING,
                zmid=zmid,
                colorbar={"title": {"text": metric}},
            )
        )
        fig.update_xaxes(title_text=axes[1], type="category")
        fig.update_yaxes(title_text=axes[0], autorange="reversed", type="category")
    else:
        weak = [g < threshold for g in gaps] if per_facet else [greyed] * len(values)
        greyed = all(weak)
        fig = _facets(values, labels, axes, metric, zmid, weak)
        if per_facet and not greyed:
            _warn_facets(fig, gaps, weak, threshold)
    if greyed:
        _warn(fig, float(np.mean(gaps)), threshold, per_pair=per_facet)
    return fig.update_layout(title=title, template=style.TEMPLATE)


def greyed_out(result: Any, min_gap: float | None = None) -> bool:
    """Whether the mean ``|clean - corrupt|`` of ``result``'s pairs is under ``min_gap``
    (``None`` = :data:`MIN_GAP`): what greys :func:`plot_patching`'s figure out (a
    :data:`PAIR_AXIS` grid is judged facet by facet instead). False without the metrics.

    Examples:
        >>> import torch
        >>> from dtlens.analysis.patching.results import PatchingResult
        >>> r = PatchingResult(torch.zeros(2), axes=("layer",), labels={"layer": ["0", "1"]},
        ...                    info={"clean_metric": [0.3], "corrupt_metric": [0.0]})
        >>> greyed_out(r), greyed_out(r, min_gap=0.2)
        (True, False)
    """
    gaps = metric_gaps(result)
    threshold = MIN_GAP if min_gap is None else float(min_gap)
    return gaps is not None and float(np.mean(gaps)) < threshold


def metric_gaps(result: Any) -> list[float] | None:
    """``|clean - corrupt|`` of each pair, from ``result.info`` (None if it lacks them).

    Reads ``info["clean_metric"]`` and ``info["corrupt_metric"]`` (tensors, arrays,
    lists or numbers: ``[B]``, or one value for a scalar metric), as every dtlens sweep
    stores them.

    Examples:
        >>> import torch
        >>> from dtlens.analysis.patching.results import PatchingResult
        >>> r = PatchingResult(torch.zeros(2), axes=("layer",), labels={"layer": ["0", "1"]},
        ...                    info={"clean_metric": torch.tensor([2.0, 0.25]),
        ...                          "corrupt_metric": torch.tensor([-1.0, 0.0])})
        >>> metric_gaps(r)
        [3.0, 0.25]
    """
    info = getattr(result, "info", None) or {}
    clean, corrupt = info.get("clean_metric"), info.get("corrupt_metric")
    if clean is None or corrupt is None:
        return None
    clean_values, corrupt_values = _flat(clean), _flat(corrupt)
    if clean_values.size == 0 or clean_values.shape != corrupt_values.shape:
        return None
    return [float(g) for g in np.abs(clean_values - corrupt_values)]


def _flat(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a tensor
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _warn(fig: go.Figure, gap: float, threshold: float, per_pair: bool) -> None:
    """The warning, centred on the plotting area, over the greyed picture."""
    runs = "each pair's clean and corrupt runs differ" if per_pair else "clean and corrupt differ"
    fig.add_annotation(
        text=(
            f"<b>Greyed out:</b> {runs} by {gap:.3g} on average (under {threshold:g}),<br>"
            "so these values divide by almost nothing: noise, not a circuit."
        ),
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        font={"size": style.FONT_SIZE + 1, "color": "#333333"},
        bgcolor="rgba(255, 255, 255, 0.9)",
        bordercolor=style.NEUTRAL_COLOUR,
        borderwidth=1,
        borderpad=6,
    )


def _warn_facets(fig: go.Figure, gaps: list[float], weak: list[bool], threshold: float) -> None:
    """A short warning inside each greyed facet of a partly greyed grid."""
    for i, (gap, is_weak) in enumerate(zip(gaps, weak, strict=True)):
        if is_weak:
            suffix = "" if i == 0 else str(i + 1)
            fig.add_annotation(
                text=f"<b>greyed out</b>: gap {gap:.2g}<br>(under {threshold:g})",
                xref=f"x{suffix} domain",
                yref=f"y{suffix} domain",
                x=0.5,
                y=0.5,
                showarrow=False,
                font={"size": style.FONT_SIZE - 1, "color": "#333333"},
                bgcolor="rgba(255, 255, 255, 0.9)",
                bordercolor=style.NEUTRAL_COLOUR,
                borderwidth=1,
            )


def _bar(
    values: np.ndarray, labels: list[str], axis: str, metric: str, zmid: float, greyed: bool
) -> go.Figure:
    """Bars coloured by value on the diverging scale, as colour strings (plotly.js warns
    "Invalid color specifier" once per bar for numbers on a colour scale)."""
    if greyed:
        colours = [style.GREYED_COLOUR] * len(values)
    else:
        finite = np.abs(values[np.isfinite(values)] - zmid)
        span = float(finite.max()) if finite.size else 0.0
        points = 0.5 + (values - zmid) / (2 * span) if span > 0 else np.full(len(values), 0.5)
        points = np.nan_to_num(np.clip(points, 0.0, 1.0), nan=0.5)
        colours = sample_colorscale(get_colorscale(style.DIVERGING), points.tolist())
    bar = go.Bar(
        x=labels,
        y=values,
        marker={"color": colours},
        hovertemplate=f"{axis} %{{x}}<br>{metric} %{{y:.3f}}<extra></extra>",
    )
    fig = go.Figure(bar)
    fig.update_xaxes(title_text=axis, type="category")
    return fig.update_yaxes(title_text=metric)


def _facets(
    values: np.ndarray,
    labels: list[list[str]],
    axes: tuple[str, ...],
    metric: str,
    zmid: float,
    weak: list[bool],
) -> go.Figure:
    """One heatmap per entry of the first axis on one colour scale; in a partly greyed
    grid the weak facets sit on a second, grey colour axis (their values, often huge
    ratios of noise, then do not stretch the real facets' scale)."""
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
    greyed = all(weak)
    for i in range(n):
        row, col = i // n_cols + 1, i % n_cols + 1
        axis = "coloraxis2" if weak[i] and not greyed else "coloraxis"
        trace = labelled_heatmap(
            values[i], labels[1], labels[2], hover, coloraxis=axis, meta=labels[0][i]
        )
        fig.add_trace(trace, row=row, col=col)
        fig.update_yaxes(autorange="reversed", row=row, col=col)
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    fig.update_xaxes(title_text=axes[2], row=n_rows)
    fig.update_yaxes(title_text=axes[1], col=1)
    scale = style.GREYED if greyed else style.DIVERGING
    fig.update_layout(coloraxis={"colorscale": scale, "cmid": zmid, "colorbar": {"title": metric}})
    if any(weak) and not greyed:
        fig.update_layout(coloraxis2={"colorscale": style.GREYED, "cmid": zmid, "showscale": False})
    return fig
