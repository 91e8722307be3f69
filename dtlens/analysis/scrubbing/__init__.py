"""Causal scrubbing (Chan et al. 2022): test a hypothesis by resampling what it says is irrelevant.

- :mod:`~dtlens.analysis.scrubbing.hypothesis`: :class:`Claim` (edges or nodes of the
  model's graph, a feature of the input they carry, children claims about how their
  senders are computed) and :class:`Hypothesis` (a tree of claims; ``identity``,
  ``empty``, ``from_edges`` for a labelled subgraph such as a circuit);
- :mod:`~dtlens.analysis.scrubbing.data`: :class:`ScrubbingDataset` (windows and their
  features), :func:`memory_dataset` (the Memory task's decision square over layouts and
  RTGs) and :func:`decision_metric`;
- :mod:`~dtlens.analysis.scrubbing.engine`: the batched forward pass of many worlds;
- :mod:`~dtlens.analysis.scrubbing.scrub`: :func:`causal_scrubbing`, :class:`Scrubber`
  and :class:`ScrubbingResult` (``recovered`` = (scrubbed - resampled) / (clean - resampled));
- :mod:`~dtlens.analysis.scrubbing.hypotheses`: ready-made hypotheses
  (:func:`through_heads`: a feature reaches the output only through given heads).

Example:
    >>> import dtlens
    >>> from dtlens.analysis.circuits import DTGraph
    >>> model = dtlens.load("memorydt")
    >>> data = memory_dataset(model, rtgs=(0.9, 0.0))
    >>> h = through_heads(DTGraph(model), ["L0H1"], carried=("instruction", "top"))
    >>> result = causal_scrubbing(model, data, decision_metric(model, data), h)
    >>> round(result.recovered, 2)
    0.83
"""

from dtlens.analysis.scrubbing.data import (
    DecisionMetric,
    ScrubbingDataset,
    decision_metric,
    memory_dataset,
)
from dtlens.analysis.scrubbing.hypotheses import through_heads
from dtlens.analysis.scrubbing.hypothesis import ALL, ANY, IDENTITY, Claim, Hypothesis
from dtlens.analysis.scrubbing.scrub import (
    Scrubber,
    ScrubbingResult,
    ScrubMetric,
    causal_scrubbing,
)

__all__ = [
    "ALL",
    "ANY",
    "IDENTITY",
    "Claim",
    "DecisionMetric",
    "Hypothesis",
    "ScrubMetric",
    "Scrubber",
    "ScrubbingDataset",
    "ScrubbingResult",
    "causal_scrubbing",
    "decision_metric",
    "memory_dataset",
    "through_heads",
]
