"""Linear probes: which facts of the environment the residual stream holds, layer by layer.

- :mod:`~dtlens.analysis.probes.data`: windows of Memory episodes (scripted routes or
  the model's own rollouts) labelled with the instruction, the target's side, the RTG
  bucket and the steps to the decision square;
- :mod:`~dtlens.analysis.probes.fit`: one logistic-regression probe on a seeded held-out
  split, with a Wilson interval;
- :mod:`~dtlens.analysis.probes.layers`: probes at every hook with two baselines (a
  randomly initialised model of the same architecture, shuffled labels).

Example:
    >>> from dtlens.analysis.probes import linear_probes, memory_windows
    >>> data = memory_windows(model, n_routes=400, rtg=0.9)  # doctest: +SKIP
    >>> linear_probes(model, data, "instruction").accuracy_by_layer  # doctest: +SKIP
"""

from dtlens.analysis.probes.data import (
    DECISION_POSE,
    FACT_VALUES,
    FACTS,
    ProbeData,
    memory_windows,
    rollout_windows,
    steps_to_decision,
)
from dtlens.analysis.probes.fit import ProbeFit, fit_probe, wilson_interval
from dtlens.analysis.probes.layers import (
    ProbeResult,
    linear_probes,
    probe_activations,
    random_model,
    residual_hooks,
    token_position,
)

__all__ = [
    "DECISION_POSE",
    "FACTS",
    "FACT_VALUES",
    "ProbeData",
    "ProbeFit",
    "ProbeResult",
    "fit_probe",
    "linear_probes",
    "memory_windows",
    "probe_activations",
    "random_model",
    "residual_hooks",
    "rollout_windows",
    "steps_to_decision",
    "token_position",
    "wilson_interval",
]
