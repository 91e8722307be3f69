"""Steering by activation addition, and a sweep that measures it in play.

- :mod:`~dtlens.analysis.steering.hooks`: :func:`steer`, a hook context adding
  ``coef * direction`` at any hook and positions (it works inside rollouts);
- :mod:`~dtlens.analysis.steering.directions`: directions from a difference of class
  means or a probe's normal;
- :mod:`~dtlens.analysis.steering.sweep`: hooks x coefficients, measured as the share
  of episodes retargeted to the other object and whether the RTG still controls success.

Example:
    >>> from dtlens.analysis.steering import fact_directions, steering_sweep
    >>> dirs = fact_directions(model, data, "instruction")  # doctest: +SKIP
    >>> steering_sweep(model, dirs, "instruction").best()  # doctest: +SKIP
"""

from dtlens.analysis.steering.directions import fact_directions, mean_difference, probe_direction
from dtlens.analysis.steering.hooks import POSITION_KINDS, Steering, resolve_positions, steer
from dtlens.analysis.steering.sweep import OUTCOMES, SteeringResult, layout_value, steering_sweep

__all__ = [
    "OUTCOMES",
    "POSITION_KINDS",
    "Steering",
    "SteeringResult",
    "fact_directions",
    "layout_value",
    "mean_difference",
    "probe_direction",
    "resolve_positions",
    "steer",
    "steering_sweep",
]
