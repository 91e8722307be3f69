"""The DT against the agents it simulates: KL and argmax agreement per state kind.

:func:`plot_agent_comparison` draws two panels side by side: ``KL(agent || DT)`` (nats)
and argmax agreement (fraction of steps), bars grouped by state kind (routine, decision
square, off-routine, all), one bar per agent and RTG (colour = agent, hatching = RTG),
with 95 % intervals as error bars. It takes arrays and labels (as
:class:`~dtlens.analysis.agent_comparison.AgentComparison` holds them), so plotting
does not import the analysis package.

Examples:
    >>> import numpy as np
    >>> kl = np.array([[[0.1, 0.2, 0.9, 0.5]]])  # 1 agent x 1 RTG x 4 kinds
    >>> agree = np.array([[[1.0, 0.95, 0.6, 0.8]]])
    >>> fig = plot_agent_comparison(kl, agree, agents=["planner T=1"], rtgs=["RTG 0.9"],
    ...                             kinds=["routine", "decision", "off-routine", "all"])
    >>> [t.name for t in fig.data], list(fig.data[1].y)
    (['planner T=1, RTG 0.9', 'planner T=1, RTG 0.9'], [1.0, 0.95, 0.6, 0.8])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dtlens.errors import BatchError
from dtlens.plotting import style

__all__ = ["plot_agent_comparison"]

#: hatching of the bars of each RTG, in order (repeats after four RTGs).
_PATTERNS = ("", "/", ".", "x")


def _array(name: str, values: Any, shape: tuple[int, ...]) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64)
    if out.shape != shape:
        raise BatchError(
            f"{name} has shape {list(out.shape)}, expected {list(shape)} "
            "(agents x RTGs x state kinds, as the labels given)"
        )
    return out


def _clean(values: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in values]


def plot_agent_comparison(
    kl: Any,
    agreement: Any,
    *,
    agents: Sequence[str],
    rtgs: Sequence[str],
    kinds: Sequence[str],
    kl_ci: Any | None = None,
    agreement_ci: Any | None = None,
    title: str | None = None,
) -> go.Figure:
    """KL(agent || DT) and argmax agreement, bars per state kind, per agent and RTG.

    Args:
        kl: ``[A, R, K]`` mean KL (nats); NaN draws no bar.
        agreement: ``[A, R, K]`` fraction of steps whose argmaxes agree.
        agents: the ``A`` agent names.
        rtgs: the ``R`` RTG labels (e.g. ``"RTG 0.9"``).
        kinds: the ``K`` state kinds (the x axis).
        kl_ci: optional ``[A, R, K, 2]`` interval (low, high) of the KL.
        agreement_ci: optional ``[A, R, K, 2]`` interval of the agreement.
        title: the figure title.

    Raises:
        BatchError: an array's shape does not match the labels.
    """
    shape = (len(agents), len(rtgs), len(kinds))
    panels = [
        ("KL(agent || DT), nats", _array("kl", kl, shape), kl_ci, "kl_ci"),
        ("argmax agreement", _array("agreement", agreement, shape), agreement_ci, "agreement_ci"),
    ]
    fig = make_subplots(rows=1, cols=2, subplot_titles=[p[0] for p in panels])
    for col, (_, values, ci, ci_name) in enumerate(panels, start=1):
        bounds = None if ci is None else _array(ci_name, ci, (*shape, 2))
        for a, agent in enumerate(agents):
            colour = style.ACTION_PALETTE[a % len(style.ACTION_PALETTE)]
            for r, rtg in enumerate(rtgs):
                y = values[a, r]
                error = None
                if bounds is not None:
                    error = dict(
                        type="data",
                        symmetric=False,
                        array=_clean(np.maximum(bounds[a, r, :, 1] - y, 0)),
                        arrayminus=_clean(np.maximum(y - bounds[a, r, :, 0], 0)),
                    )
                fig.add_bar(
                    x=list(kinds),
                    y=_clean(y),
                    name=f"{agent}, {rtg}",
                    legendgroup=f"{agent}, {rtg}",
                    showlegend=col == 1,
                    marker=dict(color=colour, pattern_shape=_PATTERNS[r % len(_PATTERNS)]),
                    error_y=error,
                    row=1,
                    col=col,
                )
    fig.update_yaxes(title_text="nats", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="fraction of steps", range=[0, 1.05], row=1, col=2)
    fig.update_layout(
        barmode="group",
        title=title or "The DT against the agents it simulates, per state kind",
        template=style.TEMPLATE,
        font_size=style.FONT_SIZE,
        legend_title_text="agent, RTG",
    )
    return fig
