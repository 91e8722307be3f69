"""Shared look of dtlens figures: template, colour scales and palettes (constants only).

Every builder in :mod:`dtlens.plotting` takes its colours from here, so the report
and the app look the same and one edit restyles everything.

Examples:
    >>> from dtlens.plotting import style
    >>> style.TEMPLATE, style.DIVERGING
    ('plotly_white', 'RdBu')
"""

from __future__ import annotations

from plotly.colors import qualitative

__all__ = [
    "ACTION_PALETTE",
    "BAND_FILL",
    "DIVERGING",
    "FAILURE_COLOUR",
    "FONT_SIZE",
    "GREYED",
    "GREYED_COLOUR",
    "IDENTITY_COLOUR",
    "MEAN_COLOUR",
    "NEUTRAL_COLOUR",
    "SEQUENTIAL",
    "SUCCESS_COLOUR",
    "TEMPLATE",
    "sequential_coloraxis",
]

#: plotly template of every figure (white background, so masked cells read as empty).
TEMPLATE = "plotly_white"
#: base font size.
FONT_SIZE = 12

#: signed values centred at a midpoint (patching, DLA, logit lens): red low, blue high.
DIVERGING = "RdBu"
#: values in [0, 1] (attention weights, action probabilities).
SEQUENTIAL = "Blues"
#: signed values that mean nothing (patching whose clean and corrupt runs barely differ):
#: pale grey at the midpoint, mid grey at both ends, so no sign or circuit reads from it.
GREYED: tuple[tuple[float, str], ...] = ((0.0, "#a6a6a6"), (0.5, "#f2f2f2"), (1.0, "#a6a6a6"))
#: bars of such a figure.
GREYED_COLOUR = "#b3b3b3"

#: one colour per action (restarts for each layer in the congruence strip plot).
ACTION_PALETTE: tuple[str, ...] = tuple(qualitative.Plotly)

#: successful episodes / positive reward (the seed's Figure 3: blue).
SUCCESS_COLOUR = "#1f77b4"
#: failed episodes / no reward (the seed's Figure 3: red).
FAILURE_COLOUR = "#d62728"
#: points or shapes with no success information.
NEUTRAL_COLOUR = "#7f7f7f"
#: the mean line of a calibration curve.
MEAN_COLOUR = "#2c3e50"
#: the shaded confidence band around it.
BAND_FILL = "rgba(44, 62, 80, 0.2)"
#: the y = x reference line.
IDENTITY_COLOUR = "#999999"


def sequential_coloraxis(title: str, top: float = 1.0) -> dict:
    """A layout ``coloraxis`` on :data:`SEQUENTIAL` from 0 to ``top`` with one titled bar:
    the one colour scale shared by the panels of a small-multiples figure.

    Example:
        >>> sequential_coloraxis("probability")["cmax"]
        1.0
    """
    return {
        "colorscale": SEQUENTIAL,
        "cmin": 0.0,
        "cmax": float(top),
        "colorbar": {"title": {"text": title}},
    }
