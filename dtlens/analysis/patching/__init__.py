"""Activation patching: which activations carry the difference between two inputs.

- :mod:`~dtlens.analysis.patching.activation`: :func:`activation_patching`, the sweeps
  (every layer x position, head, neuron, embedding timestep) in batched forwards;
- :mod:`~dtlens.analysis.patching.attribution`: :func:`attribution_patching`, the same
  sweeps estimated to first order from one forward per run and one backward;
- :mod:`~dtlens.analysis.patching.sweeps`: the sweep table both share (hooks, axes,
  location masks, labels);
- :mod:`~dtlens.analysis.patching.engine`: the batched engine (:func:`patched_metrics`
  for any hook and masks), over :mod:`~dtlens.analysis.patching.groups` (what a patch
  is) and :mod:`~dtlens.analysis.patching.chunks` (how patches are split into forwards);
- :mod:`~dtlens.analysis.patching.results`: :class:`PatchingResult`, the labelled
  tensor every patching analysis returns.

Example:
    >>> from tests.conftest import build_batch, build_model
    >>> model, clean, corrupt = build_model(), build_batch(seed=0), build_batch(seed=1)
    >>> metric = lambda logits: logits[:, -1, 0] - logits[:, -1, 1]
    >>> activation_patching(model, clean, corrupt, metric, "z", by=("layer", "head")).axes
    ('layer', 'head')
"""

from dtlens.analysis.patching.activation import PATCHING_SWEEPS, activation_patching
from dtlens.analysis.patching.attribution import attribution_patching
from dtlens.analysis.patching.engine import patched_metrics
from dtlens.analysis.patching.results import PatchingResult

__all__ = [
    "PATCHING_SWEEPS",
    "PatchingResult",
    "activation_patching",
    "attribution_patching",
    "patched_metrics",
]
