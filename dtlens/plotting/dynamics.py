"""Training dynamics figure: progress measures against the training step.

:func:`plot_dynamics` draws a :class:`~dtlens.training.dynamics.Dynamics` as five
panels sharing the step axis: losses (with ln 2, the decision loss of a model that
ignores the instruction), greedy success (per layout at RTG 0.9, and at RTG 0), the
instruction-swap logit difference, layer-0 attention from the decision state to the
instruction state (one line per head), and instruction-probe accuracy per layer (with
chance, 0.5). A dotted vertical line marks the step from which success at RTG 0.9
stays at or above 95 %, when there is one.

Example:
    >>> from dtlens.training.dynamics import Dynamics
    >>> fig = plot_dynamics(Dynamics([0, 10], {"success@0.9": [0.5, 1.0]}))
    >>> fig.data[0].name, len(fig.data)
    ('success@0.9', 1)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dtlens.plotting import style

if TYPE_CHECKING:
    from dtlens.training.dynamics import Dynamics

__all__ = ["plot_dynamics"]

_PANELS = (
    "Loss (decision: the turn at the decision square)",
    "Greedy success",
    "Instruction-swap logit difference",
    "Layer-0 attention, decision state -> instruction state",
    "Instruction probe accuracy (decision token)",
)


def _panel(name: str) -> int | None:
    if name.endswith("loss"):
        return 1
    if name.startswith("success@"):
        return 2
    if name.startswith("swap_logit_diff"):
        return 3
    if name.startswith("attention/"):
        return 4
    if name.startswith("probe/"):
        return 5
    return None


def plot_dynamics(
    dynamics: Dynamics,
    title: str | None = "Training dynamics",
    max_step: int | None = None,
) -> go.Figure:
    """Every recorded progress measure against the step, one panel per kind.

    Measures with no recorded value are left out; ``None`` values are gaps, except in
    the losses (recorded on their own schedule), whose lines join their points. Each
    panel has its own legend beside it.

    Args:
        dynamics: the measures (:func:`~dtlens.training.dynamics.training_dynamics`).
        title: figure title.
        max_step: draw only the checkpoints up to this step (e.g. a close-up of the
            escape from the plateau); None: all.

    Returns:
        A 5-row figure, one trace per measure, panel by panel (in the order of
        ``dynamics.measures`` within a panel).
    """
    fig = make_subplots(
        rows=len(_PANELS), cols=1, shared_xaxes=True, subplot_titles=_PANELS, vertical_spacing=0.05
    )
    keep = [i for i, k in enumerate(dynamics.steps) if max_step is None or k <= max_step]
    steps = [dynamics.steps[i] for i in keep]
    panels = {name: _panel(name) for name in dynamics.measures}
    for row in range(1, len(_PANELS) + 1):
        for name, values in dynamics.measures.items():
            values = [values[i] for i in keep]
            if panels[name] != row or all(v is None for v in values):
                continue
            thin = "/" in name and name.startswith("success@")
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=values,
                    name=name,
                    mode="lines+markers",
                    line={"width": 1 if thin else 2, "dash": "dot" if thin else None},
                    marker={"size": 4},
                    connectgaps=row == 1,
                    legend=_legend(row),
                    hovertemplate=f"{name}<br>step %{{x}}<br>%{{y:.3f}}<extra></extra>",
                ),
                row=row,
                col=1,
            )
    if steps:
        _reference(fig, steps, math.log(2), "ln 2", 1)
        _reference(fig, steps, 0.5, "chance", 5)
        broke = dynamics.story()["plateau_broke_at"]
        if broke is not None and broke <= steps[-1]:
            fig.add_vline(x=broke, line={"dash": "dot", "color": style.NEUTRAL_COLOUR})
    fig.update_yaxes(range=[-0.05, 1.05], row=2, col=1)
    fig.update_yaxes(range=[0.4, 1.02], row=5, col=1)
    fig.update_xaxes(title_text="training step", row=len(_PANELS), col=1)
    legends = {}
    for row in range(1, len(_PANELS) + 1):
        top = fig.get_subplot(row, 1).yaxis.domain[1]
        legends[_legend(row)] = {"y": top, "yanchor": "top", "x": 1.02, "xanchor": "left"}
    return fig.update_layout(title=title, template=style.TEMPLATE, height=1200, **legends)


def _legend(row: int) -> str:
    """Plotly's name of the legend beside panel ``row`` (``legend``, ``legend2``, ...)."""
    return "legend" if row == 1 else f"legend{row}"


def _reference(fig: go.Figure, steps: list[int], y: float, label: str, row: int) -> None:
    """A dashed horizontal reference line, drawn only in panels that have data."""
    if not any(trace.yaxis == ("y" if row == 1 else f"y{row}") for trace in fig.data):
        return
    fig.add_trace(
        go.Scatter(
            x=[steps[0], steps[-1]],
            y=[y, y],
            name=label,
            mode="lines",
            line={"color": style.IDENTITY_COLOUR, "dash": "dash"},
            hoverinfo="skip",
            showlegend=False,
            legend=_legend(row),
        ),
        row=row,
        col=1,
    )
