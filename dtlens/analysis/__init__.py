"""Analyses of decision transformers, one concept per subpackage.

- :mod:`~dtlens.analysis.metrics`: the metrics every analysis takes (``MetricFn``:
  logits -> one value per pair, or a scalar) and the restored fraction;
- :mod:`~dtlens.analysis.edits`: inputs to compare (observation and RTG edits, the
  Memory task's clean/corrupt pairs, greedy play);
- :mod:`~dtlens.analysis.patching`: activation patching sweeps (exact, and estimated by
  attribution patching) and their results;
- :mod:`~dtlens.analysis.circuits`: the model as a graph of senders and receivers:
  path patching, exact edge patching, EAP/EAP-IG edge scores, ACDC, faithfulness;
- :mod:`~dtlens.analysis.decomposition`: direct logit attribution, logit lens, the
  residual stream by component;
- :mod:`~dtlens.analysis.weights`: QK/OV circuits, congruence, embeddings (weights only).

This package re-exports their public names.

Example:
    >>> from dtlens.analysis import activation_patching, instruction_swap_pair, path_patching
"""

from dtlens.analysis.circuits import (
    ACDCResult,
    DTGraph,
    Edge,
    EdgeScores,
    FaithfulnessCurve,
    acdc,
    circuit_faithfulness,
    edge_attribution_patching,
    edge_patching,
    faithfulness_curve,
)
from dtlens.analysis.circuits.nodes import MLP, Embed, Head, HeadInput, Logits, MLPInput, ResidPre
from dtlens.analysis.circuits.path_patching import path_patching, path_patching_sweep
from dtlens.analysis.decomposition import (
    LogitAttribution,
    ResidualDecomposition,
    direct_logit_attribution,
    logit_lens,
    residual_decomposition,
)
from dtlens.analysis.edits.observations import (
    ObservationEdit,
    compose,
    flip_targets,
    patch_observation,
    set_cell,
    set_rtg,
    swap_instruction,
)
from dtlens.analysis.edits.routine import GreedyRun, history_batch, play_greedy
from dtlens.analysis.edits.scenarios import (
    PatchingPair,
    all_layouts,
    instruction_swap_pair,
    layout_batch,
    rtg_pair,
)
from dtlens.analysis.metrics import (
    Metric,
    MetricFn,
    action_entropy,
    action_probability,
    logit_diff,
    make_action_entropy_metric,
    make_action_probability_metric,
    make_logit_diff_metric,
    patching_effect,
    restored_logit_diff,
)
from dtlens.analysis.patching.activation import activation_patching
from dtlens.analysis.patching.attribution import attribution_patching
from dtlens.analysis.patching.results import PatchingResult
from dtlens.analysis.weights.congruence import (
    CongruenceTable,
    congruence,
    embedding_congruence,
    embedding_neuron_congruence,
    head_congruence,
    per_layer_growth,
)
from dtlens.analysis.weights.embeddings import EmbeddingRows, embedding_matrix
from dtlens.analysis.weights.qk_ov import (
    Circuit,
    HeadSVD,
    StatePCA,
    head_svd,
    ov_circuit,
    qk_circuit,
    state_embedding_pca,
)

__all__ = [
    "MLP",
    "ACDCResult",
    "Circuit",
    "CongruenceTable",
    "DTGraph",
    "Edge",
    "EdgeScores",
    "Embed",
    "EmbeddingRows",
    "FaithfulnessCurve",
    "GreedyRun",
    "Head",
    "HeadInput",
    "HeadSVD",
    "LogitAttribution",
    "Logits",
    "MLPInput",
    "Metric",
    "MetricFn",
    "ObservationEdit",
    "PatchingPair",
    "PatchingResult",
    "ResidPre",
    "ResidualDecomposition",
    "StatePCA",
    "acdc",
    "action_entropy",
    "action_probability",
    "activation_patching",
    "all_layouts",
    "attribution_patching",
    "circuit_faithfulness",
    "compose",
    "congruence",
    "direct_logit_attribution",
    "edge_attribution_patching",
    "edge_patching",
    "embedding_congruence",
    "embedding_matrix",
    "embedding_neuron_congruence",
    "faithfulness_curve",
    "flip_targets",
    "head_congruence",
    "head_svd",
    "history_batch",
    "instruction_swap_pair",
    "layout_batch",
    "logit_diff",
    "logit_lens",
    "make_action_entropy_metric",
    "make_action_probability_metric",
    "make_logit_diff_metric",
    "ov_circuit",
    "patch_observation",
    "patching_effect",
    "path_patching",
    "path_patching_sweep",
    "per_layer_growth",
    "play_greedy",
    "qk_circuit",
    "residual_decomposition",
    "restored_logit_diff",
    "rtg_pair",
    "set_cell",
    "set_rtg",
    "state_embedding_pca",
    "swap_instruction",
]
