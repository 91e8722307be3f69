"""Figures of steering sweeps: retargeting per hook x coefficient, and success per RTG.

:func:`plot_steering` draws a :class:`~dtlens.analysis.steering.SteeringResult` as two
heatmaps over hooks (rows) x coefficients (columns): the share of episodes that end at
the other object at the first ("succeed") RTG, the retarget rate, and at the last
("fail") RTG (empty where that cell was not played). :func:`plot_steering_success`
draws, per RTG, the success without steering and with the chosen cell's steering,
and the share of steered episodes that reach the new target. Both read the result's
attributes only (plotting does not import the analysis package).

Examples:
    >>> import numpy as np
    >>> from types import SimpleNamespace as NS
    >>> outcomes = np.zeros((1, 2, 2, 3)); outcomes[0, 1, 0, 1] = 1.0
    >>> result = NS(fact="instruction", hooks=("blocks.0.hook_resid_post",),
    ...             coefficients=(1.0, 2.0), rtgs=(0.9, 0.0), outcomes=outcomes)
    >>> fig = plot_steering(result)
    >>> fig.data[0].z.tolist()
    [[0.0, 1.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dtlens.errors import BatchError
from dtlens.plotting import style
from dtlens.plotting.heatmaps import labelled_heatmap
from dtlens.plotting.probes import hook_label

__all__ = ["plot_steering", "plot_steering_success"]

_OTHER = 1  # index of "other object" in the outcomes' last axis


def plot_steering(result: Any, title: str | None = None) -> go.Figure:
    """Heatmaps of the share of episodes ending at the other object, hooks x coefficients,
    at the first and at the last RTG.

    Args:
        result: a ``SteeringResult`` (``fact``, ``hooks``, ``coefficients``, ``rtgs``
            and ``outcomes [hook, coef, rtg, 3]``).
        title: the figure title.

    Raises:
        BatchError: a result without those attributes or with mismatched shapes.
    """
    outcomes = _outcomes(result)
    rows = [hook_label(h) for h in result.hooks]
    cols = [f"{c:g}" for c in result.coefficients]
    first, last = result.rtgs[0], result.rtgs[-1]
    panels = [(0, f"retarget rate at RTG {first:g}")]
    if len(result.rtgs) > 1:
        panels.append((len(result.rtgs) - 1, f"other object at RTG {last:g}"))
    fig = make_subplots(
        rows=1, cols=len(panels), subplot_titles=[p[1] for p in panels], horizontal_spacing=0.15
    )
    for col, (k, name) in enumerate(panels, start=1):
        values = outcomes[:, :, k, _OTHER]
        trace = labelled_heatmap(
            values,
            rows,
            cols,
            f"%{{y}}, coef %{{x}}: {name} %{{z:.2f}}<extra></extra>",
            coloraxis="coloraxis",
            text=[["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in values],
            texttemplate="%{text}",
        )
        fig.add_trace(trace, row=1, col=col)
        fig.update_xaxes(title_text="coefficient", type="category", row=1, col=col)
        fig.update_yaxes(autorange="reversed", type="category", row=1, col=col)
    fig.update_layout(
        template=style.TEMPLATE,
        coloraxis=style.sequential_coloraxis("share"),
        title=title
        or f"Steering along the {result.fact} direction, towards the other value: "
        "share of episodes ending at the other object",
    )
    return fig


def plot_steering_success(
    result: Any, hook: str | None = None, coef: float | None = None, title: str | None = None
) -> go.Figure:
    """Per RTG: success unsteered and steered, and the steered episodes reaching the new target.

    Args:
        result: a ``SteeringResult`` (``rtgs``, ``success_at_rtg(hook, coef)``,
            ``new_target_at_rtg(hook, coef)``, ``best()``).
        hook: the cell's hook (default: ``result.best()``'s).
        coef: the cell's coefficient (default: ``result.best()``'s).
        title: the figure title.
    """
    for attr in ("rtgs", "success_at_rtg", "new_target_at_rtg", "best"):
        if not hasattr(result, attr):
            raise BatchError(f"plot_steering_success expects a SteeringResult (no {attr!r}).")
    if hook is None or coef is None:
        hook, coef = result.best()
    success = result.success_at_rtg(hook, coef)
    new = result.new_target_at_rtg(hook, coef)
    groups = [f"RTG {r:g}" for r in result.rtgs]
    rtgs = result.rtgs
    series = (
        ("success, unsteered", [success["unsteered"][r] for r in rtgs], style.SUCCESS_COLOUR),
        ("success, steered", [success["steered"][r] for r in rtgs], style.NEUTRAL_COLOUR),
        ("new target, steered", [new[r] for r in rtgs], style.FAILURE_COLOUR),
    )
    fig = go.Figure()
    for name, values, colour in series:
        fig.add_bar(
            x=groups,
            y=values,
            name=name,
            marker_color=colour,
            hovertemplate=f"{name}<br>%{{x}}: %{{y:.2f}}<extra></extra>",
        )
    fig.update_layout(
        template=style.TEMPLATE,
        barmode="group",
        yaxis={"range": [0, 1.05], "title": "share of episodes"},
        title=title
        or f"Does the RTG still control success? {result.fact} direction at "
        f"{hook_label(hook)}, coefficient {coef:g}",
    )
    return fig


def _outcomes(result: Any) -> np.ndarray:
    for attr in ("fact", "hooks", "coefficients", "rtgs", "outcomes"):
        if not hasattr(result, attr):
            raise BatchError(f"plot_steering expects a SteeringResult (no {attr!r}).")
    outcomes = np.asarray(result.outcomes, dtype=float)
    expected = (len(result.hooks), len(result.coefficients), len(result.rtgs), 3)
    if outcomes.shape != expected:
        raise BatchError(f"outcomes have shape {list(outcomes.shape)}, expected {list(expected)}.")
    return outcomes
