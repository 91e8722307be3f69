"""Neuron-action congruence: the seed's strip plot (Figure 10) and its growth across layers.

Congruence of MLP neuron n in layer l with action a is ``W_out[l, n] @ W_U[:, a]``
(how directly the neuron writes that action's logit). These figures take the table
as a plain ``[layer, neuron, action]`` tensor, whatever computed it.

Examples:
    >>> import torch
    >>> values = torch.arange(12.0).reshape(2, 3, 2)  # 2 layers, 3 neurons, 2 actions
    >>> fig = plot_congruence(values, action_names=["left", "right"])
    >>> list(fig.layout.xaxis.categoryarray)
    ['L0 left', 'L0 right', 'L1 left', 'L1 right']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float
from torch import Tensor

from dtlens.env.actions import ACTION_NAMES
from dtlens.plotting import style
from dtlens.plotting.heatmaps import as_numpy, check_labels

__all__ = ["plot_congruence", "plot_congruence_growth"]


def plot_congruence(
    values: Float[Tensor, "layer neuron action"] | Float[np.ndarray, "layer neuron action"],
    action_names: Sequence[str] | None = ACTION_NAMES,
    layer_labels: Sequence[str] | None = None,
    title: str | None = "Congruence of MLP neurons with actions",
    value_name: str = "congruence",
) -> go.Figure:
    """Strip plot of every neuron-action pair, ordered by layer, then action.

    One point per (layer, neuron, action); the x axis has one column per layer and
    action (``"L0 left"``, ``"L0 right"``, ..., ``"L1 left"``, ...), coloured by action,
    so the colours restart at each layer as in the seed's Figure 10. Hovering a point
    shows its layer and neuron index.

    Args:
        values: congruence ``[layer, neuron, action]``.
        action_names: one name per action (default MiniGrid's seven); ``None`` = indices.
        layer_labels: one label per layer (default ``"L0"``, ``"L1"``, ...).
        title: figure title.
        value_name: the y-axis title.

    Returns:
        A figure with one strip (a ``box`` trace showing only its points) per action;
        trace ``a`` holds ``values[:, :, a]`` flattened layer by layer.

    Raises:
        BatchError: ``values`` is not 3-D, or the labels do not match its shape.

    Examples:
        >>> import torch
        >>> fig = plot_congruence(torch.zeros(3, 128, 7))
        >>> len(fig.data), len(fig.data[0].y)
        (7, 384)
    """
    table = as_numpy(values, "congruence values [layer, neuron, action]", 3)
    n_layers, n_neurons, n_actions = table.shape
    actions = check_labels(action_names, n_actions, "action names")
    layers = check_labels(
        layer_labels if layer_labels is not None else [f"L{i}" for i in range(n_layers)],
        n_layers,
        "layer labels",
    )
    neuron = np.tile(np.arange(n_neurons), n_layers)
    layer_of_point = np.repeat(layers, n_neurons)
    fig = go.Figure()
    for a, action in enumerate(actions):
        colour = style.ACTION_PALETTE[a % len(style.ACTION_PALETTE)]
        fig.add_trace(
            go.Box(
                x=[f"{layer} {action}" for layer in layer_of_point],
                y=table[:, :, a].reshape(-1),
                customdata=np.stack([layer_of_point, neuron.astype(str)], axis=-1),
                name=action,
                boxpoints="all",
                jitter=0.7,
                pointpos=0.0,
                fillcolor="rgba(0,0,0,0)",
                line={"color": "rgba(0,0,0,0)"},
                marker={"color": colour, "size": 3, "opacity": 0.7},
                hoveron="points",
                hovertemplate=(
                    f"layer %{{customdata[0]}}<br>neuron %{{customdata[1]}}<br>action {action}"
                    f"<br>{value_name} %{{y:.3f}}<extra></extra>"
                ),
            )
        )
    order = [f"{layer} {action}" for layer in layers for action in actions]
    fig.update_xaxes(
        type="category",
        categoryorder="array",
        categoryarray=order,
        title_text="layer, action",
        tickangle=-60,
    )
    fig.update_yaxes(title_text=value_name)
    return fig.update_layout(
        title=title, template=style.TEMPLATE, boxmode="overlay", legend_title_text="action"
    )


def plot_congruence_growth(
    values: Float[Tensor, "layer action"] | Float[np.ndarray, "layer action"],
    action_names: Sequence[str] | None = ACTION_NAMES,
    layer_labels: Sequence[str] | None = None,
    title: str | None = "Congruence by layer",
    value_name: str = "congruence",
) -> go.Figure:
    """One line per action across layers, e.g. each layer's largest congruence per action.

    The seed saw congruence grow with depth for left, right and forward; pass any
    per-layer summary (max, a quantile, the count above a threshold) and name it with
    ``value_name``.

    Args:
        values: one value per layer and action ``[layer, action]``.
        action_names: one name per action (default MiniGrid's seven); ``None`` = indices.
        layer_labels: one label per layer (default ``"L0"``, ``"L1"``, ...).
        title: figure title.
        value_name: the y-axis title (what the summary is).

    Returns:
        A figure with one ``lines+markers`` trace per action; trace ``a`` has
        ``y = values[:, a]``.

    Raises:
        BatchError: ``values`` is not 2-D, or the labels do not match its shape.

    Examples:
        >>> import torch
        >>> values = torch.tensor([[0.25, 0.5], [0.75, 1.0]])
        >>> fig = plot_congruence_growth(values, ["left", "right"])
        >>> fig.data[1].y.tolist(), list(fig.data[1].x)
        ([0.5, 1.0], ['L0', 'L1'])
    """
    table = as_numpy(values, "congruence summary [layer, action]", 2)
    n_layers, n_actions = table.shape
    actions = check_labels(action_names, n_actions, "action names")
    layers = check_labels(
        layer_labels if layer_labels is not None else [f"L{i}" for i in range(n_layers)],
        n_layers,
        "layer labels",
    )
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
    fig.update_yaxes(title_text=value_name)
    return fig.update_layout(title=title, template=style.TEMPLATE, legend_title_text="action")
