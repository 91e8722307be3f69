"""Logit lens and direct logit attribution (DLA) figures.

Both take values already computed (by ``dtlens.analysis``) and only draw them:

- logit lens: what the residual stream after each layer would predict, ``[layer]``
  (one metric, e.g. a logit difference, drawn as a line) or ``[layer, action]``
  (a heatmap, or one line per action);
- DLA: each component's direct contribution to the action logits, ``[component]``
  (bars) or ``[component, action]`` (a heatmap).

Signed values use the diverging colour scale centred at 0.

Examples:
    >>> import torch
    >>> fig = plot_dla(torch.tensor([0.5, -1.0]), ["embed", "L0 attn"])
    >>> fig.data[0].type, list(fig.data[0].x)
    ('bar', ['embed', 'L0 attn'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float
from torch import Tensor

from dtlens.env.actions import ACTION_NAMES
from dtlens.errors import BatchError
from dtlens.plotting import style
from dtlens.plotting.heatmaps import as_numpy, check_labels, labelled_heatmap

__all__ = ["plot_dla", "plot_logit_lens"]

LensValues = (
    Float[Tensor, " layer"]
    | Float[Tensor, "layer action"]
    | Float[np.ndarray, " layer"]
    | Float[np.ndarray, "layer action"]
)
DLAValues = (
    Float[Tensor, " component"]
    | Float[Tensor, "component action"]
    | Float[np.ndarray, " component"]
    | Float[np.ndarray, "component action"]
)


def plot_logit_lens(
    values: LensValues,
    layer_labels: Sequence[str] | None = None,
    action_names: Sequence[str] | None = ACTION_NAMES,
    title: str | None = "Logit lens",
    value_name: str = "logit",
    kind: Literal["heatmap", "lines"] = "heatmap",
) -> go.Figure:
    """Logit lens across layers: a line for ``[layer]``, a heatmap or lines for ``[layer, action]``.

    Args:
        values: ``[layer]`` (one metric per layer) or ``[layer, action]``.
        layer_labels: one label per layer, e.g. ``["embed", "L0", "L1", "L2"]``
            (default ``"0"``, ``"1"``, ...).
        action_names: with ``[layer, action]``: one name per action (default
            MiniGrid's seven); ``None`` = indices. Ignored for ``[layer]``.
        title: figure title.
        value_name: what the values are (axis or colour-bar title).
        kind: for ``[layer, action]``: ``"heatmap"`` (rows = layers, first on top,
            columns = actions, centred at 0) or ``"lines"`` (one line per action).

    Returns:
        A plotly figure whose data hold ``values`` as given.

    Raises:
        BatchError: ``values`` is not 1-D or 2-D, labels do not match its shape, or
            ``kind`` is unknown.

    Examples:
        >>> import torch
        >>> fig = plot_logit_lens(torch.tensor([0.5, 2.0, 5.0]), ["embed", "L0", "L1"],
        ...                       value_name="logit diff left - right")
        >>> fig.data[0].y.tolist()
        [0.5, 2.0, 5.0]
    """
    table = as_numpy(values, "logit lens values [layer] or [layer, action]", (1, 2))
    layers = check_labels(layer_labels, table.shape[0], "layer labels")
    if kind not in ("heatmap", "lines"):
        raise BatchError(f"kind must be 'heatmap' or 'lines', got {kind!r}.")
    if table.ndim == 1:
        fig = go.Figure(
            go.Scatter(
                x=layers,
                y=table,
                mode="lines+markers",
                name=value_name,
                line={"color": style.MEAN_COLOUR},
                hovertemplate=f"layer %{{x}}<br>{value_name} %{{y:.3f}}<extra></extra>",
            )
        )
        fig.update_xaxes(title_text="layer", type="category")
        fig.update_yaxes(title_text=value_name)
    else:
        actions = check_labels(action_names, table.shape[1], "action names")
        fig = (
            _lines(table, layers, actions, value_name)
            if kind == "lines"
            else _heatmap(table, layers, actions, "layer", value_name)
        )
    return fig.update_layout(title=title, template=style.TEMPLATE)


def plot_dla(
    values: DLAValues,
    component_labels: Sequence[str] | None = None,
    action_names: Sequence[str] | None = ACTION_NAMES,
    title: str | None = "Direct logit attribution",
    value_name: str = "direct logit attribution",
) -> go.Figure:
    """Direct logit attribution: bars for ``[component]``, a heatmap for ``[component, action]``.

    Args:
        values: one value per component (e.g. of a logit difference) ``[component]``,
            or per component and action ``[component, action]``.
        component_labels: one label per component, e.g. ``["embed", "pos_embed",
            "L0H0", ..., "L1 mlp"]`` (default ``"0"``, ``"1"``, ...).
        action_names: with ``[component, action]``: one name per action (default
            MiniGrid's seven); ``None`` = indices. Ignored for ``[component]``.
        title: figure title.
        value_name: what the values are (axis or colour-bar title).

    Returns:
        A bar chart (colour centred at 0) or a heatmap (rows = components, first on
        top, columns = actions, centred at 0).

    Raises:
        BatchError: ``values`` is not 1-D or 2-D, or labels do not match its shape.

    Examples:
        >>> import torch
        >>> fig = plot_dla(torch.zeros(3, 2), ["embed", "L0", "L1"], ["left", "right"])
        >>> fig.data[0].type, list(fig.data[0].y)
        ('heatmap', ['embed', 'L0', 'L1'])
    """
    table = as_numpy(values, "DLA values [component] or [component, action]", (1, 2))
    components = check_labels(component_labels, table.shape[0], "component labels")
    if table.ndim == 1:
        fig = go.Figure(
            go.Bar(
                x=components,
                y=table,
                name=value_name,
                marker={"color": table, "colorscale": style.DIVERGING, "cmid": 0.0},
                hovertemplate=f"%{{x}}<br>{value_name} %{{y:.3f}}<extra></extra>",
            )
        )
        fig.update_xaxes(title_text="component", type="category")
        fig.update_yaxes(title_text=value_name)
    else:
        actions = check_labels(action_names, table.shape[1], "action names")
        fig = _heatmap(table, components, actions, "component", value_name)
    return fig.update_layout(title=title, template=style.TEMPLATE)


def _heatmap(
    table: np.ndarray, rows: list[str], actions: list[str], row_name: str, value_name: str
) -> go.Figure:
    hover = f"{row_name} %{{y}}<br>action %{{x}}<br>{value_name} %{{z:.3f}}<extra></extra>"
    fig = go.Figure(
        labelled_heatmap(
            table,
            rows,
            actions,
            hover,
            colorscale=style.DIVERGING,
            zmid=0.0,
            colorbar={"title": {"text": value_name}},
        )
    )
    fig.update_xaxes(title_text="action", type="category")
    return fig.update_yaxes(title_text=row_name, autorange="reversed", type="category")


def _lines(table: np.ndarray, layers: list[str], actions: list[str], value_name: str) -> go.Figure:
    fig = go.Figure()
    for a, action in enumerate(actions):
        fig.add_trace(
            go.Scatter(
                x=layers,
                y=table[:, a],
                name=action,
                mode="lines+markers",
                line={"color": style.ACTION_PALETTE[a % len(style.ACTION_PALETTE)]},
                hovertemplate=f"{action}<br>layer %{{x}}<br>{value_name} %{{y:.3f}}<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="layer", type="category")
    return fig.update_yaxes(title_text=value_name).update_layout(legend_title_text="action")
