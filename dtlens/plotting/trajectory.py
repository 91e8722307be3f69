"""A trajectory at a glance: the model's action probabilities at each step, and a rendered frame.

Examples:
    >>> import torch
    >>> probs = torch.tensor([[0.25, 0.75], [0.5, 0.5]])  # 2 steps, 2 actions
    >>> fig = plot_action_probabilities(probs, ["left", "right"], ["1: right", "2: left"])
    >>> fig.data[0].z.tolist()  # rows = actions, columns = steps
    [[0.25, 0.5], [0.75, 0.5]]
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float, UInt8
from torch import Tensor

from dtlens.env.actions import ACTION_NAMES
from dtlens.errors import BatchError, ObservationError
from dtlens.plotting import style
from dtlens.plotting.heatmaps import as_numpy, check_labels, labelled_heatmap

__all__ = ["check_probabilities", "plot_action_probabilities", "plot_grid", "png_data_uri"]

#: slack allowed on probabilities outside [0, 1] (float32 softmax rounding).
PROBABILITY_TOLERANCE = 1e-5


def check_probabilities(
    table: Float[np.ndarray, "..."], name: str = "probs"
) -> Float[np.ndarray, "..."]:
    """``table`` itself, after checking every value lies in [0, 1] (up to
    :data:`PROBABILITY_TOLERANCE`).

    Raises:
        BatchError: a value lies outside [0, 1], the usual sign of logits passed instead
            of ``softmax(logits)`` (the message names ``name`` and the range found).

    Examples:
        >>> check_probabilities(np.array([[0.5, 0.5]])).tolist()
        [[0.5, 0.5]]
    """
    low = float(table.min()) if table.size else 0.0
    high = float(table.max()) if table.size else 0.0
    if low < -PROBABILITY_TOLERANCE or high > 1 + PROBABILITY_TOLERANCE:
        raise BatchError(
            f"{name} must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
            "pass softmax(logits), not logits."
        )
    return table


def plot_action_probabilities(
    probs: Float[Tensor, "step action"] | Float[np.ndarray, "step action"],
    action_names: Sequence[str] | None = ACTION_NAMES,
    step_labels: Sequence[str] | None = None,
    title: str | None = "Action probabilities along the trajectory",
    show_values: bool = True,
) -> go.Figure:
    """Heatmap of the action distribution at each step: rows = actions, columns = steps.

    Args:
        probs: the model's probabilities ``[step, action]`` (e.g. the softmax of
            ``model.action_logits(batch)[0]``); each value in [0, 1].
        action_names: one name per action (default MiniGrid's seven); ``None`` = indices.
        step_labels: one label per step, e.g. ``["1: forward", "2: left"]`` (default
            ``"1"``, ``"2"``, ...).
        title: figure title.
        show_values: write each probability (2 decimals) in its cell.

    Returns:
        A figure whose heatmap z is ``probs`` transposed (``[action, step]``) on a 0-1
        colour scale, first action on top.

    Raises:
        BatchError: ``probs`` is not 2-D, has values outside [0, 1] (logits passed by
            mistake), or labels do not match its shape.

    Examples:
        >>> import torch
        >>> fig = plot_action_probabilities(torch.full((3, 7), 1 / 7))
        >>> list(fig.data[0].x), fig.data[0].y[0]
        (['1', '2', '3'], 'left')
    """
    table = as_numpy(probs, "probs [step, action]", 2)
    n_steps, n_actions = table.shape
    check_probabilities(table, "probs")
    actions = check_labels(action_names, n_actions, "action names")
    steps = check_labels(
        step_labels if step_labels is not None else [str(t + 1) for t in range(n_steps)],
        n_steps,
        "step labels",
    )
    text = {"texttemplate": "%{z:.2f}"} if show_values else {}
    fig = go.Figure(
        labelled_heatmap(
            table.T,
            actions,
            steps,
            "step %{x}<br>action %{y}<br>probability %{z:.3f}<extra></extra>",
            colorscale=style.SEQUENTIAL,
            zmin=0.0,
            zmax=1.0,
            colorbar={"title": {"text": "probability"}},
            **text,
        )
    )
    fig.update_xaxes(title_text="step", type="category")
    fig.update_yaxes(title_text="action", autorange="reversed", type="category")
    return fig.update_layout(title=title, template=style.TEMPLATE)


def plot_grid(
    rgb: UInt8[np.ndarray, "height width 3"] | UInt8[Tensor, "height width 3"],
    title: str | None = None,
    png: bool = False,
) -> go.Figure:
    """A rendered environment frame (``env.render()`` with ``render_mode="rgb_array"``).

    Args:
        rgb: the image ``[height, width, 3]``, integers 0-255 (uint8 as MiniGrid renders).
        title: figure title.
        png: hold the pixels as a PNG data URI (the trace's ``source``, see
            :func:`png_data_uri`) instead of the array ``z``: the same pixels in about
            1 % of the bytes, for figures sent over a network (the live app).

    Returns:
        A figure with one ``go.Image`` trace holding the pixels as given, axes hidden.

    Raises:
        ObservationError: ``rgb`` is not ``[H, W, 3]`` integers in 0-255 (a float
            image is refused rather than guessed at: scale it to 0-255 and cast to uint8).

    Examples:
        >>> import numpy as np
        >>> fig = plot_grid(np.zeros((4, 5, 3), dtype=np.uint8))
        >>> fig.data[0].type, fig.data[0].z.shape
        ('image', (4, 5, 3))
    """
    if isinstance(rgb, Tensor):
        pixels = rgb.detach().cpu().numpy()
    elif isinstance(rgb, np.ndarray):
        pixels = np.array(rgb)
    else:
        raise ObservationError(f"rgb must be a numpy array or tensor, got {type(rgb).__name__}.")
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ObservationError(f"rgb must have shape [height, width, 3], got {list(pixels.shape)}.")
    if not np.issubdtype(pixels.dtype, np.integer):
        raise ObservationError(
            f"rgb must hold integers 0-255 (e.g. uint8 from env.render()), got dtype "
            f"{pixels.dtype}; scale to 0-255 and cast to uint8."
        )
    if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise ObservationError(
            f"rgb values must lie in 0-255, got [{pixels.min()}, {pixels.max()}]."
        )
    hover = "x %{x}<br>y %{y}<extra></extra>"
    if png:
        fig = go.Figure(go.Image(source=png_data_uri(pixels.astype(np.uint8)), hovertemplate=hover))
    else:
        fig = go.Figure(go.Image(z=pixels, hovertemplate=hover))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig.update_layout(
        title=title, template=style.TEMPLATE, margin={"l": 10, "r": 10, "t": 40, "b": 10}
    )


def png_data_uri(rgb: UInt8[np.ndarray, "height width 3"]) -> str:
    """An RGB frame as a PNG data URI (lossless), for an image trace's ``source``.

    MiniGrid's flat-coloured 224x224 renders compress from 150 kB of pixels to about
    1.4 kB (zlib level 1 with run-length matching, Z_RLE; ~0.6 ms, most of it PNG's
    row filters).

    Raises:
        ObservationError: ``rgb`` is not a ``[H, W, 3]`` uint8 array.

    Example:
        >>> uri = png_data_uri(np.zeros((2, 4, 3), dtype=np.uint8))
        >>> uri[:22]
        'data:image/png;base64,'
    """
    from PIL import Image  # pillow comes with imageio, a dependency

    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3:
        shape = list(rgb.shape) if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ObservationError(f"a frame must be a [H, W, 3] uint8 array, got {shape}.")
    if rgb.shape[-1] != 3:
        raise ObservationError(f"a frame must be a [H, W, 3] uint8 array, got {list(rgb.shape)}.")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(
        buffer, format="PNG", compress_level=1, compress_type=3
    )
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
