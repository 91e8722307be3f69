"""Several trajectories side by side: small multiples of action probabilities, one colour bar.

The report's "set routine" section plays the model greedily in every layout at a high
and a low RTG; :func:`plot_action_probability_grid` draws all of those runs in one
figure (rows = RTGs, columns = layouts, say), each panel the heatmap
:func:`dtlens.plotting.plot_action_probabilities` would draw, all on one 0-1 colour
scale so equal colours mean equal probabilities across panels.

Examples:
    >>> import torch
    >>> runs = [torch.tensor([[0.25, 0.75]]), torch.tensor([[0.5, 0.5], [1.0, 0.0]])]
    >>> fig = plot_action_probability_grid(runs, ["left", "right"], columns=2)
    >>> [trace.z.tolist() for trace in fig.data]  # each panel: rows = actions, columns = steps
    [[[0.25], [0.75]], [[0.5, 1.0], [0.5, 0.0]]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from dtlens.env.actions import ACTION_NAMES
from dtlens.errors import BatchError
from dtlens.plotting import style
from dtlens.plotting.heatmaps import as_numpy, check_labels, labelled_heatmap
from dtlens.plotting.trajectory import check_probabilities

__all__ = ["plot_action_probability_grid"]

#: height of one action row of a panel (px).
_ROW_PX = 22
#: approximate width of one character of a tick label (px, 11 px font), for the space
#: left under each panel for its step labels (drawn vertically).
_TICK_CHAR_PX = 6.0
#: height of one line of a panel title (px, 12 px font).
_TITLE_LINE_PX = 17
#: top margin above the first row of panel titles (the figure title lives there).
_TOP_PX = 70
#: left and right margins (px): action names, and the colour bar.
_LEFT_PX, _RIGHT_PX, _COLOURBAR_PX = 70, 20, 100
#: gap between two panels of a row, as a fraction of the plotting width.
_SPACING = 0.02
#: the figure width assumed for ``width=None`` (about a report page's content width).
_ASSUMED_WIDTH_PX = 1000
#: narrowest cell that still holds its probability written out ("0.93" at 10 px).
_TEXT_CELL_PX = 26


def plot_action_probability_grid(
    runs_probs: Sequence[Float[Tensor, "step action"] | Float[np.ndarray, "step action"]],
    action_names: Sequence[str] | None = ACTION_NAMES,
    step_labels: Sequence[Sequence[str]] | None = None,
    titles: Sequence[str] | None = None,
    columns: int = 4,
    title: str | None = "Action probabilities along each trajectory",
    max_text_steps: int | None = None,
    width: int | None = None,
) -> go.Figure:
    """One heatmap per run in a grid of panels (rows = actions, columns = steps), one colour bar.

    Runs are laid out in reading order, ``columns`` to a row (e.g. the four layouts of
    the Memory task at a high RTG, then at a low RTG). Runs may have different lengths:
    each panel has its own step axis, the probabilities are written in the cells only
    of runs at most ``max_text_steps`` long (longer ones are a colour strip, every value
    in the hover label), and step labels are drawn vertically, thinned out by plotly
    where they would overlap. The figure's height grows with the number of rows, the
    number of actions and the longest step label, so no label is cut off.

    Args:
        runs_probs: one ``[step, action]`` table of probabilities per run (e.g.
            ``GreedyRun.probs``), each value in [0, 1], every run with the same actions.
        action_names: one name per action (default MiniGrid's seven); ``None`` = indices.
        step_labels: one list per run, one label per step (e.g. ``["1: forward",
            "2: right"]``, the greedy action at each step); default ``"1"``, ``"2"``, ...
        titles: one panel title per run (``<br>`` breaks a line); default ``"run 1"``, ...
        columns: panels per row.
        title: figure title.
        max_text_steps: write each probability (2 decimals) in its cell when the run has
            at most this many steps (0: never); ``None``: as many as fit in a panel, with
            cells at least 26 px wide at ``width`` (7 steps for 4 columns at 1000 px).
        width: figure width in pixels (``None``: the width of the page or container;
            the per-cell text is then sized for 1000 px).

    Returns:
        A figure with one heatmap per run, in order, whose z is that run's ``probs``
        transposed (``[action, step]``), first action on top; every heatmap is coloured
        by the layout's single ``coloraxis`` (0-1, :data:`dtlens.plotting.style.SEQUENTIAL`),
        the only colour bar.

    Raises:
        BatchError: no runs; a run is not 2-D, or has values outside [0, 1] (logits
            passed by mistake); runs differ in their number of actions; labels or titles
            do not match the runs; ``columns`` is not positive.

    Examples:
        >>> import torch
        >>> probs = torch.full((3, 7), 1 / 7)
        >>> fig = plot_action_probability_grid(
        ...     [probs, probs[:2]], titles=["key/top-key", "key/top-ball"], columns=2,
        ...     step_labels=[["1: left", "2: left", "3: done"], ["1: left", "2: right"]])
        >>> list(fig.data[1].x), fig.data[1].y[0], fig.data[1].coloraxis
        (['1: left', '2: right'], 'left', 'coloraxis')
        >>> [a.text for a in fig.layout.annotations]
        ['key/top-key', 'key/top-ball']
    """
    if isinstance(runs_probs, (Tensor, np.ndarray)) or not len(runs_probs):
        got = type(runs_probs).__name__ if len(runs_probs) else "none"
        raise BatchError(
            f"runs_probs must be a non-empty sequence of [step, action] tables, got {got}."
        )
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise BatchError(f"columns must be a positive integer, got {columns!r}.")
    n_runs = len(runs_probs)
    tables = []
    for i, probs in enumerate(runs_probs):
        name = f"probs of run {i} [step, action]"
        tables.append(check_probabilities(as_numpy(probs, name, 2), name))
    n_actions = tables[0].shape[1]
    widths = sorted({t.shape[1] for t in tables})
    if len(widths) > 1:
        raise BatchError(
            f"every run must have the same number of actions, got {widths} "
            f"({[t.shape[1] for t in tables]} per run)."
        )
    actions = check_labels(action_names, n_actions, "action names")
    if step_labels is not None and (isinstance(step_labels, str) or len(step_labels) != n_runs):
        got = "a string" if isinstance(step_labels, str) else f"{len(step_labels)} lists"
        raise BatchError(f"step_labels must hold one list per run ({n_runs}), got {got}.")
    steps = [
        check_labels(
            step_labels[i] if step_labels is not None else [str(t + 1) for t in range(len(tab))],
            len(tab),
            f"step labels of run {i}",
        )
        for i, tab in enumerate(tables)
    ]
    if titles is not None and (isinstance(titles, str) or len(titles) != n_runs):
        got = "a string" if isinstance(titles, str) else f"{len(titles)}"
        raise BatchError(f"titles must hold one title per run ({n_runs}), got {got}.")
    names = (
        [str(t) for t in titles] if titles is not None else [f"run {i + 1}" for i in range(n_runs)]
    )

    n_rows = math.ceil(n_runs / columns)
    n_cols = min(columns, n_runs)
    panel_px = _ROW_PX * n_actions
    label_px = round(_TICK_CHAR_PX * max((len(s) for run in steps for s in run), default=1)) + 8
    title_px = _TITLE_LINE_PX * max(name.count("<br>") + 1 for name in names) + 6
    gap_px = label_px + title_px + 12
    plots_px = n_rows * panel_px + (n_rows - 1) * gap_px
    top_px = _TOP_PX + title_px
    bottom_px = label_px + 16
    if max_text_steps is None:
        plot_w = (width or _ASSUMED_WIDTH_PX) - _LEFT_PX - _RIGHT_PX - _COLOURBAR_PX
        panel_w = plot_w * (1 - (n_cols - 1) * _SPACING) / n_cols
        max_text_steps = int(panel_w // _TEXT_CELL_PX)
    fig = make_subplots(
        rows=n_rows,
        cols=n_cols,
        subplot_titles=names,
        shared_yaxes=True,
        horizontal_spacing=_SPACING,
        vertical_spacing=gap_px / plots_px if n_rows > 1 else 0.0,
    )
    for i, (table, run_steps, name) in enumerate(zip(tables, steps, names, strict=True)):
        text = {}
        if 0 < len(table) <= max_text_steps:
            text = {"texttemplate": "%{z:.2f}", "textfont": {"size": 10}}
        plain = name.replace("<br>", ", ")
        fig.add_trace(
            labelled_heatmap(
                table.T,
                actions,
                run_steps,
                f"{plain}<br>step %{{x}}<br>action %{{y}}<br>probability %{{z:.3f}}<extra></extra>",
                coloraxis="coloraxis",
                name=plain,
                **text,
            ),
            row=i // columns + 1,
            col=i % columns + 1,
        )
    fig.update_xaxes(type="category", tickangle=-90, tickfont={"size": 11}, showgrid=False)
    fig.update_yaxes(type="category", autorange="reversed", showgrid=False)
    fig.update_annotations(font={"size": 12})
    return fig.update_layout(
        title=title,
        template=style.TEMPLATE,
        coloraxis=style.sequential_coloraxis("probability"),
        width=width,
        height=top_px + plots_px + bottom_px,
        margin={"t": top_px, "b": bottom_px, "l": _LEFT_PX, "r": _RIGHT_PX},
    )
