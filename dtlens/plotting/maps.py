"""Action maps on the grid: a model's action probabilities with the agent on every square.

Each panel is the 7x7 Memory grid (walls grey, the instruction and target objects
named, the square that ends the episode well in green and badly in red). On every
square where the agent was placed, four triangles point east, south, west and north,
one per facing, each in the half of the square it points to and coloured by the
probability of the panel's action with the agent standing there, facing that way.
Rows are layouts, columns actions.

Examples:
    >>> import numpy as np
    >>> probs = np.full((7, 7, 4, 3), np.nan); probs[1, 3] = [0.1, 0.2, 0.7]
    >>> cells = np.full((7, 7), "empty"); cells[0] = "wall"
    >>> fig = plot_action_maps(probs, cells, action_names=["left", "right", "forward"],
    ...                        actions=[2])
    >>> list(next(t for t in fig.data if t.meta == "wedges").marker.color)  # 4 facings
    [0.7, 0.7, 0.7, 0.7]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from dtlens.env.actions import ACTION_NAMES
from dtlens.errors import BatchError
from dtlens.plotting import style
from dtlens.plotting.heatmaps import as_numpy, check_labels
from dtlens.plotting.trajectory import check_probabilities

__all__ = ["CELL_COLOURS", "WEDGE_SYMBOLS", "plot_action_maps"]

#: background colour of each kind of square (``cells`` values).
CELL_COLOURS: dict[str, str] = {
    "wall": "#6b6b6b",
    "empty": "#ffffff",
    "key": "#ffffff",
    "ball": "#ffffff",
    "match": "#d9f2d9",
    "other": "#f8d7d6",
}
#: plotly marker symbol of the triangle for each facing (MiniGrid ``agent_dir`` order).
WEDGE_SYMBOLS: tuple[str, ...] = ("triangle-right", "triangle-down", "triangle-left", "triangle-up")
_OFFSETS = ((0.27, 0.0), (0.0, 0.27), (-0.27, 0.0), (0.0, -0.27))  # y grows downwards
_OBJECT_COLOUR = "#1a9641"
_PANEL_PX = 250


def plot_action_maps(
    probs: Float[Tensor, "layout x y direction action"] | Float[np.ndarray, "..."],
    cells: np.ndarray | Sequence,
    layout_names: Sequence[str] | None = None,
    action_names: Sequence[str] | None = ACTION_NAMES,
    actions: Sequence[int] = (0, 1, 2),
    direction_names: Sequence[str] = ("east", "south", "west", "north"),
    title: str | None = "Action probabilities with the agent placed on every square",
) -> go.Figure:
    """Draw per square and facing the probability of each chosen action, on the grid.

    Args:
        probs: ``[layout, x, y, direction, action]`` (or ``[x, y, direction, action]``
            for one layout) probabilities; NaN where the agent was not placed (nothing
            is drawn there).
        cells: ``[layout, x, y]`` (or ``[x, y]``) strings naming each square: ``"wall"``,
            ``"empty"``, ``"key"``, ``"ball"``, ``"match"`` (entering it succeeds),
            ``"other"`` (entering it fails).
        layout_names: one per layout (row titles; default ``"layout 0"``, ...).
        action_names: one per action of ``probs`` (default MiniGrid's seven).
        actions: the action indices to draw, one column each.
        direction_names: the four facings' names, in ``direction`` order.
        title: figure title.

    Returns:
        A figure with one panel per (layout, action). Each panel has a background
        heatmap (``meta="cells"``), one triangle marker per placed (square, facing)
        (``meta="wedges"``: ``marker.color`` = the probability, ``customdata`` =
        ``[x, y, direction]``) and the objects' names (``meta="objects"``).

    Raises:
        BatchError: mismatched shapes or labels, probabilities outside [0, 1], an action
            index out of range, or an unknown cell name.

    Examples:
        >>> import numpy as np
        >>> probs = np.full((1, 7, 7, 4, 7), np.nan); probs[0, 2, 3] = 1 / 7
        >>> fig = plot_action_maps(probs, np.full((1, 7, 7), "empty"), ["key/top-ball"])
        >>> len([t for t in fig.data if t.meta == "wedges"])  # one panel per action 0, 1, 2
        3
    """
    table = as_numpy(probs, "probs [layout, x, y, direction, action]", (4, 5))
    grid = np.asarray(cells)
    if table.ndim == 4:
        table, grid = table[None], grid[None]
    if grid.shape != table.shape[:3]:
        raise BatchError(
            f"cells must be [layout, x, y] = {list(table.shape[:3])}, got {list(grid.shape)}."
        )
    unknown = sorted(set(grid.ravel().tolist()) - set(CELL_COLOURS))
    if unknown:
        raise BatchError(f"unknown cell names {unknown}; known: {sorted(CELL_COLOURS)}.")
    n_layouts, width, height, n_dirs, n_actions = table.shape
    check_probabilities(table[np.isfinite(table)], "probs")  # NaN: poses not placed
    names = check_labels(action_names, n_actions, "action names")
    directions = check_labels(direction_names, n_dirs, "direction names")
    if n_dirs != len(WEDGE_SYMBOLS):
        raise BatchError(f"probs must have 4 directions, got {n_dirs}.")
    rows = check_labels(
        layout_names if layout_names is not None else [f"layout {i}" for i in range(n_layouts)],
        n_layouts,
        "layout names",
    )
    columns = [int(a) for a in actions]
    if not columns or any(not 0 <= a < n_actions for a in columns):
        raise BatchError(f"actions must be indices in 0..{n_actions - 1}, got {list(actions)}.")
    fig = make_subplots(
        rows=n_layouts,
        cols=len(columns),
        subplot_titles=[f"{row}: P({names[a]})" for row in rows for a in columns],
        horizontal_spacing=0.03,
        vertical_spacing=0.06 / max(1, n_layouts / 4),
    )
    for r in range(n_layouts):
        for c, action in enumerate(columns):
            for trace in _panel(table[r], grid[r], action, names, directions, rows[r]):
                fig.add_trace(trace, row=r + 1, col=c + 1)
    fig.update_xaxes(
        range=[-0.5, width - 0.5], showgrid=False, zeroline=False, showticklabels=False
    )
    fig.update_yaxes(
        range=[height - 0.5, -0.5], showgrid=False, zeroline=False, showticklabels=False
    )
    for i in range(1, n_layouts * len(columns) + 1):
        suffix = "" if i == 1 else str(i)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    return fig.update_layout(
        title=title,
        template=style.TEMPLATE,
        coloraxis=style.sequential_coloraxis("probability"),
        showlegend=False,
        width=max(420, 40 + _PANEL_PX * len(columns) + 100),
        height=120 + _PANEL_PX * n_layouts,
        margin={"l": 20, "r": 20, "t": 90, "b": 20},
    )


def _panel(
    table: np.ndarray,
    cells: np.ndarray,
    action: int,
    names: list[str],
    directions: list[str],
    layout: str,
) -> list[go.BaseTraceType]:
    """Background, wedges and object names of one (layout, action) panel."""
    width, height = cells.shape
    kinds = list(CELL_COLOURS)
    codes = np.array([[kinds.index(cells[x, y]) for x in range(width)] for y in range(height)])
    n = len(kinds) - 1
    colourscale = []
    for i, kind in enumerate(kinds):  # one flat band per kind
        colourscale += [[i / (n + 1), CELL_COLOURS[kind]], [(i + 1) / (n + 1), CELL_COLOURS[kind]]]
    background = go.Heatmap(
        z=(codes + 0.5) / (n + 1),
        x=list(range(width)),
        y=list(range(height)),
        colorscale=colourscale,
        zmin=0.0,
        zmax=1.0,
        showscale=False,
        hoverinfo="skip",
        xgap=1,
        ygap=1,
        meta="cells",
    )
    xs, ys, colours, symbols, custom, hover = [], [], [], [], [], []
    for x in range(width):
        for y in range(height):
            for d in range(len(directions)):
                dist = table[x, y, d]
                if not np.all(np.isfinite(dist)):
                    continue
                dx, dy = _OFFSETS[d]
                xs.append(x + dx)
                ys.append(y + dy)
                colours.append(float(dist[action]))
                symbols.append(WEDGE_SYMBOLS[d])
                custom.append([x, y, d])
                best = int(np.argmax(dist))
                listing = "<br>".join(f"{nm}: {p:.3f}" for nm, p in zip(names, dist, strict=True))
                hover.append(
                    f"{layout}<br>square ({x}, {y}) facing {directions[d]}<br>"
                    f"P({names[action]}) = {dist[action]:.3f} (most likely: {names[best]})"
                    f"<br>{listing}"
                )
    wedges = go.Scatter(
        x=xs,
        y=ys,
        mode="markers",
        marker={
            "symbol": symbols,
            "size": 13,
            "color": colours,
            "coloraxis": "coloraxis",
            "line": {"width": 0.6, "color": "#888888"},
        },
        customdata=custom,
        hovertext=hover,
        hoverinfo="text",
        name=f"P({names[action]})",
        meta="wedges",
    )
    objects = [(x, y, cells[x, y]) for x in range(width) for y in range(height)]
    objects = [(x, y, kind) for x, y, kind in objects if kind in ("key", "ball")]
    labels = go.Scatter(
        x=[x for x, _, _ in objects],
        y=[y for _, y, _ in objects],
        mode="text",
        text=[kind for _, _, kind in objects],
        textfont={"color": _OBJECT_COLOUR, "size": 11},
        hoverinfo="skip",
        meta="objects",
    )
    return [background, wedges, labels]
