"""Plot building blocks shared by every figure: checked arrays, checked labels, heatmaps.

Example:
    >>> import numpy as np
    >>> trace = labelled_heatmap(as_numpy(np.eye(2), "values", 2), check_labels(None, 2, "rows"),
    ...                          ["x", "y"], "%{z}")
    >>> list(trace.y)
    ['0', '1']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from jaxtyping import Float
from torch import Tensor

from dtlens.errors import BatchError

__all__ = ["as_numpy", "check_labels", "labelled_heatmap"]


def as_numpy(
    values: Float[Tensor, "..."] | Float[np.ndarray, "..."],
    name: str,
    ndim: int | tuple[int, ...],
    boolean: bool = False,
) -> np.ndarray:
    """A detached numpy copy of a tensor or array, after checking its dimensions and dtype.

    Plotly serialises numpy arrays, not tensors; converting here (and nowhere else)
    keeps gradients and devices out of the figures. Float values keep their precision
    (float16/bfloat16 become float32, which numpy can hold); integers become float64.

    Args:
        values: a ``torch.Tensor`` or ``np.ndarray``.
        name: what the argument is, for the error message (e.g. ``"pattern [q, k]"``).
        ndim: the allowed number(s) of dimensions.
        boolean: expect a boolean mask instead of numbers.

    Returns:
        A new numpy array (float, or bool with ``boolean=True``).

    Raises:
        BatchError: ``values`` is neither a tensor nor an array, has another number
            of dimensions (the message shows its shape), or the wrong kind of dtype.

    Examples:
        >>> import torch
        >>> as_numpy(torch.ones(2, 3), "pattern [q, k]", 2).shape
        (2, 3)
    """
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if isinstance(values, Tensor):
        tensor = values.detach().cpu()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.float()
        array = tensor.numpy()
    elif isinstance(values, np.ndarray):
        array = values
    else:
        raise BatchError(
            f"{name} must be a torch.Tensor or numpy array, got {type(values).__name__}."
        )
    if array.ndim not in allowed:
        dims = " or ".join(str(d) for d in allowed)
        raise BatchError(
            f"{name} must have {dims} dimension(s), got shape {list(array.shape)} "
            f"({array.ndim} dimensions)."
        )
    if boolean:
        if array.dtype != np.bool_:
            raise BatchError(f"{name} must be boolean, got dtype {array.dtype}.")
        return np.array(array, dtype=bool)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise BatchError(f"{name} must hold numbers, got dtype {array.dtype}.")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise BatchError(f"{name} must hold real numbers, got dtype {array.dtype}.")
    floating = np.issubdtype(array.dtype, np.floating)
    return np.array(array, dtype=array.dtype if floating else np.float64)


def check_labels(labels: Sequence[object] | None, size: int, name: str) -> list[str]:
    """Labels for one axis of a figure: given ones as strings, or ``"0"``, ``"1"``, ...

    Plotly merges equal category labels into one row or column, so duplicates are
    rejected rather than silently drawn on top of each other.

    Args:
        labels: one label per entry, or ``None`` for the indices.
        size: the length of the axis.
        name: what the labels are, for the error message (e.g. ``"token labels"``).

    Returns:
        ``size`` distinct strings.

    Raises:
        BatchError: the number of labels differs from ``size``, or a label repeats.

    Examples:
        >>> check_labels(None, 3, "layer labels")
        ['0', '1', '2']
        >>> check_labels(["R1", "S1"], 2, "token labels")
        ['R1', 'S1']
    """
    if labels is None:
        return [str(i) for i in range(size)]
    if isinstance(labels, str):
        raise BatchError(f"{name} must be a sequence of {size} labels, got the string {labels!r}.")
    out = [str(label) for label in labels]
    if len(out) != size:
        raise BatchError(f"{name}: got {len(out)} labels {out} for an axis of size {size}.")
    repeated = sorted({label for label in out if out.count(label) > 1})
    if repeated:
        raise BatchError(f"{name} must be distinct; repeated: {repeated}.")
    return out


def labelled_heatmap(
    values: Float[np.ndarray, "row col"],
    row_labels: list[str],
    col_labels: list[str],
    hover: str,
    **trace: object,
) -> go.Heatmap:
    """A heatmap trace whose z is ``values`` as given, with category labels on both axes.

    Args:
        values: ``[rows, columns]`` values (NaN cells are drawn empty).
        row_labels: one label per row (the y axis).
        col_labels: one label per column (the x axis).
        hover: a plotly hover template.
        **trace: further ``go.Heatmap`` properties (colour scale, colour bar, ...);
            NaN cells get no hover label unless ``hoverongaps=True``.

    Returns:
        The trace; callers reverse the y axis so the first row is on top.

    Examples:
        >>> trace = labelled_heatmap(np.eye(2), ["a", "b"], ["x", "y"], "%{z}")
        >>> trace.z.tolist(), list(trace.y)
        ([[1.0, 0.0], [0.0, 1.0]], ['a', 'b'])
    """
    trace.setdefault("hoverongaps", False)
    return go.Heatmap(z=values, x=col_labels, y=row_labels, hovertemplate=hover, **trace)
