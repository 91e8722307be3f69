"""Figures of labelled tensors: activation-patching results, and the checks every builder uses.

:func:`plot_patching` draws a :class:`~dtlens.analysis.results.PatchingResult`: a bar
chart for one axis, a heatmap for two (rows = first axis), a grid of heatmaps for three
(one per entry of the first axis). Signed values use a diverging colour scale centred
at ``zmid`` (0: the patch has no effect).

The module also holds the small input checks and the labelled heatmap that the other
plotting modules share (:func:`as_numpy`, :func:`check_labels`, :func:`labelled_heatmap`),
so every figure rejects mismatched shapes and labels the same way.

Examples:
    >>> import torch
    >>> from dtlens.analysis.results import PatchingResult
    >>> result = PatchingResult(torch.tensor([[0.1, 0.9], [0.0, 1.0]]), axes=("layer", "pos"),
    ...                         labels={"layer": ["0", "1"], "pos": ["R1", "S1"]},
    ...                         metric_name="restored logit diff")
    >>> fig = plot_patching(result)
    >>> fig.data[0].type, list(fig.data[0].x), fig.data[0].colorbar.title.text
    ('heatmap', ['R1', 'S1'], 'restored logit diff')
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from dtlens.analysis.results import PatchingResult
from dtlens.errors import BatchError
from dtlens.plotting import style

__all__ = [
    "as_numpy",
    "check_labels",
    "labelled_heatmap",
    "plot_patching",
]

#: facets per row of a three-axis patching grid.
FACET_COLUMNS = 4


def as_numpy(
    values: Float[Tensor, "..."] | Float[np.ndarray, "..."],
    name: str,
    ndim: int | tuple[int, ...],
    boolean: bool = False,
) -> np.ndarray:
    """A detached numpy copy of a tensor or array, after checking its dimensions and dtype.

    Plotly serialises numpy arrays, not tensors; converting here (and nowhere else)
    keeps gradients and devices out of the figures. Float values keep their precision
    (float16/bfloat16 become float32, which numpy can hold); integers become float64.

    Args:
        values: a ``torch.Tensor`` or ``np.ndarray``.
        name: what the argument is, for the error message (e.g. ``"pattern [q, k]"``).
        ndim: the allowed number(s) of dimensions.
        boolean: expect a boolean mask instead of numbers.

    Returns:
        A new numpy array (float, or bool with ``boolean=True``).

    Raises:
        BatchError: ``values`` is neither a tensor nor an array, has another number
            of dimensions (the message shows its shape), or the wrong kind of dtype.

    Examples:
        >>> import torch
        >>> as_numpy(torch.ones(2, 3), "pattern [q, k]", 2).shape
        (2, 3)
    """
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if isinstance(values, Tensor):
        tensor = values.detach().cpu()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.float()
        array = tensor.numpy()
    elif isinstance(values, np.ndarray):
        array = values
    else:
        raise BatchError(
            f"{name} must be a torch.Tensor or numpy array, got {type(values).__name__}."
        )
    if array.ndim not in allowed:
        dims = " or ".join(str(d) for d in allowed)
        raise BatchError(
            f"{name} must have {dims} dimension(s), got shape {list(array.shape)} "
            f"({array.ndim} dimensions)."
        )
    if boolean:
        if array.dtype != np.bool_:
            raise BatchError(f"{name} must be boolean, got dtype {array.dtype}.")
        return np.array(array, dtype=bool)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise BatchError(f"{name} must hold numbers, got dtype {array.dtype}.")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise BatchError(f"{name} must hold real numbers, got dtype {array.dtype}.")
    floating = np.issubdtype(array.dtype, np.floating)
    return np.array(array, dtype=array.dtype if floating else np.float64)


def check_labels(labels: Sequence[object] | None, size: int, name: str) -> list[str]:
    """Labels for one axis of a figure: given ones as strings, or ``"0"``, ``"1"``, ...

    Plotly merges equal category labels into one row or column, so duplicates are
    rejected rather than silently drawn on top of each other.

    Args:
        labels: one label per entry, or ``None`` for the indices.
        size: the length of the axis.
        name: what the labels are, for the error message (e.g. ``"token labels"``).

    Returns:
        ``size`` distinct strings.

    Raises:
        BatchError: the number of labels differs from ``size``, or a label repeats.

    Examples:
        >>> check_labels(None, 3, "layer labels")
        ['0', '1', '2']
        >>> check_labels(["R1", "S1"], 2, "token labels")
        ['R1', 'S1']
    """
    if labels is None:
        return [str(i) for i in range(size)]
    if isinstance(labels, str):
        raise BatchError(f"{name} must be a sequence of {size} labels, got the string {labels!r}.")
    out = [str(label) for label in labels]
    if len(out) != size:
        raise BatchError(f"{name}: got {len(out)} labels {out} for an axis of size {size}.")
    repeated = sorted({label for label in out if out.count(label) > 1})
    if repeated:
        raise BatchError(f"{name} must be distinct; repeated: {repeated}.")
    return out


def labelled_heatmap(
    values: Float[np.ndarray, "row col"],
    row_labels: list[str],
    col_labels: list[str],
    hover: str,
    **trace: object,
) -> go.Heatmap:
    """A heatmap trace whose z is ``values`` as given, with category labels on both axes.

    Args:
        values: ``[rows, columns]`` values (NaN cells are drawn empty).
        row_labels: one label per row (the y axis).
        col_labels: one label per column (the x axis).
        hover: a plotly hover template.
        **trace: further ``go.Heatmap`` properties (colour scale, colour bar, ...);
            NaN cells get no hover label unless ``hoverongaps=True``.

    Returns:
        The trace; callers reverse the y axis so the first row is on top.

    Examples:
        >>> trace = labelled_heatmap(np.eye(2), ["a", "b"], ["x", "y"], "%{z}")
        >>> trace.z.tolist(), list(trace.y)
        ([[1.0, 0.0], [0.0, 1.0]], ['a', 'b'])
    """
    trace.setdefault("hoverongaps", False)
    return go.Heatmap(z=values, x=col_labels, y=row_labels, hovertemplate=hover, **trace)


def plot_patching(result: PatchingResult, title: str | None = None, zmid: float = 0.0) -> go.Figure:
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
    if not isinstance(result, PatchingResult):
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
