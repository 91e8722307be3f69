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


def plot_dynamics(dynamics: Dynamics, title: str | None = "Training dynamics") -> go.Figure:
    """Every recorded progress measure against the step, one panel per kind.

    Measures with no recorded value are left out; ``None`` values are gaps.

    Args:
        dynamics: the measures (:func:`~dtlens.training.dynamics.training_dynamics`).
        title: figure title.

    Returns:
        A 5-row figure, one trace per measure, in the order of ``dynamics.measures``.
    """
    fig = make_subplots(
        rows=len(_PANELS), cols=1, shared_xaxes=True, subplot_titles=_PANELS, vertical_spacing=0.05
    )
    steps = list(dynamics.steps)
    for name, values in dynamics.measures.items():
        row = _panel(name)
        if row is None or all(v is None for v in values):
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
                legendgroup=str(row),
                hovertemplate=f"{name}<br>step %{{x}}<br>%{{y:.3f}}<extra></extra>",
            ),
            row=row,
            col=1,
        )
    if steps:
        _reference(fig, steps, math.log(2), "ln 2", 1)
        _reference(fig, steps, 0.5, "chance", 5)
        broke = dynamics.story()["plateau_broke_at"]
        if broke is not None:
            fig.add_vline(x=broke, line={"dash": "dot", "color": style.NEUTRAL_COLOUR})
    fig.update_yaxes(range=[-0.05, 1.05], row=2, col=1)
    fig.update_yaxes(range=[0.4, 1.02], row=5, col=1)
    fig.update_xaxes(title_text="training step", row=len(_PANELS), col=1)
    return fig.update_layout(
        title=title, template=style.TEMPLATE, height=1200, legend={"tracegroupgap": 150}
    )


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
        ),
        row=row,
        col=1,
    )
