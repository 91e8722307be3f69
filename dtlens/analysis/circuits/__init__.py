"""Circuits: the decision transformer as a graph of senders and receivers, and path patching.

- :mod:`~dtlens.analysis.circuits.nodes`: the graph's nodes (heads, MLPs, the four DT
  embeddings as senders; heads' q/k/v, MLP inputs and the logits as receivers);
- :mod:`~dtlens.analysis.circuits.node_io`: what a node writes or reads in a forward;
- :mod:`~dtlens.analysis.circuits.runs`: the cached clean/corrupt runs path patching
  starts from;
- :mod:`~dtlens.analysis.circuits.path_patching`: :func:`path_patching` and
  :func:`path_patching_sweep`;
- :mod:`~dtlens.analysis.circuits.graph`: the whole graph (:class:`DTGraph`, :class:`Edge`);
- :mod:`~dtlens.analysis.circuits.graph_runs`: the forward pass in which every edge can
  carry either run's value;
- :mod:`~dtlens.analysis.circuits.edge_patching`: :func:`edge_patching` (exact);
- :mod:`~dtlens.analysis.circuits.eap`: :func:`edge_attribution_patching` (EAP, EAP-IG)
  and :class:`EdgeScores`;
- :mod:`~dtlens.analysis.circuits.faithfulness`: :func:`faithfulness_curve`,
  :func:`circuit_faithfulness`;
- :mod:`~dtlens.analysis.circuits.discovery`: :func:`acdc`.

Example:
    >>> from tests.conftest import build_batch, build_model
    >>> model, clean, corrupt = build_model(), build_batch(seed=0), build_batch(seed=1)
    >>> metric = lambda logits: logits[:, -1, 0] - logits[:, -1, 1]
    >>> float(path_patching(model, clean, corrupt, "L0H1", "logits", metric, normalize=False)) != 0
    True
"""

from dtlens.analysis.circuits.discovery import ACDCResult, acdc
from dtlens.analysis.circuits.eap import EdgeScores, edge_attribution_patching
from dtlens.analysis.circuits.edge_patching import edge_patching
from dtlens.analysis.circuits.faithfulness import (
    FaithfulnessCurve,
    circuit_faithfulness,
    faithfulness_curve,
)
from dtlens.analysis.circuits.graph import DTGraph, Edge, parse_edge
from dtlens.analysis.circuits.nodes import MLP, Embed, Head, HeadInput, Logits, MLPInput
from dtlens.analysis.circuits.path_patching import path_patching, path_patching_sweep

__all__ = [
    "MLP",
    "ACDCResult",
    "DTGraph",
    "Edge",
    "EdgeScores",
    "Embed",
    "FaithfulnessCurve",
    "Head",
    "HeadInput",
    "Logits",
    "MLPInput",
    "acdc",
    "circuit_faithfulness",
    "edge_attribution_patching",
    "edge_patching",
    "faithfulness_curve",
    "parse_edge",
    "path_patching",
    "path_patching_sweep",
]
