"""The share of the metric causal-scrubbing hypotheses recover, as bars against their references.

:func:`plot_scrubbing` draws one bar per hypothesis (``recovered``, with its Monte Carlo
standard error) and the two references every hypothesis is measured against: the
clean model (1) and the fully resampled model (0). The hover text gives the raw
scrubbed metric beside the clean and resampled ones.

Examples:
    >>> fig = plot_scrubbing({"identity": 1.0, "empty": 0.0, "instruction via L0H1": 0.93},
    ...                      stderr={"identity": 0.0, "empty": 0.0, "instruction via L0H1": 0.01})
    >>> list(fig.data[0].x), [round(y, 2) for y in fig.data[0].y]
    (['identity', 'empty', 'instruction via L0H1'], [1.0, 0.0, 0.93])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from dtlens.errors import BatchError
from dtlens.plotting import style

__all__ = ["plot_scrubbing"]


def plot_scrubbing(
    results: Mapping[str, float] | Sequence[Any],
    stderr: Mapping[str, float] | None = None,
    scrubbed: Mapping[str, float] | None = None,
    clean: float | None = None,
    resampled: float | None = None,
    title: str | None = None,
) -> go.Figure:
    """Bars of ``recovered`` per hypothesis, with lines at clean (1) and resampled (0).

    Args:
        results: ``{hypothesis: recovered}``, or scrubbing results (objects with
            ``hypothesis``, ``recovered``, ``stderr``, ``scrubbed``, ``clean`` and
            ``resampled``; the other arguments are then read from them).
        stderr: ``{hypothesis: standard error}`` (error bars).
        scrubbed: ``{hypothesis: raw scrubbed metric}`` (hover text).
        clean: the clean metric (hover text of the 1 line).
        resampled: the fully resampled metric (hover text of the 0 line).
        title: the figure title.

    Raises:
        BatchError: no hypotheses, or ``stderr``/``scrubbed`` naming other hypotheses.
    """
    if not isinstance(results, Mapping):
        items = list(results)
        results = {r.hypothesis: float(r.recovered) for r in items}
        stderr = {r.hypothesis: float(r.stderr) for r in items} if stderr is None else stderr
        scrubbed = (
            {r.hypothesis: float(r.scrubbed) for r in items} if scrubbed is None else scrubbed
        )
        if items:
            clean = float(items[0].clean) if clean is None else clean
            resampled = float(items[0].resampled) if resampled is None else resampled
    names = list(results)
    if not names:
        raise BatchError("plot_scrubbing needs at least one hypothesis.")
    for label, extra in (("stderr", stderr), ("scrubbed", scrubbed)):
        if extra is not None and set(extra) != set(names):
            raise BatchError(
                f"{label} names hypotheses {sorted(extra)}, but results has {sorted(names)}; "
                "give one value per hypothesis."
            )
    values = [float(results[n]) for n in names]
    hover = [
        f"{n}<br>recovered {v:.3f}"
        + ("" if stderr is None else f" ± {stderr[n]:.3f}")
        + ("" if scrubbed is None else f"<br>scrubbed metric {scrubbed[n]:.3f}")
        for n, v in zip(names, values, strict=True)
    ]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=values,
            error_y=None if stderr is None else dict(type="data", array=[stderr[n] for n in names]),
            marker_color=[_colour(v) for v in values],
            hovertext=hover,
            hoverinfo="text",
            name="recovered",
            text=[f"{v:.2f}" for v in values],
            textposition="outside",
        )
    )
    for level, label, metric in ((1.0, "clean", clean), (0.0, "fully resampled", resampled)):
        note = label if metric is None else f"{label} (metric {metric:.3f})"
        fig.add_hline(
            y=level,
            line_dash="dash",
            line_color=style.IDENTITY_COLOUR,
            annotation_text=note,
            annotation_position="top right",
        )
    fig.update_layout(
        title=title,
        template=style.TEMPLATE,
        yaxis_title="recovered = (scrubbed - resampled) / (clean - resampled)",
        showlegend=False,
    )
    return fig


def _colour(value: float) -> str:
    """Blue for a hypothesis that keeps most of the metric, red for one that does not."""
    if value >= 0.5:
        return style.SUCCESS_COLOUR
    return style.FAILURE_COLOUR if value < 0.25 else style.NEUTRAL_COLOUR
