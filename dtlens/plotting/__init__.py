"""Plotly figures for dtlens analyses: tensors (or small result types) and labels in, a Figure out.

Every builder is a pure function: it only arranges the values it is given (no model
forward, no analysis, no file I/O) and returns a ``plotly.graph_objects.Figure`` whose
traces hold those values as given, ready for ``fig.show()``, ``fig.to_html()`` or a
Dash ``dcc.Graph``. Mismatched shapes or labels raise ``BatchError`` naming both.
Colours and the template come from :mod:`dtlens.plotting.style`.

Examples:
    >>> import torch
    >>> from dtlens.plotting import plot_attention
    >>> fig = plot_attention(torch.tensor([[1.0, 0.0], [0.5, 0.5]]), ["R1", "S1"])
    >>> type(fig).__name__
    'Figure'
"""

from dtlens.plotting.attention import (
    attention_from_cache,
    plot_attention,
    plot_attention_comparison,
    plot_attention_heads,
)
from dtlens.plotting.calibration import plot_calibration, plot_reward_length_scatter
from dtlens.plotting.congruence import plot_congruence, plot_congruence_growth
from dtlens.plotting.lens import plot_dla, plot_logit_lens
from dtlens.plotting.patching import plot_patching
from dtlens.plotting.routine import plot_action_probability_grid
from dtlens.plotting.trajectory import plot_action_probabilities, plot_grid

__all__ = [
    "attention_from_cache",
    "plot_action_probabilities",
    "plot_action_probability_grid",
    "plot_attention",
    "plot_attention_comparison",
    "plot_attention_heads",
    "plot_calibration",
    "plot_congruence",
    "plot_congruence_growth",
    "plot_dla",
    "plot_grid",
    "plot_logit_lens",
    "plot_patching",
    "plot_reward_length_scatter",
]
