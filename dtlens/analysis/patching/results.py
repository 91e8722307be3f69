"""`PatchingResult`: the labelled tensor every patching sweep returns.

Examples:
    >>> import torch
    >>> r = PatchingResult(torch.zeros(2, 3), axes=("layer", "pos"),
    ...                    labels={"layer": ["0", "1"], "pos": ["R1", "S1", "A1"]},
    ...                    metric_name="restored logit diff")
    >>> r.value(layer="1", pos="S1")
    0.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jaxtyping import Float
from torch import Tensor

from dtlens.errors import DTLensError

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["PatchingResult"]


@dataclass(frozen=True)
class PatchingResult:
    """Values of a metric for every patch of a sweep, with named, labelled axes.

    Args:
        values: one metric value per patch, shaped by ``axes`` (e.g. ``[layer, pos]``).
        axes: axis names in order, e.g. ``("layer", "pos")`` or ``("layer", "head")``.
        labels: for each axis, one label per index (``"R1"``, ``"S1"`` ... for
            positions; ``"0"``, ``"1"`` ... for layers; ``"L0H3"`` for heads...).
        metric_name: what ``values`` measure (used as plot titles/colour bars).
        info: free-form details (hook name, direction, clean/corrupt metric values).
    """

    values: Float[Tensor, "..."]
    axes: tuple[str, ...]
    labels: dict[str, list[str]]
    metric_name: str = "metric"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.axes) != self.values.ndim:
            raise DTLensError(
                f"PatchingResult has {len(self.axes)} axes {self.axes} but values of shape "
                f"{list(self.values.shape)}."
            )
        for axis, size in zip(self.axes, self.values.shape, strict=True):
            if len(self.labels.get(axis, [])) != size:
                raise DTLensError(
                    f"axis {axis!r} has {size} entries but {len(self.labels.get(axis, []))} labels."
                )

    def value(self, **where: str) -> float:
        """The value at the given label of every axis, e.g. ``value(layer="1", pos="S9")``."""
        if set(where) != set(self.axes):
            raise DTLensError(f"give a label for each axis {self.axes}, got {sorted(where)}.")
        index = []
        for axis in self.axes:
            try:
                index.append(self.labels[axis].index(str(where[axis])))
            except ValueError:
                raise DTLensError(
                    f"{where[axis]!r} is not a label of axis {axis!r}: {self.labels[axis]}"
                ) from None
        return float(self.values[tuple(index)])

    def plot(self, **kwargs: Any) -> go.Figure:
        """A plotly heatmap (or bar chart for one axis); see ``dtlens.plotting.plot_patching``."""
        from dtlens.plotting import plot_patching

        return plot_patching(self, **kwargs)
